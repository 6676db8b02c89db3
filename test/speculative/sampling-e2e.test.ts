// End to end through the engine: with temperature sampling at γ = 3, QuantSpec's first two emitted
// tokens follow the target's joint distribution and its 4th token the target's marginal (tiny
// random model built in code, real 4-bit draft of a perturbed copy).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCache, createDecoder, maxStepOf, resolveDecoding } from '../../src/speculative/modes.js';
import { collect, Session } from '../../src/engine/session.js';
import { buildDraftWeights, DEFAULT_DRAFT } from '../../src/quant/draft.js';
import { resolveSampling } from '../../src/sampling/params.js';
import { Sampler } from '../../src/sampling/sampler.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { gaussian, randomWeights, tinyConfig, tinyRuntime } from '../helpers/tiny.js';
import { targetLogitsAfter } from '../helpers/exact.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import { mapMatrices } from '../../src/model/weights.js';

/** Chi-square critical value at p = 0.001 (Wilson-Hilferty approximation, accurate to ~1% here). */
function chiSquareCritical(dof: number): number {
  const z = 3.0902;
  return dof * (1 - 2 / (9 * dof) + z * Math.sqrt(2 / (9 * dof))) ** 3;
}

/** Chi-square statistic of counts against probabilities for n draws. */
function chiSquareOf(counts: ArrayLike<number>, probs: ArrayLike<number>, n: number): number {
  let chi = 0;
  for (let i = 0; i < counts.length; i++) chi += (counts[i]! - n * probs[i]!) ** 2 / (n * probs[i]!);
  return chi;
}

const fakeTokenizer = (vocab: number): Tokenizer => ({
  vocabSize: vocab, bosId: 0, eosIds: [], addsBos: false, chatTemplate: null, templateTokens: {},
  encode: () => [0],
  decode: (ids) => ids.map((i) => `<${i}>`).join(''),
});

