// Load test (a script, loopback only, bounded in count and time): starts `quantspec serve
// --parallel 2` as a child process and runs waves of concurrent streaming clients, some of which
// disconnect early. Checks that every finished response is complete and well-formed, that the
// queue limit yields 429s, that cancelled streams free their slots, that the server keeps serving,
// and that its RSS returns near where it started. Prints requests/s, time to first token and tokens/s.
//
// With --parallel N the slots decode in batches (continuous batching); the script first times one
// client alone and prints the waves' aggregate tokens/s as a multiple of that single-client rate.
//
//   node dist/bench/load.js [--clients 40] [--waves 3] [--parallel 2] [--max-tokens 48] [--max-queue 24] [--model PATH] [--json FILE]

import * as fs from 'node:fs';
import { machineSummary } from '../src/engine/machine.js';
import { startServeProcess } from './serve-process.js';
import { benchArgs } from './args.js';

const args = benchArgs('node dist/bench/load.js [--clients 40] [--waves 3] [--parallel 2] [--max-tokens 48] [--max-queue 24] [--model PATH] [--json FILE]', {
  clients: { type: 'string' }, waves: { type: 'string' }, 'max-tokens': { type: 'string' }, model: { type: 'string' },
  json: { type: 'string' }, 'max-queue': { type: 'string' }, parallel: { type: 'string' },
});
const CLIENTS = Number(args.clients ?? 40);
const WAVES = Number(args.waves ?? 3);
const MAX_TOKENS = Number(args['max-tokens'] ?? 48);
const MAX_QUEUE = Number(args['max-queue'] ?? 24);
const PARALLEL = Number(args.parallel ?? 2);

function rssOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

const { child, url } = await startServeProcess([
  '--parallel', String(PARALLEL), '--max-queue', String(MAX_QUEUE), ...(args.model ? ['--model', args.model] : []),
]);
const modelId = ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data[0]!.id;

interface Outcome { kind: 'complete' | 'cancelled' | 'rejected' | 'broken'; ttftMs?: number; tokens?: number; ms?: number; detail?: string }

async function client(i: number, wave: number, leaves = true): Promise<Outcome> {
  const disconnectAfter = leaves && i % 4 === 3 ? 2 : Infinity; // every fourth client hangs up after two chunks
  const controller = new AbortController();
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', signal: controller.signal, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: modelId, stream: true, stream_options: { include_usage: true }, max_tokens: MAX_TOKENS, temperature: 0.8, seed: wave * 1000 + i,
      messages: [{ role: 'user', content: `Tell me a story about ship number ${i}.` }],
    }),
  });
  if (res.status === 429) {
    await res.text();
    return { kind: 'rejected' };
  }
  if (res.status !== 200) return { kind: 'broken', detail: `status ${res.status}: ${await res.text()}` };
  const reader = res.body!.getReader();
  let buffer = '';
  let chunks = 0;
  let ttft: number | undefined;
  let usage: { completion_tokens: number } | undefined;
  let finish: string | null = null;
  let done = false;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    buffer += new TextDecoder().decode(r.value);
    let nl: number;
    while ((nl = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 2);
      if (!event.startsWith('data: ')) return { kind: 'broken', detail: `bad event ${event}` };
      const data = event.slice(6);
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const j = JSON.parse(data);
      if (j.error) return { kind: 'broken', detail: JSON.stringify(j.error) };
      if (j.usage) usage = j.usage;
      const c = j.choices?.[0];
      if (c?.delta?.content) ttft ??= performance.now() - t0;
      if (c?.finish_reason) finish = c.finish_reason;
      if (++chunks >= disconnectAfter) {
        controller.abort();
        await reader.cancel().catch(() => {});
        return { kind: 'cancelled' };
      }
    }
  }
  if (!done || !usage || !finish) return { kind: 'broken', detail: `incomplete stream (done ${done}, usage ${!!usage}, finish ${finish})` };
  return { kind: 'complete', ttftMs: ttft ?? performance.now() - t0, tokens: usage.completion_tokens, ms: performance.now() - t0 };
}

