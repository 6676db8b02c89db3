// llama.cpp loads the GGUF files `quantspec convert` writes and continues each prompt with the same
// greedy tokens as quantspec (32 tokens; reference prompts of every Hugging Face model in
// ../shared/models). Where the two engines part, the parting must be a numerical tie: the top two
// logits at the first differing position within 1e-3 of each other.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scoreSequence } from '../../src/engine/eval.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { convertHfToGguf } from '../../src/model/gguf-writer.js';
import { tmpDir } from '../helpers/hfdir.js';
import { llamaCppGreedy, openLlamaCpp } from '../helpers/llamacpp.js';
import { HF_REFERENCE_MODELS, readJson, sharedPath } from '../helpers/shared.js';

const N_TOKENS = 32;
const TIE = 1e-3;

/** The largest and second-largest logit after `ids`. */
function topTwo(model: Model, ids: number[]): [number, number] {
  let best: [number, number] = [-Infinity, -Infinity];
  scoreSequence(model, ids, (pos, row) => {
    if (pos !== ids.length - 1) return;
    let a = -Infinity;
    let b = -Infinity;
    for (const v of row) {
      if (v > a) [a, b] = [v, a];
      else if (v > b) b = v;
    }
    best = [a, b];
  });
  return best;
}

const oracle = openLlamaCpp();

for (const name of HF_REFERENCE_MODELS) {
  const dir = sharedPath(`models/${name}`);
  test(`${name}: llama.cpp runs our GGUF and agrees with quantspec on ${N_TOKENS} greedy tokens`, { skip: dir.skip }, async (t) => {
    const o = await oracle;
    if ('skip' in o) return t.skip(o.skip);
    const ref = readJson(path.join(dir.path, 'reference.json'));
    const prompts: number[][] = ref.prompts.map((p: any) => p.prompt_ids ?? p.input_ids);
    const longest = Math.max(...prompts.map((p) => p.length)) + N_TOKENS;
    const ours = await loadModel(dir.path, { contextLength: Math.max(256, longest), draft: false });

    const work = tmpDir();
    const file = path.join(work, 'model-f32.gguf');
    convertHfToGguf(dir.path, file, 'f32');
    try {
      const theirs = await llamaCppGreedy(o.llama, file, prompts, N_TOKENS);
      let exact = 0;
      for (let i = 0; i < prompts.length; i++) {
        const ids = prompts[i]!;
        const mine = (await ours.complete({ ids }, { spec: 'none', kv: 'fp', temperature: 0, maxTokens: N_TOKENS, ignoreEos: true })).generatedIds;
        assert.equal(theirs[i]!.length, N_TOKENS, 'llama.cpp produced fewer tokens than asked');
        const split = mine.findIndex((tok, j) => tok !== theirs[i]![j]);
        if (split < 0) {
          exact++;
          continue;
        }
        const [a, b] = topTwo(ours, [...ids, ...mine.slice(0, split)]);
        assert.ok(a - b < TIE, `prompt ${i}: llama.cpp and quantspec part at token ${split} (${theirs[i]![split]} vs ${mine[split]}) where the top two logits differ by ${a - b}, not a tie`);
      }
      // The reference prompts are not chosen to sit on ties: most must agree outright.
      assert.ok(exact >= prompts.length - 1, `only ${exact} of ${prompts.length} prompts agree token for token`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
}
