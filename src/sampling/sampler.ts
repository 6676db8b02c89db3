// Logits -> warped probability distribution -> token. The warped distribution is a full vocab
// vector so that speculative sampling can apply exactly the same warpers to draft and target
// (DESIGN 2.5). Order follows transformers: penalties, temperature, top-k, top-p, min-p.
// Buffers are allocated once per sampler (the candidate sort uses a typed-array view).

import type { Rng } from '../core/rng.js';
import { isGreedy, type SamplingParams } from './params.js';

export class Sampler {
  readonly params: SamplingParams;
  readonly greedy: boolean;
  private readonly vocabSize: number;
  private readonly order: Uint32Array; // [vocabSize] candidate indices
  private readonly counts: Int32Array; // [vocabSize] occurrences in the penalty window
  private readonly touched: Int32Array; // ids whose count is non-zero
  private readonly kept: Float32Array; // [vocabSize] survivor probabilities while warping

  private readonly biasIds: Int32Array;
  private readonly biasValues: Float32Array;

  /** `logitBias`: additive biases by token id (OpenAI's logit_bias), applied before everything else. */
  constructor(params: SamplingParams, vocabSize: number, logitBias: Readonly<Record<number, number>> = {}) {
    this.params = params;
    const bias = Object.entries(logitBias);
    this.biasIds = Int32Array.from(bias, ([id]) => Number(id));
    this.biasValues = Float32Array.from(bias, ([, v]) => v);
    this.greedy = isGreedy(params);
    this.vocabSize = vocabSize;
    this.order = new Uint32Array(vocabSize);
    this.counts = new Int32Array(vocabSize);
    this.kept = new Float32Array(vocabSize);
    this.touched = new Int32Array(Math.max(1, params.penaltyWindow > 0 ? params.penaltyWindow : vocabSize));
  }

  /** Greedy with nothing that changes the logits first (no bias, no penalties): the choice is the plain argmax of a row. */
  get plainArgmax(): boolean {
    return this.greedy && this.biasIds.length === 0 && !this.hasPenalties;
  }

  private get hasPenalties(): boolean {
    const p = this.params;
    return p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
  }

  /** Apply logit bias, then repetition/presence/frequency penalties over history[..end), in place. */
  applyPenalties(logits: Float32Array, history: ArrayLike<number>, end: number): void {
    for (let i = 0; i < this.biasIds.length; i++) logits[this.biasIds[i]!] += this.biasValues[i]!;
    if (!this.hasPenalties || end <= 0) return;
    const p = this.params;
    const start = p.penaltyWindow < 0 ? 0 : Math.max(0, end - p.penaltyWindow);
    let nTouched = 0;
    for (let i = start; i < end; i++) {
      const id = history[i]!;
      if (id < 0 || id >= this.vocabSize) continue;
      if (this.counts[id] === 0 && nTouched < this.touched.length) this.touched[nTouched++] = id;
      this.counts[id]!++;
    }
    for (let i = 0; i < nTouched; i++) {
      const id = this.touched[i]!;
      const c = this.counts[id]!;
      let l = logits[id]!;
      if (p.repetitionPenalty !== 1) l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty;
      l -= p.presencePenalty + c * p.frequencyPenalty;
      logits[id] = l;
      this.counts[id] = 0;
    }
  }

  /**
   * out = the warped distribution of `logits` (already penalised). Greedy: one-hot at the argmax.
   * `logits` may be a row inside a larger buffer: [offset, offset + vocabSize).
   */
  distribution(out: Float32Array, logits: Float32Array, offset = 0): void {
    const V = this.vocabSize;
    if (this.greedy) {
      out.fill(0, 0, V);
      out[argmax(logits, offset, V)] = 1;
      return;
    }
    const { temperature, topK, topP, minP } = this.params;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[offset + i]! > max) max = logits[offset + i]!;
    let sum = 0;
    for (let i = 0; i < V; i++) {
      const e = Math.exp((logits[offset + i]! - max) / temperature);
      out[i] = e;
      sum += e;
    }
    for (let i = 0; i < V; i++) out[i] = out[i]! / sum;
    if (topK === 0 && topP >= 1 && minP === 0) return;

    // Candidates: every token that can survive. A token below (1 - topP)/V can never be in the
    // nucleus (all such tokens together hold less than 1 - topP), so it is dropped before sorting.
    let threshold = 0;
    if (topP < 1) threshold = (1 - topP) / V;
    let pmax = 0;
    for (let i = 0; i < V; i++) if (out[i]! > pmax) pmax = out[i]!;
    if (minP > 0) threshold = Math.max(threshold, minP * pmax);
    let m = 0;
    for (let i = 0; i < V; i++) if (out[i]! >= threshold) this.order[m++] = i;
    const cand = this.order.subarray(0, m);
    cand.sort((a, b) => out[b]! - out[a]! || a - b);
    let keep = topK > 0 ? Math.min(topK, m) : m;
    if (topP < 1) {
      let mass = 0;
      for (let i = 0; i < keep; i++) mass += out[cand[i]!]!;
      let cum = 0;
      for (let i = 0; i < keep; i++) {
        cum += out[cand[i]!]! / mass;
        if (cum >= topP) {
          keep = i + 1;
          break;
        }
      }
    }
    // min-p compares with the top probability; renormalising after top-k/top-p does not change the ratio.
    if (minP > 0) while (keep > 1 && out[cand[keep - 1]!]! < minP * pmax) keep--;
    let kept = 0;
    for (let i = 0; i < keep; i++) kept += out[cand[i]!]!;
    // Zero everything, then write back the survivors renormalised.
    for (let i = 0; i < keep; i++) this.kept[i] = out[cand[i]!]! / kept;
    out.fill(0, 0, V);
    for (let i = 0; i < keep; i++) out[cand[i]!] = this.kept[i]!;
  }

  /** Draw a token from a distribution (inverse CDF). */
  sample(probs: Float32Array, rng: Rng): number {
    return sampleFrom(probs, this.vocabSize, rng);
  }
}

export function argmax(x: Float32Array, offset: number, n: number): number {
  let best = 0;
  let bestVal = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = x[offset + i]!;
    if (v > bestVal) {
      bestVal = v;
      best = i;
    }
  }
  return best;
}

/** Inverse-CDF draw from probs[0..n); robust to rounding (falls back to the last non-zero entry). */
export function sampleFrom(probs: Float32Array, n: number, rng: Rng): number {
  let total = 0;
  for (let i = 0; i < n; i++) total += probs[i]!;
  const u = rng.next() * total;
  let cum = 0;
  let last = 0;
  for (let i = 0; i < n; i++) {
    const p = probs[i]!;
    if (p <= 0) continue;
    cum += p;
    last = i;
    if (u < cum) return i;
  }
  return last;
}
