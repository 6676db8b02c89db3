// One forward pass of the Llama-family decoder over a batch of tokens appended at the cache's end.
// The same function serves prefill chunks, single decode steps, the draft and the verify pass:
// callers choose the WeightSet and the KV view kind (DESIGN 2.4), nothing else differs.

import { BackendUnavailableError, InvalidArgumentError, ShapeMismatchError } from '../core/errors.js';
import type { AttentionShape, Backend, RopeLayout } from '../kernels/backend.js';
import type { KvCache, KvView, KvViewKind } from '../kv/cache.js';
import { kvDimOf, qDimOf, type ModelConfig } from './config.js';
import type { RopeTables } from './rope.js';
import { isHostless, type WeightSet } from './weights.js';
import type { WeightTensor } from '../quant/format.js';

/** Everything about a loaded model that a forward pass needs besides weights and cache. */
export interface ModelRuntime {
  readonly config: ModelConfig;
  readonly backend: Backend;
  readonly rope: RopeTables;
  readonly attn: AttentionShape;
  readonly ropeLayout: RopeLayout;
  /** Whether prompt passes may take the backend's BF16-activation matmul (Backend.matmulPrompt). */
  readonly promptBf16: boolean;
  /**
   * A device that runs whole forward passes itself (the WebGPU backend), or null: then every pass
   * runs through `backend` on the CPU. Its results come back asynchronously (passLogits).
   */
  readonly device: DeviceForward | null;
}

/** Whole forward passes on a device that keeps weights, activations and the KV cache (model/gpu-forward.ts). */
export interface DeviceForward {
  /** What runs the passes, for reports ('webgpu: <adapter>'). */
  readonly name: string;
  /**
   * forward() of tokens[first..first + n) at positions cache.length..; with `logits`, the logits
   * of all n rows [n, vocabSize], else null once the pass has run. The work is queued before the
   * promise is made, so passes of different sessions run in call order.
   */
  run(w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number, logits: boolean): Promise<Float32Array | null>;
  /**
   * The same pass, returning only each row's argmax (the first largest logit): greedy decoding
   * without bias, penalties or constraints reads back n ids instead of n rows of logits.
   */
  runArgmax(w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number): Promise<Int32Array>;
}

/** Activation buffers, allocated once per session for the largest batch (llama2.c's RunState). */
export interface ForwardScratch {
  readonly maxBatch: number;
  readonly maxLogitRows: number;
  readonly tokens: Int32Array; // [maxBatch]
  readonly x: Float32Array; // [maxBatch, dim] residual stream
  readonly xb: Float32Array; // [maxBatch, max(dim, qDim)] normed input / attention output
  readonly xb2: Float32Array; // [maxBatch, dim] projection output
  readonly q: Float32Array; // [maxBatch, qDim]
  readonly k: Float32Array; // [maxBatch, kvDim]
  readonly v: Float32Array; // [maxBatch, kvDim]
  readonly hb: Float32Array; // [maxBatch, hiddenDim]
  readonly hb2: Float32Array; // [maxBatch, hiddenDim]
  readonly scores: Float32Array; // [contextLength] attention scratch
  readonly logits: Float32Array; // [maxLogitRows, vocabSize]
  readonly segRow: Int32Array; // [maxBatch] first row of each segment of a batched forward
  readonly segPos: Int32Array; // [maxBatch] first position of each segment
  readonly segViews: KvView[]; // [maxBatch] each segment's cache view
  /** forward()'s one segment, refilled on every call (no allocation per token). */
  readonly single: { cache: KvCache; kind: KvViewKind; tokens: ArrayLike<number>; first: number; nTokens: number }[];
}

/** Activations of a prompt pass's matmuls with 16-bit float weights (LoadOptions.prefillActivations). */
export type PrefillActivations = 'bf16' | 'f32';

