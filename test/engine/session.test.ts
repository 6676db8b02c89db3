// Generation behaviour through the public API, on the embedded model (always in the repository).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ContextOverflowError, InvalidArgumentError } from '../../src/core/errors.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { collect } from '../../src/engine/session.js';

let modelPromise: Promise<Model> | null = null;
const model = (): Promise<Model> => (modelPromise ??= loadModel(undefined, { contextLength: 64 }));

test('without a path the embedded default model loads', async () => {
  const m = await model();
  assert.equal(m.config.vocabSize, 4096);
  assert.equal(m.format, 'hf');
});

test('greedy output is deterministic and streamed chunks add up to the result', async () => {
  const m = await model();
  const s = m.createSession();
  const chunks: string[] = [];
  const gen = s.generate('In the beginning', { temperature: 0, maxTokens: 12 });
  let result;
  for (;;) {
    const r = await gen.next();
    if (r.done) { result = r.value; break; }
    chunks.push(r.value.text);
  }
  assert.equal(chunks.join(''), result.text);
  assert.equal(result.generatedIds.length, 12);
  assert.equal(result.finishReason, 'length');
  const again = await m.createSession().generate('In the beginning', { temperature: 0, maxTokens: 12 });
  assert.deepEqual((await collect(again)).generatedIds, result.generatedIds);
  assert.equal(m.tokenizer.decode(result.generatedIds), result.text);
});

test('a seed makes sampling reproducible; different seeds differ', async () => {
  const m = await model();
  const run = (seed: number) => m.complete('Call me', { temperature: 1.2, topK: 0, topP: 1, minP: 0, seed, maxTokens: 16 });
  const a = await run(5);
  const b = await run(5);
  const c = await run(6);
  assert.deepEqual(a.generatedIds, b.generatedIds);
  assert.notDeepEqual(a.generatedIds, c.generatedIds);
});

test('reusing the KV of a shared prefix gives the same tokens as a fresh session', async () => {
  const m = await model();
  const s = m.createSession();
  await collect(s.generate('It is a truth universally acknowledged', { temperature: 0, maxTokens: 4 }));
  const reused = await collect(s.generate('It is a truth universally known', { temperature: 0, maxTokens: 8 }));
  assert.ok(reused.timings.cachedTokens > 3, `cached ${reused.timings.cachedTokens}`);
  const fresh = await collect(m.createSession().generate('It is a truth universally known', { temperature: 0, maxTokens: 8 }));
  assert.equal(fresh.timings.cachedTokens, 0);
  assert.deepEqual(reused.generatedIds, fresh.generatedIds);
});

test('stop strings end generation and are not part of the text', async () => {
  const m = await model();
  const free = await m.complete('Call me Ishmael.', { temperature: 0, maxTokens: 20 });
  // The greedy text is "\nAnd when he said, when he said, ...": stop at the first comma.
  const cut = free.text.indexOf(',');
  assert.ok(cut > 0);
  const r = await m.complete('Call me Ishmael.', { temperature: 0, maxTokens: 20, stop: [','] });
  assert.equal(r.finishReason, 'stop');
  assert.equal(r.text, free.text.slice(0, cut));
});

test('EOS ends generation unless ignored; logit bias steers the choice', async () => {
  const m = await model();
  const eos = m.tokenizer.eosIds[0]!;
  const forced = await m.complete('Call me', { temperature: 0, maxTokens: 5, logitBias: { [eos]: 100 } });
  assert.equal(forced.finishReason, 'stop');
  assert.deepEqual(forced.generatedIds, []);
  const ignored = await m.complete('Call me', { temperature: 0, maxTokens: 5, logitBias: { [eos]: 100 }, ignoreEos: true });
  assert.deepEqual(ignored.generatedIds, [eos, eos, eos, eos, eos]);
  await assert.rejects(m.complete('x', { logitBias: { 99999: 1 } }), InvalidArgumentError);
});

