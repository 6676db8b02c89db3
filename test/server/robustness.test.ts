// Bad input never crashes the server: each malformed request gets a 4xx in OpenAI's error shape and
// /health keeps answering. Also: body limits, the queue limit, client disconnects, shutdown.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { Xoshiro128 } from '../../src/core/rng.js';
import { startServer } from '../helpers/server.js';
import { startServeProcess } from '../../bench/serve-process.js';

interface Reply { status: number; body: string; headers: http.IncomingHttpHeaders }

function request(url: string, method: string, route: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${route}`, { method, headers: { 'content-type': 'application/json', ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function assertOpenAiError(r: Reply, status: number, pattern?: RegExp): void {
  assert.equal(r.status, status, r.body);
  const j = JSON.parse(r.body);
  assert.equal(typeof j.error.message, 'string');
  assert.equal(typeof j.error.type, 'string');
  if (pattern) assert.match(j.error.message, pattern);
}

test('malformed JSON, wrong types, bad numbers, unknown model: 4xx with clear messages', async () => {
  const srv = await startServer();
  try {
    const post = (body: string, route = '/v1/chat/completions') => request(srv.url, 'POST', route, body);
    assertOpenAiError(await post('{"model": "pdlm", '), 400, /not valid JSON/);
    assertOpenAiError(await post('[1, 2]'), 400, /JSON object/);
    assertOpenAiError(await post('{"model": "pdlm", "messages": "hi"}'), 400, /'messages' must be a non-empty list/);
    assertOpenAiError(await post('{"model": "pdlm", "messages": [{"role": "wizard", "content": "x"}]}'), 400, /role/);
    assertOpenAiError(await post('{"model": 7, "messages": [{"role": "user", "content": "x"}]}'), 400, /'model' is required/);
    assertOpenAiError(await post('{"model": "pdlm", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}'), 400, /max_tokens/);
    assertOpenAiError(await post('{"model": "pdlm", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1e12}'), 400, /max_tokens/);
    assertOpenAiError(await post('{"model": "pdlm", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}'), 400, /temperature/);
    assertOpenAiError(await post('{"model": "pdlm", "messages": [{"role": "user", "content": "x"}], "stop": [1, 2]}'), 400, /stop/);
    assertOpenAiError(await post('{"model": "nope", "messages": [{"role": "user", "content": "x"}]}'), 404, /does not exist/);
    assertOpenAiError(await post('{"model": "pdlm", "prompt": [1, 99999]}', '/v1/completions'), 400, /outside the vocabulary/);
    assertOpenAiError(await request(srv.url, 'GET', '/v1/chat/completions'), 405);
    assertOpenAiError(await request(srv.url, 'GET', '/v2/nothing'), 404);
    assert.equal((await request(srv.url, 'GET', '/health')).status, 200);
  } finally {
    await srv.close();
  }
});

test('API key: every route but /health needs it; oversize bodies get 413', async () => {
  const srv = await startServer({ apiKey: 'secret', maxBodyBytes: 4096 });
  try {
    assert.equal((await request(srv.url, 'GET', '/health')).status, 200);
    assertOpenAiError(await request(srv.url, 'GET', '/v1/models'), 401);
    assertOpenAiError(await request(srv.url, 'GET', '/metrics', undefined, { authorization: 'Bearer wrong' }), 401);
    assert.equal((await request(srv.url, 'GET', '/v1/models', undefined, { authorization: 'Bearer secret' })).status, 200);
    const big = JSON.stringify({ model: 'pdlm', prompt: 'x'.repeat(10_000) });
    assertOpenAiError(await request(srv.url, 'POST', '/v1/completions', big, { authorization: 'Bearer secret' }), 413, /limit/);
  } finally {
    await srv.close();
  }
});

test('beyond the queue: 429 with Retry-After; a client that disconnects frees its slot', async () => {
  const srv = await startServer({ parallel: 1, maxQueue: 1 }, { backend: 'reference' });
  try {
    const long = JSON.stringify({ model: 'pdlm', prompt: 'The sea', max_tokens: 400, ignore_eos: true, stream: true, temperature: 0 });
    // First request occupies the slot; the second waits; the third is refused.
    const controller = new AbortController();
    const first = fetch(`${srv.url}/v1/completions`, { method: 'POST', body: long, signal: controller.signal, headers: { 'content-type': 'application/json' } });
    const firstRes = await first;
    const reader = firstRes.body!.getReader();
    await reader.read(); // streaming has begun
    const second = request(srv.url, 'POST', '/v1/completions', JSON.stringify({ model: 'pdlm', prompt: 'x', max_tokens: 2 }));
    await new Promise((r) => setTimeout(r, 50));
    const third = await request(srv.url, 'POST', '/v1/completions', JSON.stringify({ model: 'pdlm', prompt: 'x', max_tokens: 2 }));
    assertOpenAiError(third, 429, /busy/);
    assert.equal(third.headers['retry-after'], '1');
    // Disconnect the streaming client: its generation is cancelled, the queued request then runs.
    controller.abort();
    await reader.cancel().catch(() => {});
    const r2 = await second;
    assert.equal(r2.status, 200, r2.body);
    assert.equal(JSON.parse(r2.body).usage.completion_tokens, 2);
    const metrics = await request(srv.url, 'GET', '/metrics');
    assert.match(metrics.body, /quantspec_requests_total\{route="\/v1\/completions",status="429"\} 1/);
    assert.match(metrics.body, /quantspec_active_slots 0/);
  } finally {
    await srv.close();
  }
});

test('fuzz: 10,000 random bodies all get a 4xx and the server keeps answering /health', async () => {
  const srv = await startServer({ parallel: 1, maxQueue: 4 });
  try {
    const rng = new Xoshiro128(99);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)]!;
    const values: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, '', 'pdlm', 'x'.repeat(50), [], [1, 2], {}, { a: 1 }, [{ role: 'user' }]];
    const keys = ['model', 'messages', 'prompt', 'max_tokens', 'temperature', 'top_p', 'top_k', 'stop', 'n', 'stream', 'seed',
      'logprobs', 'top_logprobs', 'presence_penalty', 'logit_bias', 'stream_options', 'max_completion_tokens', 'echo', 'min_p'];
    const bodies: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      const kind = rng.next();
      if (kind < 0.2) {
        // raw bytes and broken JSON
        const len = Math.floor(rng.next() * 40);
        bodies.push(Array.from({ length: len }, () => String.fromCharCode(32 + Math.floor(rng.next() * 95))).join(''));
      } else {
        const o: Record<string, unknown> = {};
        const n = Math.floor(rng.next() * 6);
        for (let k = 0; k < n; k++) o[pick(keys)] = pick(values);
        // Never a valid request: the model name is always wrong or absent.
        if (o['model'] === 'pdlm') o['model'] = 'not-pdlm';
        bodies.push(JSON.stringify(o));
      }
    }
    let done = 0;
    const statuses = new Map<number, number>();
    const worker = async () => {
      while (done < bodies.length) {
        const i = done++;
        const r = await request(srv.url, 'POST', i % 2 ? '/v1/chat/completions' : '/v1/completions', bodies[i]);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        assert.ok(r.status >= 400 && r.status < 500, `body ${JSON.stringify(bodies[i])} got ${r.status}: ${r.body}`);
        JSON.parse(r.body);
        if (i % 1000 === 0) assert.equal((await request(srv.url, 'GET', '/health')).status, 200);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.equal([...statuses.values()].reduce((a, b) => a + b, 0), 10_000);
    assert.equal((await request(srv.url, 'GET', '/health')).status, 200);
  } finally {
    await srv.close();
  }
});

test('SIGTERM: the server stops accepting, ends in-flight streams and exits 0', async () => {
  const { child, url, log } = await startServeProcess(['--ctx', '256', '--backend', 'reference']);
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'pdlm-5.8m-bf16', prompt: 'The sea', max_tokens: 200, ignore_eos: true, stream: true }),
  });
  const reader = res.body!.getReader();
  await reader.read();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  let text = '';
  for (;;) {
    const r = await reader.read().catch(() => ({ done: true, value: undefined }));
    if (r.done) break;
    text += new TextDecoder().decode(r.value);
  }
  assert.equal(await exited, 0, log());
  assert.match(text, /data: \[DONE\]/, 'the in-flight stream was ended properly');
});
