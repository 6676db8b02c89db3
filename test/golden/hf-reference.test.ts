// Every Hugging Face model in ../shared/models with a reference.json (independent PyTorch outputs):
// prompt ids, greedy continuations, top-5 logits within 1e-3 at the listed positions.

import { test } from 'node:test';
import * as path from 'node:path';
import { loadModel } from '../../src/engine/model.js';
import { checkModel } from '../helpers/reference.js';
import { HF_REFERENCE_MODELS, readJson, sharedPath } from '../helpers/shared.js';

for (const name of HF_REFERENCE_MODELS) {
  const dir = sharedPath(`models/${name}`);
  test(`${name}: prompt ids, greedy tokens and top-5 logits match the PyTorch reference`, { skip: dir.skip }, async () => {
    const model = await loadModel(dir.path);
    await checkModel(model, readJson(path.join(dir.path, 'reference.json')));
  });
}
