// The PyTorch reference check of a Hugging Face model in ../shared/models (its reference.json):
// prompt ids, greedy continuations, top-5 logits within 1e-3 at the listed positions. Shared by the
// CPU golden tests and the WebGPU backend's.

import assert from 'node:assert/strict';
import { scoreSequence } from '../../src/engine/eval.js';
import type { Model } from '../../src/engine/model.js';

/** llama2.c's own output for stories260K (run.c -t 0 -n 64 -i "Once upon a time"). */
export const STORIES260K_GOLDEN =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily';

const LOGIT_TOL = 1e-3;

type Top5 = [number, number][];

interface NormalizedPrompt {
  text?: string;
  ids: number[];
  greedy: number[];
  /** top1 - top2 margin at each greedy step. */
  margins: number[];
  /** [position, top5] pairs to check. */
  top5: [number, Top5][];
  /** All logits at the last prompt position, when given. */
  lastLogits?: number[];
}

function normalize(p: any): NormalizedPrompt {
  if (p.prompt_ids) {
    const P = p.prompt_ids.length;
    return {
      text: p.prompt,
      ids: p.prompt_ids,
      greedy: p.generated_ids,
      margins: p.top1_top2_logit_margin_per_step,
      // Short prompts list negative positions: Python indexing from the end of prompt + generated.
      top5: [...p.top5_last_prompt_positions, ...p.top5_first_generated_positions].map((e: any) => {
        const seqLen = P + p.generated_ids.length;
        const pos = e.position < 0 ? seqLen + e.position : e.position;
        const token = pos < P ? p.prompt_ids[pos] : p.generated_ids[pos - P];
        assert.equal(token, e.input_token, `reference position ${e.position} holds token ${e.input_token}`);
        return [pos, e.top5];
      }),
      lastLogits: p.all_logits_last_prompt_position,
    };
  }
  const P = p.input_ids.length;
  return {
    ids: p.input_ids,
    greedy: p.greedy_new_tokens,
    margins: p.greedy_top2_gap,
    top5: [
      ...p.top5_prompt.map((t: Top5, i: number) => [i, t]),
      ...p.top5_generated.map((t: Top5, j: number) => [P + j, t]),
    ],
    lastLogits: p.last_logits,
  };
}

export async function checkModel(model: Model, ref: any): Promise<void> {
  for (const raw of ref.prompts) {
    const p = normalize(raw);
    if (p.text !== undefined) assert.deepEqual(model.tokenizer.encode(p.text), p.ids, `encoding of ${JSON.stringify(p.text)}`);
    const r = await model.complete({ ids: p.ids }, { temperature: 0, maxTokens: p.greedy.length, ignoreEos: true });
    // Exact match, except that a numerical tie (margin below our tolerance) may go either way:
    // compare up to the first such step.
    let upTo = p.greedy.length;
    const tie = p.margins.findIndex((m) => m < 1e-4);
    if (tie >= 0) upTo = tie;
    assert.deepEqual(r.generatedIds.slice(0, upTo), p.greedy.slice(0, upTo), `greedy continuation of prompt ${JSON.stringify(p.ids.slice(0, 8))}`);

    const seq = [...p.ids, ...p.greedy];
    const wanted = new Map(p.top5);
    let worst = 0;
    let checked = 0;
    await scoreSequence(model, seq, (pos, row) => {
      const top5 = wanted.get(pos);
      if (top5) {
        for (const [id, logit] of top5) worst = Math.max(worst, Math.abs(row[id]! - logit));
        checked++;
      }
      if (pos === p.ids.length - 1 && p.lastLogits) {
        for (let i = 0; i < p.lastLogits.length; i++) worst = Math.max(worst, Math.abs(row[i]! - p.lastLogits[i]!));
      }
    });
    assert.equal(checked, wanted.size);
    assert.ok(worst < LOGIT_TOL, `max |logit - reference| = ${worst}`);
  }
}

