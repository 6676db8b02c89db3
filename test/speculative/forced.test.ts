// Losslessness that cannot pass by not speculating: pdlm-5.8m at the default key group G = 128,
// a prompt that ends just before 2G, and 220 generated tokens, so groups of generated positions
// are quantized during generation. Every fixed γ from 1 to 8 must give exactly the tokens of plain
// decoding over the INT8 view, with no plain step but where the budget leaves one token, and round counts that add up; penalties, logit
// bias and a stop string included; and `gamma: 'auto'` with an injected clock must speculate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { loadModel, type Model } from '../../src/engine/model.js';
import { Session, type GenerateOptions, type GenerationResult } from '../../src/engine/session.js';
import { HierKvCache } from '../../src/kv/hier-cache.js';
import { Decoder } from '../../src/speculative/decoder.js';
import { createCache, maxStepOf } from '../../src/speculative/modes.js';
import { sharedPath } from '../helpers/shared.js';

const dir = sharedPath('models/pdlm-5.8m');
const corpus = sharedPath('corpus/eval-moby-tail.txt');
const skip = dir.skip || corpus.skip;
const CONTEXT = 1024;
const PROMPT = 250; // 2G = 256: the prompt alone leaves the planes at one group
const GEN = 220;

let model: Model | null = null;
async function pdlm(): Promise<Model> {
  model ??= await loadModel(dir.path, { contextLength: CONTEXT });
  return model;
}

function prompt(m: Model): number[] {
  const text = fs.readFileSync(corpus.path, 'utf8');
  const ids = m.tokenizer.encode(text.slice(2000), { addSpecial: false });
  return [m.tokenizer.bosId!, ...ids.slice(0, PROMPT - 1)];
}

/** A QuantSpec session whose decoder may take an injected clock. */
function quantspec(m: Model, gamma: number | 'auto', clock?: () => number): { session: Session; cache: HierKvCache } {
  const plan = m.plan({ spec: 'quantspec', gamma });
  const cache = createCache(plan, m.config, m.backend, CONTEXT, m.prefillChunk);
  assert.ok(cache instanceof HierKvCache);
  const decoder = new Decoder({ name: 'quantspec', weights: m.draft!, view: 'int4' }, m.config.vocabSize, {
    gamma: plan.gamma, maxGamma: plan.maxGamma, clock,
  });
  const session = new Session({
    rt: m.runtime, target: m.target, tokenizer: m.tokenizer, cache, targetView: 'int8', decoder, plan,
    contextLength: CONTEXT, prefillChunk: m.prefillChunk, maxStep: maxStepOf(plan),
  });
  return { session, cache };
}

/** Run a generation, recording the quantized positions after its first step and at the end. */
async function run(session: Session, cache: HierKvCache, ids: number[], options: GenerateOptions) {
  const gen = session.generate({ ids }, options);
  let first = -1;
  for (;;) {
    const r = await gen.next();
    if (first < 0) first = cache.quantized;
    if (r.done) return { result: r.value as GenerationResult, first, last: cache.quantized };
  }
}

const GREEDY: GenerateOptions = { temperature: 0, maxTokens: GEN, ignoreEos: true };