export function createRuntime(
  config: ModelConfig, backend: Backend, rope: RopeTables, prefillActivations: PrefillActivations = 'bf16', device: DeviceForward | null = null,
): ModelRuntime {
  return {
    device,
    config,
    backend,
    rope,
    attn: { nHeads: config.nHeads, nKvHeads: config.nKvHeads, headDim: config.headDim, window: config.slidingWindow ?? 0 },
    ropeLayout: config.ropeStyle === 'neox' ? 0 : 1,
    promptBf16: prefillActivations === 'bf16',
  };
}

export function createScratch(config: ModelConfig, maxBatch: number, maxLogitRows: number, contextLength: number): ForwardScratch {
  const { dim, hiddenDim, vocabSize } = config;
  const qDim = qDimOf(config);
  const kvDim = kvDimOf(config);
  return {
    maxBatch,
    maxLogitRows,
    tokens: new Int32Array(maxBatch),
    x: new Float32Array(maxBatch * dim),
    xb: new Float32Array(maxBatch * Math.max(dim, qDim)),
    xb2: new Float32Array(maxBatch * dim),
    q: new Float32Array(maxBatch * qDim),
    k: new Float32Array(maxBatch * kvDim),
    v: new Float32Array(maxBatch * kvDim),
    hb: new Float32Array(maxBatch * hiddenDim),
    hb2: new Float32Array(maxBatch * hiddenDim),
    scores: new Float32Array(contextLength),
    logits: new Float32Array(maxLogitRows * vocabSize),
    segRow: new Int32Array(maxBatch),
    segPos: new Int32Array(maxBatch),
    segViews: [],
    single: [],
  };
}

/** Sees each layer's rotated queries q[n, nHeads·headDim] (SnapKV scores prompt positions with them). */
export type QueryObserver = (layer: number, q: Float32Array, nTokens: number) => void;

export interface ForwardOptions {
  readonly observeQueries?: QueryObserver;
  /**
   * The cache already holds these tokens' K/V at these positions (a full-precision cache truncated
   * just before them): they are read, not written again, so a checkpoint of the cache stays valid.
   */
  readonly replay?: boolean;
  /**
   * These are prompt tokens (prefill, or teacher-forced scoring): with rt.promptBf16 their matmuls
   * with BF16 or F16 weights may round the activations to BF16 (Backend.matmulPrompt). Decode, draft and
   * verify passes never set it, so they stay on the exact path that makes QuantSpec lossless.
   */
  readonly prompt?: boolean;
}

const NO_OPTIONS: ForwardOptions = {};
/** The options of a prefill pass. */
export const PROMPT_PASS: ForwardOptions = { prompt: true };

/** One sequence's part of a batched forward: its cache, the view it reads, and its tokens. */
export interface BatchSegment {
  readonly cache: KvCache;
  readonly kind: KvViewKind;
  readonly tokens: ArrayLike<number>;
  readonly first: number;
  readonly nTokens: number;
}

/**
 * Run tokens[first..first + n) at positions cache.length.. through all layers. The residual stream of every
 * token is left in scratch.x [n, dim]; call computeLogits() for the rows you need.
 */
export function forward(
  rt: ModelRuntime, w: WeightSet, cache: KvCache, kind: KvViewKind,
  tokens: ArrayLike<number>, first: number, nTokens: number, s: ForwardScratch,
  opts: ForwardOptions = NO_OPTIONS,
): void {
  if (s.single.length === 0) s.single.push({ cache, kind, tokens, first, nTokens });
  const one = s.single[0]!;
  one.cache = cache;
  one.kind = kind;
  one.tokens = tokens;
  one.first = first;
  one.nTokens = nTokens;
  forwardBatch(rt, w, s.single, s, opts);
}

/**
 * Several sequences in one pass (continuous batching): their rows are stacked in scratch.x
 * [Σn, dim] in segment order, so every weight matrix is read once for all of them; RoPE, the K/V
 * writes and attention run per segment, each over its own cache at its own positions.
 */
