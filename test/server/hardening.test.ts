// Regression tests for the holes a probe of the server found (issue 15, items 1-3 and 6-8):
// metric labels, request timeouts, client aborts, content types, Host and Origin checks,
// GET /v1/models/{id} and POST /v1/responses.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import OpenAI from 'openai';
import { request } from '../helpers/http.js';
import { startServer, type TestServer } from '../helpers/server.js';


/** Send raw bytes and collect what comes back until the server closes (or `waitMs` passes). */
function raw(port: number, bytes: string, waitMs: number): Promise<{ text: string; closedAfterMs: number | null }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    socket.on('data', (d) => (text += d.toString('utf8')));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedAfterMs: null });
    }, waitMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedAfterMs: Date.now() - t0 });
    });
    socket.on('error', () => undefined);
  });
}

const chatBody = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: 'pdlm', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0, ...extra });

let srv: TestServer;
let port: number;
const logs: string[] = [];

before(async () => {
  srv = await startServer({ requestTimeoutMs: 600, headersTimeoutMs: 600, allowedOrigins: ['http://app.example:3000'], log: (l) => logs.push(l) });
  port = Number(new URL(srv.url).port);
});
after(async () => srv.close());

const metricCount = (text: string, route: string, status: number): number => {
  const m = new RegExp(`^quantspec_requests_total\\{route="${route.replace(/[{}/]/g, '\\$&')}",status="${status}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
};

test('metrics label requests by route template: 300 unique paths add no series', async () => {
  const before = (await request(srv.url, 'GET', '/metrics')).body;
  for (let i = 0; i < 300; i++) assert.equal((await request(srv.url, 'GET', `/probe/${i}/${'x'.repeat(i % 7)}`)).status, 404);
  await request(srv.url, 'GET', '/v1/models/some-other-model');
  const text = (await request(srv.url, 'GET', '/metrics')).body;
  const series = text.split('\n').filter((l) => l.startsWith('quantspec_requests_total{'));
  assert.ok(series.length <= 12, `series: ${series.length}\n${series.join('\n')}`);
  assert.equal(metricCount(text, 'unmatched', 404) - metricCount(before, 'unmatched', 404), 300);
  assert.equal(metricCount(text, '/v1/models/{id}', 404), 1);
  assert.doesNotMatch(text, /probe/);
});

test('a body that stops short gets 408 once the request timeout passes; a long generation does not', async () => {
  // Headers and 3 of 100 declared bytes, then silence.
  const short = await raw(port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"m', 5000);
  assert.match(short.text, /^HTTP\/1\.1 408 /, short.text);
  assert.match(short.text, /request_timeout/);
  assert.ok(short.closedAfterMs !== null && short.closedAfterMs < 3000, `closed after ${short.closedAfterMs} ms`);
  // Headers that never end.
  const slowHeaders = await raw(port, 'GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ', 5000);
  assert.match(slowHeaders.text, /^HTTP\/1\.1 408 /, slowHeaders.text);
  // A generation that runs past the request timeout is not cut: only receiving the request is timed.
  const quick = await startServer({ requestTimeoutMs: 150, headersTimeoutMs: 150 });
  try {
    const t0 = Date.now();
    const long = await request(quick.url, 'POST', '/v1/completions', JSON.stringify({ model: 'pdlm', prompt: 'The sea', max_tokens: 480, ignore_eos: true, temperature: 0, stream: true }));
    const ms = Date.now() - t0;
    assert.equal(long.status, 200);
    assert.match(long.body, /"finish_reason":"length"/);
    assert.match(long.body, /data: \[DONE\]/);
    assert.ok(ms > 300, `the generation took ${ms} ms, not well past the 150 ms request timeout, so this proves nothing`);
  } finally {
    await quick.close();
  }
  const m = (await request(srv.url, 'GET', '/metrics')).body;
  assert.ok(metricCount(m, '/v1/chat/completions', 408) >= 1, m);
});

test('a client that hangs up mid-upload is a 499 client error, logged in one line without a stack', async () => {
  const before = (await request(srv.url, 'GET', '/metrics')).body;
  await new Promise<void>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": "pd');
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, 100);
    });
  });
  // The server sees the socket go on its own time: poll the metrics (up to 10 s on a loaded machine).
  let text = '';
  for (let i = 0; i < 200; i++) {
    text = (await request(srv.url, 'GET', '/metrics')).body;
    if (metricCount(text, '/v1/chat/completions', 499) > metricCount(before, '/v1/chat/completions', 499)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(metricCount(text, '/v1/chat/completions', 499) - metricCount(before, '/v1/chat/completions', 499), 1, text);
  assert.equal(metricCount(text, '/v1/chat/completions', 500), 0);
  const line = logs.find((l) => /before sending the whole body/.test(l));
  assert.ok(line, logs.join('\n'));
  assert.doesNotMatch(line, /\n\s+at /, 'no stack trace');
  assert.ok(!logs.some((l) => /internal error|error on POST/.test(l)), logs.join('\n'));
});

test('JSON only with a JSON content type; unpaired surrogates and invalid UTF-8 get 400', async () => {
  const plain = await request(srv.url, 'POST', '/v1/chat/completions', chatBody(), { 'content-type': 'text/plain' });
  assert.equal(plain.status, 415, plain.body);
  assert.match(JSON.parse(plain.body).error.message, /Content-Type: application\/json/);
  const form = await request(srv.url, 'POST', '/v1/completions', chatBody(), { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(form.status, 415);
  assert.equal((await request(srv.url, 'POST', '/v1/chat/completions', chatBody(), { 'content-type': 'application/json; charset=utf-8' })).status, 200);
  const lone = await request(srv.url, 'POST', '/v1/chat/completions', '{"model": "pdlm", "messages": [{"role": "user", "content": "a\\ud800b"}]}');
  assert.equal(lone.status, 400, lone.body);
  assert.match(JSON.parse(lone.body).error.message, /surrogate/);
  const loneKey = await request(srv.url, 'POST', '/v1/chat/completions', '{"model": "pdlm", "\\udfff": 1, "messages": [{"role": "user", "content": "hi"}]}');
  assert.equal(loneKey.status, 400);
  const paired = await request(srv.url, 'POST', '/v1/chat/completions', chatBody({ messages: [{ role: 'user', content: 'a\ud83d\ude00b' }] }));
  assert.equal(paired.status, 200, 'a surrogate pair (an emoji) is text');
  const bytes = Buffer.concat([Buffer.from('{"model": "pdlm", "messages": [{"role": "user", "content": "'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
  const invalid = await request(srv.url, 'POST', '/v1/chat/completions', bytes);
  assert.equal(invalid.status, 400);
  assert.match(JSON.parse(invalid.body).error.message, /UTF-8/);
});

test('Host and Origin: loopback names and allowed origins pass; others get 403; preflight answers CORS', async () => {
  const rebound = await request(srv.url, 'GET', '/v1/models', undefined, { host: 'attacker.example:8080' });
  assert.equal(rebound.status, 403);
  assert.match(JSON.parse(rebound.body).error.message, /--allowed-hosts/);
  assert.equal((await request(srv.url, 'GET', '/health', undefined, { host: 'attacker.example' })).status, 403);
  assert.equal((await request(srv.url, 'GET', '/v1/models', undefined, { host: `localhost:${port}` })).status, 200);
  assert.equal((await request(srv.url, 'GET', '/v1/models', undefined, { host: `[::1]:${port}` })).status, 200);
  const page = await request(srv.url, 'POST', '/v1/chat/completions', chatBody(), { origin: 'http://evil.example' });
  assert.equal(page.status, 403);
  assert.match(JSON.parse(page.body).error.message, /--allowed-origins/);
  const allowed = await request(srv.url, 'POST', '/v1/chat/completions', chatBody(), { origin: 'http://app.example:3000' });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers['access-control-allow-origin'], 'http://app.example:3000');
  const own = await request(srv.url, 'GET', '/v1/models', undefined, { origin: `http://127.0.0.1:${port}` });
  assert.equal(own.status, 200, 'the server\'s own origin');
  const pre = await request(srv.url, 'OPTIONS', '/v1/chat/completions', undefined, {
    origin: 'http://app.example:3000', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-stainless-os',
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers['access-control-allow-origin'], 'http://app.example:3000');
  assert.match(String(pre.headers['access-control-allow-headers']), /x-stainless-os/);
  assert.equal((await request(srv.url, 'OPTIONS', '/v1/chat/completions', undefined, { origin: 'http://evil.example' })).status, 403);
});

test('a server bound to loopback with --allowed-origins * and --allowed-hosts * takes any Host and Origin', async () => {
  const open = await startServer({ allowedOrigins: ['*'], allowedHosts: ['*'] });
  try {
    const r = await request(open.url, 'GET', '/v1/models', undefined, { host: 'proxy.internal', origin: 'http://anything.example' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], 'http://anything.example');
  } finally {
    await open.close();
  }
});

test('GET /v1/models/{id}: the openai client retrieves the model; another id is a 404', async () => {
  const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
  const m = await client.models.retrieve('pdlm');
  assert.equal(m.id, 'pdlm');
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('gpt-4o'), (e: unknown) => e instanceof OpenAI.NotFoundError && /does not exist/.test((e as Error).message));
  const bad = await request(srv.url, 'GET', '/v1/models/%E0%A4%A');
  assert.equal(bad.status, 400, 'malformed percent-encoding is the client\'s error, not a 500');
});

