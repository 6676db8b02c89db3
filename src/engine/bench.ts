// `quantspec bench`: prefill and decode tokens/s versus context length for each decoding mode,
// measured in one run (speedups are against plain decoding with the F32 cache in the same run),
// with acceptance, peak RSS and KV bytes. JSON lines, a markdown table, an optional SVG plot.

import * as fs from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import type { DecodingOptions } from '../speculative/modes.js';
import { loadModel, type Model } from './model.js';
import { collect } from './session.js';
import { physicalCores } from '../kernels/cpu/index.js';
import type { BackendName } from '../kernels/select.js';
import { cpuModel, machineSummary, measureReadBandwidth } from './machine.js';

export interface BenchMode {
  readonly name: string;
  readonly decoding: DecodingOptions;
}

export const BENCH_MODES: readonly BenchMode[] = [
  { name: 'fp', decoding: { spec: 'none', kv: 'fp' } },
  { name: 'int8', decoding: { spec: 'none', kv: 'int8' } },
  { name: 'quantspec', decoding: { spec: 'quantspec', gamma: 4 } },
  { name: 'quantspec-auto', decoding: { spec: 'auto', gamma: 'auto' } },
  { name: 'streaming', decoding: { spec: 'streaming', gamma: 1 } },
  { name: 'snapkv', decoding: { spec: 'snapkv', gamma: 1 } },
];

export interface BenchOptions {
  readonly model?: string;
  readonly contexts: readonly number[];
  readonly gen: number;
  readonly modes: readonly string[];
  readonly backend?: BackendName;
  readonly corpus: string;
  readonly json?: string;
  readonly plot?: string;
  readonly log: (line: string) => void;
}

export interface BenchRow {
  readonly context: number;
  readonly mode: string;
  readonly backend: string;
  readonly prefill_tokens_per_s: number;
  readonly decode_tokens_per_s: number;
  readonly speedup: number | null;
  readonly acceptance_rate: number | null;
  readonly mean_accepted_length: number | null;
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

export async function runBench(o: BenchOptions): Promise<BenchRow[]> {
  const modes = o.modes.map((name) => {
    const m = BENCH_MODES.find((x) => x.name === name);
    if (!m) throw new InvalidArgumentError(`unknown mode "${name}"; choose from ${BENCH_MODES.map((x) => x.name).join(', ')}.`, 'modes');
    return m;
  });
  const maxContext = Math.max(...o.contexts);
  const model = await loadModel(o.model, { contextLength: maxContext + o.gen + 16, backend: o.backend, onWarning: () => {} });
  const text = fs.readFileSync(o.corpus, 'utf8');
  const bandwidth = measureReadBandwidth();
  o.log(`# ${machineSummary()}, read bandwidth ${bandwidth === null ? 'not measured (no native backend)' : `${bandwidth.toFixed(1)} GB/s`}, backend ${model.backend.name}`);
  o.log(`# model ${model.path}: ${model.config.nLayers} layers, dim ${model.config.dim}; generating ${o.gen} tokens greedily after each prompt`);
  const rows: BenchRow[] = [];
  // Warm-up (excluded): compile paths and fill caches for every mode.
  const warm = promptOf(model, text, Math.min(64, o.contexts[0]!));
  for (const m of modes) await collect(model.createSession({ ...m.decoding, contextLength: 256 }).generate({ ids: warm }, { temperature: 0, maxTokens: 8, ignoreEos: true }));
  for (const context of o.contexts) {
    const ids = promptOf(model, text, context);
    let baseline: number | null = null;
    for (const m of modes) {
      const session = model.createSession({ ...m.decoding, contextLength: context + o.gen + 16 });
      const { value: r, peakRss } = await measured(() => collect(session.generate({ ids }, { temperature: 0, maxTokens: o.gen, ignoreEos: true })));
      if (m.name === 'fp') baseline = r.timings.decodeTokensPerS;
      const row: BenchRow = {
        context, mode: m.name, backend: model.backend.name,
        prefill_tokens_per_s: r.timings.prefillTokensPerS,
        decode_tokens_per_s: r.timings.decodeTokensPerS,
        speedup: baseline ? r.timings.decodeTokensPerS / baseline : null,
        acceptance_rate: r.stats && r.stats.drafted > 0 ? r.stats.acceptanceRate : null,
        mean_accepted_length: r.stats && r.stats.rounds > 0 ? r.stats.meanAcceptedLength : null,
        peak_rss_bytes: peakRss,
        kv_bytes: r.kvBytes.total,
        generated: r.generatedIds.length,
      };
      rows.push(row);
      o.log(JSON.stringify(row));
    }
  }
  if (o.json) fs.writeFileSync(o.json, rows.map((r) => JSON.stringify({ ...r, cpu: cpuModel(), cores: physicalCores(), read_bandwidth_gb_per_s: bandwidth })).join('\n') + '\n');
  if (o.plot) fs.writeFileSync(o.plot, plotSvg(rows));
  return rows;
}

const fmt = (x: number | null, digits = 1) => (x === null ? '–' : x.toFixed(digits));
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)}`;

export function markdownTable(rows: readonly BenchRow[]): string {
  const lines = [
    '| context | mode | prefill tok/s | decode tok/s | speedup vs fp | acceptance | mean accepted length | peak RSS MiB | KV MiB |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(`| ${r.context} | ${r.mode} | ${fmt(r.prefill_tokens_per_s, 0)} | ${fmt(r.decode_tokens_per_s)} | ${fmt(r.speedup, 2)} | ` +
      `${r.acceptance_rate === null ? '–' : `${(r.acceptance_rate * 100).toFixed(1)}%`} | ${fmt(r.mean_accepted_length, 2)} | ${mib(r.peak_rss_bytes)} | ${mib(r.kv_bytes)} |`);
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
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];
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
