// The Backend interface: every numeric hot loop of the engine, as pure functions
// `(out, ...inputs, sizes)` that never read configs or allocate (DESIGN rule 4).
// reference/ is the scalar oracle; other backends must match it within stated tolerances.

import type { KvLayerView, KvStorage } from '../kv/layout.js';
import type { DenseTensor } from '../core/tensor.js';
import type { WeightTensor } from '../quant/format.js';

export interface AttentionShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Sliding-window width (a query sees at most this many positions), 0 for full attention. */
  readonly window: number;
}

/** 0 = neox (rotate_half: i with i + headDim/2), 1 = interleaved pairs (2i, 2i+1). */
export type RopeLayout = 0 | 1;

/** Every backend also provides the KV cache's storage operations (row writes, quantizer, view handles). */
export interface Backend extends KvStorage {
  readonly name: string;

  /** Repack a weight into this backend's layout, once at load time. The reference returns it unchanged. */
  prepareWeight(w: WeightTensor): WeightTensor;

  /**
   * The 4-bit draft of a dense matrix in this backend's layout, exactly prepareWeight(quantizeQ4(w,
   * groupSize, symmetric)); null where the backend has no faster way than that.
   */
  quantizeQ4?(w: DenseTensor, groupSize: number, symmetric: boolean): WeightTensor | null;

  /** The same for the 8-bit quantizer: exactly prepareWeight(quantizeQ8(w, groupSize)), or null. */
  quantizeQ8?(w: DenseTensor, groupSize: number): WeightTensor | null;

  /** out[n, rows] = x[n, cols] · Wᵀ for W [rows, cols]. */
  matmul(out: Float32Array, x: Float32Array, w: WeightTensor, nTokens: number): void;

  /**
   * The prompt passes' matmul (the README's precision contract): for BF16 and F16 weights,
   * out = bf16(x) · Wᵀ, the activations rounded to BF16 (to nearest even), the weights exact and
   * the products summed in F32 or wider, as PyTorch and llama.cpp run BF16 models on CPU. Each
   * token's result depends only on its own row of x. Returns false, writing nothing, where the
   * backend has no such path for w (F32 or quantized weights, a CPU without AMX-BF16); the caller
   * then runs matmul.
   */
  matmulPrompt?(out: Float32Array, x: Float32Array, w: WeightTensor, nTokens: number): boolean;

  /** x[n, dim] += bias[dim] for every row. */
  addBias(x: Float32Array, bias: Float32Array, nRows: number, dim: number): void;

  /** out[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight, for nRows rows of `dim`; out may alias x. */
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, nRows: number, dim: number, eps: number): void;

  /**
   * Rotate x[n, nHeads·headDim] in place; token i is at position startPos + i.
   * cos/sin: [contextLength, headDim / 2], angle of frequency j at each position.
   */
  rope(
    x: Float32Array, nTokens: number, nHeads: number, headDim: number, startPos: number,
    cos: Float32Array, sin: Float32Array, layout: RopeLayout,
  ): void;

  /** gate[i] = silu(gate[i]) · up[i] for i < n. */
  siluMul(gate: Float32Array, up: Float32Array, n: number): void;

  /** out[i] += x[i] for i < n. */
  add(out: Float32Array, x: Float32Array, n: number): void;

  /** out[n, dim] = rows `tokens[0..n)` of table [vocabSize, dim]. */
  embed(out: Float32Array, table: WeightTensor, tokens: Int32Array, nTokens: number): void;

  /**
   * Causal attention of nQueries queries (query i at position startPos + i) over positions
   * [0, startPos + i] of one layer: out[n, nHeads·headDim] from q[n, nHeads·headDim].
   * The new tokens' K/V must already be written to the cache (a backend may read `kv` through its
   * handle). scratch: at least startPos + nQueries floats.
   */
  attention(
    out: Float32Array, q: Float32Array, nQueries: number, startPos: number,
    kv: KvLayerView, shape: AttentionShape, scratch: Float32Array,
  ): void;
}