export function forwardBatch(
  rt: ModelRuntime, w: WeightSet, segments: readonly BatchSegment[], s: ForwardScratch,
  opts: ForwardOptions = NO_OPTIONS,
): void {
  if (isHostless(w)) {
    throw new BackendUnavailableError('these weights live on the GPU (WebGPU backend) and have no CPU copy; run the pass on the device, or load the model with a CPU backend.');
  }
  const { config: c, backend: be, rope, attn } = rt;
  const { observeQueries, replay = false } = opts;
  const promptBf16 = rt.promptBf16 && opts.prompt === true && be.matmulPrompt !== undefined;

  let n = 0;
  let empty = false;
  for (let g = 0; g < segments.length; g++) {
    n += segments[g]!.nTokens;
    if (segments[g]!.nTokens < 1) empty = true;
  }
  if (segments.length === 0 || n > s.maxBatch || empty) {
    throw new ShapeMismatchError(`forward: batch of ${n} tokens in ${segments.length} segments is outside 1..${s.maxBatch}.`);
  }
  const { dim, hiddenDim, nHeads, nKvHeads, headDim, normEps } = c;
  const qDim = qDimOf(c);
  const kvDim = kvDimOf(c);
  // Per segment: its first row in the batch (segRow), its first position (segPos), its view.
  const rows = s.segRow;
  const positions = s.segPos;
  const views = s.segViews;
  let row = 0;
  for (let g = 0; g < segments.length; g++) {
    const seg = segments[g]!;
    for (let i = 0; i < seg.nTokens; i++) {
      const t = seg.tokens[seg.first + i]!;
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) {
        throw new InvalidArgumentError(`token id ${t} is outside the vocabulary [0, ${c.vocabSize}).`, 'tokens');
      }
      s.tokens[row + i] = t;
    }
    if (seg.cache.length + seg.nTokens > rope.contextLength) {
      throw new ShapeMismatchError(`position ${seg.cache.length + seg.nTokens} is beyond the RoPE table (${rope.contextLength}).`);
    }
    rows[g] = row;
    row += seg.nTokens;
  }
  for (let g = 0; g < segments.length; g++) {
    positions[g] = segments[g]!.cache.append(segments[g]!.nTokens);
    views[g] = segments[g]!.cache.view(segments[g]!.kind);
  }

  be.embed(s.x, w.tokEmbed, s.tokens, n);
  for (let l = 0; l < c.nLayers; l++) {
    const lw = w.layers[l]!;
    // Attention block: x += wo · attention(rope(q), rope(k), v).
    be.rmsnorm(s.xb, s.x, lw.attnNorm, n, dim, normEps);
    project(be, promptBf16, s.q, s.xb, lw.wq, n);
    project(be, promptBf16, s.k, s.xb, lw.wk, n);
    project(be, promptBf16, s.v, s.xb, lw.wv, n);
    if (lw.bq) be.addBias(s.q, lw.bq, n, qDim);
    if (lw.bk) be.addBias(s.k, lw.bk, n, kvDim);
    if (lw.bv) be.addBias(s.v, lw.bv, n, kvDim);
    if (lw.qNorm && lw.kNorm) {
      // Qwen3: RMSNorm over each head, before RoPE.
      be.rmsnorm(s.q, s.q, lw.qNorm, n * nHeads, headDim, normEps);
      be.rmsnorm(s.k, s.k, lw.kNorm, n * nKvHeads, headDim, normEps);
    }
    for (let g = 0; g < segments.length; g++) {
      const seg = segments[g]!;
      const r = rows[g]!;
      const m = seg.nTokens;
      // One segment: the whole scratch as it is; several: views of each segment's rows.
      const q = segments.length === 1 ? s.q : s.q.subarray(r * qDim, (r + m) * qDim);
      const k = segments.length === 1 ? s.k : s.k.subarray(r * kvDim, (r + m) * kvDim);
      const v = segments.length === 1 ? s.v : s.v.subarray(r * kvDim, (r + m) * kvDim);
      const out = segments.length === 1 ? s.xb : s.xb.subarray(r * qDim, (r + m) * qDim);
      be.rope(q, m, nHeads, headDim, positions[g]!, rope.cos, rope.sin, rt.ropeLayout);
      be.rope(k, m, nKvHeads, headDim, positions[g]!, rope.cos, rope.sin, rt.ropeLayout);
      observeQueries?.(l, q, m);
      if (!replay) seg.cache.write(l, positions[g]!, k, v, m);
      be.attention(out, q, m, positions[g]!, views[g]!.layers[l]!, attn, s.scores);
    }
    project(be, promptBf16, s.xb2, s.xb, lw.wo, n);
    be.add(s.x, s.xb2, n * dim);
    // MLP block: x += w2 · (silu(w1 · x) * (w3 · x)).
    be.rmsnorm(s.xb, s.x, lw.ffnNorm, n, dim, normEps);
    project(be, promptBf16, s.hb, s.xb, lw.w1, n);
    project(be, promptBf16, s.hb2, s.xb, lw.w3, n);
    be.siluMul(s.hb, s.hb2, n * hiddenDim);
    project(be, promptBf16, s.xb2, s.hb, lw.w2, n);
    be.add(s.x, s.xb2, n * dim);
  }
}

