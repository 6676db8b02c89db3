// GGUF writer (version 3) and `quantspec convert`: a Hugging Face model to a GGUF file that
// llama.cpp loads, with the metadata it needs (architecture keys, RoPE, norm epsilon, context
// length, tokenizer, chat template). Llama-architecture q/k rows are permuted for llama.cpp's
// interleaved RoPE, as its own converter does.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, TokenizerError } from '../core/errors.js';
import { f16Lookup, f32ToF16 } from '../core/half.js';
import { readDenseRow, type DenseTensor } from '../core/tensor.js';
import type { ModelConfig } from './config.js';
import { GGUF_MAGIC, GgufValueType } from './gguf.js';
import { ggufTensorName } from './gguf-model.js';
import { readHfConfig, readJsonFile, SafetensorsSource, hfTensorName } from './hf.js';
import { inverseFrequencies } from './rope.js';
import { tensorKeysOf, type TensorKey, type TensorSource } from './weights.js';

export type GgufEntry =
  | [string, GgufValueType.STRING, string]
  | [string, GgufValueType.UINT32 | GgufValueType.INT32 | GgufValueType.FLOAT32, number]
  | [string, GgufValueType.BOOL, boolean]
  | [string, GgufValueType.ARRAY, { type: GgufValueType.STRING; values: string[] } | { type: GgufValueType.INT32 | GgufValueType.FLOAT32; values: number[] }];

export interface GgufTensorOut {
  readonly name: string;
  /** Row-major shape [rows, cols] (written as ggml dims [cols, rows]). */
  readonly shape: readonly number[];
  /** ggml type: 0 F32, 1 F16, or any other with its raw block bytes. */
  readonly type: number;
  /** The data, or its length and a function that makes it when the file is written (one tensor in memory at a time). */
  readonly bytes: Uint8Array | { readonly byteLength: number; readonly produce: () => Uint8Array };
}

const ALIGNMENT = 32;

class ByteWriter {
  private chunks: Buffer[] = [];
  size = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Serialize metadata and tensors to a GGUF v3 file. */
export function writeGguf(file: string, metadata: readonly GgufEntry[], tensors: readonly GgufTensorOut[]): void {
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, type, value] of metadata) {
    w.str(key);
    w.u32(type);
    switch (type) {
      case GgufValueType.STRING: w.str(value as string); break;
      case GgufValueType.UINT32: w.u32(value as number); break;
      case GgufValueType.INT32: w.i32(value as number); break;
      case GgufValueType.FLOAT32: w.f32(value as number); break;
      case GgufValueType.BOOL: w.push(Buffer.of(value ? 1 : 0)); break;
      case GgufValueType.ARRAY: {
        const a = value as { type: GgufValueType; values: (string | number)[] };
        w.u32(a.type);
        w.u64(a.values.length);
        for (const v of a.values) {
          if (a.type === GgufValueType.STRING) w.str(v as string);
          else if (a.type === GgufValueType.INT32) w.i32(v as number);
          else w.f32(v as number);
        }
        break;
      }
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(t.bytes.byteLength / ALIGNMENT) * ALIGNMENT;
  }
  const header = w.bytes();
  const dataStart = Math.ceil(header.length / ALIGNMENT) * ALIGNMENT;
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header);
    fs.writeSync(fd, Buffer.alloc(dataStart - header.length));
    let pos = 0;
    for (const [i, t] of tensors.entries()) {
      fs.writeSync(fd, Buffer.alloc(offsets[i]! - pos));
      const data = t.bytes instanceof Uint8Array ? t.bytes : t.bytes.produce();
      if (data.byteLength !== t.bytes.byteLength) throw new Error(`gguf: tensor ${t.name} made ${data.byteLength} bytes, not ${t.bytes.byteLength}.`);
      fs.writeSync(fd, data);
      pos = offsets[i]! + data.byteLength;
    }
    fs.writeSync(fd, Buffer.alloc(Math.ceil(pos / ALIGNMENT) * ALIGNMENT - pos));
  } finally {
    fs.closeSync(fd);
  }
}

const f16 = f16Lookup();

