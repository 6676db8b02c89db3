// The decoder turns "the last committed token, not yet in the cache" into new tokens. With a draft
// it runs QuantSpec rounds (DESIGN 2.5):
//   draft:  γ single-token passes with the draft's weights and KV view, each writing its K/V tentatively
//   verify: one target pass over [last, d_0..d_{γ-1}] that overwrites those K/V rows
//   accept: greedy prefix match or the speculative-sampling ratio test (accept.ts)
// Plain decoding is its γ = 0 case: one target pass over [last]. A step never commits: it returns
// what it accepted and the next token, and the session commits (truncate, flush), applies stop
// conditions and the budget. This module is the only one that knows which pass is the draft.

import type { Rng } from '../core/rng.js';
import { passArgmax, passLogits, type ForwardScratch, type ModelRuntime } from '../model/forward.js';
import type { WeightSet } from '../model/weights.js';
import type { KvCache, KvViewKind } from '../kv/cache.js';
import type { ConstraintRun, ConstraintState } from '../sampling/constraint.js';
import { argmax, type Sampler } from '../sampling/sampler.js';
import { acceptGreedy, acceptSampled } from './accept.js';
import { GammaController } from './adaptive.js';
import { emptyStats, recordRound, type SpecStats } from './stats.js';

export interface DecodeState {
  readonly rt: ModelRuntime;
  readonly target: WeightSet;
  readonly cache: KvCache;
  /** The view the target reads: 'fp' for a plain cache, 'int8' (or 'int4') for the hierarchical one. */
  readonly targetView: KvViewKind;
  readonly scratch: ForwardScratch;
  readonly sampler: Sampler;
  readonly rng: Rng;
  /** Committed tokens; the last one is not yet in the cache. A step restores its length before returning. */
  readonly tokens: number[];
  /** [vocabSize] distribution buffer for sampling. */
  readonly probs: Float32Array;
  /**
   * True when the caller fixed the seed of a sampled generation: every choice that consumes
   * randomness must then be reproducible (adaptive γ, which follows wall-clock timings, is frozen).
   */
  readonly reproducible: boolean;
  /** When >= 0, each emitted token's log-probability (and this many alternatives) is recorded. */
  readonly logprobTop: number;
  readonly logprobs: TokenLogprob[];
  /**
   * A structured-output constraint, or null. Its mask applies to the draft's and the target's
   * logits at each position alike (after bias and penalties), and the decoder advances its state
   * over the tokens it emits.
   */
  readonly constraint: ConstraintRun | null;
}

/** Log-probability of an emitted token under the target (after logit bias and penalties). */
export interface TokenLogprob {
  readonly id: number;
  readonly logprob: number;
  /** The most likely tokens at that position, best first. */
  readonly top: readonly { readonly id: number; readonly logprob: number }[];
}

/** What the draft is: its weights, the KV view it reads, and an optional setup after prefill. */
export interface DraftModel {
  readonly name: string;
  readonly weights: WeightSet;
  readonly view: KvViewKind;
  /** Called once the prompt is in the cache (SnapKV chooses its positions here). */
  prepare?(state: DecodeState): void;
}

export interface DecoderOptions {
  /** Fixed draft length, or 'auto' for the adaptive controller. */
  readonly gamma: number | 'auto';
  /** Largest γ (buffers are sized for it). */
  readonly maxGamma: number;
  /** Milliseconds for the adaptive controller's timings (default performance.now; tests inject one). */
  readonly clock?: () => number;
}

/**
 * One step's outcome, reused from step to step: tokens[0..count) are the accepted drafts followed
 * by the target's own token. The cache holds positions for every fed token of the step (the
 * session truncates it to what it commits).
 */
export interface StepResult {
  /** Drafts accepted (0 for a plain step). */
  accepted: number;
  /** accepted + 1. */
  count: number;
  readonly tokens: Int32Array; // [maxGamma + 1]
}

/** Record log-softmax(row)[token] and the row's top alternatives, if the caller asked for them. */
function recordLogprob(state: DecodeState, row: Float32Array, offset: number, token: number): void {
  if (state.logprobTop < 0) return;
  const V = state.probs.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (row[offset + i]! > max) max = row[offset + i]!;
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(row[offset + i]! - max);
  const lse = max + Math.log(sum);
  const top: { id: number; logprob: number }[] = [];
  for (let k = 0; k < state.logprobTop; k++) {
    let best = -1;
    for (let i = 0; i < V; i++) {
      if ((best < 0 || row[offset + i]! > row[offset + best]!) && !top.some((t) => t.id === i)) best = i;
    }
    // Tokens a constraint masked (-Infinity) are not alternatives.
    if (best < 0 || row[offset + best] === -Infinity) break;
    top.push({ id: best, logprob: row[offset + best]! - lse });
  }
  state.logprobs.push({ id: token, logprob: row[offset + token]! - lse, top });
}

