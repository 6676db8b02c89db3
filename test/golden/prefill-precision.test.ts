// The prompt precision contract (README "Precision"): prompt passes of BF16 and F16 models may round
// the activations of their matmuls to BF16 (Backend.matmulPrompt; the weights stay exact, sums are
// F32). What that may cost: perplexity on held-out text within 0.1% of the exact path's, and the
// same greedy tokens. Measured 2026-12-02 on AMX over eval-moby-tail (20,071 tokens): pdlm-5.8m-bf16
// 170.6331 exact, 170.6339 with BF16 activations (+0.0005%); the F16 GGUF 170.6360 and 170.6310
// (-0.0029%). The two paths must also differ somewhere, or the prompt path did not run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { perplexity } from '../../src/engine/eval.js';
import { loadModel, type Model, type ModelGenerateOptions } from '../../src/engine/model.js';
import type { GenerationResult } from '../../src/engine/session.js';
import { convertHfToGguf } from '../../src/model/gguf-writer.js';
import { sharedPath } from '../helpers/shared.js';

const corpus = sharedPath('corpus/eval-moby-tail.txt');
const bf16Dir = sharedPath('models/pdlm-5.8m-bf16');
const f32Dir = sharedPath('models/pdlm-5.8m');

/**
 * Whether prompt passes of this model take the BF16-activation path at all: the backend has one and
 * takes this model's weight dtype (the AVX-512 BF16 path leaves F16 weights to the exact matmul).
 */
function hasPromptPath(m: Model): boolean {
  const w = m.target.layers[0]!.wq;
  const [rows, cols] = w.shape;
  if (m.backend.matmulPrompt?.(new Float32Array(rows!), new Float32Array(cols!), w, 1)) return true;
  process.stderr.write(`# NOTE: backend ${m.backend.name} takes no ${w.dtype} weights in a BF16 prompt matmul; both paths are the exact one here\n`);
  return false;
}

async function checkPerplexity(modelPath: string): Promise<void> {
  const model = await loadModel(modelPath, { contextLength: 1024, draft: false });
  const text = fs.readFileSync(corpus.path, 'utf8');
  const exact = await perplexity(model, text, 1024, undefined, 'fp', 'exact');
  const prompt = await perplexity(model, text, 1024, undefined, 'fp', 'prompt');
  const rel = Math.abs(prompt.perplexity / exact.perplexity - 1);
  assert.ok(rel < 1e-3, `perplexity ${prompt.perplexity} with BF16 activations vs ${exact.perplexity} exact (relative ${rel.toExponential(2)})`);
  if (hasPromptPath(model)) assert.notEqual(prompt.perplexity, exact.perplexity, 'the prompt passes gave exactly the exact perplexity');
}

test('pdlm-5.8m-bf16: perplexity with BF16 prompt activations within 0.1% of the exact path', { skip: bf16Dir.skip || corpus.skip }, async () => {
  await checkPerplexity(bf16Dir.path);
});

test('pdlm-5.8m as F16 GGUF: perplexity with BF16 prompt activations within 0.1% of the exact path', { skip: f32Dir.skip || corpus.skip }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quantspec-f16-'));
  try {
    const file = path.join(dir, 'pdlm-f16.gguf');
    convertHfToGguf(f32Dir.path, file, 'f16');
    await checkPerplexity(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The result of a streamed completion and the log-probability of its first token. */
async function withFirstLogprob(m: Model, prompt: string, opts: ModelGenerateOptions): Promise<{ result: GenerationResult; first: number }> {
  const it = m.generate(prompt, opts);
  let first: number | null = null;
  for (;;) {
    const step = await it.next();
    if (step.done) return { result: step.value, first: first! };
    if (first === null && step.value.logprobs?.length) first = step.value.logprobs[0]!.logprob;
  }
}

test('pdlm-5.8m-bf16: the same greedy tokens with BF16 and F32 prompt activations, from prompts the prefill really ran', { skip: bf16Dir.skip || corpus.skip }, async () => {
  const text = fs.readFileSync(corpus.path, 'utf8');
  const fast = await loadModel(bf16Dir.path, { contextLength: 1024, draft: false });
  const exact = await loadModel(bf16Dir.path, { contextLength: 1024, draft: false, prefillActivations: 'f32' });
  const ran = hasPromptPath(fast);
  let moved = false;
  for (const at of [0, 20000, 40000]) {
    const prompt = text.slice(at, at + 1500);
    const opts = { temperature: 0, maxTokens: 32, ignoreEos: true, logprobs: 1, spec: 'none', kv: 'int8' } as const;
    const a = await withFirstLogprob(fast, prompt, opts);
    const b = await withFirstLogprob(exact, prompt, opts);
    assert.ok(a.result.promptIds.length > 200, `prompt of ${a.result.promptIds.length} tokens`);
    assert.deepEqual(a.result.generatedIds, b.result.generatedIds, `greedy continuation at ${at}`);
    if (a.first !== b.first) moved = true;
  }
  if (ran) assert.ok(moved, 'the first token\'s log-probability is the same on both paths: the prefill did not take BF16 activations');
});

test('prefillActivations: other values get a named error', async () => {
  await assert.rejects(loadModel(undefined, { prefillActivations: 'f16' as never }), { name: 'InvalidArgumentError', message: /prefillActivations must be 'bf16' or 'f32'/ });
});