test('a prompt longer than the context is ContextOverflowError with the numbers', async () => {
  const m = await model();
  const long = 'the sea '.repeat(100);
  await assert.rejects(m.complete(long, { maxTokens: 4 }), (e: unknown) => {
    assert.ok(e instanceof ContextOverflowError);
    assert.match((e as Error).message, /has \d+ tokens but the context holds 64/);
    return true;
  });
  // Generation stops with "length" when the context fills up.
  const r = await m.complete({ ids: Array.from({ length: 60 }, (_, i) => 100 + i) }, { temperature: 0, maxTokens: 50 });
  assert.equal(r.finishReason, 'length');
  assert.equal(r.promptIds.length + r.generatedIds.length, 64);
});

test('invalid options are InvalidArgumentError before any work', async () => {
  const m = await model();
  await assert.rejects(m.complete('x', { temperature: -1 }), InvalidArgumentError);
  await assert.rejects(m.complete('x', { maxTokens: 0 }), InvalidArgumentError);
  await assert.rejects(m.complete({ ids: [99999] }), InvalidArgumentError);
  // The session still works afterwards.
  assert.equal((await m.complete('x', { temperature: 0, maxTokens: 2 })).generatedIds.length, 2);
});

test('an aborted signal cancels generation and frees the session', async () => {
  const m = await model();
  const s = m.createSession();
  const ac = new AbortController();
  const gen = s.generate('Call me Ishmael.', { temperature: 0, maxTokens: 40, signal: ac.signal });
  await gen.next();
  ac.abort();
  const r = await collect(gen);
  assert.equal(r.finishReason, 'cancelled');
  assert.ok(r.generatedIds.length < 40);
  const after = await collect(s.generate('Call me Ishmael.', { temperature: 0, maxTokens: 3 }));
  assert.equal(after.generatedIds.length, 3);
});

test('prefix reuse across quantized groups gives the same tokens as a fresh session (INT8 cache, QuantSpec)', async () => {
  const m = await loadModel(undefined, { contextLength: 512, keyGroupSize: 16 });
  const prompt = { ids: [0, ...Array.from({ length: 150 }, (_, i) => 100 + ((i * 37) % 3000))] };
  for (const spec of ['none', 'quantspec'] as const) {
    const s = m.createSession({ spec, kv: 'int8' });
    const first = await collect(s.generate(prompt, { temperature: 0, maxTokens: 30, ignoreEos: true }));
    // Same prompt again: the cache rolls back to the prompt (or re-prefills when that is too far).
    const again = await collect(s.generate(prompt, { temperature: 0, maxTokens: 30, ignoreEos: true }));
    // A follow-up that extends the conversation reuses everything already in the cache.
    const longer = { ids: [...again.promptIds, ...again.generatedIds, 7, 8, 9] };
    const extended = await collect(s.generate(longer, { temperature: 0, maxTokens: 30, ignoreEos: true }));
    assert.deepEqual(again.generatedIds, first.generatedIds, spec);
    assert.ok(extended.timings.cachedTokens > 0, 'the extended prompt reuses cached positions');
    const fresh = await collect(m.createSession({ spec, kv: 'int8' }).generate(longer, { temperature: 0, maxTokens: 30, ignoreEos: true }));
    assert.deepEqual(extended.generatedIds, fresh.generatedIds, `${spec} extended prompt`);
    if (spec === 'quantspec') assert.ok(again.stats!.acceptanceRate > 0.5, `draft still agrees after reuse: ${again.stats!.acceptanceRate}`);
  }
});

test('logprobs: one entry per token, from the target, identical for plain and speculative decoding', async () => {
  const m = await model();
  const run = async (spec: 'none' | 'quantspec') => {
    const chunks = [];
    const gen = m.createSession({ spec, kv: 'int8' }).generate('Call me Ishmael.', { temperature: 0, maxTokens: 10, logprobs: 3 });
    for (;;) {
      const r = await gen.next();
      if (r.done) return { chunks, result: r.value };
      chunks.push(r.value);
    }
  };
  const plain = await run('none');
  const spec = await run('quantspec');
  const lp = (x: typeof plain) => x.chunks.flatMap((c) => c.logprobs ?? []);
  assert.equal(lp(plain).length, plain.result.generatedIds.length);
  assert.deepEqual(lp(plain).map((e) => e.id), plain.result.generatedIds);
  for (const e of lp(plain)) {
    assert.ok(e.logprob <= 0);
    assert.equal(e.top.length, 3);
    assert.equal(e.top[0]!.id, e.id, 'greedy picks the most likely token');
    assert.ok(e.top[0]!.logprob >= e.top[1]!.logprob && e.top[1]!.logprob >= e.top[2]!.logprob);
    assert.equal(typeof e.text, 'string');
  }
  const a = lp(plain);
  const b = lp(spec);
  assert.deepEqual(b.map((e) => e.id), a.map((e) => e.id));
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]!.logprob - b[i]!.logprob) < 1e-4, `token ${i}`);
  await assert.rejects(m.complete('x', { logprobs: 21 }), InvalidArgumentError);
});