/** Pick the next token from one logits row, with penalties over tokens[..end). */
function pickToken(state: DecodeState, logits: Float32Array, end: number): number {
  const { sampler, tokens, probs, rng, constraint } = state;
  sampler.applyPenalties(logits, tokens, end);
  if (constraint) constraint.constraint.apply(logits, 0, constraint.state);
  let token: number;
  if (sampler.greedy) token = argmax(logits, 0, probs.length);
  else {
    sampler.distribution(probs, logits);
    token = sampler.sample(probs, rng);
  }
  recordLogprob(state, logits, 0, token);
  return token;
}

/**
 * Whether this step's choices are plain argmaxes a device can make itself (greedy, no bias, no
 * penalties, no constraint, no log-probabilities): then only the ids come back from the GPU.
 */
function deviceArgmax(state: DecodeState): boolean {
  return state.rt.device !== null && state.sampler.plainArgmax && state.constraint === null && state.logprobTop < 0;
}

export class Decoder {
  readonly name: string;
  /** null: plain decoding (every step is γ = 0). */
  readonly draft: DraftModel | null;
  /** Speculative statistics of the current generation (null for plain decoding). */
  stats: SpecStats | null;
  private readonly fixedGamma: number | null;
  private readonly controller: GammaController;
  private readonly clock: () => number;
  private readonly result: StepResult;
  private readonly p: Float32Array; // [maxGamma, vocabSize] draft distributions
  private readonly q: Float32Array; // [maxGamma + 1, vocabSize] target distributions
  private readonly residual: Float32Array; // [vocabSize]
  private readonly drafted: Int32Array; // [maxGamma]
  private readonly targetTop: Int32Array; // [maxGamma + 1]

  constructor(draft: DraftModel | null, vocabSize: number, opts: DecoderOptions) {
    this.name = draft ? draft.name : 'none';
    this.draft = draft;
    this.stats = draft ? emptyStats() : null;
    const maxGamma = draft ? opts.maxGamma : 0;
    this.fixedGamma = opts.gamma === 'auto' ? null : opts.gamma;
    this.clock = opts.clock ?? (() => performance.now());
    this.controller = new GammaController(maxGamma, opts.gamma === 'auto' ? Math.min(4, maxGamma) : opts.gamma);
    this.result = { accepted: 0, count: 0, tokens: new Int32Array(maxGamma + 1) };
    this.p = new Float32Array(maxGamma * vocabSize);
    this.q = new Float32Array((maxGamma + 1) * vocabSize);
    this.residual = new Float32Array(vocabSize);
    this.drafted = new Int32Array(maxGamma);
    this.targetTop = new Int32Array(maxGamma + 1);
  }

  /** Called at the start of each generation. */
  begin(): void {
    if (this.draft) this.stats = emptyStats();
  }

  /** Called once the prompt is in the cache. */
  onPrefill(state: DecodeState): void {
    this.draft?.prepare?.(state);
  }

  /**
   * Feed the last token and decode between 1 and maxNew tokens (appending as many positions at
   * most). Asynchronous because a device backend's logits come back asynchronously; on the CPU
   * every pass is done before the first await.
   */
  async step(state: DecodeState, maxNew: number): Promise<StepResult> {
    if (!this.draft) return this.plainStep(state);
    // With a fixed seed, sampled output must not depend on timings: keep γ at its initial value.
    const wanted = this.fixedGamma ?? (state.reproducible && !state.sampler.greedy ? this.controller.initialGamma : this.controller.choose());
    // A round appends γ + 1 positions and emits up to γ + 1 tokens.
    const gamma = Math.min(wanted, maxNew - 1, this.controller.maxGamma);
    if (gamma <= 0) {
      const t0 = this.clock();
      const r = await this.plainStep(state);
      this.controller.observeVerify(1, this.clock() - t0);
      this.stats!.plainSteps++;
      this.stats!.gamma = 0;
      return r;
    }
    return this.round(state, this.draft, gamma);
  }

