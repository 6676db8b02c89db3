// Tool calling end to end: pdlm with a chat template that takes tools (test/helpers/tools-model.ts),
// served on loopback and driven by the openai client. The call's arguments must match the tool's
// schema (checked by Ajv), a named tool_choice picks that tool, streamed calls arrive as a
// tool_calls delta without the call's text as content, a tools round trip renders the history,
// and greedy calls are the same with and without speculation.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ajv } from 'ajv';
import { loadModel } from '../../src/engine/model.js';
import { collect } from '../../src/engine/session.js';
import { startServer, type TestServer } from '../helpers/server.js';
import { sharedPath } from '../helpers/shared.js';
import { toolsModelDir } from '../helpers/tools-model.js';

const pdlm = sharedPath('models/pdlm-5.8m');
const dir = pdlm.skip ? '' : toolsModelDir(pdlm.path);

const WEATHER = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 16 }, unit: { enum: ['celsius', 'fahrenheit'] } },
  required: ['city', 'unit'], additionalProperties: false,
};
const TIME = { type: 'object', properties: { zone: { type: 'string', maxLength: 8 } }, required: ['zone'], additionalProperties: false };
const TOOLS: OpenAI.Chat.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: WEATHER } },
  { type: 'function', function: { name: 'get_time', description: 'The time in a zone', parameters: TIME } },
];
const ASK: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];

let srv: TestServer;
let client: OpenAI;

before(async () => {
  if (pdlm.skip) return;
  srv = await startServer({}, { contextLength: 1024 }, dir);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
});
after(async () => srv?.close());

const ajv = new Ajv();
const validators = { get_weather: ajv.compile(WEATHER), get_time: ajv.compile(TIME) };

test('tool_choice required: a tool call whose arguments match the tool schema', { skip: pdlm.skip }, async () => {
  const r = await client.chat.completions.create({ model: 'pdlm', messages: ASK, tools: TOOLS, tool_choice: 'required', temperature: 0, max_tokens: 300 });
  const choice = r.choices[0]!;
  assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice.message));
  const calls = choice.message.tool_calls!;
  assert.equal(calls.length, 1);
  const call = calls[0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_/);
  const validate = validators[call.function.name as keyof typeof validators];
  assert.ok(validate, `a named tool: ${call.function.name}`);
  assert.ok(validate(JSON.parse(call.function.arguments)), `${call.function.arguments} ${JSON.stringify(validate.errors)}`);
  assert.ok(!(choice.message.content ?? '').includes('<tool_call>'));
});

test('a named tool_choice calls that tool; streamed, the call arrives as a tool_calls delta', { skip: pdlm.skip }, async () => {
  const args = { model: 'pdlm', messages: ASK, tools: TOOLS, tool_choice: { type: 'function' as const, function: { name: 'get_time' } }, temperature: 0, max_tokens: 300 };
  const whole = await client.chat.completions.create(args);
  const call = whole.choices[0]!.message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
  assert.equal(call.function.name, 'get_time');
  assert.ok(validators.get_time(JSON.parse(call.function.arguments)), call.function.arguments);
  let content = '';
  let name = '';
  let argText = '';
  let finish: string | null = null;
  for await (const chunk of await client.chat.completions.create({ ...args, stream: true })) {
    const c = chunk.choices[0];
    if (!c) continue;
    content += c.delta.content ?? '';
    for (const t of c.delta.tool_calls ?? []) {
      name += t.function?.name ?? '';
      argText += t.function?.arguments ?? '';
    }
    finish = c.finish_reason ?? finish;
  }
  assert.equal(name, 'get_time');
  assert.equal(argText, call.function.arguments);
  assert.equal(finish, 'tool_calls');
  assert.doesNotMatch(content, /<tool_call>|get_time/, 'the call is not streamed as content');
});

test('a tools round trip: the history with the call and its result renders, and the model answers', { skip: pdlm.skip }, async () => {
  const first = await client.chat.completions.create({ model: 'pdlm', messages: ASK, tools: TOOLS, tool_choice: 'required', temperature: 0, max_tokens: 300 });
  const call = first.choices[0]!.message.tool_calls![0]!;
  const history: OpenAI.Chat.ChatCompletionMessageParam[] = [...ASK, first.choices[0]!.message as OpenAI.Chat.ChatCompletionMessageParam];
  const withResult = [...history, { role: 'tool' as const, tool_call_id: call.id, content: '{"temperature": 21}' }];
  const answer = await client.chat.completions.create({ model: 'pdlm', messages: withResult, tools: TOOLS, tool_choice: 'none', temperature: 0, max_tokens: 12 });
  assert.equal(typeof answer.choices[0]!.message.content, 'string');
  assert.equal(answer.choices[0]!.message.tool_calls ?? undefined, undefined);
  // The earlier call and the tool's result are in the prompt, not dropped.
  const without = await client.chat.completions.create({ model: 'pdlm', messages: ASK, tools: TOOLS, tool_choice: 'none', temperature: 0, max_tokens: 1 });
  const resultTokens = answer.usage!.prompt_tokens - without.usage!.prompt_tokens;
  assert.ok(resultTokens > 20, `the call and its result add ${resultTokens} prompt tokens`);
  await assert.rejects(client.chat.completions.create({ model: 'pdlm', messages: [...history, { role: 'tool', content: 'x' } as never] }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && /tool_call_id/.test((e as Error).message));
  await assert.rejects(client.chat.completions.create({ model: 'pdlm', messages: ASK, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && /not one of the tools/.test((e as Error).message));
});

test('tool_choice auto on a model that answers in text: content, no tool_calls', { skip: pdlm.skip }, async () => {
  const r = await client.chat.completions.create({ model: 'pdlm', messages: ASK, tools: TOOLS, temperature: 0, max_tokens: 20 });
  assert.equal(r.choices[0]!.message.tool_calls ?? undefined, undefined);
  assert.ok(r.choices[0]!.message.content!.length > 0);
  assert.notEqual(r.choices[0]!.finish_reason, 'tool_calls');
});

test('greedy tool calls are the same with and without speculation', { skip: pdlm.skip }, async () => {
  const model = await loadModel(dir, { contextLength: 1024 });
  const tools = TOOLS.map((t) => {
    const f = (t as OpenAI.Chat.ChatCompletionFunctionTool).function;
    return { name: f.name, description: f.description, parameters: f.parameters };
  });
  for (const toolChoice of ['required', { name: 'get_time' }] as const) {
    const run = (opts: object) => collect(model.createSession({ contextLength: 1024, ...opts }).generate(
      { messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools, toolChoice }, { temperature: 0, maxTokens: 300 }));
    const plain = await run({ spec: 'none', kv: 'int8' });
    assert.ok(plain.toolCall, JSON.stringify(plain.text));
    for (const gamma of [3, 'auto'] as const) {
      const spec = await run({ spec: 'quantspec', gamma });
      assert.deepEqual(spec.generatedIds, plain.generatedIds, `${JSON.stringify(toolChoice)}, gamma ${gamma}`);
      assert.ok(spec.stats!.rounds > 0);
    }
  }
});
