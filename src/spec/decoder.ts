// Decoders turn "the last committed token, not yet in the cache" into one or more new tokens.
// The plain decoder runs one target step; the speculative decoder (spec/speculative.ts) runs a
// QuantSpec round. Both keep the invariant cache.length === tokens.length - 1.

import type { Rng } from '../core/rng.js';
import { computeLogits, forward, type ForwardScratch, type ModelRuntime } from '../model/forward.js';
import type { WeightSet } from '../model/weights.js';
import type { KvCache, KvViewKind } from '../kv/cache.js';
import { argmax, type Sampler } from '../sampling/sampler.js';
import type { SpecStats } from './stats.js';

export interface DecodeState {
  readonly rt: ModelRuntime;
  readonly target: WeightSet;
  readonly cache: KvCache;
  /** The view the target reads: 'fp' for a plain cache, 'int8' (or 'int4') for the hierarchical one. */
  readonly targetView: KvViewKind;
  readonly scratch: ForwardScratch;
  readonly sampler: Sampler;
  readonly rng: Rng;
  /** All tokens so far; the last one is not yet in the cache. */
  readonly tokens: number[];
  /** [vocab] distribution buffer for sampling. */
  readonly probs: Float32Array;
  /**
   * True when the caller fixed the seed of a sampled generation: every choice that consumes
   * randomness must then be reproducible (adaptive γ, which follows wall-clock timings, is frozen).
   */
  readonly reproducible: boolean;
  /** When >= 0, each emitted token's log-probability (and this many alternatives) is recorded. */
  readonly logprobTop: number;
  readonly logprobs: TokenLogprob[];
}

/** Log-probability of an emitted token under the target (after logit bias and penalties). */
export interface TokenLogprob {
  readonly id: number;
  readonly logprob: number;
  /** The most likely tokens at that position, best first. */
  readonly top: readonly { readonly id: number; readonly logprob: number }[];
}

/** Record log-softmax(row)[token] and the row's top alternatives, if the caller asked for them. */
export function recordLogprob(state: DecodeState, row: Float32Array, offset: number, token: number): void {
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
    if (best < 0) break;
    top.push({ id: best, logprob: row[offset + best]! - lse });
  }
  state.logprobs.push({ id: token, logprob: row[offset + token]! - lse, top });
}

export interface Decoder {
  readonly name: string;
  /** Speculative statistics of the current generation (absent for plain decoding). */
  readonly stats?: SpecStats;
  /** Called at the start of each generation, then after its prompt is in the cache. */
  begin?(): void;
  onPrefill?(state: DecodeState): void;
  /**
   * Feed the last token and append between 1 and maxNew new tokens to state.tokens (and at most
   * maxNew positions to the cache); returns how many tokens were appended.
   */
  step(state: DecodeState, maxNew: number): number;
}

/** Pick the next token from one logits row, with penalties over tokens[..end). */
export function pickToken(state: DecodeState, logits: Float32Array, offset: number, end: number): number {
  const { sampler, tokens, probs, rng } = state;
  const row = offset === 0 ? logits : logits.subarray(offset, offset + probs.length);
  sampler.applyPenalties(row, tokens, end);
  let token: number;
  if (sampler.greedy) token = argmax(row, 0, probs.length);
  else {
    sampler.distribution(probs, row);
    token = sampler.sample(probs, rng);
  }
  recordLogprob(state, row, 0, token);
  return token;
}

export class PlainDecoder implements Decoder {
  readonly name = 'none';

  step(state: DecodeState, _maxNew: number): number {
    const { rt, target, cache, targetView, scratch, tokens } = state;
    forward(rt, target, cache, targetView, tokens, tokens.length - 1, 1, scratch);
    const logits = computeLogits(rt, target, scratch, 0, 1);
    tokens.push(pickToken(state, logits, 0, tokens.length));
    cache.flush();
    return 1;
  }
}
