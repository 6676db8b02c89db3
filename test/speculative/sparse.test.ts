// The sparse-KV self-speculation baselines: lossless against plain decoding over the F32 cache,
// and their drafts really read a sparse subset.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/engine/model.js';
import { sparseBudget } from '../../src/speculative/sparse.js';
import { randomTokens } from '../helpers/tiny.js';

test('StreamingLLM and SnapKV drafts: greedy output equals plain F32 decoding; selections are sparse', async () => {
  const model = await loadModel(undefined, { contextLength: 512 });
  const ids = [0, ...randomTokens(8, 200, 4096, 3)];
  const plain = await model.complete({ ids }, { spec: 'none', kv: 'fp', temperature: 0, maxTokens: 24, ignoreEos: true });
  for (const spec of ['streaming', 'snapkv'] as const) {
    const r = await model.complete({ ids }, { spec, gamma: 2, temperature: 0, maxTokens: 24, ignoreEos: true });
    assert.deepEqual(r.generatedIds, plain.generatedIds, spec);
    assert.equal(r.decoding.kv, 'fp');
    assert.ok(r.stats!.rounds > 0);
  }
  assert.equal(sparseBudget(201), 50);
});

test('the sparse draft attends to its budget only (its logits differ from the full-cache target)', async () => {
  const model = await loadModel(undefined, { contextLength: 512 });
  const ids = [0, ...randomTokens(9, 300, 4096, 3)];
  const a = await model.complete({ ids }, { spec: 'snapkv', gamma: 4, temperature: 0, maxTokens: 30, ignoreEos: true });
  // A random-token prompt gives the sparse draft little to go on: some drafts must be rejected,
  // which would not happen if the draft secretly read the whole cache.
  assert.ok(a.stats!.accepted < a.stats!.drafted, `${a.stats!.accepted}/${a.stats!.drafted}`);
});
