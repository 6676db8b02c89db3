// The engine on the WebGPU backend (loadModel's backend 'webgpu', --backend webgpu): the golden
// tests (stories260K's llama2.c output, every Hugging Face model's PyTorch reference) and the
// losslessness tests run on the GPU, with the weights, the activations and the KV cache (rows,
// planes, the quantizer, flushes, rollback, checkpoints) on it. In CI the adapter is Mesa
// lavapipe (.ci/run installs it): a missing adapter fails there and skips elsewhere.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { BackendUnavailableError, InvalidArgumentError } from '../../src/core/errors.js';
import { loadModel } from '../../src/engine/model.js';
import { collect } from '../../src/engine/session.js';
import { openGpu } from '../../src/kernels/webgpu/device.js';
import { createScratch, forward } from '../../src/model/forward.js';
import { createCache } from '../../src/speculative/modes.js';
import { inCi } from '../helpers/ci.js';
import { corpus, greedy, MODELS, prompts } from '../helpers/lossless.js';
import { checkModel, STORIES260K_GOLDEN } from '../helpers/reference.js';
import { startServer } from '../helpers/server.js';
import { HF_REFERENCE_MODELS, readJson, REPO_ROOT, sharedPath } from '../helpers/shared.js';

let skip: string | false = false;
try {
  await openGpu();
} catch (e) {
  if (inCi()) throw e;
  skip = `no WebGPU adapter here (${(e as Error).message})`;
  process.stderr.write(`# SKIP: ${skip}\n`);
}

const stories = sharedPath('models/stories260K');
const storiesBin = path.join(stories.path, 'stories260K.bin');

test('webgpu: stories260K reproduces llama2.c\'s 64-step greedy golden', { skip: skip || stories.skip }, async () => {
  const model = await loadModel(storiesBin, { backend: 'webgpu' });
  assert.match(model.backendName, /^webgpu: /);
  const t = model.loadTimings;
  assert.ok(t.uploadMs > 0 && t.readMs + t.draftMs + t.repackMs + t.uploadMs <= model.loadMs + 1e-6, 'the upload is timed within the load');
  for (const kv of ['fp', 'f16'] as const) {
    const r = await model.complete('Once upon a time', { temperature: 0, maxTokens: 60, spec: 'none', kv });
    assert.equal(`Once upon a time${r.text}`, STORIES260K_GOLDEN, `kv ${kv}`);
  }
});

for (const name of HF_REFERENCE_MODELS) {
  const dir = sharedPath(`models/${name}`);
  test(`webgpu: ${name} matches the PyTorch reference (prompt ids, greedy tokens, top-5 logits)`, { skip: skip || dir.skip }, async () => {
    const model = await loadModel(dir.path, { backend: 'webgpu' });
    await checkModel(model, readJson(path.join(dir.path, 'reference.json')));
  });
}

for (const m of MODELS) {
  const dir = sharedPath(`models/${m.name}`);
  test(`webgpu: ${m.name}: greedy QuantSpec == plain decoding over the GPU's INT8 cache`, { skip: skip || dir.skip || corpus.skip }, async () => {
    // The smallest group of the CPU test: most flushes, shifts and quantized groups per token.
    const keyGroupSize = Math.min(...m.groups);
    const file = m.file ? path.join(dir.path, m.file) : dir.path;
    const model = await loadModel(file, { backend: 'webgpu', keyGroupSize, contextLength: 512 });
    // The long prompt only: longer than 2G, so groups are quantized on the GPU during prefill and decoding.
    const ids = prompts(model, m.long)[2]!;
    const plain = await greedy(model, ids, { spec: 'none', kv: 'int8' }, 40);
    const spec = await greedy(model, ids, { spec: 'quantspec', gamma: 3 }, 40);
    assert.deepEqual(spec.generatedIds, plain.generatedIds, `G ${keyGroupSize}, prompt of ${ids.length}`);
    // γ is fixed: rounds draft 3 until the budget is nearly spent, and a plain step happens only
    // with one token left
    const s = spec.stats!;
    assert.ok(s.rounds >= 10 && s.plainSteps <= 1, `${s.rounds} rounds, ${s.plainSteps} plain steps`);
    // (with 3 and then 2 tokens left, rounds draft 2 and 1: at most 3 short in all).
    assert.ok(s.drafted >= 3 * s.rounds - 3 && s.drafted <= 3 * s.rounds, `${s.drafted} drafts in ${s.rounds} rounds`);
    if (m.name === 'stories260K' || m.name === 'pdlm-5.8m') {
      // The GPU's rows, quantizer and attention against the CPU's: the same tokens on these trained models.
      const cpu = await loadModel(file, { backend: 'auto', keyGroupSize, contextLength: 512 });
      assert.deepEqual(plain.generatedIds, (await greedy(cpu, ids, { spec: 'none', kv: 'int8' }, 40)).generatedIds, 'GPU INT8 == CPU INT8');
    }
  });
}

