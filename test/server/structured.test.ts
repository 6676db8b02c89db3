// Structured output through the real client libraries against a server on loopback: the openai
// package's response_format (Chat Completions and Responses), the AI SDK's generateObject with a
// zod schema, LangChain's withStructuredOutput. Each result is checked by Ajv or zod, not by the
// server's own automaton.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ajv } from 'ajv';
import { generateObject } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import { z } from 'zod';
import { startServer, type TestServer } from '../helpers/server.js';

let srv: TestServer;
let client: OpenAI;

before(async () => {
  srv = await startServer({}, { contextLength: 1024 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
});
after(async () => srv.close());

const SHIP = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 20 }, crew: { type: 'integer', minimum: 0 }, whaler: { type: 'boolean' } },
  required: ['name', 'crew', 'whaler'], additionalProperties: false,
};

test('openai: response_format json_schema (strict) and json_object give valid JSON; unsupported schemas get 400', async () => {
  const validate = new Ajv().compile(SHIP);
  const r = await client.chat.completions.create({
    model: 'pdlm', messages: [{ role: 'user', content: 'Describe the Pequod as JSON.' }], temperature: 0, max_tokens: 300,
    response_format: { type: 'json_schema', json_schema: { name: 'ship', strict: true, schema: SHIP } },
  });
  assert.equal(r.choices[0]!.finish_reason, 'stop');
  const value = JSON.parse(r.choices[0]!.message.content!);
  assert.ok(validate(value), `${r.choices[0]!.message.content} ${JSON.stringify(validate.errors)}`);
  // Streamed, the deltas add up to the same JSON.
  let streamed = '';
  for await (const c of await client.chat.completions.create({
    model: 'pdlm', messages: [{ role: 'user', content: 'Describe the Pequod as JSON.' }], temperature: 0, max_tokens: 300, stream: true,
    response_format: { type: 'json_schema', json_schema: { name: 'ship', strict: true, schema: SHIP } },
  })) streamed += c.choices[0]?.delta.content ?? '';
  assert.equal(streamed, r.choices[0]!.message.content);
  const obj = await client.chat.completions.create({
    model: 'pdlm', messages: [{ role: 'user', content: 'A JSON object, please.' }], temperature: 0, max_tokens: 40, response_format: { type: 'json_object' },
  });
  assert.match(obj.choices[0]!.message.content!.trimStart(), /^\{/);
  // Log-probabilities under a schema: where the schema allows fewer tokens than asked for, the
  // masked ones are not listed as alternatives (their -Infinity would be null on the wire).
  const lp = await client.chat.completions.create({
    model: 'pdlm', messages: [{ role: 'user', content: 'Describe the Pequod as JSON.' }], temperature: 0, max_tokens: 300, logprobs: true, top_logprobs: 20,
    response_format: { type: 'json_schema', json_schema: { name: 'ship', strict: true, schema: SHIP } },
  });
  const entries = lp.choices[0]!.logprobs!.content!;
  assert.ok(entries.length > 10);
  for (const e of entries) {
    assert.ok(Number.isFinite(e.logprob), JSON.stringify(e));
    for (const t of e.top_logprobs) assert.ok(Number.isFinite(t.logprob), JSON.stringify(e));
  }
  assert.ok(entries.some((e) => e.top_logprobs.length < 20), 'some positions allow fewer than 20 tokens');
  await assert.rejects(client.chat.completions.create({
    model: 'pdlm', messages: [{ role: 'user', content: 'x' }],
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', format: 'email' } } },
  }), (e: unknown) => e instanceof OpenAI.BadRequestError && /"format"/.test((e as Error).message));
  await assert.rejects(client.chat.completions.create({ model: 'pdlm', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'yaml' } as never }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && /not one of text, json_object, json_schema/.test((e as Error).message));
});

test('openai: responses.create with text.format json_schema', async () => {
  const validate = new Ajv().compile(SHIP);
  const r = await client.responses.create({
    model: 'pdlm', input: 'Describe the Pequod as JSON.', temperature: 0, max_output_tokens: 300,
    text: { format: { type: 'json_schema', name: 'ship', strict: true, schema: SHIP } },
  });
  assert.equal(r.status, 'completed');
  assert.ok(validate(JSON.parse(r.output_text)), r.output_text);
  assert.equal((r.text?.format as { type: string }).type, 'json_schema');
});

test('openai: on a template without tools, tools, tool_choice, legacy functions and tool messages are refused, not ignored', async () => {
  const msgs = [{ role: 'user' as const, content: 'x' }];
  const tool = { type: 'function' as const, function: { name: 'f', parameters: { type: 'object', properties: {} } } };
  // pdlm's template takes no tools: offering them, or showing it earlier calls, is a 400 that says so.
  for (const [extra, why] of [
    [{ tools: [tool] }, /does not take tools/], [{ tool_choice: 'required' }, /needs 'tools'/],
    [{ functions: [tool.function] }, /legacy function calling/], [{ function_call: 'auto' }, /legacy function calling/],
  ] as const) {
    await assert.rejects(client.chat.completions.create({ model: 'pdlm', messages: msgs, ...extra } as never),
      (e: unknown) => e instanceof OpenAI.BadRequestError && why.test((e as Error).message), JSON.stringify(extra));
  }
  await assert.rejects(client.chat.completions.create({
    model: 'pdlm', messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] }, { role: 'tool', tool_call_id: 'c1', content: '1' }],
  }), (e: unknown) => e instanceof OpenAI.BadRequestError && /does not take tools/.test((e as Error).message));
});

const Ship = z.object({ name: z.string().max(20), crew: z.number().int().nonnegative(), whaler: z.boolean() });

test('AI SDK: generateObject with a zod schema', async () => {
  const provider = createOpenAICompatible({ name: 'quantspec', baseURL: `${srv.url}/v1`, supportsStructuredOutputs: true });
  const { object, finishReason } = await generateObject({
    model: provider('pdlm'), schema: Ship, prompt: 'Describe the Pequod as JSON.', temperature: 0, maxOutputTokens: 300, maxRetries: 0,
  });
  assert.equal(finishReason, 'stop');
  assert.ok(Ship.safeParse(object).success, JSON.stringify(object));
});

test('LangChain: withStructuredOutput (json_schema method) with a zod schema', async () => {
  const llm = new ChatOpenAI({ model: 'pdlm', apiKey: 'none', configuration: { baseURL: `${srv.url}/v1` }, temperature: 0, maxTokens: 300, maxRetries: 0 });
  const structured = llm.withStructuredOutput(Ship, { method: 'jsonSchema', name: 'ship' });
  const result = await structured.invoke('Describe the Pequod as JSON.');
  assert.ok(Ship.safeParse(result).success, JSON.stringify(result));
});
