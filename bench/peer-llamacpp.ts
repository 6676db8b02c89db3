// quantspec and llama.cpp side by side on the same GGUF file, the same prompt, greedy, the same
// thread count, in one run. llama.cpp runs through node-llama-cpp (pinned dev dependency,
// prebuilt CPU binaries) with an F16, a q8_0 and a q4_0 KV cache (flash attention on, llama.cpp's
// default on CPU and required for a quantized V cache), and with its draft-model speculative
// decoding using a Q4_0 copy of the same model as the draft. quantspec runs plain decoding over
// the F32 cache, the F16 cache (as llama.cpp keeps) and the INT8 view, and QuantSpec with γ = 4
// and adaptive γ.
//
// llama.cpp runs at --threads (the same count as quantspec) and also at each count in
// --llama-threads: through node-llama-cpp its compute threads share the cores with Node's own
// thread, and on a machine with few cores fewer threads can be faster. The ratio columns compare
// against llama.cpp's fastest thread count for each mode, named in the cell.
//
//   node dist/bench/peer-llamacpp.js [--model HF_DIR | --synthetic NAME] [--contexts 1024,4096,16384,32768] [--gen 128]
//                                    [--threads 2] [--llama-threads 1] [--modes fp,f16,int8,quantspec,auto]
//                                    [--llama-modes f16,q8_0,q4_0,draft] [--text FILE] [--json FILE] [--keep DIR]
//   node dist/bench/peer-llamacpp.js --tables LOG[,LOG...]
//
// --modes and --llama-modes measure only the modes named (all by default): `--modes f16
// --llama-modes f16` is the F16-cache comparison alone, minutes instead of most of an hour at long
// contexts; the tables show "–" for what was not measured.
//
// --json appends one JSON line per measurement as it is taken, so a long run that is interrupted
// keeps what it measured. --tables measures nothing: it prints the tables from the JSON lines of an
// earlier run (its --json file or its stdout). Every line names its run, and the tables take rows
// of one run only, so ratios never pair numbers taken at different times (the machine is shared
// and noisy); lines of several runs are refused. Ratios pair rows of the same context.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LlamaContextSequence, Token } from 'node-llama-cpp';
import { loadModel } from '../src/engine/model.js';
import { collect } from '../src/engine/session.js';
import { convertHfToGguf, writeModelGguf } from '../src/model/gguf-writer.js';
import { syntheticGgufInput } from '../src/model/synthetic.js';
import { promptOf } from '../src/engine/bench.js';
import { cpuModel, machineSummary, measureReadBandwidth } from '../src/engine/machine.js';
import { benchArgs } from './args.js';

const args = benchArgs('node dist/bench/peer-llamacpp.js [--model HF_DIR | --synthetic NAME] [--contexts 1024,4096,16384,32768] [--gen 128] [--threads 2] [--llama-threads 1] [--modes fp,f16,int8,quantspec,auto] [--llama-modes f16,q8_0,q4_0,draft] [--text FILE] [--json FILE] [--keep DIR] | node dist/bench/peer-llamacpp.js --tables LOG[,LOG...]', {
  model: { type: 'string' }, synthetic: { type: 'string' }, contexts: { type: 'string' }, gen: { type: 'string' }, threads: { type: 'string' },
  json: { type: 'string' }, keep: { type: 'string' }, text: { type: 'string' }, 'llama-threads': { type: 'string' },
  modes: { type: 'string' }, 'llama-modes': { type: 'string' },
  tables: { type: 'string' },
});
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const shared = path.resolve(root, '..', 'shared');
const GAMMA = 4;
const QS_MODES = [
  { name: 'fp', mode: 'fp', decoding: { spec: 'none', kv: 'fp' } },
  { name: 'f16', mode: 'f16', decoding: { spec: 'none', kv: 'f16' } },
  { name: 'int8', mode: 'int8', decoding: { spec: 'none', kv: 'int8' } },
  { name: 'quantspec', mode: `quantspec γ${GAMMA}`, decoding: { spec: 'quantspec', gamma: GAMMA } },
  { name: 'auto', mode: 'quantspec auto', decoding: { spec: 'auto', gamma: 'auto' } },
] as const;
const CACHES = [
  { name: 'f16', mode: 'f16 cache', type: 'F16' },
  { name: 'q8_0', mode: 'q8_0 cache', type: 'Q8_0' },
  { name: 'q4_0', mode: 'q4_0 cache', type: 'Q4_0' },
] as const;
const DRAFT_MODE = `draft Q4_0 γ≤${GAMMA}`;

