// The JSON automaton and its token masks: texts the schema accepts (checked by Ajv, an independent
// validator) are accepted character by character, texts it rejects are not, and the mask from the
// sorted-vocabulary walk equals a token-by-token brute force.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import { JsonConstraint } from '../../src/sampling/constraint.js';
import { advanceText, canFinish, initialState, type JsonState, MAX_DIGITS, MAX_WS } from '../../src/sampling/json-automaton.js';
import { compileResponseFormat, compileToolCall } from '../../src/sampling/json-schema.js';

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 6 },
    age: { type: 'integer', minimum: 0 },
    role: { enum: ['admin', 'user', null] },
    tags: { type: 'array', items: { type: 'string' }, maxItems: 2 },
    score: { type: ['number', 'null'] },
    boss: { $ref: '#' },
  },
  required: ['name', 'age'],
  additionalProperties: false,
};

const accepts = (schema: unknown, text: string): boolean => {
  const root = compileResponseFormat({ type: 'json_schema', schema })!;
  return canFinish(advanceText(initialState(root), text));
};

test('the automaton accepts what the schema allows and rejects what it does not (Ajv agrees)', () => {
  const ajv = new Ajv();
  const validate = ajv.compile(PERSON);
  const good = [
    '{"name":"Ann","age":3}',
    '{ "name" : "Bo", "age": 0, "role": "admin" }',
    '{"name":"A\\"b","age":12,"tags":["x","y"],"score":-1.5e3}',
    '{"name":"","age":7,"role":null,"score":null,"boss":{"name":"Cy","age":40}}',
    '{\n  "name": "\\u00e9t\\u00e9",\n  "age": 1\n}',
  ];
  const bad = [
    '{"name":"Ann"}', // age missing
    '{"age":3,"name":"Ann"}', // declared order: name first
    '{"name":"Annabel","age":3}', // longer than 6
    '{"name":"Ann","age":-3}', // minimum 0
    '{"name":"Ann","age":3.5}', // integer
    '{"name":"Ann","age":3,}', // trailing comma
    '{"name":"Ann","age":3,"x":1}', // no additional properties
    '{"name":"Ann","age":3,"role":"root"}', // not in the enum
    '{"name":"Ann","age":3,"tags":["a","b","c"]}', // maxItems 2
    '{"name":"Ann","age":03}', // leading zero
    '{"name":"A\nn","age":3}', // raw control character in a string
    '{"name":"Ann","age":3}x', // text after the value
  ];
  for (const t of good) {
    assert.ok(validate(JSON.parse(t)), `Ajv accepts ${t}`);
    assert.ok(accepts(PERSON, t), `accepts ${JSON.stringify(t)}`);
  }
  for (const t of bad) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(t);
    } catch {
      parsed = undefined;
    }
    // Ajv rejects each (or it is not JSON), except the declared-order case, which the schema allows
    // but the automaton, writing properties in their declared order, does not produce.
    if (parsed !== undefined && !t.startsWith('{"age"')) assert.ok(!validate(parsed), `Ajv rejects ${t}`);
    assert.ok(!accepts(PERSON, t), `rejects ${JSON.stringify(t)}`);
  }
  // Prefixes of a valid text are live states that cannot yet finish.
  const root = compileResponseFormat({ type: 'json_schema', schema: PERSON })!;
  const t = good[2]!;
  for (let i = 1; i < t.length; i++) {
    const s = advanceText(initialState(root), t.slice(0, i));
    assert.ok(s.length > 0, `prefix ${t.slice(0, i)} is live`);
    assert.ok(!canFinish(s), `prefix ${t.slice(0, i)} is not complete`);
  }
});

test('json_object: any object, nested values of every type; bounded whitespace and digits', () => {
  const root = compileResponseFormat({ type: 'json_object' })!;
  const ok = (t: string) => canFinish(advanceText(initialState(root), t));
  assert.ok(ok('{}'));
  assert.ok(ok('{"a":[1,{"b":null},"c",true,-0.5E+2,[]],"d":{}}'));
  assert.ok(!ok('[1]'), 'json_object is an object');
  assert.ok(!ok('"x"'));
  assert.ok(ok(`{${' '.repeat(MAX_WS)}}`));
  assert.ok(!ok(`{${' '.repeat(MAX_WS + 1)}}`));
  assert.ok(ok(`{"n":${'9'.repeat(MAX_DIGITS)}}`));
  assert.ok(!ok(`{"n":${'9'.repeat(MAX_DIGITS + 1)}}`));
});

test('schemas the automaton cannot enforce are refused with the keyword named', () => {
  const refuse = (schema: unknown, word: RegExp) =>
    assert.throws(() => compileResponseFormat({ type: 'json_schema', schema }), (e: unknown) => e instanceof InvalidArgumentError && word.test((e as Error).message));
  refuse({ type: 'string', pattern: '^a' }, /"pattern"/);
  refuse({ type: 'string', format: 'email' }, /"format"/);
  refuse({ type: 'integer', minimum: 5 }, /minimum/);
  refuse({ type: 'object', properties: { a: { $ref: '#/$defs/missing' } } }, /names nothing/);
  refuse({ type: 'object', required: ['a'] }, /requires "a"/);
  refuse({ type: 'wizard' }, /unknown type/);
  // zod's .int() bounds (±(2^53 - 1)) are implied by the digit limit and accepted.
  assert.ok(compileResponseFormat({ type: 'json_schema', schema: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 } }));
});

