// `quantspec bench`: prefill and decode tokens/s versus context length for each decoding mode,
// measured in one run. Each mode prefills the prompt once, checkpoints its session, and decodes
// from that same cache `runs` times (restoring it in between), the modes taking turns run by run;
// a decode figure is the median of those runs with their range. Speedups are against plain
// decoding over the F16 cache and over the INT8 view: the median of the ratios run by run. Plain
// modes also report the bytes a step reads (weights and KV at that context) and their share of the
// read bandwidth measured at the start. JSON lines, a markdown table, an optional SVG plot.

import * as fs from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import { isFullPrecision, type DecodingOptions, type KvMode } from '../speculative/modes.js';
import { loadModel, type Model } from './model.js';
import { collect, type GenerationResult, type Session, type SessionCheckpoint } from './session.js';
import { physicalCores } from '../kernels/cpu/index.js';
import type { BackendName } from '../kernels/select.js';
import { cpuModel, machineSummary, measureReadBandwidth } from './machine.js';
import { fpKvBytes, kvEstimate } from './inspect.js';

export interface BenchMode {
  readonly name: string;
  readonly decoding: DecodingOptions;
}

/** The draft length of the fixed-γ speculative modes: QuantSpec and both sparse drafts alike. */
export const BENCH_GAMMA = 4;

export const BENCH_MODES: readonly BenchMode[] = [
  { name: 'fp', decoding: { spec: 'none', kv: 'fp' } },
  { name: 'f16', decoding: { spec: 'none', kv: 'f16' } },
  { name: 'int8', decoding: { spec: 'none', kv: 'int8' } },
  { name: 'quantspec', decoding: { spec: 'quantspec', gamma: BENCH_GAMMA } },
  { name: 'quantspec-auto', decoding: { spec: 'auto', gamma: 'auto' } },
  { name: 'streaming', decoding: { spec: 'streaming', gamma: BENCH_GAMMA, kv: 'f16' } },
  { name: 'snapkv', decoding: { spec: 'snapkv', gamma: BENCH_GAMMA, kv: 'f16' } },
];

export const DEFAULT_BENCH_RUNS = 3;

export interface BenchOptions {
  readonly model?: string;
  readonly contexts: readonly number[];
  readonly gen: number;
  readonly modes: readonly string[];
  /** Decode runs per mode and context from the same prefilled cache (at least 3 by default). */
  readonly runs?: number;
  readonly backend?: BackendName;
  /**
   * With backend 'webgpu': the device's nominal memory bandwidth in GB/s (WebGPU cannot measure
   * it), against which the plain modes' share of bandwidth is reported; none without it.
   */
  readonly deviceGbs?: number;
  readonly corpus: string;
  readonly json?: string;
  readonly plot?: string;
  readonly log: (line: string) => void;
}

export interface BenchRow {
  readonly context: number;
  readonly mode: string;
  readonly backend: string;
  /** A synthetic model (random weights, model/synthetic.ts): its acceptance means nothing. */
  readonly synthetic: boolean;
  /** Draft length of a fixed-γ speculative mode (null for plain decoding and adaptive γ). */
  readonly gamma: number | null;
  readonly prefill_tokens_per_s: number;
  /** Median over the runs, with the slowest and fastest. */
  readonly decode_tokens_per_s: number;
  readonly decode_min: number;
  readonly decode_max: number;
  /** Each run's decode tokens/s, in run order (run r of every mode was measured in the same round). */
  readonly decode_runs: readonly number[];
  readonly runs: number;
  readonly speedup_vs_f16: number | null;
  readonly speedup_vs_int8: number | null;
  readonly acceptance_rate: number | null;
  readonly mean_accepted_length: number | null;
  /** Plain modes: weight and KV bytes one step reads at this context, and their share of the read bandwidth. */
  readonly bytes_per_step: number | null;
  readonly bandwidth_share: number | null;
  /** The process's peak while this mode prefilled and ran, with every mode's session of this context alive. */
  readonly peak_rss_bytes: number;
  readonly kv_bytes: number;
  readonly generated: number;
}

/** Prompt ids of exactly `n` tokens (BOS first) cut from the corpus text. */
export function promptOf(model: Model, text: string, n: number): number[] {
  const bos = model.tokenizer.bosId;
  const ids = model.tokenizer.encode(text, { addSpecial: false });
  const need = n - (bos !== null ? 1 : 0);
  if (ids.length < need) {
    throw new InvalidArgumentError(`the corpus has ${ids.length} tokens; a context of ${n} needs more text.`, 'text');
  }
  return bos !== null ? [bos, ...ids.slice(0, need)] : ids.slice(0, need);
}

/** Run one generation while sampling RSS; returns the result and the peak RSS seen. */
async function measured<T>(run: () => Promise<T>): Promise<{ value: T; peakRss: number }> {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  try {
    const value = await run();
    return { value, peakRss: Math.max(peak, process.memoryUsage.rss()) };
  } finally {
    clearInterval(timer);
  }
}

