// llama2.c checkpoints (legacy "version 0" layout of run.c): a 7×int32 header, then F32 tensors
// stacked over layers. A negative vocab_size means an unshared classifier follows the (skipped)
// legacy freq_cis tables. RoPE rotates interleaved pairs (2i, 2i+1).

import * as fs from 'node:fs';
import { ModelConfigError, ModelFormatError } from '../core/errors.js';
import type { DenseTensor } from '../core/tensor.js';
import type { ModelConfig } from './config.js';
import type { TensorKey, TensorSource } from './weights.js';
import { ModelFile, type ByteRange, type ReadOptions } from './open.js';

const HEADER_BYTES = 28;
const VERSIONED_MAGIC = 0x616b3432; // "ak42": llama2.c export versions >= 1

interface Slice {
  readonly offset: number;
  readonly shape: readonly number[];
}

export function isLlama2cFile(file: string): boolean {
  return file.endsWith('.bin') && fs.existsSync(file) && fs.statSync(file).isFile();
}

export class Llama2cSource implements TensorSource {
  readonly where: string;
  readonly config: ModelConfig;
  private readonly file: ModelFile;
  private readonly slices = new Map<string, Slice>();

  private constructor(file: ModelFile, config: ModelConfig, slices: Map<string, Slice>) {
    this.where = file.path;
    this.file = file;
    this.config = config;
    this.slices = slices;
  }

  static open(path: string, opts: ReadOptions = {}): Llama2cSource {
    return Llama2cSource.fromFile(ModelFile.open(path, opts));
  }

  /** A checkpoint from an open file (closed here when it is not one). */
  static fromFile(file: ModelFile): Llama2cSource {
    const path = file.path;
    try {
      const { size } = file;
      if (size < HEADER_BYTES) throw new ModelFormatError(`${path}: ${size} bytes is too short for a llama2.c checkpoint.`);
      const head = new Int32Array(7);
      file.readInto(new Uint8Array(head.buffer), 0, 'the header');
      if (head[0]! >>> 0 === VERSIONED_MAGIC) {
        throw new ModelFormatError(
          `${path} is a versioned llama2.c export (magic "ak42"); only the legacy version-0 layout is read. ` +
            'Re-export it with `export.py --version 0`, or convert it to a Hugging Face directory.',
        );
      }
      const { config, slices, needed } = layout(head, path);
      if (size < needed) {
        throw new ModelFormatError(`${path}: the header implies ${needed} bytes of weights but the file has ${size}; it is truncated.`);
      }
      return new Llama2cSource(file, config, slices);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  info(name: string) {
    const s = this.slices.get(name);
    if (!s) return undefined;
    return { dtype: 'F32', shape: s.shape, byteLength: s.shape.reduce((a, b) => a * b, 1) * 4 };
  }

  /** The byte ranges of the tensors (what a ranged reader fetches). */
  byteRanges(): ByteRange[] {
    return [...this.slices.values()].map((s) => ({ offset: s.offset, length: s.shape.reduce((a, b) => a * b, 1) * 4 }));
  }

  /** One F32 tensor: a view of the mapped file (its offsets are multiples of 4), else its own copy. */
  read(name: string): DenseTensor {
    const s = this.slices.get(name);
    if (!s) throw new ModelFormatError(`${this.where}: tensor "${name}" is not available.`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    const b = this.file.bytes(s.offset, n * 4, 4, `tensor "${name}"`);
    return { dtype: 'f32', shape: s.shape, data: new Float32Array(b.buffer, b.byteOffset, n) };
  }

  close(): void {
    this.file.close();
  }
}

/** Internal names are used directly as this format's tensor names. */
export const llama2cTensorName = (key: TensorKey): string => key;

function layout(head: Int32Array, file: string): { config: ModelConfig; slices: Map<string, Slice>; needed: number } {
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = Array.from(head) as number[] as [
    number, number, number, number, number, number, number,
  ];
  const vocabSize = Math.abs(rawVocab);
  const sane = (v: number, max: number) => Number.isInteger(v) && v > 0 && v <= max;
  if (!sane(dim, 1 << 16) || !sane(hiddenDim, 1 << 18) || !sane(nLayers, 1024) || !sane(nHeads, 1024) ||
      !sane(nKvHeads, 1024) || !sane(vocabSize, 1 << 22) || !sane(seqLen, 1 << 22)) {
    throw new ModelFormatError(`${file}: header [${Array.from(head).join(', ')}] is not a llama2.c checkpoint header.`);
  }
  if (dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
    throw new ModelConfigError(`${file}: dim ${dim}, ${nHeads} heads and ${nKvHeads} kv heads are inconsistent.`);
  }
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;
  const shared = rawVocab > 0;
  const slices = new Map<string, Slice>();
  let offset = HEADER_BYTES;
  const stacked = (role: string, shape: number[]) => {
    const per = shape.reduce((a, b) => a * b, 1) * 4;
    for (let l = 0; l < nLayers; l++) slices.set(`layers.${l}.${role}`, { offset: offset + l * per, shape });
    offset += per * nLayers;
  };
  const single = (name: string, shape: number[]) => {
    slices.set(name, { offset, shape });
    offset += shape.reduce((a, b) => a * b, 1) * 4;
  };
  single('tokEmbed', [vocabSize, dim]);
  stacked('attnNorm', [dim]);
  stacked('wq', [dim, dim]);
  stacked('wk', [kvDim, dim]);
  stacked('wv', [kvDim, dim]);
  stacked('wo', [dim, dim]);
  stacked('ffnNorm', [dim]);
  stacked('w1', [hiddenDim, dim]);
  stacked('w2', [dim, hiddenDim]);
  stacked('w3', [hiddenDim, dim]);
  single('finalNorm', [dim]);
  offset += seqLen * headDim * 4; // legacy freq_cis_real + freq_cis_imag, each [seqLen, headDim/2]
  if (!shared) single('lmHead', [vocabSize, dim]);
  const config: ModelConfig = Object.freeze({
    arch: 'llama' as const,
    dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize,
    trainedContextLength: seqLen,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: { type: 'none' as const },
    ropeStyle: 'interleaved' as const,
    qkvBias: false,
    qkNorm: false,
    tiedEmbeddings: shared,
    slidingWindow: null,
    bosId: 1,
    // run.c stops when the model emits BOS (it delimits stories); </s> (2) is the nominal EOS.
    eosIds: [2, 1],
  });
  return { config, slices, needed: offset };
}
