// WeightSet: the tensors of one forward pass, under internal names, each shape checked against
// the config. The target and the draft are both WeightSets; they share norms, biases and
// embeddings and differ in the matrices' formats.

import { ModelFormatError, ShapeMismatchError } from '../core/errors.js';
import { f16Lookup, bf16ToF32 } from '../core/half.js';
import { shapeString } from '../core/tensor.js';
import { type WeightTensor, weightBytes } from '../quant/format.js';
import { kvDimOf, qDimOf, type ModelConfig } from './config.js';

export { LINEAR_ROLES, type LayerWeights, type LinearRole, type WeightSet } from '../quant/weight-set.js';
import type { LayerWeights, WeightSet } from '../quant/weight-set.js';

/** Where tensors come from: a safetensors directory, a llama2.c file, a GGUF file. */
export interface TensorSource {
  /** Dtype and shape without reading data, or undefined when absent. */
  info(name: string): { readonly dtype: string; readonly shape: readonly number[]; readonly byteLength: number } | undefined;
  /** Dense tensors as stored; GGUF may give 4-bit blocks for matrices. */
  read(name: string): WeightTensor;
  readonly where: string;
  close(): void;
}

/** Internal tensor names, the WeightSet's own field names; a format's table maps them to its own names. */
export type TensorKey =
  | 'tokEmbed' | 'finalNorm' | 'lmHead'
  | `layers.${number}.${'attnNorm' | 'wq' | 'wk' | 'wv' | 'wo' | 'bq' | 'bk' | 'bv' | 'qNorm' | 'kNorm' | 'ffnNorm' | 'w1' | 'w2' | 'w3'}`;

/** The tensor keys a config reads, in file order (lmHead only where the embeddings are untied). */
export function tensorKeysOf(c: ModelConfig): TensorKey[] {
  const keys: TensorKey[] = ['tokEmbed'];
  for (let l = 0; l < c.nLayers; l++) {
    const roles = ['attnNorm', 'wq', 'wk', 'wv', 'wo', 'ffnNorm', 'w1', 'w2', 'w3'];
    if (c.qkvBias) roles.push('bq', 'bk', 'bv');
    if (c.qkNorm) roles.push('qNorm', 'kNorm');
    for (const r of roles) keys.push(`layers.${l}.${r}` as TensorKey);
  }
  keys.push('finalNorm');
  if (!c.tiedEmbeddings) keys.push('lmHead');
  return keys;
}

export interface LoadProgress {
  (loadedBytes: number, totalBytes: number): void;
}

function toF32(t: WeightTensor, where: string): Float32Array {
  if (t.dtype === 'q4' || t.dtype === 'q8') {
    throw new ModelFormatError(`${where}: a vector (norm or bias) is stored quantized; it must be F32, F16 or BF16.`);
  }
  if (t.dtype === 'f32') return t.data;
  const out = new Float32Array(t.data.length);
  if (t.dtype === 'f16') {
    const table = f16Lookup();
    for (let i = 0; i < out.length; i++) out[i] = table[t.data[i]!]!;
  } else {
    for (let i = 0; i < out.length; i++) out[i] = bf16ToF32(t.data[i]!);
  }
  return out;
}

/**
 * Read every tensor the config needs from `source` (through `nameOf`), checking shapes.
 * `prepare` lets the backend repack matrices as they arrive.
 */
export function loadWeightSet(
  config: ModelConfig,
  source: TensorSource,
  nameOf: (key: TensorKey) => string,
  prepare: (w: WeightTensor) => WeightTensor,
  onProgress?: LoadProgress,
): WeightSet {
  const { dim, hiddenDim, headDim, vocabSize } = config;
  const qDim = qDimOf(config);
  const kvDim = kvDimOf(config);
  const hasOutput = !config.tiedEmbeddings && source.info(nameOf('lmHead')) !== undefined;
  if (!config.tiedEmbeddings && !hasOutput) {
    throw new ModelFormatError(
      `${source.where}: "${nameOf('lmHead')}" is missing and the config does not tie embeddings; the checkpoint is incomplete.`,
    );
  }
  const keys = tensorKeysOf(config);
  const total = (): number => {
    let sum = 0;
    for (const k of keys) sum += source.info(nameOf(k))?.byteLength ?? 0;
    return sum;
  };
  let loaded = 0;
  let totalBytes = 0;

  const fetch = (key: TensorKey, shape: readonly number[]): WeightTensor => {
    const name = nameOf(key);
    const info = source.info(name);
    if (!info) throw new ModelFormatError(`${source.where}: tensor "${name}" is missing; the checkpoint does not match its config.`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ShapeMismatchError(
        `${source.where}: tensor "${name}" has shape ${shapeString(info.shape)} but the config implies ${shapeString(shape)}; ` +
          'config.json and the weights do not belong together.',
      );
    }
    const t = source.read(name);
    loaded += info.byteLength;
    onProgress?.(loaded, totalBytes);
    return t;
  };
  const vector = (key: TensorKey, n: number): Float32Array => toF32(fetch(key, [n]), source.where);
  const matrix = (key: TensorKey, rows: number, cols: number): WeightTensor => prepare(fetch(key, [rows, cols]));
  const optional = (key: TensorKey, n: number, present: boolean): Float32Array | null => (present ? vector(key, n) : null);

  totalBytes = total();

  const tokEmbed = prepare(fetch('tokEmbed', [vocabSize, dim]));
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const k = (s: string): TensorKey => `layers.${l}.${s}` as TensorKey;
    layers.push({
      attnNorm: vector(k('attnNorm'), dim),
      wq: matrix(k('wq'), qDim, dim),
      wk: matrix(k('wk'), kvDim, dim),
      wv: matrix(k('wv'), kvDim, dim),
      wo: matrix(k('wo'), dim, qDim),
      bq: optional(k('bq'), qDim, config.qkvBias),
      bk: optional(k('bk'), kvDim, config.qkvBias),
      bv: optional(k('bv'), kvDim, config.qkvBias),
      qNorm: optional(k('qNorm'), headDim, config.qkNorm),
      kNorm: optional(k('kNorm'), headDim, config.qkNorm),
      ffnNorm: vector(k('ffnNorm'), dim),
      w1: matrix(k('w1'), hiddenDim, dim),
      w2: matrix(k('w2'), dim, hiddenDim),
      w3: matrix(k('w3'), hiddenDim, dim),
    });
  }
  const finalNorm = vector('finalNorm', dim);
  const lmHead = hasOutput ? matrix('lmHead', vocabSize, dim) : tokEmbed;
  return { tokEmbed, layers, finalNorm, lmHead };
}