/** Bytes a plain decoding step reads at `context` positions: the target's weights and the KV it attends over. */
export function plainStepBytes(model: Model, kv: KvMode, context: number): number {
  if (isFullPrecision(kv)) return model.weightBytes + fpKvBytes(model.config, context, kv === 'fp' ? 4 : 2);
  const hier = kvEstimate(model.config, context, model.prefillChunk);
  return model.weightBytes + (kv === 'int8' ? hier.readInt8 : hier.readInt4);
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function runBench(o: BenchOptions): Promise<BenchRow[]> {
  const modes = o.modes.map((name) => {
    const m = BENCH_MODES.find((x) => x.name === name);
    if (!m) throw new InvalidArgumentError(`unknown mode "${name}"; choose from ${BENCH_MODES.map((x) => x.name).join(', ')}.`, 'modes');
    return m;
  });
  const runs = o.runs ?? DEFAULT_BENCH_RUNS;
  if (!Number.isInteger(runs) || runs < 1) throw new InvalidArgumentError(`runs must be a positive integer, got ${runs}.`, 'runs');
  const maxContext = Math.max(...o.contexts);
  const model = await loadModel(o.model, { contextLength: maxContext + o.gen + 16, backend: o.backend, onWarning: () => {} });
  const text = fs.readFileSync(o.corpus, 'utf8');
  const gpu = model.runtime.device !== null;
  const bandwidth = gpu ? o.deviceGbs ?? null : measureReadBandwidth();
  const bandwidthNote = gpu
    ? bandwidth === null ? 'device bandwidth not given' : `device bandwidth ${bandwidth} GB/s (nominal, as given)`
    : bandwidth === null ? 'read bandwidth not measured (no native backend)' : `read bandwidth ${bandwidth.toFixed(1)} GB/s`;
  o.log(`# ${machineSummary()}, ${bandwidthNote}, backend ${model.backendName}`);
  o.log(`# model ${model.path}: ${model.config.nLayers} layers, dim ${model.config.dim}; prompts from ${o.corpus}; ` +
    `${o.gen} greedy tokens per run, ${runs} runs per mode from one prefilled cache`);
  const synthetic = model.format === 'synthetic';
  if (synthetic) o.log('# synthetic model: random weights with the shapes of a published model; speeds and memory are real, acceptance means nothing');
  const rows: BenchRow[] = [];
  // Warm-up (excluded): compile paths and fill caches for every mode.
  const warm = promptOf(model, text, Math.min(64, o.contexts[0]!));
  for (const m of modes) await collect(model.createSession({ ...m.decoding, contextLength: 256 }).generate({ ids: warm }, { temperature: 0, maxTokens: 8, ignoreEos: true }));
  const options = { temperature: 0, maxTokens: o.gen, ignoreEos: true } as const;
  for (const context of o.contexts) {
    const ids = promptOf(model, text, context);
    // Every mode prefills once and checkpoints; then the runs go round the modes (run r of every
    // mode, then run r + 1), so each mode's run r is measured moments from the others' and a
    // slow spell of this shared machine falls on all modes alike rather than on one.
    const live: { m: BenchMode; session: Session; saved: SessionCheckpoint; prefillTokensPerS: number; speeds: number[]; peak: number; last: GenerationResult | null }[] = [];
    for (const m of modes) {
      const session = model.createSession({ ...m.decoding, contextLength: context + o.gen + 16 });
      const { value: pre, peakRss } = await measured(() => session.prefillPrompt({ ids }));
      live.push({ m, session, saved: session.checkpoint(), prefillTokensPerS: pre.prefillMs > 0 ? ((pre.promptTokens - 1) / pre.prefillMs) * 1000 : 0,
        speeds: [], peak: peakRss, last: null });
    }
    for (let r = 0; r < runs; r++) {
      for (const x of live) {
        x.session.restore(x.saved);
        const { value, peakRss } = await measured(() => collect(x.session.generate({ ids }, options)));
        if (value.timings.cachedTokens !== ids.length - 1) throw new Error(`bench: run ${r} re-prefilled the prompt instead of restoring it.`);
        x.speeds.push(value.timings.decodeTokensPerS);
        x.peak = Math.max(x.peak, peakRss);
        x.last = value;
      }
    }
    const at: BenchRow[] = [];
    for (const { m, prefillTokensPerS, speeds, peak, last } of live) {
      if (!last) throw new Error('bench: no runs');
      const plan = model.plan(m.decoding);
      const plain = plan.spec === 'none';
      const decode = median(speeds);
      const bytes = plain ? plainStepBytes(model, plan.kv, context) : null;
      at.push({
        context, mode: m.name, backend: model.backendName, synthetic,
        gamma: plan.spec === 'none' || plan.gamma === 'auto' ? null : plan.gamma,
        prefill_tokens_per_s: prefillTokensPerS,
        decode_tokens_per_s: decode, decode_min: Math.min(...speeds), decode_max: Math.max(...speeds), decode_runs: speeds, runs,
        speedup_vs_f16: null, speedup_vs_int8: null,
        acceptance_rate: last.stats && last.stats.drafted > 0 ? last.stats.acceptanceRate : null,
        mean_accepted_length: last.stats && last.stats.rounds > 0 ? last.stats.meanAcceptedLength : null,
        bytes_per_step: bytes,
        bandwidth_share: bytes !== null && bandwidth !== null ? (bytes * decode) / (bandwidth * 1e9) : null,
        peak_rss_bytes: peak,
        kv_bytes: last.kvBytes.total,
        generated: last.generatedIds.length,
      });
    }
    // Speedups: the median over the runs of each run's ratio to the baseline's run of the same round.
    const speedsOf = (name: string) => live.find((x) => x.m.name === name)?.speeds ?? null;
    const paired = (speeds: readonly number[], base: readonly number[] | null) => (base ? median(speeds.map((v, i) => v / base[i]!)) : null);
    const f16 = speedsOf('f16');
    const int8 = speedsOf('int8');
    live.forEach((x, i) => {
      const row = { ...at[i]!, speedup_vs_f16: paired(x.speeds, f16), speedup_vs_int8: paired(x.speeds, int8) };
      rows.push(row);
      o.log(JSON.stringify(row));
    });
  }
  if (o.json) fs.writeFileSync(o.json, rows.map((r) => JSON.stringify({ ...r, cpu: cpuModel(), cores: physicalCores(), [gpu ? 'device_bandwidth_gb_per_s' : 'read_bandwidth_gb_per_s']: bandwidth })).join('\n') + '\n');
  if (o.plot) fs.writeFileSync(o.plot, plotSvg(rows));
  return rows;
}

const fmt = (x: number | null, digits = 1) => (x === null ? '–' : x.toFixed(digits));
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)}`;

export function markdownTable(rows: readonly BenchRow[]): string {
  const lines = [
    '| context | mode | γ | prefill tok/s | decode tok/s (median, range) | vs f16 | vs int8 | acceptance | mean accepted length | bytes/step MiB | share of bandwidth | peak RSS MiB | KV MiB |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(`| ${r.context} | ${r.mode}${r.synthetic ? ' (synthetic)' : ''} | ${r.gamma ?? (r.mode === 'quantspec-auto' ? 'auto' : '–')} | ${fmt(r.prefill_tokens_per_s, 0)} | ` +
      `${fmt(r.decode_tokens_per_s)} (${fmt(r.decode_min)}–${fmt(r.decode_max)}) | ${fmt(r.speedup_vs_f16, 2)} | ${fmt(r.speedup_vs_int8, 2)} | ` +
      `${r.acceptance_rate === null ? '–' : `${(r.acceptance_rate * 100).toFixed(1)}%${r.synthetic ? ' (synthetic: meaningless)' : ''}`} | ${fmt(r.mean_accepted_length, 2)} | ` +
      `${r.bytes_per_step === null ? '–' : mib(r.bytes_per_step)} | ${r.bandwidth_share === null ? '–' : `${(r.bandwidth_share * 100).toFixed(0)}%`} | ` +
      `${mib(r.peak_rss_bytes)} | ${mib(r.kv_bytes)} |`);
  }
  return lines.join('\n');
}

/** Decode tokens/s against context (log scale), one line per mode. */
export function plotSvg(rows: readonly BenchRow[]): string {
  const W = 720, H = 420, L = 70, R = 150, T = 30, B = 50;
  const contexts = [...new Set(rows.map((r) => r.context))].sort((a, b) => a - b);
  const modes = [...new Set(rows.map((r) => r.mode))];
  const maxY = Math.max(...rows.map((r) => r.decode_tokens_per_s)) * 1.1 || 1;
  const lx = (c: number) => {
    const a = Math.log2(contexts[0]!), b = Math.log2(contexts.at(-1)!);
    return L + (b > a ? ((Math.log2(c) - a) / (b - a)) * (W - L - R) : (W - L - R) / 2);
  };
  const ly = (v: number) => H - B - (v / maxY) * (H - T - B);
  const colors = ['#1f77b4', '#17becf', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">context (tokens)</text>`,
    `<text x="16" y="${(T + H - B) / 2}" transform="rotate(-90 16 ${(T + H - B) / 2})" text-anchor="middle">decode tokens/s</text>`];
  for (const c of contexts) parts.push(`<text x="${lx(c)}" y="${H - B + 16}" text-anchor="middle">${c}</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = (maxY / 4) * i;
    parts.push(`<text x="${L - 6}" y="${ly(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
  }
  modes.forEach((m, i) => {
    const pts = rows.filter((r) => r.mode === m).sort((a, b) => a.context - b.context);
    const color = colors[i % colors.length];
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${lx(p.context)},${ly(p.decode_tokens_per_s)}`).join(' ')}"/>`);
    for (const p of pts) parts.push(`<circle cx="${lx(p.context)}" cy="${ly(p.decode_tokens_per_s)}" r="3" fill="${color}"/>`);
    parts.push(`<text x="${W - R + 10}" y="${T + 16 * i + 10}" fill="${color}">${m}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
