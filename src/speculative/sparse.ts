// Sparse-KV self-speculation baselines (DESIGN 2.6, the paper's comparison): the draft keeps the
// target's full weights but attends to a subset of the full-precision cache, with a budget of 1/4
// of the prompt. StreamingLLM keeps attention-sink tokens plus a sliding recent window; SnapKV keeps
// the prompt positions that the last window of prompt queries attends to most.

import { forward } from '../model/forward.js';
import type { WeightSet } from '../model/weights.js';
import type { FpKvCache } from '../kv/fp-cache.js';
import type { FpRows } from '../kv/layout.js';
import { f16Lookup } from '../core/half.js';
import type { DecodeState, DraftModel } from './decoder.js';

export const SPARSE_BUDGET_FRACTION = 0.25;
const SINKS = 4;
const SNAP_WINDOW = 32;
const SNAP_POOL = 7;

/** Positions the draft may keep for a prompt of `promptLength` tokens. */
export function sparseBudget(promptLength: number): number {
  return Math.max(SINKS + 4, Math.floor(promptLength * SPARSE_BUDGET_FRACTION));
}

/** The first n key values of fp rows as F32 (F16 rows converted, once per prompt). */
function f32Keys(fp: FpRows, n: number): Float32Array {
  if (fp.dtype === 'f32') return fp.keys;
  const table = f16Lookup();
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = table[fp.keys[i]!]!;
  return out;
}

export function streamingDraft(weights: WeightSet, cache: FpKvCache): DraftModel {
  return {
    name: 'streaming',
    weights,
    view: 'sparse',
    prepare(state) {
      const budget = sparseBudget(state.tokens.length);
      const { nLayers, nKvHeads } = state.rt.config;
      const sinks = Array.from({ length: SINKS }, (_, j) => j);
      const perHead = Array.from({ length: nKvHeads }, () => sinks);
      for (let l = 0; l < nLayers; l++) cache.select(l, perHead, SINKS, budget - SINKS);
    },
  };
}

export function snapKvDraft(weights: WeightSet, cache: FpKvCache): DraftModel {
  return { name: 'snapkv', weights, view: 'sparse', prepare: (state) => snapSelect(state, cache) };
}

/** Largest selection a sparse draft needs for contexts up to `contextLength` (sizes the cache). */
export function sparseStride(contextLength: number): number {
  return Math.max(SINKS, sparseBudget(contextLength));
}

function snapSelect(state: DecodeState, cache: FpKvCache): void {
  const { rt, target, tokens, scratch } = state;
  const { nLayers, nHeads, nKvHeads, headDim } = rt.config;
  const L = cache.length; // prompt tokens in the cache (the last prompt token is fed later)
  const budget = sparseBudget(tokens.length);
  const none = Array.from({ length: nKvHeads }, () => []);
  if (L <= budget) {
    for (let l = 0; l < nLayers; l++) cache.select(l, none, 0, 0);
    return;
  }
  const w = Math.min(SNAP_WINDOW, Math.max(1, Math.floor(budget / 2)), scratch.maxBatch);
  const keep = budget - w;
  const start = L - w;
  const qDim = nHeads * headDim;
  const queries = new Float32Array(nLayers * w * qDim); // [nLayers, w, qDim], once per prompt
  // Replay the observation window to see its queries (its K/V are in the cache already).
  cache.truncate(start);
  // A prompt pass like the prefill that wrote these K/V, so the queries are the prefill's.
  forward(rt, target, cache, 'fp', tokens, start, w, scratch, {
    observeQueries: (layer, q, n) => queries.set(q.subarray(0, n * qDim), layer * w * qDim),
    replay: true,
    prompt: true,
  });
  const nRep = nHeads / nKvHeads;
  const kvDim = nKvHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  const score = new Float64Array(start);
  const pooled = new Float64Array(start);
  const logits = new Float64Array(L);
  const order: number[] = [];
  for (let l = 0; l < nLayers; l++) {
    const keys = f32Keys(cache.view('fp').layers[l]!.fp, L * kvDim);
    const perHead: number[][] = [];
    for (let g = 0; g < nKvHeads; g++) {
      score.fill(0);
      for (let i = 0; i < w; i++) {
        const pos = start + i;
        for (let h = g * nRep; h < (g + 1) * nRep; h++) {
          const qo = (l * w + i) * qDim + h * headDim;
          let max = -Infinity;
          for (let t = 0; t <= pos; t++) {
            let s = 0;
            for (let d = 0; d < headDim; d++) s += queries[qo + d]! * keys[t * kvDim + g * headDim + d]!;
            logits[t] = s * scale;
            if (logits[t]! > max) max = logits[t]!;
          }
          let sum = 0;
          for (let t = 0; t <= pos; t++) sum += Math.exp(logits[t]! - max);
          for (let t = 0; t < start; t++) score[t] += Math.exp(logits[t]! - max) / sum;
        }
      }
      // Max-pool the votes so neighbours of important tokens come along (SnapKV's clustering).
      const r = SNAP_POOL >> 1;
      for (let t = 0; t < start; t++) {
        let m = 0;
        for (let u = Math.max(0, t - r); u <= Math.min(start - 1, t + r); u++) m = Math.max(m, score[u]!);
        pooled[t] = m;
      }
      order.length = 0;
      for (let t = 0; t < start; t++) order.push(t);
      order.sort((a, b) => pooled[b]! - pooled[a]! || a - b);
      perHead.push(order.slice(0, Math.min(keep, start, cache.sparseStride)).sort((a, b) => a - b));
    }
    cache.select(l, perHead, start, 0);
  }
}
