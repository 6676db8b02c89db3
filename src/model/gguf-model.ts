// A GGUF file as a model: config from the `{arch}.*` metadata, tensors under llama.cpp's names.
// Llama-architecture GGUFs store q/k rows permuted for interleaved-pair RoPE (as llama.cpp's
// converter writes them), so they run with the interleaved rotation; qwen2/qwen3 keep rotate_half.

import { ModelConfigError, UnsupportedArchitectureError } from '../core/errors.js';
import type { Architecture, ModelConfig, RopeScaling } from './config.js';
import { metaNumber, metaString, readGguf, readGgufFile, readGgufTensor, type GgufFile } from './gguf.js';
import { ModelFile, type ReadOptions } from './open.js';
import type { TensorKey, TensorSource } from './weights.js';
import { GGML_TYPES } from './gguf.js';

const GGUF_ARCHS: Readonly<Record<string, Architecture>> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', qwen3: 'qwen3' };

/** Internal name -> llama.cpp's GGUF tensor name. */
export function ggufTensorName(key: TensorKey): string {
  if (key === 'tokEmbed') return 'token_embd.weight';
  if (key === 'finalNorm') return 'output_norm.weight';
  if (key === 'lmHead') return 'output.weight';
  const [, layer, role] = key.split('.') as [string, string, string];
  const p = `blk.${layer}.`;
  const names: Record<string, string> = {
    attnNorm: 'attn_norm.weight', ffnNorm: 'ffn_norm.weight', wq: 'attn_q.weight', wk: 'attn_k.weight',
    wv: 'attn_v.weight', wo: 'attn_output.weight', bq: 'attn_q.bias', bk: 'attn_k.bias', bv: 'attn_v.bias',
    qNorm: 'attn_q_norm.weight', kNorm: 'attn_k_norm.weight', w1: 'ffn_gate.weight', w2: 'ffn_down.weight', w3: 'ffn_up.weight',
  };
  return p + names[role]!;
}

export class GgufSource implements TensorSource {
  readonly where: string;
  readonly gguf: GgufFile;
  private readonly file: ModelFile;
  constructor(g: GgufFile, file: ModelFile) {
    this.gguf = g;
    this.where = g.path;
    this.file = file;
  }

  info(name: string) {
    const t = this.gguf.tensors.get(name);
    if (!t) return undefined;
    return { dtype: GGML_TYPES[t.type]?.name ?? `ggml type ${t.type}`, shape: [...t.dims].reverse(), byteLength: Math.max(0, t.byteLength) };
  }

  read(name: string) {
    return readGgufTensor(this.gguf, name, this.file);
  }

  close(): void {
    this.file.close();
  }
}

function tokenIds(v: unknown): number[] {
  return typeof v === 'number' ? [v] : typeof v === 'bigint' ? [Number(v)] : [];
}

/** The config of a GGUF file; `file` reads tensors the config needs (rope_freqs), else the file is opened by path. */
export function ggufConfig(g: GgufFile, file?: ModelFile): ModelConfig {
  const archName = metaString(g, 'general.architecture');
  const arch = archName ? GGUF_ARCHS[archName] : undefined;
  if (!arch) {
    throw new UnsupportedArchitectureError(
      `${g.path}: general.architecture "${archName ?? '(missing)'}" is not supported. Supported: ${Object.keys(GGUF_ARCHS).join(', ')}.`,
    );
  }
  const k = (s: string) => `${archName}.${s}`;
  const dim = metaNumber(g, k('embedding_length'));
  const nHeads = metaNumber(g, k('attention.head_count'));
  const nKvHeads = metaNumber(g, k('attention.head_count_kv'), nHeads);
  const headDim = metaNumber(g, k('attention.key_length'), dim / nHeads);
  const tokens = g.metadata.get('tokenizer.ggml.tokens');
  const embd = g.tensors.get('token_embd.weight');
  const vocabSize = Array.isArray(tokens) ? tokens.length : embd ? embd.dims[1]! : metaNumber(g, k('vocab_size'));
  let ropeScaling: RopeScaling = { type: 'none' };
  const scalingType = metaString(g, k('rope.scaling.type'));
  if (scalingType === 'linear') ropeScaling = { type: 'linear', factor: metaNumber(g, k('rope.scaling.factor')) };
  else if (scalingType && scalingType !== 'none') {
    throw new ModelConfigError(`${g.path}: rope scaling "${scalingType}" is not supported (linear, or llama3 through rope_freqs).`);
  }
  if (g.tensors.has('rope_freqs.weight')) {
    const t = readGgufTensor(g, 'rope_freqs.weight', file);
    if (t.dtype !== 'f32') throw new ModelConfigError(`${g.path}: rope_freqs.weight must be F32.`);
    ropeScaling = { type: 'factors', factors: t.data };
  }
  const ints = [dim, nHeads, nKvHeads, headDim, vocabSize];
  if (ints.some((x) => !Number.isInteger(x) || x <= 0) || nHeads % nKvHeads !== 0 || headDim % 2 !== 0) {
    throw new ModelConfigError(`${g.path}: inconsistent attention metadata (dim ${dim}, heads ${nHeads}/${nKvHeads}, head_dim ${headDim}).`);
  }
  const eos = tokenIds(g.metadata.get('tokenizer.ggml.eos_token_id'));
  const eot = tokenIds(g.metadata.get('tokenizer.ggml.eot_token_id'));
  return Object.freeze({
    arch,
    dim,
    hiddenDim: metaNumber(g, k('feed_forward_length')),
    nLayers: metaNumber(g, k('block_count')),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    trainedContextLength: metaNumber(g, k('context_length'), 2048),
    normEps: metaNumber(g, k('attention.layer_norm_rms_epsilon'), 1e-5),
    ropeTheta: metaNumber(g, k('rope.freq_base'), 10000),
    ropeScaling,
    ropeStyle: arch === 'llama' || arch === 'mistral' ? ('interleaved' as const) : ('neox' as const),
    qkvBias: g.tensors.has('blk.0.attn_q.bias'),
    qkNorm: g.tensors.has('blk.0.attn_q_norm.weight'),
    tiedEmbeddings: !g.tensors.has('output.weight'),
    slidingWindow: null,
    bosId: tokenIds(g.metadata.get('tokenizer.ggml.bos_token_id'))[0] ?? null,
    eosIds: [...new Set([...eos, ...eot])],
  });
}

export function openGguf(path: string, opts: ReadOptions = {}): { config: ModelConfig; source: GgufSource } {
  const g = readGguf(path);
  const config = ggufConfig(g);
  return { config, source: new GgufSource(g, ModelFile.open(path, opts)) };
}

/** A GGUF model from an open file (one in memory, in a browser). */
export function openGgufFile(file: ModelFile): { config: ModelConfig; source: GgufSource } {
  const g = readGgufFile(file);
  return { config: ggufConfig(g, file), source: new GgufSource(g, file) };
}