test('POST /v1/responses: text in and out through the openai client, whole and streamed', async () => {
  const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
  const chat = await client.chat.completions.create({
    model: 'pdlm', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me about the sea.' }], max_tokens: 12, temperature: 0,
  });
  const r = await client.responses.create({ model: 'pdlm', instructions: 'Be brief.', input: 'Tell me about the sea.', max_output_tokens: 12, temperature: 0 });
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'incomplete');
  assert.equal(r.incomplete_details?.reason, 'max_output_tokens');
  assert.equal(r.output_text, chat.choices[0]!.message.content, 'the same prompt through the chat template gives the same text');
  assert.equal(r.usage!.output_tokens, 12);
  assert.equal(r.usage!.input_tokens, chat.usage!.prompt_tokens);
  const stream = await client.responses.create({
    model: 'pdlm', instructions: 'Be brief.', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Tell me about the sea.' }] }], max_output_tokens: 12, temperature: 0, stream: true,
  });
  const types: string[] = [];
  let deltas = '';
  let done: OpenAI.Responses.Response | undefined;
  const sequence: number[] = [];
  for await (const ev of stream) {
    types.push(ev.type);
    sequence.push(ev.sequence_number);
    if (ev.type === 'response.output_text.delta') deltas += ev.delta;
    if (ev.type === 'response.incomplete' || ev.type === 'response.completed') done = ev.response;
  }
  assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
  assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
  assert.deepEqual(sequence, sequence.map((_, i) => i));
  assert.equal(deltas, r.output_text);
  assert.equal(done!.usage!.output_tokens, 12);
  await assert.rejects(client.responses.create({ model: 'pdlm', input: 'hi', previous_response_id: 'resp_1' }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && /stores no responses/.test((e as Error).message));
  await assert.rejects(client.responses.create({ model: 'pdlm', input: [] }), (e: unknown) => e instanceof OpenAI.BadRequestError && /'input'/.test((e as Error).message));
});
