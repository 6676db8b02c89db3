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
