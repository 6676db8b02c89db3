// Conformance with the official `openai` client, unchanged, against a server on a free port.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, type TestServer } from '../helpers/server.js';

let srv: TestServer;
let client: OpenAI;

before(async () => {
  srv = await startServer({ apiKey: 'sk-test' });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
});
after(async () => srv.close());

test('models lists the served model', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), ['pdlm']);
});

test('chat completion: content, usage, finish reason, timings', async () => {
  const r = await client.chat.completions.create({ model: 'pdlm', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0]!.message.role, 'assistant');
  assert.equal(typeof r.choices[0]!.message.content, 'string');
  assert.equal(r.choices[0]!.finish_reason, 'length');
  assert.equal(r.usage!.completion_tokens, 8);
  assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + 8);
  const t = (r as unknown as { timings: Record<string, number> }).timings;
  for (const k of ['prompt_n', 'prompt_per_second', 'predicted_n', 'predicted_per_second', 'draft_n', 'draft_n_accepted']) assert.equal(typeof t[k], 'number', k);
});

test('chat streaming: deltas add up to the non-streamed text; usage in the last chunk', async () => {
  const args = { model: 'pdlm', messages: [{ role: 'user' as const, content: 'Tell me about the sea.' }], max_tokens: 12, temperature: 0 };
  const full = await client.chat.completions.create(args);
  const stream = await client.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  let role: string | undefined;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    role ??= c.delta.role;
    text += c.delta.content ?? '';
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, full.choices[0]!.message.content);
  assert.equal(finish, 'length');
  assert.equal(usage!.completion_tokens, 12);
});

test('completions: text, streaming, stop strings, echo', async () => {
  const r = await client.completions.create({ model: 'pdlm', prompt: 'Call me Ishmael.', max_tokens: 20, temperature: 0 });
  const text = r.choices[0]!.text;
  assert.equal(r.object, 'text_completion');
  const cut = text.indexOf(',');
  assert.ok(cut > 0, text);
  const stopped = await client.completions.create({ model: 'pdlm', prompt: 'Call me Ishmael.', max_tokens: 20, temperature: 0, stop: [','] });
  assert.equal(stopped.choices[0]!.text, text.slice(0, cut));
  assert.equal(stopped.choices[0]!.finish_reason, 'stop');
  let streamed = '';
  for await (const c of await client.completions.create({ model: 'pdlm', prompt: 'Call me Ishmael.', max_tokens: 20, temperature: 0, stream: true })) {
    streamed += c.choices[0]?.text ?? '';
  }
  assert.equal(streamed, text);
  const echoed = await client.completions.create({ model: 'pdlm', prompt: 'Call me', max_tokens: 3, temperature: 0, echo: true });
  assert.ok(echoed.choices[0]!.text.startsWith('Call me'));
});

test('seed makes sampling reproducible', async () => {
  const ask = (seed: number) => client.completions.create({ model: 'pdlm', prompt: 'The ship', max_tokens: 16, temperature: 1, seed });
  const a = await ask(42);
  const b = await ask(42);
  const c = await ask(43);
  assert.equal(a.choices[0]!.text, b.choices[0]!.text);
  assert.notEqual(a.choices[0]!.text, c.choices[0]!.text);
});

test('logprobs and top_logprobs', async () => {
  const r = await client.chat.completions.create({ model: 'pdlm', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2 });
  const lp = r.choices[0]!.logprobs!.content!;
  assert.equal(lp.length, 4);
  for (const e of lp) {
    assert.ok(e.logprob <= 0);
    assert.equal(e.top_logprobs.length, 2);
    assert.equal(e.top_logprobs[0]!.token, e.token);
  }
});

test('errors surface as the client\'s error classes with the right status', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'pdlm', messages: [{ role: 'user', content: 'x' }], temperature: 5 }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && e.status === 400 && /temperature/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'x' }] }),
    (e: unknown) => e instanceof OpenAI.NotFoundError && e.status === 404);
  const wrongKey = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(wrongKey.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(client.completions.create({ model: 'pdlm', prompt: 'the sea '.repeat(400), max_tokens: 4 }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && /tokens but the context holds 512/.test(e.message) && (e as InstanceType<typeof OpenAI.APIError>).code === 'context_length_exceeded');
  await assert.rejects(client.chat.completions.create({ model: 'pdlm', messages: [{ role: 'user', content: 'x' }], n: 2 }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && /n = 1/.test(e.message));
  // The server still answers.
  const ok = await client.completions.create({ model: 'pdlm', prompt: 'x', max_tokens: 1 });
  assert.equal(ok.usage!.completion_tokens, 1);
});