/** out = x · mᵀ, through the backend's prompt matmul where `prompt` allows and it has one for m. */
function project(be: Backend, prompt: boolean, out: Float32Array, x: Float32Array, m: WeightTensor, n: number): void {
  if (!(prompt && be.matmulPrompt!(out, x, m, n))) be.matmul(out, x, m, n);
}

/** Logits for rows [firstRow, firstRow + nRows) of the last forward(): scratch.logits [nRows, vocabSize]. */
export function computeLogits(rt: ModelRuntime, w: WeightSet, s: ForwardScratch, firstRow: number, nRows: number): Float32Array {
  const { dim, normEps } = rt.config;
  if (nRows < 1 || nRows > s.maxLogitRows) {
    throw new ShapeMismatchError(`computeLogits: ${nRows} rows is outside 1..${s.maxLogitRows}.`);
  }
  const from = firstRow * dim;
  for (let i = 0; i < nRows * dim; i++) s.xb[i] = s.x[from + i]!;
  rt.backend.rmsnorm(s.xb, s.xb, w.finalNorm, nRows, dim, normEps);
  rt.backend.matmul(s.logits, s.xb, w.lmHead, nRows);
  return s.logits;
}

/**
 * A pass that returns the logits of all its n rows: forward() and computeLogits() on the CPU
 * (returned as they are), or the device's pass (a promise). Callers await either.
 */
export function passLogits(
  rt: ModelRuntime, w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number, s: ForwardScratch,
): Float32Array | Promise<Float32Array> {
  if (rt.device) return rt.device.run(w, cache, kind, tokens, first, n, true) as Promise<Float32Array>;
  forward(rt, w, cache, kind, tokens, first, n, s);
  return computeLogits(rt, w, s, 0, n);
}

/**
 * Greedy ids of all n rows of a pass, chosen on the device (only the ids come back), or null where
 * the runtime has no device. For greedy decoding with nothing that changes the logits first.
 */
export function passArgmax(
  rt: ModelRuntime, w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number,
): Promise<Int32Array> | null {
  return rt.device ? rt.device.runArgmax(w, cache, kind, tokens, first, n) : null;
}

/** A prompt pass (PROMPT_PASS) that keeps only the K/V: on the CPU it is done on return, on a device when the promise settles. */
export function promptPass(
  rt: ModelRuntime, w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number, s: ForwardScratch,
): Promise<unknown> | null {
  if (rt.device) return rt.device.run(w, cache, kind, tokens, first, n, false);
  forward(rt, w, cache, kind, tokens, first, n, s, PROMPT_PASS);
  return null;
}