test('kv f16: an F16 cache of half the F32 bytes; the native backend decodes what the reference backend does, and streaming drafts over it', async () => {
  const native = await loadModel(undefined, { contextLength: 256, draft: false });
  const reference = await loadModel(undefined, { contextLength: 256, draft: false, backend: 'reference' });
  const prompt = 'It was the best of times, it was the worst of times,';
  const opts = { temperature: 0, maxTokens: 40, ignoreEos: true } as const;
  const f16 = await collect(native.createSession({ spec: 'none', kv: 'f16', contextLength: 256 }).generate(prompt, opts));
  const f32 = await collect(native.createSession({ spec: 'none', kv: 'fp', contextLength: 256 }).generate(prompt, opts));
  assert.equal(f16.decoding.kv, 'f16');
  assert.equal(f16.kvBytes.total * 2, f32.kvBytes.total);
  assert.equal(f16.kvBytes.total, 2 * 256 * native.config.nLayers * native.config.nKvHeads * native.config.headDim * 2);
  const slow = await collect(reference.createSession({ spec: 'none', kv: 'f16', contextLength: 256 }).generate(prompt, opts));
  assert.deepEqual(f16.generatedIds, slow.generatedIds);
  // A sparse draft reads the F16 rows too (SnapKV converts them to score the prompt); greedy output is the target's.
  for (const spec of ['streaming', 'snapkv'] as const) {
    const r = await collect(native.createSession({ spec, gamma: 3, kv: 'f16', contextLength: 256 }).generate(prompt, opts));
    assert.deepEqual(r.generatedIds, f16.generatedIds, spec);
    assert.ok(r.stats && r.stats.rounds > 0, `${spec} speculated`);
  }
});

test('prefillPrompt + checkpoint: every restored generation equals a fresh session\'s, with the prompt reused (INT8 QuantSpec, F16 SnapKV)', async () => {
  const m = await loadModel(undefined, { contextLength: 512 });
  const bos = m.tokenizer.bosId!;
  const text = 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. ';
  const ids = [bos, ...m.tokenizer.encode(text.repeat(12), { addSpecial: false })].slice(0, 300);
  const opts = { temperature: 0, maxTokens: 100, ignoreEos: true } as const;
  for (const decoding of [{ spec: 'quantspec', gamma: 3 }, { spec: 'snapkv', gamma: 2, kv: 'f16' }] as const) {
    const fresh = await collect(m.createSession({ ...decoding, contextLength: 512 }).generate({ ids }, opts));
    const s = m.createSession({ ...decoding, contextLength: 512 });
    const pre = await s.prefillPrompt({ ids });
    assert.deepEqual([pre.promptTokens, pre.cachedTokens, pre.cancelled], [300, 0, false]);
    const cp = s.checkpoint();
    for (let run = 0; run < 2; run++) {
      s.restore(cp);
      const r = await collect(s.generate({ ids }, opts));
      assert.equal(r.timings.cachedTokens, 299, `${decoding.spec} run ${run} reused the prompt`);
      assert.deepEqual(r.generatedIds, fresh.generatedIds, `${decoding.spec} run ${run}`);
      assert.ok(r.stats && r.stats.rounds > 10, 'it speculated');
    }
    // Without restore, the same prompt cannot reuse the quantized tail of the last generation.
    const other = m.createSession({ ...decoding, contextLength: 512 });
    assert.throws(() => other.restore(cp), /latest checkpoint/);
  }
});