function toBytes(t: DenseTensor, dtype: 'f32' | 'f16'): { type: number; bytes: Uint8Array } {
  const n = t.data.length;
  if (dtype === 'f32') {
    const out = new Float32Array(n);
    if (t.dtype === 'f32') out.set(t.data);
    else if (t.dtype === 'f16') for (let i = 0; i < n; i++) out[i] = f16[t.data[i]!]!;
    else {
      const cols = t.shape.at(-1)!;
      const rows = n / cols;
      const row = new Float32Array(cols);
      for (let r = 0; r < rows; r++) {
        readDenseRow(row, t, r, cols);
        out.set(row, r * cols);
      }
    }
    return { type: 0, bytes: new Uint8Array(out.buffer) };
  }
  if (t.dtype === 'f16') return { type: 1, bytes: new Uint8Array(t.data.slice().buffer) };
  const cols = t.shape.at(-1)!;
  const out = new Uint16Array(n);
  const row = new Float32Array(cols);
  for (let r = 0; r < n / cols; r++) {
    readDenseRow(row, t, r, cols);
    for (let j = 0; j < cols; j++) out[r * cols + j] = f32ToF16(row[j]!);
  }
  return { type: 1, bytes: new Uint8Array(out.buffer) };
}

/**
 * A matrix as GGUF blocks of 32 values, `blockBytes` each (an F16 scale first), ggml type `type`:
 * block(row, j0, view, at) writes the block of row[j0 .. j0 + 32) at byte `at`. Rows must be a
 * multiple of 32 long.
 */
function encodeBlocks32(
  t: DenseTensor, typeName: string, type: number, blockBytes: number,
  block: (row: Float32Array, j0: number, view: DataView, at: number) => void,
): { type: number; bytes: Uint8Array } {
  const cols = t.shape.at(-1)!;
  if (cols % 32 !== 0) throw new InvalidArgumentError(`${typeName} needs rows that are a multiple of 32 long, got ${cols}.`, 'dtype');
  const rows = t.data.length / cols;
  const blocksPerRow = cols / 32;
  const bytes = new Uint8Array(rows * blocksPerRow * blockBytes);
  const view = new DataView(bytes.buffer);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    readDenseRow(row, t, r, cols);
    for (let b = 0; b < blocksPerRow; b++) block(row, b * 32, view, (r * blocksPerRow + b) * blockBytes);
  }
  return { type, bytes };
}

/**
 * A matrix as GGUF Q4_0 blocks (ggml type 2): per 32 values an F16 scale d and 16 bytes whose low
 * nibbles hold elements 0..15 and high nibbles 16..31, value = (q − 8)·d, with d = m / −8 for the
 * element m of largest magnitude (so m itself is exact). Rows must be a multiple of 32 long.
 */
export function encodeQ4_0(t: DenseTensor): { type: number; bytes: Uint8Array } {
  return encodeBlocks32(t, 'Q4_0', 2, 18, (row, j0, view, at) => {
    let m = 0;
    for (let j = 0; j < 32; j++) if (Math.abs(row[j0 + j]!) > Math.abs(m)) m = row[j0 + j]!;
    const d = m / -8;
    const inv = d !== 0 ? 1 / d : 0;
    view.setUint16(at, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      const lo = Math.min(15, Math.trunc(row[j0 + j]! * inv + 8.5));
      const hi = Math.min(15, Math.trunc(row[j0 + 16 + j]! * inv + 8.5));
      view.setUint8(at + 2 + j, lo | (hi << 4));
    }
  });
}

/**
 * A matrix as GGUF Q8_0 blocks (ggml type 8): per 32 values an F16 scale d = max|x| / 127 and 32
 * signed bytes q = round(x / d) (halves away from zero, as llama.cpp's roundf). Rows must be a
 * multiple of 32 long.
 */
export function encodeQ8_0(t: DenseTensor): { type: number; bytes: Uint8Array } {
  return encodeBlocks32(t, 'Q8_0', 8, 34, (row, j0, view, at) => {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(row[j0 + j]!));
    const d = Math.fround(amax / 127);
    const inv = d !== 0 ? 1 / d : 0;
    view.setUint16(at, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(row[j0 + j]! * inv);
      view.setInt8(at + 2 + j, Math.sign(v) * Math.round(Math.abs(v)));
    }
  });
}

