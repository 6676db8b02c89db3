// What structured output costs per decode step: the token mask of the JSON automaton, computed
// cold (a fresh constraint, every state a cache miss) and warm (the same states again, as a
// repeated schema or a recurring state inside a generation sees them), plus applying it to the
// logits. At pdlm's 4,096-token vocabulary, against the decode step of the same generation, and at
// a synthetic 128K vocabulary (pdlm's tokens plus corpus words and substrings, with and without a
// leading space, the shape of a Llama-3 vocabulary) over the same output text.
//
//   node dist/bench/constraint.js [--runs 5] [--model DIR] [--shared DIR] [--json FILE]

import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel } from '../src/engine/model.js';
import { collect } from '../src/engine/session.js';
import { tokenTexts } from '../src/engine/structured.js';
import { machineSummary } from '../src/engine/machine.js';
import { JsonConstraint } from '../src/sampling/constraint.js';
import { compileResponseFormat, type ResponseFormat } from '../src/sampling/json-schema.js';
import { benchArgs } from './args.js';

const args = benchArgs('node dist/bench/constraint.js [--runs 5] [--model DIR] [--shared DIR] [--json FILE]', { runs: { type: 'string' }, json: { type: 'string' }, model: { type: 'string' }, shared: { type: 'string' } });
const RUNS = Number(args.runs ?? 5);
const SHARED = args.shared ?? path.resolve('..', 'shared');
const MODEL = args.model ?? path.join(SHARED, 'models', 'pdlm-5.8m');

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 40 }, crew: { type: 'integer' }, whaler: { type: 'boolean' },
    ports: { type: 'array', items: { type: 'string' }, maxItems: 4 }, captain: { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'], additionalProperties: false },
  },
  required: ['name', 'crew', 'whaler', 'ports', 'captain'], additionalProperties: false,
};
const FORMAT: ResponseFormat = { type: 'json_schema', schema: SCHEMA };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Milliseconds per step to mask and apply along a token sequence: [cold, warm]. */
function replay(texts: string[], eos: number[], ids: number[]): { coldMs: number; warmMs: number; maxColdMs: number; states: number } {
  const constraint = new JsonConstraint(compileResponseFormat(FORMAT)!, { texts, eosIds: eos });
  const logits = new Float32Array(texts.length);
  const pass = () => {
    let state = constraint.initial();
    const per: number[] = [];
    for (const id of [...ids, -1]) {
      const t0 = performance.now();
      constraint.apply(logits, 0, state);
      per.push(performance.now() - t0);
      if (id >= 0) state = constraint.advance(state, id);
    }
    return per;
  };
  const cold = pass();
  const warm = pass();
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return { coldMs: mean(cold), warmMs: mean(warm), maxColdMs: Math.max(...cold), states: constraint.computed };
}

/** Greedy longest-match tokenization of `text` over a vocabulary (for replaying the same output). */
function tokenizeLongest(text: string, texts: string[]): number[] {
  const byText = new Map<string, number>();
  texts.forEach((t, i) => t && !byText.has(t) && byText.set(t, i));
  const longest = texts.reduce((m, t) => Math.max(m, t.length), 0);
  const out: number[] = [];
  for (let i = 0; i < text.length; ) {
    let n = Math.min(longest, text.length - i);
    while (n > 0 && !byText.has(text.slice(i, i + n))) n--;
    if (n === 0) throw new Error(`no token for ${JSON.stringify(text[i])}`);
    out.push(byText.get(text.slice(i, i + n))!);
    i += n;
  }
  return out;
}

