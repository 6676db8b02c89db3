// `quantspec bench`: decode speed versus context for each decoding mode.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../core/errors.js';
import { SYNTHETIC_MODELS, type BackendName } from '../engine/api.js';
import { BENCH_GAMMA, BENCH_MODES, DEFAULT_BENCH_RUNS, markdownTable, runBench } from '../engine/bench.js';
import { modelPathOf, parse, str } from './args.js';

export const BENCH_USAGE = `usage: quantspec bench [--model PATH | --synthetic NAME] [--contexts 1024,4096,16384,32768] [--gen 128] [--runs ${DEFAULT_BENCH_RUNS}]
                       [--modes ${BENCH_MODES.map((m) => m.name).join(',')}]
                       [--text FILE] [--backend cpu|reference|webgpu] [--json FILE] [--plot FILE.svg]

For each context length (a prompt of that many tokens from --text, by default the held-out
../shared/corpus/eval-northanger.txt) and decoding mode: prefill tokens/s, then decode tokens/s as
the median (and range) of --runs runs from the same prefilled cache (the modes take turns run by
run), the speedups over plain decoding with the F16 cache and with the INT8 view (the median of
the run-by-run ratios), acceptance, mean accepted
length, for plain modes the bytes a step reads and their share of the measured read bandwidth,
peak RSS and KV bytes. QuantSpec and the StreamingLLM / SnapKV drafts run at γ = ${BENCH_GAMMA} (the
sparse drafts over the F16 cache); quantspec-auto picks γ itself. Warm-up runs are excluded.
--synthetic NAME (${SYNTHETIC_MODELS.join(', ')}) runs random weights with that published model's
exact shapes and vocabulary: its rows say synthetic, and their acceptance means nothing.
Prints JSON lines as it goes and a markdown table at the end.`;

function defaultCorpus(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidate = path.resolve(here, '..', '..', '..', '..', 'shared', 'corpus', 'eval-northanger.txt');
  return fs.existsSync(candidate) ? candidate : undefined;
}

function intList(v: string | undefined, name: string, fallback: number[]): number[] {
  if (v === undefined) return fallback;
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 2)) throw new InvalidArgumentError(`--${name} takes integers >= 2, got "${v}".`, name);
  return xs;
}

export async function runBenchCommand(argv: string[]): Promise<number> {
  const { flags } = parse(argv, {
    model: { type: 'string', short: 'm' }, synthetic: { type: 'string' }, contexts: { type: 'string' }, gen: { type: 'string' }, runs: { type: 'string' }, modes: { type: 'string' },
    text: { type: 'string' }, backend: { type: 'string' }, json: { type: 'string' }, plot: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (flags['help']) {
    process.stdout.write(`${BENCH_USAGE}\n`);
    return 0;
  }
  const corpus = str(flags, 'text') ?? defaultCorpus();
  if (!corpus) throw new InvalidArgumentError('--text FILE is required (a long text to cut prompts from).', 'text');
  const [gen] = intList(str(flags, 'gen'), 'gen', [128]);
  const runs = Number(str(flags, 'runs') ?? DEFAULT_BENCH_RUNS);
  if (!Number.isInteger(runs) || runs < 1) throw new InvalidArgumentError(`--runs takes a positive integer, got "${str(flags, 'runs')}".`, 'runs');
  const rows = await runBench({
    model: modelPathOf(flags),
    contexts: intList(str(flags, 'contexts'), 'contexts', [1024, 4096, 16384, 32768]),
    gen: gen!,
    runs,
    modes: (str(flags, 'modes') ?? BENCH_MODES.map((m) => m.name).join(',')).split(',').map((s) => s.trim()),
    backend: str(flags, 'backend') as BackendName | undefined,
    corpus,
    json: str(flags, 'json'),
    plot: str(flags, 'plot'),
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`\n${markdownTable(rows)}\n`);
  return 0;
}
