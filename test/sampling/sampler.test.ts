import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import { resolveSampling } from '../../src/sampling/params.js';
import { Sampler } from '../../src/sampling/sampler.js';

const logits = Float32Array.from([Math.log(0.1), Math.log(0.2), Math.log(0.3), Math.log(0.4)]);
const OFF = { topK: 0, topP: 1, minP: 0 };

function dist(params: object, l = logits): number[] {
  const s = new Sampler(resolveSampling(params), l.length);
  const out = new Float32Array(l.length);
  s.distribution(out, Float32Array.from(l));
  return Array.from(out, (x) => Math.round(x * 1e6) / 1e6);
}

test('temperature 1 with no filters reproduces the softmax; temperature 0 is one-hot argmax', () => {
  assert.deepEqual(dist({ temperature: 1, ...OFF }), [0.1, 0.2, 0.3, 0.4]);
  assert.deepEqual(dist({ temperature: 0 }), [0, 0, 0, 1]);
  // T = 0.5 squares the probabilities before renormalising.
  const sq = [0.01, 0.04, 0.09, 0.16].map((x) => Math.round((x / 0.3) * 1e6) / 1e6);
  assert.deepEqual(dist({ temperature: 0.5, ...OFF }), sq);
});

test('top-k, top-p and min-p keep the expected tokens and renormalise', () => {
  assert.deepEqual(dist({ temperature: 1, ...OFF, topK: 2 }), [0, 0, 0.428571, 0.571429]);
  // top-p 0.7: 0.4 + 0.3 reaches 0.7 -> keep two.
  assert.deepEqual(dist({ temperature: 1, ...OFF, topP: 0.7 }), [0, 0, 0.428571, 0.571429]);
  // top-p 0.71 needs the third token.
  assert.deepEqual(dist({ temperature: 1, ...OFF, topP: 0.71 }), [0, 0.222222, 0.333333, 0.444444]);
  // min-p 0.5 keeps tokens with p >= 0.2.
  assert.deepEqual(dist({ temperature: 1, ...OFF, minP: 0.5 }), [0, 0.222222, 0.333333, 0.444444]);
});

test('repetition, presence and frequency penalties change only the recent tokens', () => {
  const s = new Sampler(resolveSampling({ repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25, penaltyWindow: 3 }), 4);
  const l = Float32Array.from([1, -1, 2, 3]);
  s.applyPenalties(l, [3, 0, 1, 1], 4); // window = last 3: [0, 1, 1]
  assert.deepEqual(Array.from(l), [1 / 2 - 0.5 - 0.25, -1 * 2 - 0.5 - 0.5, 2, 3]);
});

test('sampling is reproducible with a seed and follows the distribution', () => {
  const s = new Sampler(resolveSampling({ temperature: 1, ...OFF }), 4);
  const probs = new Float32Array(4);
  s.distribution(probs, logits);
  const draw = (seed: number) => {
    const rng = new Xoshiro128(seed);
    return Array.from({ length: 50 }, () => s.sample(probs, rng));
  };
  assert.deepEqual(draw(1), draw(1));
  const rng = new Xoshiro128(3);
  const counts = [0, 0, 0, 0];
  const n = 100000;
  for (let i = 0; i < n; i++) counts[s.sample(probs, rng)]!++;
  const chi2 = counts.reduce((acc, c, i) => acc + (c - n * [0.1, 0.2, 0.3, 0.4][i]!) ** 2 / (n * [0.1, 0.2, 0.3, 0.4][i]!), 0);
  assert.ok(chi2 < 16.27, `chi2 ${chi2} (3 dof, p = 0.001)`);
});

test('invalid sampling parameters are InvalidArgumentError naming the parameter', () => {
  const bad: [object, string][] = [
    [{ temperature: -1 }, 'temperature'], [{ topP: 0 }, 'topP'], [{ topP: 1.5 }, 'topP'], [{ topK: -2 }, 'topK'],
    [{ topK: 2.5 }, 'topK'], [{ minP: 2 }, 'minP'], [{ repetitionPenalty: 0 }, 'repetitionPenalty'],
    [{ temperature: NaN }, 'temperature'], [{ presencePenalty: 3 }, 'presencePenalty'],
  ];
  for (const [p, name] of bad) {
    assert.throws(() => resolveSampling(p), (e: unknown) => e instanceof InvalidArgumentError && e.param === name, JSON.stringify(p));
  }
});