test('webgpu: prefix reuse and checkpoints restore the GPU cache (rows moved by flushes included)', { skip: skip || stories.skip || corpus.skip }, async () => {
  const model = await loadModel(storiesBin, { backend: 'webgpu', keyGroupSize: 16, contextLength: 512 });
  const ids = prompts(model, 120)[2]!;
  const opts = { temperature: 0, maxTokens: 30, ignoreEos: true } as const;
  // An F16 cache keeps every row: the same prompt again reuses its K/V from the GPU.
  const f16 = model.createSession({ spec: 'none', kv: 'f16' });
  const first = await collect(f16.generate({ ids }, opts));
  const again = await collect(f16.generate({ ids }, opts));
  assert.equal(again.timings.cachedTokens, ids.length - 1, 'the prompt was reused');
  assert.deepEqual(again.generatedIds, first.generatedIds);
  // The hierarchical cache: after prefill 3 groups of 16 are quantized and rows were shifted out;
  // a checkpoint saves the buffer's rows, and each generation from it starts from them.
  const hier = model.createSession({ spec: 'quantspec', gamma: 3 });
  assert.equal((await hier.prefillPrompt({ ids })).cancelled, false);
  const cp = hier.checkpoint();
  const a = await collect(hier.generate({ ids }, opts));
  assert.equal(a.timings.cachedTokens, ids.length - 1);
  hier.restore(cp);
  const b = await collect(hier.generate({ ids }, opts));
  assert.deepEqual(b.generatedIds, a.generatedIds);
  const fresh = await collect(model.createSession({ spec: 'quantspec', gamma: 3 }).generate({ ids }, opts));
  assert.deepEqual(a.generatedIds, fresh.generatedIds, 'a generation from a checkpoint == one from scratch');
});

test('webgpu: the sparse drafts (StreamingLLM, SnapKV) are refused by name', { skip: skip || stories.skip }, async () => {
  const model = await loadModel(storiesBin, { backend: 'webgpu' });
  for (const spec of ['streaming', 'snapkv'] as const) {
    assert.throws(() => model.createSession({ spec }), (e: unknown) => e instanceof InvalidArgumentError && /WebGPU backend has no sparse/.test((e as Error).message));
  }
  assert.throws(() => model.createBatcher(2), InvalidArgumentError);
});

test('webgpu: quantspec generate --backend webgpu (the embedded model) decodes as the CPU does', { skip }, () => {
  const run = (backend: string) => {
    const r = spawnSync(process.execPath, [
      path.join(REPO_ROOT, 'bin', 'quantspec.js'), 'generate', '--backend', backend, '--prompt', 'Call me Ishmael.',
      '--temperature', '0', '--max-tokens', '24', '--spec', 'quantspec', '--gamma', '3', '--json',
    ], { encoding: 'utf8', timeout: 300000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };
  const gpu = run('webgpu');
  const cpu = run('cpu');
  assert.match(gpu.backend, /^webgpu: /);
  assert.match(cpu.backend, /^cpu/);
  assert.equal(gpu.generated_ids.length, 24);
  assert.ok(gpu.stats.rounds > 0, 'speculative rounds ran on the GPU');
  assert.deepEqual(gpu.generated_ids, cpu.generated_ids);
});

test('webgpu: the server (a worker thread, two slots) answers concurrent requests as it answers each alone', { skip }, async () => {
  const s = await startServer({ parallel: 2 }, { backend: 'webgpu' });
  try {
    const ask = async (content: string): Promise<string> => {
      const r = await fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'pdlm', messages: [{ role: 'user', content }], max_tokens: 16, temperature: 0 }),
      });
      assert.equal(r.status, 200);
      return ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    };
    const models = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: { meta: { backend: string } }[] };
    assert.match(models.data[0]!.meta.backend, /^webgpu: /);
    // The two slots' passes interleave on one GPU queue (no batching on WebGPU): each must still see only its own cache.
    const [a, b] = await Promise.all([ask('Call me Ishmael.'), ask('It is a truth universally acknowledged')]);
    assert.equal(await ask('Call me Ishmael.'), a);
    assert.equal(await ask('It is a truth universally acknowledged'), b);
    assert.notEqual(a, b);
  } finally {
    await s.close();
  }
});

