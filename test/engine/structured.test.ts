// Structured output through the engine: with a JSON schema, greedy QuantSpec emits exactly the
// tokens of plain decoding, every output parses and Ajv (an independent validator) accepts it; and
// with sampling, masking does not bias the speculative sampler (chi-square on a toy vocabulary).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { loadModel } from '../../src/engine/model.js';
import { collect, Session } from '../../src/engine/session.js';
import { JsonConstraint } from '../../src/sampling/constraint.js';
import { compileResponseFormat } from '../../src/sampling/json-schema.js';
import type { JsonState } from '../../src/sampling/json-automaton.js';
import { resolveSampling } from '../../src/sampling/params.js';
import { Sampler } from '../../src/sampling/sampler.js';
import { createCache, createDecoder, maxStepOf, resolveDecoding } from '../../src/speculative/modes.js';
import { buildDraftWeights, DEFAULT_DRAFT } from '../../src/quant/draft.js';
import { mapMatrices } from '../../src/model/weights.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { gaussian, randomWeights, tinyConfig, tinyRuntime } from '../helpers/tiny.js';
import { targetLogitsAfter } from '../helpers/exact.js';
import { sharedPath } from '../helpers/shared.js';

const SCHEMAS: Record<string, unknown> = {
  person: {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 20 }, age: { type: 'integer' }, ship: { enum: ['Pequod', 'Rachel'] } },
    required: ['name', 'age', 'ship'], additionalProperties: false,
  },
  list: {
    type: 'object',
    properties: { words: { type: 'array', items: { type: 'string', maxLength: 12 }, minItems: 1, maxItems: 3 }, done: { type: 'boolean' } },
    required: ['words', 'done'], additionalProperties: false,
  },
  nested: {
    type: 'object',
    properties: { where: { type: 'object', properties: { x: { type: 'number' }, y: { type: ['number', 'null'] } }, required: ['x', 'y'], additionalProperties: false } },
    required: ['where'], additionalProperties: false,
  },
};

const pdlm = sharedPath('models/pdlm-5.8m');

test('pdlm: with a JSON schema, greedy QuantSpec == plain decoding, and every output is valid', { skip: pdlm.skip }, async () => {
  const model = await loadModel(pdlm.path, { contextLength: 1024 });
  const ajv = new Ajv();
  const prompts = ['Describe the captain as JSON.', 'List three words about the sea.', 'Where is the whale?'];
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    const validate = ajv.compile(schema as object);
    for (const content of prompts) {
      const run = (opts: object) => collect(model.createSession({ contextLength: 1024, ...opts }).generate(
        { messages: [{ role: 'user', content }] }, { temperature: 0, maxTokens: 400, responseFormat: { type: 'json_schema', schema } }));
      const plain = await run({ spec: 'none', kv: 'int8' });
      assert.equal(plain.finishReason, 'stop', `${name} / ${content}: ${plain.text}`);
      const value = JSON.parse(plain.text);
      assert.ok(validate(value), `${name} / ${content}: ${plain.text} ${JSON.stringify(validate.errors)}`);
      for (const gamma of [3, 'auto'] as const) {
        const spec = await run({ spec: 'quantspec', gamma });
        assert.deepEqual(spec.generatedIds, plain.generatedIds, `${name} / ${content}, gamma ${gamma}`);
        assert.ok(spec.stats!.rounds > 0 && spec.stats!.drafted > 0, `${name}, gamma ${gamma}: speculative rounds ran`);
      }
    }
  }
  // json_object: an object, whatever its keys.
  const r = await collect(model.createSession({ contextLength: 1024, spec: 'quantspec', gamma: 4 }).generate(
    'The ship', { temperature: 0, maxTokens: 60, responseFormat: { type: 'json_object' } }));
  assert.match(r.text.trimStart(), /^\{/);
  assert.ok(r.generatedIds.length > 0);
  // A format that cannot end, and one that cannot be enforced, are named errors before any token.
  await assert.rejects(collect(model.createSession({ contextLength: 1024 }).generate('x', { responseFormat: { type: 'json_object' }, ignoreEos: true })), /ignoreEos/);
  await assert.rejects(collect(model.createSession({ contextLength: 1024 }).generate('x', { responseFormat: { type: 'json_schema', schema: { type: 'string', pattern: 'a+' } } })), /"pattern"/);
});

/** A toy vocabulary: 0 is EOS, and several tokens are allowed at each early position. */
const TOY = ['', '[', '[1', '[2', ',', '1', ']', '2'];

