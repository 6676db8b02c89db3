// The acceptance rule of speculative decoding, as pure functions (DESIGN 2.5). Randomness is
// passed in; nothing here touches models or caches.

import type { Rng } from '../core/rng.js';
import { sampleFrom } from '../sampling/sampler.js';

export interface Acceptance {
  /** Draft tokens accepted, 0..γ. */
  readonly accepted: number;
  /** The token emitted after them: the target's correction, or a bonus when all were accepted. */
  readonly next: number;
}

/**
 * Greedy: accept the longest prefix with draft[i] == argmax q_i, then emit the target's argmax at
 * the first mismatch (or at position γ when all match). Output equals greedy target decoding.
 */
export function acceptGreedy(draft: ArrayLike<number>, targetArgmax: ArrayLike<number>, gamma: number): Acceptance {
  let n = 0;
  while (n < gamma && draft[n] === targetArgmax[n]) n++;
  return { accepted: n, next: targetArgmax[n]! };
}

/**
 * Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): accept d_i with probability
 * min(1, q_i(d_i) / p_i(d_i)); at the first rejection draw from norm(max(0, q_i - p_i)); if all γ
 * are accepted draw the bonus from q_γ. The emitted tokens are distributed exactly as the target's.
 * p: [γ, V] draft distributions; q: [γ + 1, V] target distributions; residual: [V] scratch.
 */
export function acceptSampled(
  draft: ArrayLike<number>, p: Float32Array, q: Float32Array, gamma: number, vocabSize: number,
  rng: Rng, residual: Float32Array,
): Acceptance {
  for (let i = 0; i < gamma; i++) {
    const d = draft[i]!;
    const pd = p[i * vocabSize + d]!;
    const qd = q[i * vocabSize + d]!;
    if (pd > 0 && rng.next() * pd < qd) continue; // u < q/p, without dividing
    let mass = 0;
    for (let v = 0; v < vocabSize; v++) {
      const r = q[i * vocabSize + v]! - p[i * vocabSize + v]!;
      residual[v] = r > 0 ? r : 0;
      mass += residual[v]!;
    }
    // q == p up to rounding leaves no residual mass; q itself is then the right distribution.
    if (!(mass > 0)) for (let v = 0; v < vocabSize; v++) residual[v] = q[i * vocabSize + v]!;
    return { accepted: i, next: sampleFrom(residual, vocabSize, rng) };
  }
  return { accepted: gamma, next: sampleFrom(q.subarray(gamma * vocabSize, (gamma + 1) * vocabSize), vocabSize, rng) };
}
