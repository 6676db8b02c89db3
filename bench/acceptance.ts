// Acceptance of QuantSpec's draft (4-bit weights, INT4 view) against the target (full weights,
// INT8 view), as the paper defines it (accepted / (γ · rounds)), for γ = 2, 4, 6, on prompts cut
// from the long public-domain texts. Also mean accepted length, the per-position rate, and the
// same for draft variants (which layers are 4-bit, group size), to show what limits acceptance.
//
//   node dist/bench/acceptance.js [--model DIR] [--prompts 6] [--prompt-len 600] [--gen 128] [--temperature 0] [--json FILE]

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/engine/model.js';
import { collect } from '../src/engine/session.js';
import { machineSummary } from '../src/engine/machine.js';
import { benchArgs } from './args.js';

const args = benchArgs('node dist/bench/acceptance.js [--model DIR] [--prompts 6] [--prompt-len 600] [--gen 128] [--temperature 0] [--json FILE]', {
  model: { type: 'string' }, prompts: { type: 'string' }, 'prompt-len': { type: 'string' }, gen: { type: 'string' },
  json: { type: 'string' }, temperature: { type: 'string' },
});
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const shared = path.resolve(root, '..', 'shared');
const modelPath = args.model ?? path.join(shared, 'models', 'pdlm-5.8m');
const N_PROMPTS = Number(args.prompts ?? 6);
const PROMPT_LEN = Number(args['prompt-len'] ?? 600);
const GEN = Number(args.gen ?? 128);
const TEMPERATURE = Number(args.temperature ?? 0);
const texts = ['eval-moby-tail.txt', 'austen-train.txt', 'sotu.txt', 'kjv.txt'].map((f) => fs.readFileSync(path.join(shared, 'corpus', f), 'utf8'));

const VARIANTS: { name: string; draft: { layers?: string; groupSize?: number; symmetric?: boolean; headBits?: number } }[] = [
  { name: 'default (all linear, g32 asym; 8-bit head)', draft: {} },
  { name: "all linear; the target's head", draft: { headBits: 0 } },
  { name: 'mlp only (as the paper code)', draft: { layers: 'mlp' } },
  { name: 'all linear, g128 sym', draft: { groupSize: 128, symmetric: true } },
  { name: 'all linear + 4-bit lm_head', draft: { layers: 'all+head' } },
];

process.stdout.write(`# ${machineSummary()}\n# model ${modelPath}; ${N_PROMPTS} prompts of ${PROMPT_LEN} tokens; ${GEN} tokens each; temperature ${TEMPERATURE}\n\n`);
process.stdout.write('| draft | γ | acceptance | mean accepted length | per position |\n|---|---:|---:|---:|---|\n');
const rows: Record<string, unknown>[] = [];
for (const v of VARIANTS) {
  const model = await loadModel(modelPath, { contextLength: PROMPT_LEN + GEN + 16, draft: v.draft, onWarning: () => {} });
  const prompts: number[][] = [];
  for (let i = 0; i < N_PROMPTS; i++) {
    const text = texts[i % texts.length]!;
    const start = Math.floor((text.length / (N_PROMPTS + 1)) * (i + 1));
    const ids = model.tokenizer.encode(text.slice(start, start + PROMPT_LEN * 8), { addSpecial: false }).slice(0, PROMPT_LEN - 1);
    prompts.push([model.tokenizer.bosId ?? 0, ...ids]);
  }
  for (const gamma of [2, 4, 6]) {
    let drafted = 0, accepted = 0, rounds = 0;
    const lengths = new Array(gamma + 1).fill(0); // rounds that accepted exactly n drafts
    for (const [i, ids] of prompts.entries()) {
      const r = await collect(model.createSession({ spec: 'quantspec', gamma }).generate({ ids }, { temperature: TEMPERATURE, seed: i, maxTokens: GEN, ignoreEos: true }));
      const s = r.stats!;
      drafted += s.drafted;
      accepted += s.accepted;
      rounds += s.rounds;
      s.acceptedLengths.forEach((c, n) => (lengths[n] += c));
    }
    // Position k is accepted in every round that accepted more than k drafts.
    const perPosition = Array.from({ length: gamma }, (_, k) => lengths.slice(k + 1).reduce((a, b) => a + b, 0) / rounds);
    const row = { draft: v.name, gamma, acceptance_rate: accepted / drafted, mean_accepted_length: (accepted + rounds) / rounds, per_position: perPosition, rounds, drafted, accepted };
    rows.push(row);
    process.stdout.write(`| ${v.name} | ${gamma} | ${(row.acceptance_rate * 100).toFixed(1)}% | ${row.mean_accepted_length.toFixed(2)} | ${perPosition.map((p) => `${(p * 100).toFixed(0)}%`).join(' ')} |\n`);
  }
}
if (args.json) fs.writeFileSync(args.json, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
