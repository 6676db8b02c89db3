// Every architecture path, on tiny random configs built in code: a batched prefill and
// token-by-token decoding must give the same logits.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ModelConfig } from '../../src/model/config.js';
import type { WeightSet } from '../../src/model/weights.js';
import type { WeightTensor } from '../../src/quant/format.js';
import { bf16ToF32, f16ToF32 } from '../../src/core/half.js';
import { allLogits, maxAbsDiff, randomTokens, randomWeights, tinyConfig, tinyRuntime } from '../helpers/tiny.js';

const CASES: [string, Partial<ModelConfig>][] = [
  ['llama MHA (GQA ratio 1), tied head', { nHeads: 4, nKvHeads: 4 }],
  ['llama GQA ratio 2, untied head', { nHeads: 4, nKvHeads: 2, tiedEmbeddings: false }],
  ['llama GQA ratio 4', { nHeads: 8, nKvHeads: 2, headDim: 4 }],
  ['head_dim not hidden/heads', { nHeads: 4, nKvHeads: 2, headDim: 12 }],
  ['llama3 rope scaling', { ropeTheta: 500000, ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 } }],
  ['linear rope scaling', { ropeScaling: { type: 'linear', factor: 4 } }],
  ['qwen2 qkv bias', { arch: 'qwen2', qkvBias: true, ropeTheta: 1e6 }],
  ['qwen3 q/k norm', { arch: 'qwen3', qkNorm: true, headDim: 16, ropeTheta: 1e6 }],
  ['mistral sliding window', { arch: 'mistral', slidingWindow: 7, nHeads: 8, nKvHeads: 2, headDim: 4 }],
  ['llama2.c interleaved rope', { ropeStyle: 'interleaved' }],
];

for (const [name, over] of CASES) {
  test(`batched prefill equals token-by-token decoding: ${name}`, () => {
    const c = tinyConfig(over);
    const rt = tinyRuntime(c);
    const w = randomWeights(c, 11);
    const ids = randomTokens(3, 29, c.vocabSize);
    const oneByOne = allLogits(rt, w, ids, 1);
    for (const chunk of [29, 8]) {
      const batched = allLogits(rt, w, ids, chunk);
      const d = maxAbsDiff(oneByOne, batched);
      assert.ok(d < 1e-4, `chunk ${chunk}: max |diff| ${d}`);
    }
    // The logits are not degenerate (a broken forward that outputs constants would also "match").
    let spread = 0;
    for (let i = 1; i < c.vocabSize; i++) spread = Math.max(spread, Math.abs(oneByOne[i]! - oneByOne[0]!));
    assert.ok(spread > 0.5, `logit spread ${spread}`);
  });
}

test('architecture switches change the output (the paths are really taken)', () => {
  const ids = randomTokens(5, 12, 64);
  const base = tinyConfig();
  const w = randomWeights(base, 2);
  const ref = allLogits(tinyRuntime(base), w, ids, 12);
  const variants: Partial<ModelConfig>[] = [
    { ropeStyle: 'interleaved' },
    { ropeScaling: { type: 'linear', factor: 4 } },
    { slidingWindow: 4 },
  ];
  for (const v of variants) {
    const c = tinyConfig(v);
    const d = maxAbsDiff(ref, allLogits(tinyRuntime(c), w, ids, 12));
    assert.ok(d > 1e-2, `${JSON.stringify(v)} changed logits by only ${d}`);
  }
  // A sliding window wider than the sequence is the same as full attention.
  const wide = allLogits(tinyRuntime(tinyConfig({ slidingWindow: 64 })), w, ids, 12);
  assert.ok(maxAbsDiff(ref, wide) < 1e-6);
});

/** The same weights with every 16-bit matrix widened to f32 (exactly). */
function upcast(w: WeightSet): WeightSet {
  const wide = (t: WeightTensor): WeightTensor => {
    if (t.dtype !== 'f16' && t.dtype !== 'bf16') return t;
    const decode = t.dtype === 'f16' ? f16ToF32 : bf16ToF32;
    return { dtype: 'f32', shape: t.shape, data: Float32Array.from(t.data, decode) };
  };
  const tokEmbed = wide(w.tokEmbed);
  return {
    tokEmbed,
    lmHead: w.lmHead === w.tokEmbed ? tokEmbed : wide(w.lmHead),
    finalNorm: w.finalNorm,
    layers: w.layers.map((l) => ({ ...l, wq: wide(l.wq), wk: wide(l.wk), wv: wide(l.wv), wo: wide(l.wo), w1: wide(l.w1), w2: wide(l.w2), w3: wide(l.w3) })),
  };
}

test('f16 and bf16 weights give the same logits as their exact f32 upcast', () => {
  const c = tinyConfig();
  const ids = randomTokens(9, 10, c.vocabSize);
  for (const dtype of ['f16', 'bf16'] as const) {
    const w16 = randomWeights(c, 4, dtype);
    assert.equal(w16.layers[0]!.wq.dtype, dtype);
    const d = maxAbsDiff(allLogits(tinyRuntime(c), w16, ids, 10), allLogits(tinyRuntime(c), upcast(w16), ids, 10));
    assert.ok(d < 1e-4, `${dtype}: ${d}`);
  }
});
