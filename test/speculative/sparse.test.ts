// The sparse-KV self-speculation baselines: lossless against plain decoding over the F32 cache,
// and their drafts really read a sparse subset.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/engine/model.js';
import { collect } from '../../src/engine/session.js';
import { FpKvCache } from '../../src/kv/fp-cache.js';
import { sparseBudget } from '../../src/speculative/sparse.js';
import { randomTokens } from '../helpers/tiny.js';

test('StreamingLLM and SnapKV drafts: greedy output equals plain F32 decoding; selections are sparse', async () => {
  const model = await loadModel(undefined, { contextLength: 512 });
  const ids = [0, ...randomTokens(8, 200, 4096, 3)];
  const plain = await model.complete({ ids }, { spec: 'none', kv: 'fp', temperature: 0, maxTokens: 24, ignoreEos: true });
  // A 201-token prompt: the budget is a quarter, 50 positions. StreamingLLM keeps 4 sinks and the
  // newest 46; SnapKV observes the last 25 prompt positions (half the budget) from position 175
  // and keeps the 25 earlier positions they attend to most.
  const expected = {
    streaming: { count: 4, denseFrom: 4, recent: 46 },
    snapkv: { count: 25, denseFrom: 175, recent: 0 },
  } as const;
  for (const spec of ['streaming', 'snapkv'] as const) {
    const session = model.createSession({ spec, gamma: 2 });
    const r = await collect(session.generate({ ids }, { temperature: 0, maxTokens: 24, ignoreEos: true }));
    assert.deepEqual(r.generatedIds, plain.generatedIds, spec);
    assert.equal(r.decoding.kv, 'fp');
    assert.ok(r.stats!.rounds > 0);
    const cache = session.parts.cache;
    assert.ok(cache instanceof FpKvCache);
    for (const layer of cache.view('sparse').layers) {
      assert.ok(layer.kind === 'sparse');
      const sel = layer.selection;
      assert.deepEqual({ count: sel.count, denseFrom: sel.denseFrom, recent: sel.recent }, expected[spec], spec);
      // The last draft query (position 223) sees the selection plus its dense tail, far fewer than 224.
      const dense = sel.recent > 0 ? sel.recent : 223 - sel.denseFrom + 1;
      assert.ok(sel.count + dense <= 74, `${spec}: ${sel.count} + ${dense} positions`);
    }
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