  /**
   * A plain step whose forward pass ran in a batch with other sequences (continuous batching):
   * `logits` [vocabSize] is this sequence's row. Counted as a plain step.
   */
  stepFromLogits(state: DecodeState, logits: Float32Array): StepResult {
    if (this.stats) {
      this.stats.plainSteps++;
      this.stats.gamma = 0;
    }
    return this.pick(state, logits);
  }

  private async plainStep(state: DecodeState): Promise<StepResult> {
    const { rt, target, cache, targetView, scratch, tokens } = state;
    if (deviceArgmax(state)) {
      const ids = await passArgmax(rt, target, cache, targetView, tokens, tokens.length - 1, 1)!;
      const r = this.result;
      r.tokens[0] = ids[0]!;
      r.accepted = 0;
      r.count = 1;
      return r;
    }
    return this.pick(state, await passLogits(rt, target, cache, targetView, tokens, tokens.length - 1, 1, scratch));
  }

  /** The target's token from the logits after the last committed token. */
  private pick(state: DecodeState, logits: Float32Array): StepResult {
    const r = this.result;
    r.tokens[0] = pickToken(state, logits, state.tokens.length);
    r.accepted = 0;
    r.count = 1;
    const c = state.constraint;
    if (c) c.state = c.constraint.advance(c.state, r.tokens[0]!);
    return r;
  }

  private async round(state: DecodeState, draft: DraftModel, gamma: number): Promise<StepResult> {
    const { rt, target, cache, targetView, scratch, tokens, sampler, rng } = state;
    const V = rt.config.vocabSize;
    const pos = cache.length; // tokens[pos] is `last`, not yet in the cache
    const base = tokens.length; // drafts are pushed temporarily at tokens[base..] (penalties see them)
    const constraint = state.constraint;
    // The constraint's state before each draft position (grammar[i] before d_i; grammar[γ] after all).
    const grammar: ConstraintState[] | null = constraint ? [constraint.state] : null;
    const fast = deviceArgmax(state);
    const t0 = this.clock();
    for (let i = 0; i < gamma; i++) {
      if (fast) {
        const d = (await passArgmax(rt, draft.weights, cache, draft.view, tokens, base - 1 + i, 1)!)[0]!;
        this.drafted[i] = d;
        tokens.push(d);
        continue;
      }
      const logits = await passLogits(rt, draft.weights, cache, draft.view, tokens, base - 1 + i, 1, scratch);
      sampler.applyPenalties(logits, tokens, base + i);
      if (constraint) constraint.constraint.apply(logits, 0, grammar![i]!);
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
      if (constraint) grammar!.push(constraint.constraint.advance(grammar![i]!, d));
    }
    const t1 = this.clock();
    cache.truncate(pos); // the verify pass overwrites the draft's K/V rows
    let logits: Float32Array | null = null;
    if (fast) {
      this.targetTop.set((await passArgmax(rt, target, cache, targetView, tokens, base - 1, gamma + 1)!).subarray(0, gamma + 1));
    } else {
      logits = await passLogits(rt, target, cache, targetView, tokens, base - 1, gamma + 1, scratch);
      for (let i = 0; i <= gamma; i++) {
        const row = logits.subarray(i * V, (i + 1) * V);
        sampler.applyPenalties(row, tokens, base + i);
        if (constraint) constraint.constraint.apply(row, 0, grammar![i]!);
        if (sampler.greedy) this.targetTop[i] = argmax(row, 0, V);
        else sampler.distribution(this.q.subarray(i * V, (i + 1) * V), row);
      }
    }
    const accept = sampler.greedy
      ? acceptGreedy(this.drafted, this.targetTop, gamma)
      : acceptSampled(this.drafted, this.p, this.q, gamma, V, rng, this.residual);
    const t2 = this.clock();
    tokens.length = base;
    const r = this.result;
    for (let i = 0; i < accept.accepted; i++) r.tokens[i] = this.drafted[i]!;
    r.tokens[accept.accepted] = accept.next;
    r.accepted = accept.accepted;
    r.count = accept.accepted + 1;
    // Rejected drafts' states are dropped: the state after the accepted prefix, then the target's token.
    if (constraint) constraint.state = constraint.constraint.advance(grammar![accept.accepted]!, accept.next);
    if (logits) for (let i = 0; i < r.count; i++) recordLogprob(state, logits, i * V, r.tokens[i]!);
    recordRound(this.stats!, gamma, accept.accepted, t1 - t0, t2 - t1);
    this.controller.observeDraftStep((t1 - t0) / gamma);
    this.controller.observeVerify(gamma + 1, t2 - t1);
    this.controller.observeRound(gamma, accept.accepted);
    return r;
  }
}
