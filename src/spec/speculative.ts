// Self-speculative decoding, one round per step (DESIGN 2.5):
//   draft:  γ single-token passes with the draft's weights and KV view, each writing its K/V tentatively
//   verify: one target pass over [last, d_0..d_{γ-1}] that overwrites those K/V rows
//   accept: greedy prefix match or the speculative-sampling ratio test (spec/accept.ts)
//   commit: cache.truncate(pos + n + 1); cache.flush()   (only verified tokens can reach the planes)
// This is the only module that knows which pass is the draft.

import { computeLogits, forward } from '../model/forward.js';
import type { WeightSet } from '../model/weights.js';
import type { KvViewKind } from '../kv/cache.js';
import { argmax } from '../sampling/sampler.js';
import { acceptGreedy, acceptSampled } from './accept.js';
import { GammaController } from './adaptive.js';
import { pickToken, recordLogprob, type DecodeState, type Decoder } from './decoder.js';
import { emptyStats, recordRound, type SpecStats } from './stats.js';

/** What the draft is: its weights, the KV view it reads, and an optional setup after prefill. */
export interface DraftModel {
  readonly name: string;
  readonly weights: WeightSet;
  readonly view: KvViewKind;
  /** Called once the prompt is in the cache (SnapKV chooses its positions here). */
  prepare?(state: DecodeState): void;
}

export interface SpeculativeOptions {
  /** Fixed draft length, or 'auto' for the adaptive controller. */
  readonly gamma: number | 'auto';
  /** Largest γ (buffers are sized for it). */
  readonly maxGamma: number;
}

export class SpeculativeDecoder implements Decoder {
  readonly name: string;
  readonly draft: DraftModel;
  stats: SpecStats = emptyStats();
  private readonly fixedGamma: number | null;
  private readonly controller: GammaController;
  private readonly p: Float32Array; // [maxGamma, vocab] draft distributions
  private readonly q: Float32Array; // [maxGamma + 1, vocab] target distributions
  private readonly residual: Float32Array; // [vocab]
  private readonly drafted: Int32Array; // [maxGamma]
  private readonly targetTop: Int32Array; // [maxGamma + 1]

  constructor(draft: DraftModel, vocab: number, opts: SpeculativeOptions) {
    this.name = draft.name;
    this.draft = draft;
    const maxGamma = opts.maxGamma;
    this.fixedGamma = opts.gamma === 'auto' ? null : opts.gamma;
    this.controller = new GammaController(maxGamma, opts.gamma === 'auto' ? Math.min(4, maxGamma) : opts.gamma);
    this.p = new Float32Array(maxGamma * vocab);
    this.q = new Float32Array((maxGamma + 1) * vocab);
    this.residual = new Float32Array(vocab);
    this.drafted = new Int32Array(maxGamma);
    this.targetTop = new Int32Array(maxGamma + 1);
  }

  begin(): void {
    this.stats = emptyStats();
  }

  onPrefill(state: DecodeState): void {
    this.draft.prepare?.(state);
  }

  step(state: DecodeState, maxNew: number): number {
    // With a fixed seed, sampled output must not depend on timings: keep γ at its initial value.
    const wanted = this.fixedGamma ?? (state.reproducible && !state.sampler.greedy ? this.controller.initialGamma : this.controller.choose());
    // A round appends γ + 1 positions and emits up to γ + 1 tokens.
    const gamma = Math.min(wanted, maxNew - 1, this.controller.maxGamma);
    if (gamma <= 0) return this.plainStep(state);
    return this.round(state, gamma);
  }

  private plainStep(state: DecodeState): number {
    const { rt, target, cache, targetView, scratch, tokens } = state;
    const t0 = performance.now();
    forward(rt, target, cache, targetView, tokens, tokens.length - 1, 1, scratch);
    const logits = computeLogits(rt, target, scratch, 0, 1);
    tokens.push(pickToken(state, logits, 0, tokens.length));
    cache.flush();
    this.controller.observeVerify(1, performance.now() - t0);
    this.stats.plainSteps++;
    this.stats.gamma = 0;
    return 1;
  }

  private round(state: DecodeState, gamma: number): number {
    const { rt, target, cache, targetView, scratch, tokens, sampler, rng } = state;
    const V = rt.config.vocabSize;
    const pos = cache.length; // tokens[pos] is `last`, not yet in the cache
    const base = tokens.length; // drafts are pushed temporarily at tokens[base..]
    const t0 = performance.now();
    for (let i = 0; i < gamma; i++) {
      forward(rt, this.draft.weights, cache, this.draft.view, tokens, base - 1 + i, 1, scratch);
      const logits = computeLogits(rt, this.draft.weights, scratch, 0, 1);
      sampler.applyPenalties(logits, tokens, base + i);
      let d: number;
      if (sampler.greedy) {
        d = argmax(logits, 0, V);
      } else {
        const pi = this.p.subarray(i * V, (i + 1) * V);
        sampler.distribution(pi, logits);
        d = sampler.sample(pi, rng);
      }
      this.drafted[i] = d;
      tokens.push(d);
    }
    const t1 = performance.now();
    cache.truncate(pos);
    forward(rt, target, cache, targetView, tokens, base - 1, gamma + 1, scratch);
    const logits = computeLogits(rt, target, scratch, 0, gamma + 1);
    for (let i = 0; i <= gamma; i++) {
      const row = logits.subarray(i * V, (i + 1) * V);
      sampler.applyPenalties(row, tokens, base + i);
      if (sampler.greedy) this.targetTop[i] = argmax(row, 0, V);
      else sampler.distribution(this.q.subarray(i * V, (i + 1) * V), row);
    }
    const result = sampler.greedy
      ? acceptGreedy(this.drafted, this.targetTop, gamma)
      : acceptSampled(this.drafted, this.p, this.q, gamma, V, rng, this.residual);
    const t2 = performance.now();
    // Commit: the accepted drafts (already in tokens) plus the target's token; drop the rest.
    tokens.length = base + result.accepted;
    tokens.push(result.next);
    for (let i = 0; i <= result.accepted; i++) recordLogprob(state, logits, i * V, tokens[base + i]!);
    cache.truncate(pos + result.accepted + 1);
    cache.flush();
    recordRound(this.stats, gamma, result.accepted, t1 - t0, t2 - t1);
    this.controller.observeDraftStep((t1 - t0) / gamma);
    this.controller.observeVerify(gamma + 1, t2 - t1);
    this.controller.observeRound(gamma, result.accepted);
    return result.accepted + 1;
  }
}
