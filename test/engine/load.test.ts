// loadModel's progress and timings: one bar over reading, the draft and the repacking, ending at
// its total; the phases' times account for the load.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/engine/model.js';

test('load progress covers reading, the draft and the repacking; loadTimings split loadMs', async () => {
  const calls: [number, number][] = [];
  const model = await loadModel(undefined, { onLoadProgress: (done, total) => calls.push([done, total]) });
  assert.ok(calls.length > 3);
  const total = calls.at(-1)![1];
  assert.ok(calls.every(([, t]) => t === total), 'one total for the whole load');
  for (let i = 1; i < calls.length; i++) assert.ok(calls[i]![0] >= calls[i - 1]![0], `progress went back at call ${i}`);
  assert.equal(calls.at(-1)![0], total, 'the bar ends full');
  // three phases of about the weights' bytes each: the read ends at a third
  const afterRead = calls.filter(([d]) => d > total / 3 + 1);
  assert.ok(afterRead.length >= 2, 'the draft and repack phases report progress too');
  const t = model.loadTimings;
  for (const k of ['readMs', 'draftMs', 'repackMs', 'uploadMs'] as const) assert.ok(t[k] >= 0, k);
  assert.ok(t.readMs + t.draftMs + t.repackMs + t.uploadMs <= model.loadMs + 1e-6);
  assert.ok(t.draftMs > 0);

  const calls2: [number, number][] = [];
  const plain = await loadModel(undefined, { draft: false, onLoadProgress: (done, total) => calls2.push([done, total]) });
  assert.equal(calls2.at(-1)![0], calls2.at(-1)![1]);
  assert.equal(plain.draft, null);
  assert.ok(plain.loadTimings.draftMs < plain.loadTimings.readMs, 'no draft is built');
});