/** pdlm's texts plus corpus words and their prefixes/suffixes, with and without a leading space, up to `size`. */
function syntheticVocabulary(base: string[], size: number): string[] {
  const texts = [...base];
  const seen = new Set(texts);
  const add = (t: string) => {
    if (texts.length < size && t.length > 0 && !seen.has(t)) {
      seen.add(t);
      texts.push(t);
    }
  };
  const corpus = fs.readFileSync(path.join(SHARED, 'corpus', 'austen-train.txt'), 'utf8').slice(0, 4_000_000);
  const words = [...new Set(corpus.match(/[A-Za-z']+|[0-9]+|[^\sA-Za-z0-9]+/g) ?? [])];
  for (const w of words) {
    add(w);
    add(` ${w}`);
  }
  for (let n = 2; texts.length < size && n < 12; n++) {
    for (const w of words) {
      if (w.length > n) {
        add(w.slice(0, n));
        add(` ${w.slice(0, n)}`);
        add(w.slice(-n));
      }
    }
  }
  for (let i = 0; texts.length < size; i++) add(`${'\t'.repeat(1 + (i % 4))}${i}`);
  return texts;
}

const model = await loadModel(MODEL, { contextLength: 1024 });
const vocabSize = model.config.vocabSize;
const texts = tokenTexts(model.tokenizer, vocabSize);
const eos = [...model.tokenizer.eosIds];
const prompt = { messages: [{ role: 'user', content: 'Describe the Pequod, her crew, her ports and her captain as JSON.' }] };
// Decode step of the same generation, plain INT8, with and without the constraint.
const stepMs: number[] = [];
const stepMsPlain: number[] = [];
let output = { text: '', ids: [] as number[] };
for (let run = 0; run < RUNS; run++) {
  for (const constrained of [true, false]) {
    const s = model.createSession({ contextLength: 1024, spec: 'none', kv: 'int8' });
    const r = await collect(s.generate(prompt, { temperature: 0, maxTokens: 200, ignoreEos: !constrained, ...(constrained ? { responseFormat: FORMAT } : {}) }));
    (constrained ? stepMs : stepMsPlain).push(r.timings.decodeMs / Math.max(1, r.generatedIds.length - 1));
    if (constrained) output = { text: r.text, ids: [...r.generatedIds] };
  }
}
const small = Array.from({ length: RUNS }, () => replay(texts, eos, output.ids));
const bigTexts = syntheticVocabulary(texts, 128_000);
const bigIds = tokenizeLongest(output.text, bigTexts);
const big = Array.from({ length: RUNS }, () => replay(bigTexts, eos, bigIds));

const row = (rs: ReturnType<typeof replay>[]) => ({
  cold_ms_per_step: median(rs.map((r) => r.coldMs)), warm_ms_per_step: median(rs.map((r) => r.warmMs)),
  cold_ms_range: [Math.min(...rs.map((r) => r.coldMs)), Math.max(...rs.map((r) => r.coldMs))], max_cold_step_ms: median(rs.map((r) => r.maxColdMs)),
  distinct_states: rs[0]!.states,
});
const result = {
  machine: machineSummary(), runs: RUNS, output_tokens: output.ids.length, output: output.text,
  decode_step_ms_constrained: median(stepMs), decode_step_ms_plain: median(stepMsPlain),
  vocab_4k: { vocab: vocabSize, tokens: output.ids.length, ...row(small) },
  vocab_128k: { vocab: bigTexts.length, tokens: bigIds.length, ...row(big) },
};
const f = (x: number) => x.toFixed(3);
console.log(`output: ${output.ids.length} tokens, ${JSON.stringify(output.text).slice(0, 160)}`);
console.log(`pdlm decode step (plain INT8, median of ${RUNS}): ${f(result.decode_step_ms_plain)} ms unconstrained, ${f(result.decode_step_ms_constrained)} ms with the schema`);
for (const [name, r] of [['4K', result.vocab_4k], ['128K', result.vocab_128k]] as const) {
  console.log(`mask at ${name} (${r.vocab} tokens, ${r.tokens} steps, ${r.distinct_states} distinct states): cold ${f(r.cold_ms_per_step)} ms/step ` +
    `(range ${f(r.cold_ms_range[0]!)}-${f(r.cold_ms_range[1]!)}, worst step ${f(r.max_cold_step_ms)}), warm ${f(r.warm_ms_per_step)} ms/step`);
}
if (args.json) fs.writeFileSync(args.json, JSON.stringify(result, null, 2));
