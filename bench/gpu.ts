// Decode speed on the WebGPU backend (a script): plain decoding over the F16 cache and the INT8
// view, QuantSpec γ = 4 and adaptive QuantSpec, at each context, for pdlm and for random weights
// with Llama-3.2-1B's shapes; each figure the median of --runs decodes from one prefilled cache
// (quantspec bench's method), with speedups run by run and, given the device's nominal bandwidth,
// the plain modes' share of it. Prints a markdown table per model and writes JSON lines.
//
//   node dist/bench/gpu.js [--device-gbs 3350] [--contexts 1024,4096,16384,32768] [--gen 64] [--runs 3]
//                          [--models pdlm,llama-3.2-1b] [--json FILE]
//
// Run it on a machine with a GPU: on a CPU adapter (lavapipe, SwiftShader) the numbers only show
// that it runs.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { markdownTable, runBench, type BenchRow } from '../src/engine/bench.js';
import { benchArgs } from './args.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const shared = process.env['QUANTSPEC_SHARED'] ?? path.resolve(repo, '..', 'shared');

const args = benchArgs('node dist/bench/gpu.js [--device-gbs 3350] [--contexts 1024,4096,16384,32768] [--gen 64] [--runs 3] [--models pdlm,llama-3.2-1b] [--json FILE]', {
  'device-gbs': { type: 'string' }, contexts: { type: 'string' }, gen: { type: 'string' }, runs: { type: 'string' },
  models: { type: 'string' }, json: { type: 'string' },
});
const MODELS: Record<string, string> = {
  pdlm: path.join(shared, 'models', 'pdlm-5.8m'),
  'llama-3.2-1b': 'synthetic:llama-3.2-1b',
};
const contexts = (args.contexts ?? '1024,4096,16384,32768').split(',').map(Number);
const names = (args.models ?? 'pdlm,llama-3.2-1b').split(',');
const corpus = path.join(shared, 'corpus', 'eval-northanger.txt');
const all: BenchRow[] = [];
for (const name of names) {
  const model = MODELS[name];
  if (!model) throw new Error(`unknown model "${name}"; choose from ${Object.keys(MODELS).join(', ')}`);
  const rows = await runBench({
    model, contexts, gen: Number(args.gen ?? 64), runs: Number(args.runs ?? 3), backend: 'webgpu',
    deviceGbs: args['device-gbs'] !== undefined ? Number(args['device-gbs']) : undefined,
    modes: ['f16', 'int8', 'quantspec', 'quantspec-auto'], corpus, log: (line) => console.log(line),
  });
  console.log(`\n## ${name} on ${rows[0]?.backend ?? 'webgpu'}\n\n${markdownTable(rows)}`);
  all.push(...rows);
}
if (args.json) fs.writeFileSync(args.json, all.map((r) => JSON.stringify(r)).join('\n') + '\n');
