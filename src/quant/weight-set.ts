// The tensors of one forward pass under internal names: the target and the draft are both
// WeightSets; they share norms, biases and embeddings and differ in the matrices' formats.
// Loaders (model/) fill them; the draft builder (quant/draft.ts) maps their matrices.

import type { WeightTensor } from './format.js';

export interface LayerWeights {
  readonly attnNorm: Float32Array; // [dim]
  readonly wq: WeightTensor; // [nHeads·headDim, dim]
  readonly wk: WeightTensor; // [kvDim, dim]
  readonly wv: WeightTensor; // [kvDim, dim]
  readonly wo: WeightTensor; // [dim, nHeads·headDim]
  readonly bq: Float32Array | null; // [nHeads·headDim]
  readonly bk: Float32Array | null; // [kvDim]
  readonly bv: Float32Array | null; // [kvDim]
  readonly qNorm: Float32Array | null; // [headDim]
  readonly kNorm: Float32Array | null; // [headDim]
  readonly ffnNorm: Float32Array; // [dim]
  readonly w1: WeightTensor; // gate [hiddenDim, dim]
  readonly w2: WeightTensor; // down [dim, hiddenDim]
  readonly w3: WeightTensor; // up [hiddenDim, dim]
}

export interface WeightSet {
  readonly tokEmbed: WeightTensor; // [vocabSize, dim]
  readonly layers: readonly LayerWeights[];
  readonly finalNorm: Float32Array; // [dim]
  readonly lmHead: WeightTensor; // [vocabSize, dim]; the same object as tokEmbed when tied
}

/** The matrices a draft may quantize, by their role (DESIGN 2.4: which layers is a setting). */
export const LINEAR_ROLES = ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as const;
export type LinearRole = (typeof LINEAR_ROLES)[number];

/** Weight sets whose tensors hold no data (hostless): only their shapes and dtypes are left. */
const HOSTLESS = new WeakSet<WeightSet>();

/** A tensor of the same dtype, shape and packing with empty arrays in place of its data. */
function emptied(t: WeightTensor): WeightTensor {
  switch (t.dtype) {
    case 'f32': return { dtype: 'f32', shape: t.shape, data: new Float32Array(0) };
    case 'f16':
    case 'bf16': return { dtype: t.dtype, shape: t.shape, data: new Uint16Array(0) };
    case 'q8': return { ...t, codes: new Int8Array(0), scales: new Float32Array(0) };
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
  const done = new Map<object, unknown>();
  const once = <T extends object>(t: T, make: () => T): T => {
    if (!done.has(t)) done.set(t, make());
    return done.get(t) as T;
  };
  const mat = (t: WeightTensor): WeightTensor => once(t, () => emptied(t));
  const vec = (t: Float32Array): Float32Array => once(t, () => new Float32Array(0));
  const opt = (t: Float32Array | null): Float32Array | null => t && vec(t);
  return sets.map((w) => {
    const out: WeightSet = {
      tokEmbed: mat(w.tokEmbed), lmHead: mat(w.lmHead), finalNorm: vec(w.finalNorm),
      layers: w.layers.map((l) => ({
        attnNorm: vec(l.attnNorm), wq: mat(l.wq), wk: mat(l.wk), wv: mat(l.wv), wo: mat(l.wo),
        bq: opt(l.bq), bk: opt(l.bk), bv: opt(l.bv), qNorm: opt(l.qNorm), kNorm: opt(l.kNorm),
        ffnNorm: vec(l.ffnNorm), w1: mat(l.w1), w2: mat(l.w2), w3: mat(l.w3),
      })),
    };
    HOSTLESS.add(out);
    return out;
  });
}

/** Whether `w` came from hostless(): its data lives on a device only. */
export function isHostless(w: WeightSet): boolean {
  return HOSTLESS.has(w);
}
