// The KV cache's data model (DESIGN rule 6: its layout types live here and nowhere else): the
// hierarchical nibble planes, full-precision rows, sparse selections, the position-defined
// quantization boundary, and the per-layer view that attention kernels read.

/**
 * The hierarchical quantized KV history of one layer (DESIGN 2.1-2.2), for positions [0, length).
 * Keys: per channel, a group = one channel over `keyGroupSize` consecutive tokens (after RoPE).
 * Values: per token, a group = `valueGroupSize` consecutive channels of one token of one KV head.
 * Codes: upper u in 0..15 and lower l+8 in 0..15, in separate nibble planes, two codes per byte
 * (element 2i in the low nibble). Scale s and minimum mn are F16 bits.
 * x4 = mn + u·s (draft, upper plane only); x8 = mn + u·s + l·s/16 (target, both planes).
 */
export interface KvPlanes {
  readonly kvDim: number;
  readonly keyGroupSize: number; // tokens per key group
  readonly valueGroupSize: number; // channels per value group
  readonly kUpper: Uint8Array; // [planeTokens, kvDim / 2]
  readonly kLower: Uint8Array; // [planeTokens, kvDim / 2]
  readonly kScale: Uint16Array; // [planeTokens / keyGroupSize, kvDim] F16
  readonly kMin: Uint16Array; // [planeTokens / keyGroupSize, kvDim] F16
  readonly vUpper: Uint8Array; // [planeTokens, kvDim / 2]
  readonly vLower: Uint8Array; // [planeTokens, kvDim / 2]
  readonly vScale: Uint16Array; // [planeTokens, kvDim / valueGroupSize] F16
  readonly vMin: Uint16Array; // [planeTokens, kvDim / valueGroupSize] F16
}

/** Full-precision K/V rows: F32 for the plain cache, F16 for the hierarchical cache's recent buffer. */
export type FpRows =
  | { readonly dtype: 'f32'; readonly keys: Float32Array; readonly values: Float32Array } // [rows, kvDim]
  | { readonly dtype: 'f16'; readonly keys: Uint16Array; readonly values: Uint16Array }; // [rows, kvDim]

/**
 * A sparse draft's view of the history (StreamingLLM / SnapKV self-speculation baselines): each
 * KV head sees its `count` selected positions, then positions >= denseFrom, of which only the
 * newest `recent` when recent > 0. Changed only through the cache's selection API.
 */
export interface SparseSelection {
  readonly count: number;
  readonly stride: number; // positions per kv head in `positions`
  readonly positions: Int32Array; // [nKvHeads, stride], first `count` used, ascending, each < denseFrom
  readonly denseFrom: number;
  readonly recent: number;
}

/**
 * The quantization boundary of DESIGN 2.3 as a pure function of position: the query at position p
 * reads positions [0, quantBoundary(p, G)) from the planes and the rest in full precision. It keeps
 * at least G and fewer than 2G of the newest positions in full precision (p >= 2G: the oldest
 * groups go to the planes as soon as 2G positions are buffered). Because it depends only on p,
 * prefill in any chunking, plain decoding and speculative rounds all compute every position from
 * the same cache state, so QuantSpec's output equals plain decoding over the same cache exactly.
 * The native addon has the one C twin (quant_boundary), tested against this function.
 */
export function quantBoundary(p: number, G: number): number {
  return p >= 2 * G ? G * Math.floor((p - G) / G) : 0;
}

/** A backend's handle on one layer view, made once with the cache; refreshed when the view's positions move. */
export interface KvHandle {
  refresh(view: KvLayerView): void;
}

interface LayerViewBase {
  readonly kvDim: number;
  /** Full-precision rows; row r holds position fpStart + r. */
  readonly fp: FpRows;
  readonly fpStart: number;
  /** The backend's binding of this view (attention reads through it). */
  readonly handle: KvHandle;
}

/**
 * What attention reads for one layer, one of:
 * - `fp`: every position in full-precision rows;
 * - `hier`: the query at position p reads [0, quantBoundary(p, keyGroupSize)) from the planes at
 *   `bits` of precision, and the rest from the full-precision rows;
 * - `sparse`: full-precision rows, restricted to a selection per KV head.
 * Objects of this type are allocated once by the cache and updated in place by it.
 */
export type KvLayerView =
  | (LayerViewBase & { readonly kind: 'fp' })
  | (LayerViewBase & { readonly kind: 'hier'; readonly planes: KvPlanes; readonly bits: 4 | 8 })
  | (LayerViewBase & { readonly kind: 'sparse'; readonly selection: SparseSelection });

export type FpLayer = Extract<KvLayerView, { kind: 'fp' }>;
export type HierLayer = Extract<KvLayerView, { kind: 'hier' }>;
export type SparseLayer = Extract<KvLayerView, { kind: 'sparse' }>;

/**
 * What the cache needs from a compute backend: the conversion of new F32 rows to its storage
 * type, the quantizer, and a handle per layer view. Defined here so that kv imports nothing from
 * kernels; every Backend implements it.
 */
export interface KvStorage {
  /** Write nTokens F32 rows k, v [nTokens, kvDim] into fp at row `row`, converted to fp's dtype. */
  writeKv(fp: FpRows, row: number, k: Float32Array, v: Float32Array, nTokens: number, kvDim: number): void;
  /**
   * Quantize nTokens (a multiple of keyGroupSize) full-precision rows fp[srcRow..] into the planes
   * at positions dstPos.. (a multiple of keyGroupSize): keys per channel, values per token (DESIGN 2.1).
   */
  quantizeKv(planes: KvPlanes, fp: FpRows, srcRow: number, dstPos: number, nTokens: number): void;
  /** Bind one layer view, once, when the cache is made. */
  bindKv(view: KvLayerView): KvHandle;
  /** Move rows [from, from + nRows) of fp to rows [0, nRows) (the ranges may overlap). */
  shiftKv(fp: FpRows, from: number, nRows: number, kvDim: number): void;
  /** A copy of fp's first nRows rows (a checkpoint's); restoreKv() writes it back. */
  saveKv(fp: FpRows, nRows: number, kvDim: number): KvRowsCopy;
  restoreKv(fp: FpRows, copy: KvRowsCopy): void;
}

/** Rows saved by KvStorage.saveKv, held where the storage keeps its rows (only it reads them). */
export interface KvRowsCopy {
  readonly rows: number;
}