/** The entries of `all` (and of `extra`) named in a comma-separated list, all of them without one;
 * an unknown name is a usage error (exit 2). */
function chosen<T extends { name: string }>(list: string | undefined, all: readonly T[], option: string, extra: string[] = []): { picked: T[]; extras: Set<string> } {
  if (list === undefined) return { picked: [...all], extras: new Set(extra) };
  const names = list.split(',').map((x) => x.trim()).filter((x) => x !== '');
  const known = [...all.map((m) => m.name), ...extra];
  const unknown = names.filter((x) => !known.includes(x));
  if (unknown.length > 0 || names.length === 0) {
    process.stderr.write(`${option} ${list}: ${unknown.length > 0 ? `unknown mode ${unknown.join(', ')}` : 'no mode named'}; choose from ${known.join(', ')}.\n`);
    process.exit(2);
  }
  return { picked: all.filter((m) => names.includes(m.name)), extras: new Set(extra.filter((x) => names.includes(x))) };
}

interface Row {
  context: number;
  engine: 'quantspec' | 'llama.cpp';
  mode: string;
  threads: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  acceptance_rate: number | null;
  generated: number;
  /** The run this row was measured in (its start time). */
  run?: string;
}

const log = (s: string) => process.stdout.write(`${s}\n`);

/** Measures both engines, printing and (with --json) appending each row as it is taken. */
async function measure(): Promise<Row[]> {
  if (args.model && args.synthetic) throw new Error('--model and --synthetic name two models; pass one of them.');
  const hfDir = args.synthetic ? `synthetic ${args.synthetic}` : args.model ?? path.join(shared, 'models', 'pdlm-5.8m');
  const contexts = (args.contexts ?? '1024,4096,16384,32768').split(',').map(Number);
  const GEN = Number(args.gen ?? 128);
  const THREADS = Number(args.threads ?? 2);
  const qsModes = chosen(args.modes, QS_MODES, '--modes').picked;
  const llamaModes = chosen(args['llama-modes'], CACHES, '--llama-modes', ['draft']);
  const LLAMA_THREADS = [...new Set([THREADS, ...(args['llama-threads'] ?? '1').split(',').map(Number)])];
  // held-out text by default: pdlm was trained on the Austen and Moby-Dick training texts, where
  // both engines' speculation would accept more than on text it has not seen
  const corpus = args.text ?? path.join(shared, 'corpus', 'eval-northanger.txt');

  // ---- the files -------------------------------------------------------------------------------
  const work = args.keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'quantspec-peer-'));
  fs.mkdirSync(work, { recursive: true });
  const targetFile = path.join(work, 'target-f16.gguf');
  const draftFile = path.join(work, 'draft-q4_0.gguf');
  // A synthetic model (random weights with a published model's shapes) is written from its preset.
  const convert = (file: string, dtype: 'f16' | 'q4_0') =>
    args.synthetic ? writeModelGguf(syntheticGgufInput(args.synthetic), file, dtype) : convertHfToGguf(hfDir, file, dtype);
  convert(targetFile, 'f16');
  const withDraft = llamaModes.extras.has('draft');
  if (withDraft) convert(draftFile, 'q4_0');

  const bandwidth = measureReadBandwidth();
  log(`# ${machineSummary()}, read bandwidth ${bandwidth === null ? 'not measured' : `${bandwidth.toFixed(1)} GB/s`}, ${THREADS} threads for both engines`);
  log(`# model ${hfDir} as ${path.basename(targetFile)} (draft for llama.cpp: ${withDraft ? path.basename(draftFile) : 'none, not measured'}); ${GEN} greedy tokens after each prompt`);

  const rows: Row[] = [];
  const run = new Date().toISOString();
  if (args.json) fs.writeFileSync(args.json, '');
  const push = (row: Row) => {
    const r = { ...row, run };
    rows.push(r);
    log(JSON.stringify(r));
    if (args.json) fs.appendFileSync(args.json, `${JSON.stringify({ ...r, cpu: cpuModel(), read_bandwidth_gb_per_s: bandwidth })}\n`);
  };

  // ---- quantspec -------------------------------------------------------------------------------
  const maxContext = Math.max(...contexts);
  const ours = await loadModel(targetFile, { contextLength: maxContext + GEN + 16, onWarning: () => {} });
  const ourThreads = (ours.backend as { threads?: number }).threads;
  if (ourThreads !== undefined && ourThreads !== THREADS) {
    log(`# note: quantspec's backend uses ${ourThreads} threads (set QUANTSPEC_THREADS=${THREADS} to match)`);
  }
  const text = fs.readFileSync(corpus, 'utf8');
  const prompts = new Map(contexts.map((c) => [c, promptOf(ours, text, c)]));
  const warm = promptOf(ours, text, 64);
  for (const m of qsModes) await collect(ours.createSession({ ...m.decoding, contextLength: 256 }).generate({ ids: warm }, { temperature: 0, maxTokens: 8, ignoreEos: true }));
  for (const context of contexts) {
    for (const m of qsModes) {
      const session = ours.createSession({ ...m.decoding, contextLength: context + GEN + 16 });
      const r = await collect(session.generate({ ids: prompts.get(context)! }, { temperature: 0, maxTokens: GEN, ignoreEos: true }));
      push({
        context, engine: 'quantspec', mode: m.mode, threads: ourThreads ?? THREADS,
        prefill_tokens_per_s: r.timings.prefillTokensPerS, decode_tokens_per_s: r.timings.decodeTokensPerS,
        acceptance_rate: r.stats && r.stats.drafted > 0 ? r.stats.acceptanceRate : null, generated: r.generatedIds.length,
      });
    }
  }

  // ---- llama.cpp -------------------------------------------------------------------------------
  const { getLlama, LlamaLogLevel, DraftSequenceTokenPredictor } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
  const target = await llama.loadModel({ modelPath: targetFile });
  const draft = withDraft ? await llama.loadModel({ modelPath: draftFile }) : null;

  /** Prefill all but the last prompt token, then time `GEN` greedy tokens from the last one. */
  async function timeSequence(seq: LlamaContextSequence, ids: number[], prefillExtra?: (ids: Token[]) => Promise<void>): Promise<{ prefill: number; decode: number; n: number }> {
    const head = ids.slice(0, -1) as Token[];
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(head);
    if (prefillExtra) await prefillExtra(head);
    const t1 = performance.now();
    let n = 0;
    for await (const _ of seq.evaluate([ids.at(-1)! as Token], { temperature: 0 })) {
      if (++n >= GEN) break;
    }
    const t2 = performance.now();
    return { prefill: head.length / ((t1 - t0) / 1000), decode: n / ((t2 - t1) / 1000), n };
  }

  for (const threads of LLAMA_THREADS) for (const context of contexts) {
    const ids = prompts.get(context)!;
    const contextSize = context + GEN + 16;
    for (const c of llamaModes.picked) {
      const ctx = await target.createContext({
        contextSize, threads, flashAttention: true, sequences: 1,
        experimentalKvCacheKeyType: c.type, experimentalKvCacheValueType: c.type,
      });
      const seq = ctx.getSequence();
      await timeSequence(seq, ids.slice(0, 64)); // warm-up, excluded
      await seq.clearHistory();
      const t = await timeSequence(seq, ids);
      push({ context, engine: 'llama.cpp', mode: c.mode, threads, prefill_tokens_per_s: t.prefill, decode_tokens_per_s: t.decode, acceptance_rate: null, generated: t.n });
      await ctx.dispose();
    }
    if (!draft) continue;
    // Draft-model speculative decoding: the Q4_0 copy drafts up to γ tokens, the F16 model verifies.
    const draftCtx = await draft.createContext({ contextSize, threads, flashAttention: true, sequences: 1 });
    const ctx = await target.createContext({ contextSize, threads, flashAttention: true, sequences: 1 });
    const draftSeq = draftCtx.getSequence();
    const predictor = new DraftSequenceTokenPredictor(draftSeq, { minTokens: 0, maxTokens: GAMMA, minConfidence: 0 });
    const seq = ctx.getSequence({ tokenPredictor: predictor });
    const both = async (head: Token[]) => draftSeq.evaluateWithoutGeneratingNewTokens(head);
    await timeSequence(seq, ids.slice(0, 64), both); // warm-up, excluded
    await seq.clearHistory();
    await draftSeq.clearHistory();
    const before = seq.tokenPredictions;
    const t = await timeSequence(seq, ids, both);
    const p = seq.tokenPredictions;
    const validated = p.validated - before.validated;
    const refuted = p.refuted - before.refuted;
    push({
      context, engine: 'llama.cpp', mode: DRAFT_MODE, threads, prefill_tokens_per_s: t.prefill, decode_tokens_per_s: t.decode,
      acceptance_rate: validated + refuted > 0 ? validated / (validated + refuted) : null, generated: t.n,
    });
    await ctx.dispose();
    await draftCtx.dispose();
  }
  await draft?.dispose();
  await target.dispose();
  await llama.dispose();
  if (!args.keep) fs.rmSync(work, { recursive: true, force: true });
  return rows;
}