test('speculative sampling through the engine matches the target joint distribution (chi-square)', async () => {
  const config = tinyConfig({ vocabSize: 8 });
  const rt = tinyRuntime(config, 64);
  const target = randomWeights(config, 31);
  // A 4-bit draft of a perturbed copy of the target: p and q differ a lot, so both paths of the
  // ratio test run often and wiring mistakes (wrong rows or distributions) show in the output.
  const rng = new Xoshiro128(77);
  const noisy = mapMatrices(target, (t) => t.dtype !== 'f32' ? t : { ...t, data: t.data.map((x) => x + 0.2 * Math.abs(x) * gaussian(rng)) });
  const draft = buildDraftWeights(noisy, { ...DEFAULT_DRAFT, groupSize: 8 }).weights;
  const sampling = { temperature: 2, topK: 0, topP: 1, minP: 0 };
  const prompt = [0, 5, 3, 1, 2];
  const plan = resolveDecoding(config, { spec: 'quantspec', gamma: 3, keyGroupSize: 4 });

  // Exact target distributions: q0 after the prompt, q1 after prompt + t1.
  const sampler = new Sampler(resolveSampling(sampling), config.vocabSize);
  const dist = (ids: number[]): Float32Array => {
    const out = new Float32Array(config.vocabSize);
    sampler.distribution(out, targetLogitsAfter(rt, target, plan, config, ids));
    return out;
  };
  const V = config.vocabSize;
  const q0 = dist(prompt);
  const cells = new Map<string, number>();
  // The 4th token's exact marginal: Σ over every 3-token prefix of P(prefix) · q(· | prefix).
  const marginal4 = new Float64Array(V);
  for (let a = 0; a < V; a++) {
    if (q0[a]! === 0) continue;
    const q1 = dist([...prompt, a]);
    for (let b = 0; b < V; b++) {
      if (q1[b]! === 0) continue;
      cells.set(`${a},${b}`, q0[a]! * q1[b]!);
      const q2 = dist([...prompt, a, b]);
      for (let c = 0; c < V; c++) {
        if (q2[c]! === 0) continue;
        const q3 = dist([...prompt, a, b, c]);
        for (let d = 0; d < V; d++) marginal4[d] += q0[a]! * q1[b]! * q2[c]! * q3[d]!;
      }
    }
  }
  assert.equal(cells.size, 64);

  const cache = createCache(plan, config, rt.backend, 64, 8);
  const session = new Session({
    rt, target, tokenizer: fakeTokenizer(V),
    cache, targetView: 'int8',
    decoder: createDecoder(plan, config, cache, target, draft), plan, contextLength: 64, prefillChunk: 8, maxStep: maxStepOf(plan),
  });
  // 4 tokens at γ = 3: the first round drafts 3 tokens and, when all are accepted, the target's
  // bonus token is the 4th. Seeded runs keep γ fixed.
  const n = 30000;
  const pairs = new Map<string, number>();
  const fourth = new Array<number>(V).fill(0);
  const lengths = [0, 0, 0, 0];
  let drafted = 0;
  let accepted = 0;
  for (let i = 0; i < n; i++) {
    const r = await collect(session.generate({ ids: prompt }, { ...sampling, seed: i, maxTokens: 4 }));
    assert.equal(r.generatedIds.length, 4);
    const key = r.generatedIds.slice(0, 2).join(',');
    pairs.set(key, (pairs.get(key) ?? 0) + 1);
    fourth[r.generatedIds[3]!]!++;
    drafted += r.stats!.drafted;
    accepted += r.stats!.accepted;
    r.stats!.acceptedLengths.forEach((c, k) => (lengths[k]! += c));
  }
  // Chi-square over the pairs, pooling cells expected below 5 draws into one.
  let chi = 0;
  let cellsUsed = 0;
  let pooledP = 0;
  let pooledCount = 0;
  for (const [key, p] of cells) {
    const c = pairs.get(key) ?? 0;
    if (n * p < 5) {
      pooledP += p;
      pooledCount += c;
      continue;
    }
    chi += (c - n * p) ** 2 / (n * p);
    cellsUsed++;
  }
  if (pooledP > 0) {
    chi += (pooledCount - n * pooledP) ** 2 / (n * pooledP);
    cellsUsed++;
  }
  const outside = [...pairs.entries()].filter(([k]) => !cells.has(k));
  assert.deepEqual(outside, [], 'no pair outside the target support');
  const critical = chiSquareCritical(cellsUsed - 1);
  assert.ok(chi < critical, `first two tokens: chi-square ${chi.toFixed(2)} over ${cellsUsed} cells (critical ${critical.toFixed(1)})`);
  // The 4th token (a bonus token after 3 accepted drafts, or a token of a later round) follows the
  // target's marginal. Power: with n = 30000 and cells near 1/8, moving 1 percentage point between
  // two cells gives a noncentrality of about n · 2 · 1e-4 / 0.125 = 48, which a 7-dof test at
  // p = 0.001 (critical 24.3) detects with probability above 0.99; checked below on the same counts.
  const chi4 = chiSquareOf(fourth, marginal4, n);
  const critical4 = chiSquareCritical(V - 1);
  assert.ok(chi4 < critical4, `4th token: chi-square ${chi4.toFixed(2)} (critical ${critical4.toFixed(1)})`);
  const shifted = Float64Array.from(marginal4);
  const hi = shifted.indexOf(Math.max(...shifted));
  const lo = shifted.indexOf(Math.min(...shifted));
  shifted[hi] -= 0.01;
  shifted[lo] += 0.01;
  assert.ok(chiSquareOf(fourth, shifted, n) > critical4, 'a 1-point shift of the 4th token would be detected');
  // Both paths of the ratio test ran many times, chains of accepted drafts formed, and the bonus
  // token (all 3 accepted) was emitted often.
  assert.ok(accepted > 5000 && drafted - accepted > 5000, `${accepted}/${drafted}`);
  assert.ok(lengths[2]! > 1000 && lengths[3]! > 1000, `rounds by accepted drafts: ${lengths.join(', ')}`);
});