/** Rows of q or k reordered for interleaved-pair RoPE (llama.cpp's permute of HF checkpoints). */
export function permuteRows(t: DenseTensor, nHead: number): DenseTensor {
  const rows = t.shape[0]!;
  const cols = t.shape.length > 1 ? t.shape[1]! : 1;
  const headDim = rows / nHead;
  const half = headDim / 2;
  const order = new Int32Array(rows); // order[dst] = src
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) for (let j = 0; j < 2; j++) order[h * headDim + i * 2 + j] = h * headDim + j * half + i;
  }
  const move = <A extends Float32Array | Uint16Array>(data: A, out: A): A => {
    for (let dst = 0; dst < rows; dst++) out.set(data.subarray(order[dst]! * cols, (order[dst]! + 1) * cols), dst * cols);
    return out;
  };
  if (t.dtype === 'f32') return { ...t, data: move(t.data, new Float32Array(t.data.length)) };
  return { ...t, data: move(t.data, new Uint16Array(t.data.length)) };
}

const GGUF_ARCH_OF: Record<string, string> = { llama: 'llama', mistral: 'llama', qwen2: 'qwen2', qwen3: 'qwen3' };

/** Tokenizer metadata from a byte-level BPE tokenizer.json (and tokenizer_config.json); `dir` names the model in errors. */
function tokenizerEntries(tj: Record<string, any>, tc: Record<string, any>, c: ModelConfig, dir: string): GgufEntry[] {
  const model = tj['model'];
  if (model?.type !== 'BPE') throw new TokenizerError(`${dir}: only BPE tokenizer.json files can be converted (found ${model?.type}).`);
  const vocab = model.vocab as Record<string, number>;
  const tokens: string[] = [];
  for (const [t, id] of Object.entries(vocab)) tokens[id] = t;
  const special = new Set<number>();
  for (const a of (tj['added_tokens'] ?? []) as { id: number; content: string; special: boolean }[]) {
    tokens[a.id] = a.content;
    if (a.special) special.add(a.id);
  }
  for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) tokens[i] = `[PAD${i}]`;
  const merges = ((model.merges ?? []) as (string | string[])[]).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const pre = tj['pre_tokenizer'];
  let preName: string;
  if (pre?.type === 'ByteLevel' && pre.use_regex !== false) preName = 'gpt-2';
  else throw new TokenizerError(`${dir}: the pre-tokenizer ${JSON.stringify(pre?.type)} has no GGUF name this converter knows (byte-level GPT-2 only).`);
  const entries: GgufEntry[] = [
    ['tokenizer.ggml.model', GgufValueType.STRING, 'gpt2'],
    ['tokenizer.ggml.pre', GgufValueType.STRING, preName],
    ['tokenizer.ggml.tokens', GgufValueType.ARRAY, { type: GgufValueType.STRING, values: tokens }],
    ['tokenizer.ggml.token_type', GgufValueType.ARRAY, { type: GgufValueType.INT32, values: tokens.map((_, i) => (special.has(i) ? 3 : 1)) }],
    ['tokenizer.ggml.merges', GgufValueType.ARRAY, { type: GgufValueType.STRING, values: merges }],
  ];
  // A BOS comes from tokenizer_config's add_bos_token or from a post-processor template that
  // starts with a special token (as byte-level BPE tokenizers usually do).
  const templateBos = postProcessorBos(tj, vocab, tj['added_tokens']);
  const bosId = templateBos ?? c.bosId;
  entries.push(['tokenizer.ggml.add_bos_token', GgufValueType.BOOL, tc['add_bos_token'] === true || templateBos !== null]);
  if (bosId !== null) entries.push(['tokenizer.ggml.bos_token_id', GgufValueType.UINT32, bosId]);
  if (c.eosIds.length) entries.push(['tokenizer.ggml.eos_token_id', GgufValueType.UINT32, c.eosIds[0]!]);
  const template = tc['chat_template'];
  if (typeof template === 'string') entries.push(['tokenizer.chat_template', GgufValueType.STRING, template]);
  return entries;
}

