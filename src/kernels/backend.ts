// The Backend interface: every numeric hot loop of the engine, as pure functions
// `(out, ...inputs, sizes)` that never read configs or allocate (DESIGN rule 4).
// reference/ is the scalar oracle; other backends must match it within stated tolerances.

import type { WeightTensor } from '../quant/format.js';

/**
 * The hierarchical quantized KV history of one layer (DESIGN 2.1-2.2), for positions [0, length).
 * Keys: per channel, a group = one channel over `groupSizeK` consecutive tokens (after RoPE).
 * Values: per token, a group = `groupSizeV` consecutive channels of one token of one KV head.
 * Codes: upper u in 0..15 and lower l+8 in 0..15, in separate nibble planes, two codes per byte
 * (element 2i in the low nibble). Scale s and minimum mn are F16 bits.
 * x4 = mn + u·s (draft, upper plane only); x8 = mn + u·s + l·s/16 (target, both planes).
 */
export interface KvPlanes {
  readonly kvDim: number;
  readonly groupSizeK: number; // tokens per key group
  readonly groupSizeV: number; // channels per value group
  readonly kUpper: Uint8Array; // [capacity, kvDim / 2]
  readonly kLower: Uint8Array; // [capacity, kvDim / 2]
  readonly kScale: Uint16Array; // [capacity / groupSizeK, kvDim] F16
  readonly kMin: Uint16Array; // [capacity / groupSizeK, kvDim] F16
  readonly vUpper: Uint8Array; // [capacity, kvDim / 2]
  readonly vLower: Uint8Array; // [capacity, kvDim / 2]
  readonly vScale: Uint16Array; // [capacity, kvDim / groupSizeV] F16
  readonly vMin: Uint16Array; // [capacity, kvDim / groupSizeV] F16
}

/** Full-precision K/V rows: F32 for the plain cache, F16 for the hierarchical cache's recent buffer. */
export type FpRows =
  | { readonly dtype: 'f32'; readonly keys: Float32Array; readonly values: Float32Array } // [rows, kvDim]
  | { readonly dtype: 'f16'; readonly keys: Uint16Array; readonly values: Uint16Array }; // [rows, kvDim]

/**
 * A sparse draft's view of the history (StreamingLLM / SnapKV self-speculation baselines): each
 * KV head sees its `count` selected positions, then positions >= denseFrom, of which only the
 * newest `recent` when recent > 0.
 */
export interface SparseSelection {
  count: number;
  readonly stride: number; // positions per kv head in `positions`
  readonly positions: Int32Array; // [nKvHeads, stride], first `count` used, ascending, each < denseFrom
  denseFrom: number;
  recent: number;
}

/**
 * The quantization boundary of DESIGN 2.3 as a pure function of position: the query at position p
 * reads positions [0, quantBoundary(p, G)) from the planes and the rest in full precision. It keeps
 * at least G and fewer than 2G of the newest positions in full precision (p >= 2G: the oldest
 * groups go to the planes as soon as 2G positions are buffered). Because it depends only on p,
 * prefill in any chunking, plain decoding and speculative rounds all compute every position from
 * the same cache state, so QuantSpec's output equals plain decoding over the same cache exactly.
 */
export function quantBoundary(p: number, G: number): number {
  return p >= 2 * G ? G * Math.floor((p - G) / G) : 0;
}

/**
 * What attention reads for one layer. With planes, the query at position p reads positions
 * [0, quantBoundary(p, groupSizeK)) from them (at `bits` of precision); every other position comes
 * from the full-precision rows `fp.keys[pos - fpStart]`. Objects of this type are allocated once
 * and updated in place by the cache.
 */
export interface KvLayerView {
  readonly kvDim: number;
  readonly fp: FpRows;
  fpStart: number;
  readonly planes: KvPlanes | null;
  readonly bits: 4 | 8;
  readonly sparse: SparseSelection | null;
}

export interface AttentionShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Sliding-window width (a query sees at most this many positions), 0 for full attention. */
  readonly window: number;
}

/** 0 = neox (rotate_half: i with i + headDim/2), 1 = interleaved pairs (2i, 2i+1). */
export type RopeLayout = 0 | 1;

export interface Backend {
  readonly name: string;

  /** Repack a weight into this backend's layout, once at load time. The reference returns it unchanged. */
  prepareWeight(w: WeightTensor): WeightTensor;

  /** out[n, rows] = x[n, cols] · Wᵀ for W [rows, cols]. */
  matmul(out: Float32Array, x: Float32Array, w: WeightTensor, nTokens: number): void;

  /** x[n, dim] += bias[dim] for every row. */
  addBias(x: Float32Array, bias: Float32Array, nRows: number, dim: number): void;

  /** out[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight, for nRows rows of `dim`; out may alias x. */
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, nRows: number, dim: number, eps: number): void;

  /**
   * Rotate x[n, nHeads·headDim] in place; token i is at position startPos + i.
   * cos/sin: [maxPositions, headDim / 2], angle of frequency j at each position.
   */
  rope(
    x: Float32Array, nTokens: number, nHeads: number, headDim: number, startPos: number,
    cos: Float32Array, sin: Float32Array, layout: RopeLayout,
  ): void;

  /** gate[i] = silu(gate[i]) · up[i] for i < n. */
  siluMul(gate: Float32Array, up: Float32Array, n: number): void;

  /** out[i] += x[i] for i < n. */
  add(out: Float32Array, x: Float32Array, n: number): void;

  /** out[n, dim] = rows `tokens[0..n)` of table [vocab, dim]. */
  embed(out: Float32Array, table: WeightTensor, tokens: Int32Array, nTokens: number): void;

  /**
   * Causal attention of nQueries queries (query i at position startPos + i) over positions
   * [0, startPos + i] of one layer: out[n, nHeads·headDim] from q[n, nHeads·headDim].
   * The new tokens' K/V must already be stored in the view. scratch: at least startPos + nQueries floats.
   */
  attention(
    out: Float32Array, q: Float32Array, nQueries: number, startPos: number,
    kv: KvLayerView, shape: AttentionShape, scratch: Float32Array,
  ): void;

  /**
   * Quantize nTokens (a multiple of groupSizeK) full-precision rows fp[srcRow..] into the planes at
   * positions dstPos.. (a multiple of groupSizeK): keys per channel, values per token (DESIGN 2.1).
   */
  quantizeKv(planes: KvPlanes, fp: FpRows, srcRow: number, dstPos: number, nTokens: number): void;
}
