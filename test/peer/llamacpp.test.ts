// llama.cpp loads the GGUF files `quantspec convert` writes and continues each prompt with the same
// greedy tokens as quantspec (32 tokens; reference prompts of every Hugging Face model in
// ../shared/models). Where the two engines part, the parting must be a numerical tie: the top two
// logits at the first differing position within 1e-3 of each other. Also: llama.cpp runs our
// `convert --dtype q4_0` file with our greedy tokens, and reads hand-built Q4_1 and Q6_K tensors as
// the values their encoder says they hold (partings only where llama.cpp's own top two tie).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scoreSequence } from '../../src/engine/eval.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { convertHfToGguf } from '../../src/model/gguf-writer.js';
import { readGguf, readGgufTensor } from '../../src/model/gguf.js';
import { tmpDir } from '../helpers/hfdir.js';
import { llamaCppGreedy, llamaCppTopGap, openLlamaCpp } from '../helpers/llamacpp.js';
import { ENCODERS } from '../helpers/ggml-blocks.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import type { GgufTensorOut } from '../../src/model/gguf-writer.js';
import { HF_REFERENCE_MODELS, readJson, sharedPath } from '../helpers/shared.js';

const N_TOKENS = 32;
const TIE = 1e-3;

/** The largest and second-largest logit after `ids`. */
async function topTwo(model: Model, ids: number[]): Promise<[number, number]> {
  let best: [number, number] = [-Infinity, -Infinity];
  await scoreSequence(model, ids, (pos, row) => {
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
    // llama.cpp runs an F32 copy, so ours takes F32 activations everywhere too (the BF16 prompt
    // path of BF16/F16 models is checked against PyTorch in test/golden instead).
    const ours = await loadModel(dir.path, { contextLength: Math.max(256, longest), draft: false, prefillActivations: 'f32' });

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
        const [a, b] = await topTwo(ours, [...ids, ...mine.slice(0, split)]);
        assert.ok(a - b < TIE, `prompt ${i}: llama.cpp and quantspec part at token ${split} (${theirs[i]![split]} vs ${mine[split]}) where the top two logits differ by ${a - b}, not a tie`);
      }
      // The reference prompts are not chosen to sit on ties: most must agree outright.
      assert.ok(exact >= prompts.length - 1, `only ${exact} of ${prompts.length} prompts agree token for token`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
}

/**
 * llama.cpp computes 4-bit products with its activations rounded to 8 bits (Q8_0 / Q8_1 / Q8_K),
 * so where the exact products part from its own, the parting must sit where llama.cpp's two most
 * likely tokens are this close (in logits). Measured at the one parting on pdlm q4_0: 0.0043.
 */
const QUANT_TIE = 0.02;

/** Greedy tokens of quantspec on `ourFile` against llama.cpp on `theirFile`; a parting must be a llama.cpp tie. */
async function agree(o: { llama: Parameters<typeof llamaCppGreedy>[0] }, ourFile: string, theirFile: string, prompts: number[][], label: string): Promise<number> {
  const longest = Math.max(...prompts.map((p) => p.length)) + N_TOKENS;
  const ours = await loadModel(ourFile, { contextLength: Math.max(256, longest), draft: false });
  const theirs = await llamaCppGreedy(o.llama, theirFile, prompts, N_TOKENS);
  let exact = 0;
  for (let i = 0; i < prompts.length; i++) {
    const ids = prompts[i]!;
    const mine = (await ours.complete({ ids }, { spec: 'none', kv: 'fp', temperature: 0, maxTokens: N_TOKENS, ignoreEos: true })).generatedIds;
    const split = mine.findIndex((tok, j) => tok !== theirs[i]![j]);
    if (split < 0) {
      exact++;
      continue;
    }
    const gap = await llamaCppTopGap(o.llama, theirFile, [...ids, ...mine.slice(0, split)]);
    assert.ok(gap < QUANT_TIE, `${label}, prompt ${i}: the engines part at token ${split} where llama.cpp's own top two logits differ by ${gap.toFixed(4)}, not a tie`);
  }
  return exact;
}

const pdlm = sharedPath('models/pdlm-5.8m');

/** pdlm converted to a `dtype` GGUF in a scratch folder, its reference prompts, then removed. */
async function withPdlmGguf(dtype: 'q4_0' | 'q8_0', body: (file: string, prompts: number[][]) => Promise<void>): Promise<void> {
  const prompts: number[][] = readJson(path.join(pdlm.path, 'reference.json')).prompts.map((p: any) => p.prompt_ids ?? p.input_ids);
  const work = tmpDir();
  const file = path.join(work, `model-${dtype}.gguf`);
  convertHfToGguf(pdlm.path, file, dtype);
  try {
    await body(file, prompts);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

test('pdlm-5.8m q4_0: llama.cpp runs our quantized GGUF with quantspec\'s greedy tokens (partings only at llama.cpp ties)', { skip: pdlm.skip }, async (t) => {
  const o = await oracle;
  if ('skip' in o) return t.skip(o.skip);
  await withPdlmGguf('q4_0', async (file, prompts) => {
    const exact = await agree(o, file, file, prompts, 'q4_0');
    assert.ok(exact >= prompts.length - 1, `only ${exact} of ${prompts.length} prompts agree token for token`);
  });
});

test('pdlm-5.8m q8_0: llama.cpp runs our 8-bit GGUF with quantspec\'s greedy tokens, quantspec running its blocks as they are (partings only at llama.cpp ties)', { skip: pdlm.skip }, async (t) => {
  const o = await oracle;
  if ('skip' in o) return t.skip(o.skip);
  await withPdlmGguf('q8_0', async (file, prompts) => {
    const w = readGgufTensor(readGguf(file), 'blk.0.ffn_up.weight');
    assert.ok(w.dtype === 'q8' && w.packing === 'blocks32', `a Q8_0 matrix loads as ${w.dtype}, not dequantized`);
    const exact = await agree(o, file, file, prompts, 'q8_0');
    assert.ok(exact >= prompts.length - 1, `only ${exact} of ${prompts.length} prompts agree token for token`);
  });
});

test('hand-built Q4_1 and Q6_K tensors: llama.cpp reads them as the values they encode', { skip: pdlm.skip }, async (t) => {
  const o = await oracle;
  if ('skip' in o) return t.skip(o.skip);
  const prompts: number[][] = readJson(path.join(pdlm.path, 'reference.json')).prompts.map((p: any) => p.prompt_ids ?? p.input_ids);
  for (const kind of ['Q4_1', 'Q6_K'] as const) {
    const [type, encode] = ENCODERS[kind];
    const block = kind === 'Q6_K' ? 256 : 32;
    const work = tmpDir();
    const quantized = path.join(work, `${kind}.gguf`);
    const twin = path.join(work, `${kind}-f32.gguf`);
    const values = new Map<string, Float32Array>();
    convertHfToGguf(pdlm.path, quantized, 'f32', (name, tensor: DenseTensor): GgufTensorOut | null => {
      if (tensor.dtype !== 'f32' || tensor.shape.length !== 2 || tensor.shape[1]! % block !== 0) return null;
      const e = encode(tensor.data);
      values.set(name, e.values);
      return { name, shape: tensor.shape, type, bytes: e.bytes };
    });
    assert.ok(values.size > 0, kind);
    // The F32 twin holds exactly the values the encoder says the blocks mean; quantspec runs it.
    convertHfToGguf(pdlm.path, twin, 'f32', (name, tensor) => {
      const v = values.get(name);
      return v ? { name, shape: tensor.shape, type: 0, bytes: new Uint8Array(v.buffer) } : null;
    });
    try {
      const exact = await agree(o, twin, quantized, prompts, kind);
      assert.ok(exact >= prompts.length - 1, `${kind}: only ${exact} of ${prompts.length} prompts agree token for token`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }
});