/** The id of the special token a TemplateProcessing post-processor puts first, or null. */
function postProcessorBos(tj: Record<string, any>, vocab: Record<string, number>, added: { id: number; content: string }[] | undefined): number | null {
  const pp = tj['post_processor'];
  const processors = pp?.type === 'Sequence' ? ((pp.processors ?? []) as Record<string, any>[]) : [pp];
  for (const p of processors) {
    if (p?.type !== 'TemplateProcessing') continue;
    const first = (p.single as Record<string, any>[] | undefined)?.[0];
    const name = first?.['SpecialToken']?.id as string | undefined;
    if (name === undefined) return null;
    const id = p.special_tokens?.[name]?.ids?.[0] ?? added?.find((a) => a.content === name)?.id ?? vocab[name];
    return typeof id === 'number' ? id : null;
  }
  return null;
}

/** Re-encodes a matrix (e.g. to a quantized GGUF type); null keeps the requested dtype. */
export type TensorEncoder = (name: string, t: DenseTensor) => GgufTensorOut | null;

export type GgufDtype = 'f32' | 'f16' | 'q4_0' | 'q8_0';

/** What a GGUF file is written from: a config, its tensors under HF names, and its tokenizer files' JSON. */
export interface GgufInput {
  readonly name: string;
  readonly config: ModelConfig;
  readonly source: TensorSource;
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfig: Record<string, unknown>;
}

/**
 * Convert a Hugging Face model directory to GGUF: matrices in `dtype` (q4_0 and q8_0 keep F16
 * for matrices whose rows are not a multiple of 32), vectors in F32.
 */
export function convertHfToGguf(dir: string, out: string, dtype: GgufDtype, encode?: TensorEncoder): { tensors: number; bytes: number } {
  checkDtype(dtype);
  const config = readHfConfig(dir);
  const tokenizerJson = readJsonFile(path.join(dir, 'tokenizer.json'), 'tokenizer.json') as Record<string, unknown>;
  const cfgPath = path.join(dir, 'tokenizer_config.json');
  const tokenizerConfig = fs.existsSync(cfgPath) ? (readJsonFile(cfgPath, 'tokenizer_config.json') as Record<string, unknown>) : {};
  const source = SafetensorsSource.openDirectory(dir);
  try {
    return writeModelGguf({ name: path.basename(dir), config, source, tokenizerJson, tokenizerConfig }, out, dtype, encode);
  } finally {
    source.close();
  }
}

/** The bytes of a tensor of `n` values in `type` (0 F32, 1 F16, 2 Q4_0, 8 Q8_0). */
function typeBytes(type: number, n: number): number {
  return type === 0 ? 4 * n : type === 1 ? 2 * n : type === 2 ? (n / 32) * 18 : (n / 32) * 34;
}

/** A block-quantized GGUF dtype's ggml type and encoder, or null for f32 / f16. */
function blockType(dtype: GgufDtype): { type: number; encode: (t: DenseTensor) => { type: number; bytes: Uint8Array } } | null {
  return dtype === 'q4_0' ? { type: 2, encode: encodeQ4_0 } : dtype === 'q8_0' ? { type: 8, encode: encodeQ8_0 } : null;
}

/**
 * Write a model as GGUF (see convertHfToGguf). Without a custom encoder each tensor is read,
 * converted and written one at a time, so a model larger than memory converts.
 */
function checkDtype(dtype: string): void {
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'q4_0' && dtype !== 'q8_0') throw new InvalidArgumentError(`dtype must be f32, f16, q4_0 or q8_0, got ${dtype}.`, 'dtype');
}

