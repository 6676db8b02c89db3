// Losslessness: greedy QuantSpec produces exactly the tokens of plain decoding over the same INT8
// cache, for every model in ../shared/models and prompts of several lengths (including prompts
// longer than 2G, so flushes happen during prefill and generation). And with draft = target,
// every draft token is accepted.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { createCache, maxStepOf } from '../../src/speculative/modes.js';
import { loadModel } from '../../src/engine/model.js';
import { collect, Session } from '../../src/engine/session.js';
import { Decoder } from '../../src/speculative/decoder.js';
import { sharedPath } from '../helpers/shared.js';
import { corpus, greedy, MODELS, prompts } from '../helpers/lossless.js';

for (const m of MODELS) {
  const dir = sharedPath(`models/${m.name}`);
  test(`${m.name}: greedy QuantSpec == plain decoding over the INT8 cache`, { skip: dir.skip || corpus.skip }, async () => {
    for (const keyGroupSize of m.groups) {
      const model = await loadModel(m.file ? path.join(dir.path, m.file) : dir.path, { keyGroupSize, contextLength: 512 });
      for (const ids of prompts(model, m.long)) {
        const plain = await greedy(model, ids, { spec: 'none', kv: 'int8' }, 40);
        for (const gamma of [3, 'auto'] as const) {
          const spec = await greedy(model, ids, { spec: 'quantspec', gamma }, 40);
          assert.deepEqual(spec.generatedIds, plain.generatedIds, `G ${keyGroupSize}, prompt of ${ids.length}, gamma ${gamma}`);
          assert.ok(spec.stats!.rounds > 0, `G ${keyGroupSize}, prompt of ${ids.length}, gamma ${gamma}: no speculative round`);
        }
      }
    }
  });
}

test('draft = target (full weights, INT8 view): every draft is accepted', { skip: sharedPath('models/pdlm-5.8m').skip || corpus.skip }, async () => {
  const model = await loadModel(sharedPath('models/pdlm-5.8m').path, { contextLength: 512, keyGroupSize: 16 });
  const plan = model.plan({ spec: 'quantspec', gamma: 4 });
  const decoder = new Decoder({ name: 'self', weights: model.target, view: 'int8' }, model.config.vocabSize, { gamma: 4, maxGamma: 4 });
  const session = new Session({
    rt: model.runtime, target: model.target, tokenizer: model.tokenizer,
    cache: createCache(plan, model.config, model.kvStorage, 512, model.prefillChunk),
    targetView: 'int8', decoder, plan, contextLength: 512, prefillChunk: model.prefillChunk, maxStep: maxStepOf(plan),
  });
  for (const ids of prompts(model, 200)) {
    const r = await collect(session.generate({ ids }, { temperature: 0, maxTokens: 41, ignoreEos: true }));
    assert.equal(r.stats!.drafted, r.stats!.accepted, `prompt of ${ids.length}: ${r.stats!.accepted}/${r.stats!.drafted}`);
    assert.equal(r.stats!.acceptanceRate, 1);
    const plain = await greedy(model, ids, { spec: 'none', kv: 'int8' }, 41);
    assert.deepEqual(r.generatedIds, plain.generatedIds);
  }
  // Control: the real 4-bit draft with the INT4 view is rejected sometimes on the same prompts,
  // so full acceptance above is a property of draft = target, not of the test.
  let rejected = 0;
  for (const ids of prompts(model, 200)) {
    const real = await greedy(model, ids, { spec: 'quantspec', gamma: 4 }, 41);
    rejected += real.stats!.drafted - real.stats!.accepted;
  }
  assert.ok(rejected > 0);
});