process.stdout.write(`# ${machineSummary()}\n# load test: ${WAVES} waves of ${CLIENTS} concurrent streaming clients, --parallel ${PARALLEL}, --max-queue ${MAX_QUEUE}\n`);
// Warm-up, then the baseline RSS.
await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: modelId, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] }) }).then((r) => r.text());
// One client alone: the single-client rate (tokens over the whole request, prefill included, as for the waves).
const alone: Outcome[] = [];
for (let i = 0; i < 3; i++) alone.push(await client(i, 99, false));
const singleRate = percentile(alone.map((o) => (o.tokens ?? 0) / ((o.ms ?? 1) / 1000)), 50);
const rssStart = rssOf(child.pid!);
const outcomes: Outcome[] = [];
const t0 = performance.now();
let healthFailures = 0;
const healthProbe = setInterval(() => {
  fetch(`${url}/health`).then((r) => { if (r.status !== 200) healthFailures++; }, () => healthFailures++);
}, 100);
// RSS after each wave: growth that stops after the first wave is the slots' caches and buffers
// being touched for the first time; growth in every wave would be a leak.
const rssAfterWave: number[] = [];
for (let w = 0; w < WAVES; w++) {
  outcomes.push(...(await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i, w)))));
  rssAfterWave.push(rssOf(child.pid!));
}
const seconds = (performance.now() - t0) / 1000;
clearInterval(healthProbe);
await new Promise((r) => setTimeout(r, 500));
const metrics = await (await fetch(`${url}/metrics`)).text();
const activeAfter = Number(/quantspec_active_slots (\d+)/.exec(metrics)![1]);
const rssEnd = rssOf(child.pid!);
child.kill('SIGTERM');
const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));

const complete = outcomes.filter((o) => o.kind === 'complete');
const broken = outcomes.filter((o) => o.kind === 'broken');
const tokens = complete.reduce((s, o) => s + o.tokens!, 0);
const summary = {
  clients: CLIENTS, waves: WAVES, requests: outcomes.length, complete: complete.length,
  cancelled: outcomes.filter((o) => o.kind === 'cancelled').length, rejected_429: outcomes.filter((o) => o.kind === 'rejected').length,
  broken: broken.length, requests_per_s: outcomes.length / seconds, ttft_p50_ms: percentile(complete.map((o) => o.ttftMs!), 50),
  ttft_p99_ms: percentile(complete.map((o) => o.ttftMs!), 99), tokens_per_s: tokens / seconds,
  single_client_tokens_per_s: singleRate, aggregate_vs_single: tokens / seconds / singleRate, parallel: PARALLEL, health_failures: healthFailures,
  active_slots_after: activeAfter, rss_start_bytes: rssStart, rss_after_wave_bytes: rssAfterWave, rss_end_bytes: rssEnd, rss_change: rssEnd / rssStart - 1,
  rss_change_after_first_wave: WAVES > 1 ? rssEnd / rssAfterWave[0]! - 1 : 0, exit_code: exitCode,
};
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
if (args.json) fs.writeFileSync(args.json, `${JSON.stringify(summary)}\n`);
const problems = [
  broken.length > 0 && `${broken.length} broken responses, e.g. ${broken[0]!.detail}`,
  summary.rejected_429 === 0 && 'the queue limit never produced a 429',
  healthFailures > 0 && `/health failed ${healthFailures} times`,
  activeAfter !== 0 && `${activeAfter} slots still busy after the run`,
  // The bound is on growth after the first wave has touched every slot (see rssAfterWave).
  Math.abs(summary.rss_change_after_first_wave) > 0.1 && `RSS moved by ${(summary.rss_change_after_first_wave * 100).toFixed(1)}% after the first wave`,
  exitCode !== 0 && `the server exited with ${exitCode}`,
].filter(Boolean);
for (const p of problems) process.stdout.write(`PROBLEM: ${p}\n`);
process.exitCode = problems.length ? 1 : 0;
