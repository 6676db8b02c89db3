// Continuous batching: sessions that step at the same time share one forward pass, and each gets
// exactly the tokens it gets alone (greedy, plain and QuantSpec, mixed prompt lengths and KV modes).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/engine/model.js';
import { collect } from '../../src/engine/session.js';
import { sharedPath } from '../helpers/shared.js';

const pdlm = sharedPath('models/pdlm-5.8m');

test('pdlm: four sessions decoding together in batches give each session\'s own tokens', { skip: pdlm.skip }, async () => {
  const model = await loadModel(pdlm.path, { contextLength: 512 });
  const prompts = ['The sea was calm', 'Call me Ishmael. Some years ago', 'It is a truth universally acknowledged', 'She'];
  const modes = [{ spec: 'none', kv: 'int8' }, { spec: 'none', kv: 'f16' }, { spec: 'quantspec', gamma: 3 }, { spec: 'quantspec', gamma: 'auto' }] as const;
  const opts = (i: number) => ({ temperature: 0, maxTokens: 60 + 10 * i, ignoreEos: true });
  const alone = [];
  for (let i = 0; i < 4; i++) alone.push(await collect(model.createSession({ contextLength: 512, ...modes[i]! }).generate(prompts[i]!, opts(i))));
  const batcher = model.createBatcher(4);
  const together = await Promise.all(prompts.map((p, i) => collect(model.createSession({ contextLength: 512, ...modes[i]!, batcher }).generate(p, opts(i)))));
  for (let i = 0; i < 4; i++) assert.deepEqual(together[i]!.generatedIds, alone[i]!.generatedIds, `session ${i} (${JSON.stringify(modes[i])})`);
  // The steps really were batched: most of the 4 × 60+ steps ran in batches of several sequences.
  assert.ok(batcher.batches > 40, `batches: ${batcher.batches}`);
  assert.ok(batcher.batchedSteps > 2 * batcher.batches, `${batcher.batchedSteps} steps in ${batcher.batches} batches`);
  // Speculating sessions took plain steps while batched (the stated policy), and rounds when alone.
  assert.ok(together[2]!.stats!.plainSteps > 0);
  assert.ok(alone[2]!.stats!.plainSteps === 0 && alone[2]!.stats!.rounds > 0);
});
