// Perplexity on the eval split, per window, within 1e-5 (relative) of the PyTorch reference.
// Measured 2026-12-01 on the native backend: worst window 8.7e-8 (F32) and 1.2e-7 (BF16), overall
// 1.8e-8; 1e-5 leaves room for other kernel paths' summation orders and nothing more.

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
  test(`${name}: perplexity on every reference window within 1e-5`, { skip }, async () => {
    const ref = readJson(path.join(dir.path, 'reference.json')).perplexity;
    const model = await loadModel(dir.path, { contextLength: 1024 });
    const result = await perplexity(model, fs.readFileSync(corpus.path, 'utf8'), 1024);
    assert.equal(result.tokens, ref.n_predicted);
    assert.equal(result.windows.length, ref.windows.length);
    for (const [i, w] of result.windows.entries()) {
      const r = ref.windows[i];
      assert.equal(w.start, r.text_token_start);
      assert.equal(w.nPredicted, r.n_predicted);
      const rel = Math.abs(w.perplexity - r.ppl) / r.ppl;
      assert.ok(rel < 1e-5, `window ${i}: ppl ${w.perplexity} vs ${r.ppl} (relative ${rel.toExponential(2)})`);
    }
    assert.ok(Math.abs(result.perplexity - ref.overall_ppl) / ref.overall_ppl < 1e-5);
  });
}

// The F16 cache (kv 'f16'): the same windows through F16 K/V rows. F16 rounds each element by up to
// 2^-11 relative, which moves these perplexities by about 1e-5 (measured 2026-12-01: worst window
// 1.2e-5); 1e-4 bounds that. The F32 cache must differ from it somewhere, or the mode did not
// read F16 rows.
{
  const dir = sharedPath('models/pdlm-5.8m');
  test('pdlm-5.8m: perplexity with the F16 cache within 1e-4 of the reference, and not the F32 cache\'s', { skip: dir.skip || corpus.skip }, async () => {
    const ref = readJson(path.join(dir.path, 'reference.json')).perplexity;
    const model = await loadModel(dir.path, { contextLength: 1024 });
    const text = fs.readFileSync(corpus.path, 'utf8');
    const f16 = await perplexity(model, text, 1024, undefined, 'f16');
    const f32 = await perplexity(model, text, 1024, undefined, 'fp');
    let differs = false;
    for (const [i, w] of f16.windows.entries()) {
      const rel = Math.abs(w.perplexity - ref.windows[i].ppl) / ref.windows[i].ppl;
      assert.ok(rel < 1e-4, `window ${i}: ppl ${w.perplexity} vs ${ref.windows[i].ppl} (relative ${rel.toExponential(2)})`);
      if (w.perplexity !== f32.windows[i]!.perplexity) differs = true;
    }
    assert.ok(differs, 'the F16 cache gave exactly the F32 cache\'s perplexities');
  });
}
