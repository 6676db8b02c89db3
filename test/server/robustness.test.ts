// Bad input never crashes the server: each malformed request gets a 4xx in OpenAI's error shape and
// /health keeps answering. Also: body limits, the queue limit, client disconnects, shutdown.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Xoshiro128 } from '../../src/core/rng.js';
import { request, type Reply } from '../helpers/http.js';
import { startServer } from '../helpers/server.js';
import { startServeProcess } from '../../bench/serve-process.js';


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

// The request fuzzer: valid requests mutated field by field (the real model id, so most bodies
// reach field validation and a share reach generation), plus invalid UTF-8, deep nesting, huge and
// non-finite numbers, duplicate keys, wrong methods and content types. Never a 5xx; /health
// answers throughout; each reply is well formed (an OpenAI error, a completion or an SSE stream).
const FUZZ_BODIES = 20_000;

const BASES: readonly { route: string; body: Record<string, unknown> }[] = [
  { route: '/v1/chat/completions', body: { model: 'pdlm', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }], max_tokens: 2, temperature: 0 } },
  { route: '/v1/chat/completions', body: { model: 'pdlm', messages: [{ role: 'user', content: 'Tell me of the sea' }], max_completion_tokens: 2, top_p: 0.9, top_k: 20, seed: 7, stop: ['\n'], logprobs: true, top_logprobs: 2 } },
  { route: '/v1/completions', body: { model: 'pdlm', prompt: 'The sea', max_tokens: 2, temperature: 0.8, min_p: 0.05, presence_penalty: 0.5, frequency_penalty: 0.1, logit_bias: { '17': -5 } } },
  { route: '/v1/completions', body: { model: 'pdlm', prompt: [1, 2, 3], max_tokens: 1, stream: true, stream_options: { include_usage: true }, ignore_eos: true, repeat_penalty: 1.1 } },
  { route: '/v1/responses', body: { model: 'pdlm', instructions: 'Be brief.', input: [{ role: 'user', content: [{ type: 'input_text', text: 'The sea' }] }], max_output_tokens: 2, temperature: 0, text: { format: { type: 'text' } } } },
];

/** Values of every JSON type, edge numbers and strings: what a typed mutation puts in a field. */
const MUTANTS: readonly unknown[] = [
  null, true, false, 0, -1, 1, 2, 1.5, -0.5, 3, 1e308, -1e308, 2 ** 53, 2 ** 31, -(2 ** 31), 1e-320,
  '', 'pdlm', 'x', '5', 'true', '\u0000', '\ud800', '\u{1F600}', 'é'.repeat(300), 'z'.repeat(70_000),
  [], [1], ['a', 'b'], [null], [[]], [{ role: 'user', content: 'hi' }], [{ role: 'user' }], [{ role: 'assistant', content: 7 }],
  {}, { a: 1 }, { '17': 'x' }, { '99999': 1 }, { '-1': 1 }, { include_usage: 'yes' },
];

/** Raw JSON values JSON.stringify cannot write: non-finite and overflowing numbers, deep nesting. */
const RAW_MUTANTS: readonly string[] = ['NaN', 'Infinity', '-Infinity', '1e999', '-1e999', '-0', '00', '1.', '.5', '0x10', 'undefined',
  '['.repeat(100_000), '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000), '"\\ud800"', '"\\u0000"', '"' + '\\'.repeat(3) + '"'];

function mutatedBody(rng: Xoshiro128): { route: string; method: string; contentType: string; body: string | Buffer } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)]!;
  const base = pick(BASES);
  const body: Record<string, unknown> = structuredClone(base.body);
  const keys = Object.keys(body);
  const extraKeys = ['n', 'echo', 'suffix', 'best_of', 'tools', 'user', 'penalty_window', 'repetition_penalty', 'response_format', '__proto__', 'constructor', 'previous_response_id', 'background', 'stream'];
  let route = base.route;
  let method = 'POST';
  let contentType = 'application/json';
  const m = rng.next();
  let raw: string | null = null;
  if (m < 0.45) {
    body[pick(keys)] = pick(MUTANTS); // one field, any type
  } else if (m < 0.55) {
    delete body[pick(keys)];
  } else if (m < 0.62) {
    body[pick(extraKeys)] = pick(MUTANTS);
  } else if (m < 0.7) {
    // a nested field: a message's role or content, or an element of a list
    const msgs = body['messages'];
    if (Array.isArray(msgs)) (msgs[msgs.length - 1] as Record<string, unknown>)[pick(['role', 'content', 'name', 'tool_calls'])] = pick(MUTANTS);
    else body['prompt'] = [1, pick(MUTANTS), 3];
  } else if (m < 0.8) {
    const key = pick(keys);
    const json = JSON.stringify(body);
    raw = json.replace(`"${key}":${JSON.stringify(body[key])}`, `"${key}":${pick(RAW_MUTANTS)}`);
    if (raw === json) raw = `{"${key}":${pick(RAW_MUTANTS)}}`;
  } else if (m < 0.85) {
    // duplicate key: the later value wins in JSON.parse
    const key = pick(keys);
    raw = JSON.stringify(body).replace(/}$/, `,"${key}":${JSON.stringify(pick(MUTANTS))}}`);
  } else if (m < 0.9) {
    // invalid UTF-8 inside a string, or a truncated body
    const bytes = Buffer.from(JSON.stringify(body), 'utf8');
    if (rng.next() < 0.5) {
      const at = bytes.indexOf('"', 10) + 1;
      return { route, method, contentType, body: Buffer.concat([bytes.subarray(0, at), Buffer.from([pick([0xff, 0xc0, 0xed, 0x80, 0xf5]), 0xa0]), bytes.subarray(at)]) };
    }
    return { route, method, contentType, body: bytes.subarray(0, Math.floor(rng.next() * bytes.length)) };
  } else if (m < 0.95) {
    method = pick(['GET', 'PUT', 'DELETE', 'PATCH']);
    if (rng.next() < 0.3) route = pick(['/v1/models', '/health', '/v1/embeddings', '/v1/chat/completions/x', '/metrics']);
  } else {
    contentType = pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '', 'application/json; charset=latin1']);
  }
  return { route, method, contentType, body: raw ?? JSON.stringify(body) };
}