test('pdlm-5.8m: every fixed γ from 1 to 8 speculates on every step the budget allows and equals plain INT8 decoding across flushes', { skip }, async () => {
  const m = await pdlm();
  const ids = prompt(m);
  const plain = await m.complete({ ids }, { ...GREEDY, spec: 'none', kv: 'int8' });
  assert.equal(plain.generatedIds.length, GEN);
  for (let gamma = 1; gamma <= 8; gamma++) {
    const { session, cache } = quantspec(m, gamma);
    const { result, first, last } = await run(session, cache, ids, GREEDY);
    const s = result.stats!;
    const where = `γ ${gamma}: ${s.rounds} rounds, ${s.accepted}/${s.drafted} accepted, ${s.plainSteps} plain steps`;
    assert.deepEqual(result.generatedIds, plain.generatedIds, where);
    // Each round emits its accepted drafts and one token of the target's. A step with one token
    // of budget left cannot draft, so at most the last step is plain.
    assert.ok(s.plainSteps <= 1, where);
    assert.equal(s.accepted + s.rounds + s.plainSteps, GEN, where);
    assert.ok(s.rounds >= Math.ceil(GEN / (gamma + 1)), where);
    // Only the last rounds may draft fewer than γ (the budget clamps them).
    assert.ok(s.drafted <= gamma * s.rounds && s.drafted > gamma * (s.rounds - 2), where);
    assert.equal(s.acceptedLengths.reduce((a, b) => a + b, 0), s.rounds, where);
    assert.ok(s.accepted > 0 && s.accepted < s.drafted, `${where}: the real draft is neither always right nor always wrong`);
    // After the first step (cache length 250 to 258) the next queries read one or two quantized
    // groups; at the end (length 469) positions below quantBoundary(469 + 127) = 384: the planes
    // grew during generation, from verified tokens only.
    assert.ok(first === 128 || first === 256, `${where}: ${first} quantized after the first step`);
    assert.equal(last, 384, where);
  }
});

test('pdlm-5.8m: γ = 4 with penalties, logit bias and a stop string equals plain INT8 decoding', { skip }, async () => {
  const m = await pdlm();
  const ids = prompt(m);
  const sampling: GenerateOptions = {
    temperature: 0, maxTokens: GEN, ignoreEos: true, repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.2,
    penaltyWindow: 64, logitBias: { 11: -4, 300: 2.5 },
  };
  const open = await m.complete({ ids }, { ...sampling, spec: 'none', kv: 'int8' });
  // A stop string from the middle of the plain output, so both runs must stop at the same place.
  const stop = open.text.slice(Math.floor(open.text.length / 2), Math.floor(open.text.length / 2) + 5);
  assert.equal(stop.length, 5);
  const plain = await m.complete({ ids }, { ...sampling, stop: [stop], spec: 'none', kv: 'int8' });
  assert.equal(plain.finishReason, 'stop');
  const { session, cache } = quantspec(m, 4);
  const { result } = await run(session, cache, ids, { ...sampling, stop: [stop] });
  assert.deepEqual(result.generatedIds, plain.generatedIds);
  assert.equal(result.text, plain.text);
  assert.equal(result.finishReason, 'stop');
  assert.ok(result.stats!.plainSteps <= 1);
  assert.ok(result.stats!.rounds >= Math.ceil(result.generatedIds.length / 5));
  // Without penalties the output differs: the penalties really applied on both paths.
  const unpenalised = await m.complete({ ids }, { ...GREEDY, spec: 'none', kv: 'int8' });
  assert.notDeepEqual(unpenalised.generatedIds.slice(0, plain.generatedIds.length), plain.generatedIds);
});

test('pdlm-5.8m: gamma auto with a clock under which speculation pays speculates and equals plain INT8 decoding', { skip }, async () => {
  const m = await pdlm();
  const ids = prompt(m);
  const plain = await m.complete({ ids }, { ...GREEDY, spec: 'none', kv: 'int8' });
  // Each reading of the clock advances 1 ms: a plain step and a verify pass both take 1 ms, and
  // all γ draft steps of a round together 1 ms, so any γ with 2+ expected tokens per round pays.
  let now = 0;
  const { session, cache } = quantspec(m, 'auto', () => now++);
  const { result, last } = await run(session, cache, ids, GREEDY);
  const s = result.stats!;
  const where = `${s.rounds} rounds, ${s.accepted}/${s.drafted} accepted, ${s.plainSteps} plain steps`;
  assert.deepEqual(result.generatedIds, plain.generatedIds, where);
  assert.equal(s.accepted + s.rounds + s.plainSteps, GEN, where);
  // The controller measures 3 plain steps at the start and probes plain decoding once per 32
  // rounds; every other step is a round.
  assert.ok(s.rounds >= 25, where);
  assert.ok(s.plainSteps >= 3 && s.plainSteps <= 3 + Math.ceil(s.rounds / 32), where);
  assert.ok(s.drafted >= 2 * s.rounds, `${where}: rounds of γ >= 2`);
  assert.equal(last, 384);
});