test('webgpu: greedy decoding reads back only the argmax ids, and they are the tokens the logits give', { skip: skip || stories.skip || corpus.skip }, async () => {
  const model = await loadModel(storiesBin, { backend: 'webgpu', keyGroupSize: 16, contextLength: 512 });
  const device = model.runtime.device as unknown as { counts: { logits: number; argmax: number } };
  const ids = prompts(model, 120)[2]!;
  for (const opts of [{ spec: 'none', kv: 'int8' }, { spec: 'quantspec', gamma: 3 }] as const) {
    const before = { ...device.counts };
    const fast = await collect(model.createSession(opts).generate({ ids }, { temperature: 0, maxTokens: 30, ignoreEos: true }));
    assert.ok(device.counts.argmax > before.argmax && device.counts.logits === before.logits, `${opts.spec}: only ids came back`);
    // Log-probabilities need the logits rows: the same generation through them.
    const mid = { ...device.counts };
    const rows = await collect(model.createSession(opts).generate({ ids }, { temperature: 0, maxTokens: 30, ignoreEos: true, logprobs: 0 }));
    assert.ok(device.counts.logits > mid.logits && device.counts.argmax === mid.argmax, `${opts.spec}: logits rows came back`);
    assert.deepEqual(fast.generatedIds, rows.generatedIds, opts.spec);
  }
});

test('webgpu: a verify pass longer than the prefill chunk runs (buffers grow to the pass)', { skip: skip || stories.skip }, async () => {
  const model = await loadModel(storiesBin, { backend: 'webgpu', prefillChunk: 2 });
  const opts = { temperature: 0, maxTokens: 20, ignoreEos: true } as const;
  const spec = await model.complete('Once upon a time', { ...opts, spec: 'quantspec', gamma: 4 });
  const plain = await model.complete('Once upon a time', { ...opts, spec: 'none', kv: 'int8' });
  assert.ok(spec.stats!.rounds > 0 && spec.stats!.drafted >= 4, `${spec.stats!.rounds} rounds`);
  assert.deepEqual(spec.generatedIds, plain.generatedIds);
});

test('webgpu: after the upload the model keeps no CPU copy of its weights, and a CPU pass over them is refused', { skip: skip || stories.skip }, async () => {
  const cpu = await loadModel(storiesBin); // the CPU backend that prepares the weights for the GPU too
  const model = await loadModel(storiesBin, { backend: 'webgpu' });
  const sets = [model.target, model.draft!];
  for (const w of sets) {
    const tensors = [w.tokEmbed, w.lmHead, ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3])];
    for (const t of tensors) assert.equal(t.dtype === 'q4' || t.dtype === 'q8' ? t.codes.length : t.data.length, 0, `${t.dtype} [${t.shape}] still holds data`);
    assert.equal(w.finalNorm.length, 0);
    assert.deepEqual(w.layers[3]!.wq.shape, cpu.target.layers[3]!.wq.shape);
  }
  assert.equal(model.draft!.layers[0]!.attnNorm, model.target.layers[0]!.attnNorm, 'shared tensors stay shared');
  assert.equal(model.weightBytes, cpu.weightBytes);
  assert.equal(model.draftBytes, cpu.draftBytes);
  const out = await model.complete('Once upon a time', { temperature: 0, maxTokens: 12, spec: 'quantspec', gamma: 3, ignoreEos: true });
  assert.deepEqual(out.generatedIds, (await cpu.complete('Once upon a time', { temperature: 0, maxTokens: 12, spec: 'quantspec', gamma: 3, ignoreEos: true })).generatedIds);
  const rt = { ...model.runtime, device: null };
  const cache = createCache(cpu.plan({ spec: 'none', kv: 'fp' }), cpu.config, cpu.kvStorage, 8, 2);
  assert.throws(() => forward(rt, model.target, cache, 'fp', [1, 2], 0, 2, createScratch(model.config, 2, 2, 4)),
    (e: unknown) => e instanceof BackendUnavailableError && /live on the GPU/.test((e as Error).message));
});