/** The rows in JSON lines of earlier runs (lines that are not JSON objects are skipped). */
function readRows(files: string[]): Row[] {
  const byKey = new Map<string, Row>();
  const runs = new Set<string>();
  for (const file of files) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      const r = JSON.parse(line) as Row;
      if (typeof r.context !== 'number' || typeof r.decode_tokens_per_s !== 'number') continue;
      runs.add(r.run ?? 'unnamed (a log from before runs were named)');
      byKey.set(`${r.context}|${r.engine}|${r.mode}|${r.threads}`, r);
    }
  }
  if (runs.size > 1) throw new Error(`these lines come from ${runs.size} runs (${[...runs].join(', ')}); tables are built from one run: pass one run's log.`);
  return [...byKey.values()];
}

// ---- the tables --------------------------------------------------------------------------------
function printTables(rows: Row[]): void {
  const contexts = [...new Set(rows.map((r) => r.context))].sort((a, b) => a - b);
  const threadCounts = [...new Set(rows.filter((r) => r.engine === 'llama.cpp').map((r) => r.threads))].sort((a, b) => b - a);
  /** quantspec's row, or llama.cpp's fastest row (by the metric) over the thread counts tried. */
  const pick = (context: number, engine: Row['engine'], mode: string, metric: 'decode_tokens_per_s' | 'prefill_tokens_per_s'): Row | undefined => {
    const all = rows.filter((r) => r.context === context && r.engine === engine && r.mode === mode);
    return all.length === 0 ? undefined : all.reduce((a, b) => (b[metric] > a[metric] ? b : a));
  };
  const f = (x: number) => x.toFixed(x >= 100 ? 0 : 1);
  const qs = QS_MODES.map((m) => m.mode);
  const lc = [...CACHES.map((c) => c.mode), DRAFT_MODE];
  for (const metric of ['decode_tokens_per_s', 'prefill_tokens_per_s'] as const) {
    log(`\n${metric === 'decode_tokens_per_s' ? 'Decode' : 'Prefill'} tokens/s; llama.cpp at its fastest of ${threadCounts.join(', ')} threads (named); quantspec / llama.cpp in the last columns\n`);
    log(`| context | ${qs.map((m) => `quantspec ${m}`).join(' | ')} | ${lc.map((m) => `llama.cpp ${m}`).join(' | ')} | f16 / f16 | int8 / q8_0 | quantspec γ${GAMMA} / draft |`);
    log(`|---:|${[...qs, ...lc].map(() => '---:').join('|')}|---:|---:|---:|`);
    for (const c of contexts) {
      const q = (m: string) => pick(c, 'quantspec', m, metric)?.[metric];
      const l = (m: string) => pick(c, 'llama.cpp', m, metric);
      const cell = (x: number | undefined) => (x === undefined ? '–' : f(x));
      const ratio = (a: number | undefined, b: Row | undefined) => (a === undefined || b === undefined ? '–' : `${(a / b[metric]).toFixed(2)}×`);
      log(`| ${c} | ${qs.map((m) => cell(q(m))).join(' | ')} | ${lc.map((m) => { const r = l(m); return r ? `${f(r[metric])} (${r.threads}t)` : '–'; }).join(' | ')} | ` +
        `${ratio(q('f16'), l('f16 cache'))} | ${ratio(q('int8'), l('q8_0 cache'))} | ${ratio(q(`quantspec γ${GAMMA}`), l(DRAFT_MODE))} |`);
    }
  }
  const acc = rows.filter((r) => r.acceptance_rate !== null).map((r) => `${r.context} ${r.engine} ${r.mode} (${r.threads}t): ${(r.acceptance_rate! * 100).toFixed(1)}%`);
  log(`\nAcceptance: ${acc.join('; ')}`);
}

printTables(args.tables ? readRows(args.tables.split(',')) : await measure());