const toyTokenizer: Tokenizer = {
  vocabSize: TOY.length, bosId: null, eosIds: [0], addsBos: false, chatTemplate: null, templateTokens: {},
  encode: () => [1],
  decode: (ids) => ids.map((i) => TOY[i] ?? '').join(''),
};

test('masked speculative sampling follows the masked target distribution (chi-square, toy vocabulary)', async () => {
  const config = tinyConfig({ vocabSize: TOY.length });
  const rt = tinyRuntime(config, 64);
  const target = randomWeights(config, 41);
  const rng = new Xoshiro128(78);
  const noisy = mapMatrices(target, (t) => t.dtype !== 'f32' ? t : { ...t, data: t.data.map((x) => x + 0.2 * Math.abs(x) * gaussian(rng)) });
  const draft = buildDraftWeights(noisy, { ...DEFAULT_DRAFT, groupSize: 8 }).weights;
  const sampling = { temperature: 2, topK: 0, topP: 1, minP: 0 };
  const prompt = [3, 5, 1, 2];
  const schema = { type: 'array', items: { type: 'integer' } };
  const plan = resolveDecoding(config, { spec: 'quantspec', gamma: 3, keyGroupSize: 4 });
  const constraint = new JsonConstraint(compileResponseFormat({ type: 'json_schema', schema })!, { texts: TOY, eosIds: [0] });

  // Exact masked target distribution after prompt + ids (the mask at the state after ids).
  const sampler = new Sampler(resolveSampling(sampling), config.vocabSize);
  const dist = (ids: number[]): Float32Array => {
    let state = constraint.initial();
    for (const id of ids) state = constraint.advance(state, id);
    const logits = targetLogitsAfter(rt, target, plan, config, [...prompt, ...ids]);
    constraint.apply(logits, 0, state);
    const out = new Float32Array(config.vocabSize);
    sampler.distribution(out, logits);
    return out;
  };
  const q0 = dist([]);
  assert.deepEqual([...q0].map((p) => p > 0), [false, true, true, true, false, false, false, false], 'the mask allows [, [1, [2 first');
  const cells = new Map<string, number>();
  for (let a = 0; a < TOY.length; a++) {
    if (q0[a] === 0) continue;
    const q1 = dist([a]);
    for (let b = 0; b < TOY.length; b++) if (q1[b]! > 0) cells.set(`${a},${b}`, q0[a]! * q1[b]!);
  }
  const cache = createCache(plan, config, rt.backend, 64, 8);
  const session = new Session({
    rt, target, tokenizer: toyTokenizer, cache, targetView: 'int8',
    decoder: createDecoder(plan, config, cache, target, draft), plan, contextLength: 64, prefillChunk: 8, maxStep: maxStepOf(plan),
  });
  const n = 20000;
  const pairs = new Map<string, number>();
  let drafted = 0;
  let accepted = 0;
  for (let i = 0; i < n; i++) {
    const r = await collect(session.generate({ ids: prompt }, { ...sampling, seed: i, maxTokens: 4, responseFormat: { type: 'json_schema', schema } }));
    // Whatever was emitted is a prefix the automaton accepts (checked independently of the mask).
    let state = constraint.initial();
    for (const id of r.generatedIds) state = constraint.advance(state, id);
    assert.ok((state as JsonState).length > 0, `emitted ${JSON.stringify(r.text)} leaves the grammar`);
    const key = r.generatedIds.slice(0, 2).join(',');
    pairs.set(key, (pairs.get(key) ?? 0) + 1);
    drafted += r.stats!.drafted;
    accepted += r.stats!.accepted;
  }
  const outside = [...pairs.keys()].filter((k) => !cells.has(k));
  assert.deepEqual(outside, [], 'no pair outside the masked target support');
  let chi = 0;
  let used = 0;
  for (const [key, p] of cells) {
    if (n * p < 5) continue;
    chi += ((pairs.get(key) ?? 0) - n * p) ** 2 / (n * p);
    used++;
  }
  const z = 3.0902; // p = 0.001, Wilson-Hilferty
  const dof = used - 1;
  const critical = dof * (1 - 2 / (9 * dof) + z * Math.sqrt(2 / (9 * dof))) ** 3;
  assert.ok(used >= 8, `cells with enough mass: ${used}`);
  assert.ok(chi < critical, `first two tokens: chi-square ${chi.toFixed(2)} over ${used} cells (critical ${critical.toFixed(1)})`);
  assert.ok(accepted > 2000 && drafted - accepted > 2000, `both paths of the ratio test ran: ${accepted}/${drafted}`);
});