/** A vocabulary like a BPE one: single characters, JSON punctuation runs, words with a leading space. */
function toyVocabulary(): string[] {
  const texts = ['', '{', '}', '[', ']', ',', ':', '"', '{"', '":', '",', '","', '"}', '":"', '":[', '],', '},', ' ', '  ', '\n', '\n  ', 'null', 'true', 'fal', 'se',
    '\\', '\\"', '\\u', '00', 'e9', '-', '.', 'e', '+', 'E'];
  for (let d = 0; d <= 9; d++) texts.push(String(d), `${d}${d}`);
  for (const w of ['name', 'age', 'role', 'tags', 'score', 'boss', 'admin', 'user', 'Ann', 'Bo', 'x', 'y', 'a', 'b']) texts.push(w, ` ${w}`, `"${w}`, `${w}"`);
  return texts;
}

test('the mask equals a token-by-token brute force at states along random valid texts', () => {
  const texts = toyVocabulary();
  const eos = 0;
  const root = compileResponseFormat({ type: 'json_schema', schema: PERSON })!;
  const constraint = new JsonConstraint(root, { texts, eosIds: [eos] });
  const rng = new Xoshiro128(5);
  let states = 0;
  for (let run = 0; run < 40; run++) {
    let state = constraint.initial() as JsonState;
    for (let step = 0; step < 60; step++) {
      const mask = constraint.mask(state);
      const allowed: number[] = [];
      for (let id = 0; id < texts.length; id++) if (mask[id >>> 5]! & (1 << (id & 31))) allowed.push(id);
      const brute: number[] = [];
      for (let id = 0; id < texts.length; id++) {
        if (id !== eos && texts[id]!.length > 0 && advanceText(state, texts[id]!).length > 0) brute.push(id);
      }
      // EOS once the value may end, or when no token leads on (the documented way out of a dead end,
      // which this vocabulary reaches: after '"a' for the key "age" it has no 'ge"').
      if (canFinish(state) || brute.length === 0) brute.unshift(eos);
      assert.deepEqual(allowed, brute, `run ${run} step ${step}`);
      states++;
      if (allowed.length === 0 || (allowed.length === 1 && allowed[0] === eos)) break;
      const pick = allowed[Math.floor(rng.next() * allowed.length)]!;
      if (pick === eos) break;
      state = constraint.advance(state, pick) as JsonState;
    }
  }
  assert.ok(states > 400, `states checked: ${states}`);
  assert.ok(constraint.served > constraint.computed, 'some masks came from the cache');
});

test('apply() leaves allowed logits alone and sets the others to -Infinity', () => {
  const texts = toyVocabulary();
  const root = compileResponseFormat({ type: 'json_object' })!;
  const constraint = new JsonConstraint(root, { texts, eosIds: [0] });
  const logits = Float32Array.from(texts, (_, i) => i * 0.5);
  constraint.apply(logits, 0, constraint.initial());
  const allowed = texts.map((t, i) => (Number.isFinite(logits[i]!) ? t : null)).filter((t) => t !== null);
  assert.deepEqual(allowed.sort(), ['\n', '\n  ', ' ', '  ', '{', '{"'].sort());
  for (let i = 0; i < texts.length; i++) if (Number.isFinite(logits[i]!)) assert.equal(logits[i], i * 0.5);
});

test('a triggered tool call: free text until the opening tag, then only the call, then the close tag and EOS', () => {
  const texts = ['', 'Sure', ' ', '<tool', '_call>', '<tool_call>', '{"name":', '"f"', '"g"', ',"arguments":', '{"n":', '1', '}', '}</tool_call>', '</tool_call>', 'x', '\n'];
  const id = (t: string) => texts.indexOf(t);
  const format = { tools: [{ name: 'f', parameters: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false } }], open: '<tool_call>', close: '</tool_call>', trigger: true };
  const constraint = new JsonConstraint(compileToolCall(format), { texts, eosIds: [0] }, format.open);
  const allowed = (s: ReturnType<typeof constraint.initial>) => {
    const logits = new Float32Array(texts.length);
    constraint.apply(logits, 0, s);
    return texts.filter((_, i) => Number.isFinite(logits[i]!));
  };
  let s = constraint.initial();
  assert.deepEqual(allowed(s), texts, 'free text: everything, EOS included');
  for (const t of ['Sure', ' ', '<tool']) s = constraint.advance(s, id(t));
  assert.deepEqual(allowed(s), texts, 'half a tag is still free text');
  s = constraint.advance(s, id('_call>')); // the tag, split over two tokens
  assert.deepEqual(allowed(s), [' ', '{"name":', '\n'], 'after the tag: only the call object (or whitespace)');
  s = constraint.advance(s, id('{"name":'));
  assert.deepEqual(allowed(s), [' ', '"f"', '\n'], 'only the offered tool names');
  for (const t of ['"f"', ',"arguments":', '{"n":', '1']) s = constraint.advance(s, id(t));
  assert.deepEqual(allowed(s), [' ', '1', '}', '\n'], 'more digits, or the end of the arguments');
  s = constraint.advance(s, id('}'));
  assert.deepEqual(allowed(s), [' ', '}', '}</tool_call>', '\n'], 'the call object closes (there is no other property)');
  s = constraint.advance(s, id('}'));
  assert.deepEqual(allowed(s), [' ', '</tool_call>', '\n'], 'then the close tag');
  s = constraint.advance(s, id('</tool_call>'));
  assert.deepEqual(allowed(s), [''], 'then only EOS');
  assert.ok(constraint.complete(s));
  // Required (no trigger): the output starts with the tag.
  const required = new JsonConstraint(compileToolCall({ ...format, trigger: false }), { texts, eosIds: [0] });
  const logits = new Float32Array(texts.length);
  required.apply(logits, 0, required.initial());
  assert.deepEqual(texts.filter((_, i) => Number.isFinite(logits[i]!)), [' ', '<tool', '<tool_call>', '\n']);
});
