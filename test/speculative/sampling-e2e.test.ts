// End to end through the engine: with temperature sampling, QuantSpec's first two emitted tokens
// follow the target's joint distribution (tiny random model built in code, real 4-bit draft).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCache, createDecoder, maxStepOf, resolveDecoding } from '../../src/speculative/modes.js';
import { collect, Session } from '../../src/engine/session.js';
import { computeLogits, createScratch, forward } from '../../src/model/forward.js';
import { buildDraftWeights, DEFAULT_DRAFT } from '../../src/quant/draft.js';
import { resolveSampling } from '../../src/sampling/params.js';
import { Sampler } from '../../src/sampling/sampler.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { gaussian, randomWeights, tinyConfig, tinyRuntime } from '../helpers/tiny.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import { mapMatrices } from '../../src/model/weights.js';

/** Chi-square critical value at p = 0.001 (Wilson-Hilferty approximation, accurate to ~1% here). */
function chiSquareCritical(dof: number): number {
  const z = 3.0902;
  return dof * (1 - 2 / (9 * dof) + z * Math.sqrt(2 / (9 * dof))) ** 3;
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
    const cache = createCache(plan, config, rt.backend, 64, 8);
    const s = createScratch(config, 8, 8, 64);
    let last = 0;
    for (let pos = 0; pos < ids.length; ) {
      cache.flush();
      const n = Math.min(8, ids.length - pos, cache.room);
      forward(rt, target, cache, 'int8', ids, pos, n, s);
      pos += n;
      last = n - 1;
    }
    const out = new Float32Array(config.vocabSize);
    sampler.distribution(out, computeLogits(rt, target, s, last, 1));
    return out;
  };
  const q0 = dist(prompt);
  const cells = new Map<string, number>();
  for (let a = 0; a < config.vocabSize; a++) {
    if (q0[a]! === 0) continue;
    const q1 = dist([...prompt, a]);
    for (let b = 0; b < config.vocabSize; b++) if (q1[b]! > 0) cells.set(`${a},${b}`, q0[a]! * q1[b]!);
  }
  assert.equal(cells.size, 64);

  const cache = createCache(plan, config, rt.backend, 64, 8);
  const session = new Session({
    rt, target, tokenizer: fakeTokenizer(config.vocabSize),
    cache, targetView: 'int8',
    decoder: createDecoder(plan, config, cache, target, draft), plan, contextLength: 64, prefillChunk: 8, maxStep: maxStepOf(plan),
  });
  const counts = new Map<string, number>();
  const n = 20000;
  let drafted = 0;
  let accepted = 0;
  for (let i = 0; i < n; i++) {
    const r = await collect(session.generate({ ids: prompt }, { ...sampling, seed: i, maxTokens: 2 }));
    const key = r.generatedIds.join(',');
    counts.set(key, (counts.get(key) ?? 0) + 1);
    drafted += r.stats!.drafted;
    accepted += r.stats!.accepted;
  }
  // Chi-square over the pairs, pooling cells expected below 5 draws into one.
  let chi = 0;
  let cellsUsed = 0;
  let pooledP = 0;
  let pooledCount = 0;
  for (const [key, p] of cells) {
    const c = counts.get(key) ?? 0;
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
  const outside = [...counts.entries()].filter(([k]) => !cells.has(k));
  assert.deepEqual(outside, [], 'no pair outside the target support');
  const critical = chiSquareCritical(cellsUsed - 1);
  assert.ok(chi < critical, `chi-square ${chi.toFixed(2)} over ${cellsUsed} cells (critical ${critical.toFixed(1)})`);
  // Both paths of the ratio test ran many times.
  assert.ok(accepted > 500 && drafted - accepted > 500, `${accepted}/${drafted}`);
});