/** Bytes held by a WeightSet's tensors (shared tensors counted once). */
export function weightSetBytes(w: WeightSet): number {
  const seen = new Set<unknown>();
  let sum = 0;
  const count = (t: WeightTensor | Float32Array | null): void => {
    if (!t || seen.has(t)) return;
    seen.add(t);
    sum += t instanceof Float32Array ? t.byteLength : weightBytes(t);
  };
  count(w.tokEmbed);
  count(w.lmHead);
  count(w.finalNorm);
  for (const l of w.layers) {
    for (const t of [l.attnNorm, l.wq, l.wk, l.wv, l.wo, l.bq, l.bk, l.bv, l.qNorm, l.kNorm, l.ffnNorm, l.w1, l.w2, l.w3]) count(t);
  }
  return sum;
}

/** The same WeightSet with every matrix passed through `mat` and every vector through `vec` (tied head stays tied). */
function mapTensors(w: WeightSet, mat: (t: WeightTensor) => WeightTensor, vec: (t: Float32Array) => Float32Array): WeightSet {
  const tokEmbed = mat(w.tokEmbed);
  const opt = (t: Float32Array | null): Float32Array | null => t && vec(t);
  return {
    tokEmbed,
    lmHead: w.lmHead === w.tokEmbed ? tokEmbed : mat(w.lmHead),
    finalNorm: vec(w.finalNorm),
    layers: w.layers.map((l) => ({
      attnNorm: vec(l.attnNorm), wq: mat(l.wq), wk: mat(l.wk), wv: mat(l.wv), wo: mat(l.wo),
      bq: opt(l.bq), bk: opt(l.bk), bv: opt(l.bv), qNorm: opt(l.qNorm), kNorm: opt(l.kNorm),
      ffnNorm: vec(l.ffnNorm), w1: mat(l.w1), w2: mat(l.w2), w3: mat(l.w3),
    })),
  };
}

/** The same WeightSet with every matrix passed through `fn` (vectors shared, tied head stays tied). */
export function mapMatrices(w: WeightSet, fn: (t: WeightTensor) => WeightTensor): WeightSet {
  return mapTensors(w, fn, (v) => v);
}

/** Weight sets whose tensors hold no data (hostless): only their shapes and dtypes are left. */
const HOSTLESS = new WeakSet<WeightSet>();

/** A tensor of the same dtype, shape and packing with empty arrays in place of its data. */
function emptied(t: WeightTensor): WeightTensor {
  switch (t.dtype) {
    case 'f32': return { dtype: 'f32', shape: t.shape, data: new Float32Array(0) };
    case 'f16':
    case 'bf16': return { dtype: t.dtype, shape: t.shape, data: new Uint16Array(0) };
    case 'q8':
      return t.packing === 'groups'
        ? { ...t, codes: new Int8Array(0), scales: new Float32Array(0) }
        : { ...t, codes: new Int8Array(0), scales: new Uint16Array(0) };
    case 'q4':
      return t.packing === 'pairs'
        ? { ...t, codes: new Uint8Array(0), scales: new Float32Array(0), mins: t.mins && new Float32Array(0) }
        : { ...t, codes: new Uint8Array(0), scales: new Uint16Array(0), mins: new Uint16Array(0) };
  }
}

/**
 * The same sets with every tensor's data let go (shapes kept), for weights a device holds: the
 * WebGPU backend uploads them once and never reads them on the CPU again. Tensors shared among
 * the sets (norms, embeddings, a tied head) stay shared. CPU passes refuse such a set
 * (isHostless).
 */
export function hostless(sets: readonly WeightSet[]): WeightSet[] {
  const done = new Map<object, WeightTensor | Float32Array>();
  const once = <T extends WeightTensor | Float32Array>(t: T, make: () => T): T => {
    if (!done.has(t)) done.set(t, make());
    return done.get(t) as T;
  };
  return sets.map((w) => {
    const out = mapTensors(w, (t) => once(t, () => emptied(t)), (t) => once(t, () => new Float32Array(0)));
    HOSTLESS.add(out);
    return out;
  });
}

/** Whether `w` came from hostless(): its data lives on a device only. */
export function isHostless(w: WeightSet): boolean {
  return HOSTLESS.has(w);
}
