// Perplexity on the eval split, per window, within 0.5% of the PyTorch reference.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { perplexity } from '../../src/engine/eval.js';
import { loadModel } from '../../src/engine/model.js';
import { readJson, sharedPath } from '../helpers/shared.js';

const corpus = sharedPath('corpus/eval-moby-tail.txt');

for (const name of ['pdlm-5.8m', 'pdlm-5.8m-bf16']) {
  const dir = sharedPath(`models/${name}`);
  const skip = dir.skip || corpus.skip;
  test(`${name}: perplexity on every reference window within 0.5%`, { skip }, async () => {
    const ref = readJson(path.join(dir.path, 'reference.json')).perplexity;
    const model = await loadModel(dir.path, { contextLength: 1024 });
    const result = perplexity(model, fs.readFileSync(corpus.path, 'utf8'), 1024);
    assert.equal(result.tokens, ref.n_predicted);
    assert.equal(result.windows.length, ref.windows.length);
    for (const [i, w] of result.windows.entries()) {
      const r = ref.windows[i];
      assert.equal(w.start, r.text_token_start);
      assert.equal(w.nPredicted, r.n_predicted);
      const rel = Math.abs(w.perplexity - r.ppl) / r.ppl;
      assert.ok(rel < 0.005, `window ${i}: ppl ${w.perplexity} vs ${r.ppl} (${(rel * 100).toFixed(3)}%)`);
    }
    assert.ok(Math.abs(result.perplexity - ref.overall_ppl) / ref.overall_ppl < 0.005);
  });
}
