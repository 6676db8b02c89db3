// llama2.c's own reference output for stories260K (run.c -t 0 -n 64 -i "Once upon a time").

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel } from '../../src/engine/model.js';
import { sharedPath } from '../helpers/shared.js';
import { STORIES260K_GOLDEN } from '../helpers/reference.js';

const dir = sharedPath('models/stories260K');
const GOLDEN = STORIES260K_GOLDEN;

test('stories260K: files are the pinned ones', { skip: dir.skip }, () => {
  const sha = (f: string) => createHash('sha256').update(fs.readFileSync(path.join(dir.path, f))).digest('hex');
  assert.equal(sha('stories260K.bin'), 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696');
  assert.equal(sha('tok512.bin'), '037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312');
});

test('stories260K: prompt ids and the 64-step greedy golden', { skip: dir.skip }, async () => {
  const model = await loadModel(path.join(dir.path, 'stories260K.bin'));
  assert.deepEqual(
    [model.config.dim, model.config.hiddenDim, model.config.nLayers, model.config.nHeads, model.config.nKvHeads, model.config.vocabSize, model.config.trainedContextLength],
    [64, 172, 5, 8, 4, 512, 512],
  );
  const ids = model.tokenizer.encode('Once upon a time');
  assert.deepEqual(ids, [1, 403, 407, 261, 378]);
  // 64 steps = 64 positions: the 4 prompt tokens after BOS, then 60 generated tokens.
  const r = await model.complete('Once upon a time', { temperature: 0, maxTokens: 60 });
  assert.equal(r.generatedIds.length, 60);
  assert.equal(model.tokenizer.decode([...r.promptIds, ...r.generatedIds]), GOLDEN);
  assert.equal(`Once upon a time${r.text}`, GOLDEN);
});

test('stories260K: the model directory also loads (the .bin is found inside it)', { skip: dir.skip }, async () => {
  const model = await loadModel(dir.path);
  assert.equal(model.format, 'llama2c');
});