export function writeModelGguf(input: GgufInput, out: string, dtype: GgufDtype, encode?: TensorEncoder): { tensors: number; bytes: number } {
  checkDtype(dtype);
  const c = input.config;
  const dir = input.name;
  const arch = GGUF_ARCH_OF[c.arch]!;
  if (c.slidingWindow !== null) throw new InvalidArgumentError(`${dir}: sliding-window models cannot be converted (llama.cpp's llama architecture has no window).`);
  const k = (s: string) => `${arch}.${s}`;
  const meta: GgufEntry[] = [
    ['general.architecture', GgufValueType.STRING, arch],
    ['general.name', GgufValueType.STRING, input.name],
    [k('context_length'), GgufValueType.UINT32, c.trainedContextLength],
    [k('embedding_length'), GgufValueType.UINT32, c.dim],
    [k('block_count'), GgufValueType.UINT32, c.nLayers],
    [k('feed_forward_length'), GgufValueType.UINT32, c.hiddenDim],
    [k('attention.head_count'), GgufValueType.UINT32, c.nHeads],
    [k('attention.head_count_kv'), GgufValueType.UINT32, c.nKvHeads],
    [k('attention.key_length'), GgufValueType.UINT32, c.headDim],
    [k('attention.value_length'), GgufValueType.UINT32, c.headDim],
    [k('attention.layer_norm_rms_epsilon'), GgufValueType.FLOAT32, c.normEps],
    [k('rope.freq_base'), GgufValueType.FLOAT32, c.ropeTheta],
    [k('rope.dimension_count'), GgufValueType.UINT32, c.headDim],
    ['general.file_type', GgufValueType.UINT32, { f32: 0, f16: 1, q4_0: 2, q8_0: 7 }[dtype]],
  ];
  if (c.ropeScaling.type === 'linear') {
    meta.push([k('rope.scaling.type'), GgufValueType.STRING, 'linear'], [k('rope.scaling.factor'), GgufValueType.FLOAT32, c.ropeScaling.factor]);
  }
  meta.push(...tokenizerEntries(input.tokenizerJson as Record<string, any>, input.tokenizerConfig as Record<string, any>, c, dir));
  const src = input.source;
  const tensors: GgufTensorOut[] = [];
  const keys = tensorKeysOf(c).filter((key) => key !== 'lmHead' || src.info(hfTensorName(key)) !== undefined);
  const permute = arch === 'llama';
  const dense = (key: TensorKey): DenseTensor => {
    let t = src.read(hfTensorName(key)) as DenseTensor;
    const role = key.split('.').at(-1)!;
    if (permute && (role === 'wq' || role === 'bq')) t = permuteRows(t, c.nHeads);
    if (permute && (role === 'wk' || role === 'bk')) t = permuteRows(t, c.nKvHeads);
    return t;
  };
  const block = blockType(dtype);
  for (const key of keys) {
    const info = src.info(hfTensorName(key));
    if (!info) throw new InvalidArgumentError(`${dir}: tensor ${hfTensorName(key)} is missing.`);
    const vector = info.shape.length === 1;
    const name = ggufTensorName(key);
    if (!vector && encode) { /* custom encoders see the tensor first and may pick any type */
      const t = dense(key);
      const custom = encode(name, t);
      const { type, bytes } = custom ?? (!block ? toBytes(t, dtype as 'f32' | 'f16') : t.shape.at(-1)! % 32 === 0 ? block.encode(t) : toBytes(t, 'f16'));
      tensors.push(custom ?? { name, shape: t.shape, type, bytes });
      continue;
    }
    const n = info.shape.reduce((a, b) => a * b, 1);
    const type = vector ? 0 : dtype === 'f32' ? 0 : block && info.shape.at(-1)! % 32 === 0 ? block.type : 1;
    const produce = (): Uint8Array => {
      const t = dense(key);
      return (block && type === block.type ? block.encode(t) : toBytes(t, type === 0 ? 'f32' : 'f16')).bytes;
    };
    tensors.push({ name, shape: info.shape, type, bytes: { byteLength: typeBytes(type, n), produce } });
  }
  if (c.ropeScaling.type === 'llama3') {
    // llama.cpp applies llama3 scaling through per-frequency divisors.
    const plain = inverseFrequencies(c.headDim, c.ropeTheta, { type: 'none' });
    const scaled = inverseFrequencies(c.headDim, c.ropeTheta, c.ropeScaling);
    const factors = Float32Array.from(plain, (p, i) => p / scaled[i]!);
    tensors.push({ name: 'rope_freqs.weight', shape: [factors.length], type: 0, bytes: new Uint8Array(factors.buffer) });
  }
  writeGguf(out, meta, tensors);
  return { tensors: tensors.length, bytes: fs.statSync(out).size };
}