test(`fuzz: ${FUZZ_BODIES.toLocaleString('en')} mutated requests get 2xx or 4xx, never 5xx, and /health answers throughout`, async () => {
  const srv = await startServer({ parallel: 2, maxQueue: 64 });
  try {
    const statuses = new Map<number, number>();
    let generated = 0;
    let fieldErrors = 0;
    let next = 0;
    const started = Date.now();
    const worker = async () => {
      while (next < FUZZ_BODIES) {
        const i = next++;
        const req = mutatedBody(new Xoshiro128(99_000 + i)); // body i is the same on every run
        const headers: Record<string, string> = req.contentType ? { 'content-type': req.contentType } : {};
        const r = await request(srv.url, req.method, req.route, req.method === 'GET' ? undefined : req.body, headers);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        const shown = () => `${req.method} ${req.route} ${String(req.body).slice(0, 300)}`;
        assert.ok(r.status < 500, `${shown()} got ${r.status}: ${r.body.slice(0, 500)}`);
        if (req.route === '/metrics' && r.status === 200) {
          assert.match(r.body, /^# (HELP|TYPE) /m, shown());
        } else if (String(r.headers['content-type']).startsWith('text/event-stream')) {
          if (req.route === '/v1/responses') assert.match(r.body, /event: response\.(completed|incomplete)\ndata: [^\n]*\n\n$/, `${shown()}: the stream ends with the final response`);
          else assert.match(r.body, /data: \[DONE\]\n\n$/, `${shown()}: the stream ends with [DONE]`);
          generated++;
        } else {
          let j;
          try {
            j = JSON.parse(r.body);
          } catch {
            assert.fail(`${shown()} got ${r.status} with a body that is not JSON: ${JSON.stringify(r.body.slice(0, 200))}`);
          }
          if (r.status >= 400) {
            assert.equal(typeof j.error?.message, 'string', shown());
            if (/'[a-z_.[\]0-9]+'/.test(j.error.message)) fieldErrors++;
          } else if (req.route.endsWith('completions') && req.method === 'POST') {
            assert.ok(Array.isArray(j.choices) && j.choices.length === 1, shown());
            generated++;
          } else if (req.route === '/v1/responses' && req.method === 'POST') {
            assert.equal(j.object, 'response', shown());
            assert.equal(j.output[0].content[0].type, 'output_text', shown());
            generated++;
          }
        }
        if (i % 500 === 0) assert.equal((await request(srv.url, 'GET', '/health')).status, 200, `/health after ${i} bodies`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.equal((await request(srv.url, 'GET', '/health')).status, 200);
    // Most bodies get as far as field validation, and a share all the way to generation.
    assert.ok(fieldErrors > FUZZ_BODIES * 0.3, `field-level errors: ${fieldErrors}`);
    assert.ok(generated > FUZZ_BODIES * 0.05, `generations: ${generated}`);
    console.log(`# fuzz: ${FUZZ_BODIES} bodies in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
      `statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}; ${generated} generations, ${fieldErrors} field errors`);
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
  // ... and says it was cut off, so a client can tell it from a finished one.
  const finishes = [...text.matchAll(/"finish_reason":("?\w+"?)/g)].map((m) => m[1]).filter((f) => f !== 'null');
  assert.deepEqual(finishes, ['"cancelled"'], text.slice(-600));
});
