// The chat reply with tools on offer, on its own: text before a call streams as content (held back
// only while it may be the start of the opening tag), the call's own text never does, and the call
// arrives as one tool_calls delta with finish_reason tool_calls.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GenerationResult } from '../../src/engine/session.js';
import { chatReply } from '../../src/server/replies.js';

const parsed = { model: 'm', stream: true, includeUsage: false, options: {}, logprobs: false };

function result(text: string, toolCall: GenerationResult['toolCall'], content: string): GenerationResult {
  return {
    promptIds: [1], generatedIds: [2, 3], text, finishReason: 'stop', toolCall, content, stats: null,
    decoding: { spec: 'none', kv: 'int8', gamma: 0 }, kvBytes: { fullPrecision: 0, planes: 0, metadata: 0, total: 0 } as never,
    timings: { promptTokens: 1, cachedTokens: 0, prefillMs: 1, prefillTokensPerS: 1, generatedTokens: 2, decodeMs: 1, decodeTokensPerS: 1 },
  };
}

function run(pieces: string[], r: GenerationResult): { content: string[]; events: any[] } {
  const events: any[] = [];
  const reply = chatReply(parsed, 'm', '<tool_call>');
  const write = (d: unknown) => events.push(d);
  reply.start(write);
  for (const text of pieces) reply.delta(write, { text, tokens: [] });
  reply.end(write, r);
  const content = events.map((e) => e.choices?.[0]?.delta?.content).filter((c) => typeof c === 'string' && c.length > 0);
  return { content, events };
}

test('text, then a call split over chunks: the text streams, the tag and the call do not', () => {
  const text = 'Let me check. <tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>';
  const { content, events } = run(['Let me check. <to', 'ol_c', 'all>{"name": "f", ', '"arguments": {"a": 1}}</tool_call>'],
    result(text, { name: 'f', arguments: { a: 1 } }, 'Let me check.'));
  assert.equal(content.join(''), 'Let me check. ');
  const calls = events.flatMap((e) => e.choices?.[0]?.delta?.tool_calls ?? []);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].index, 0);
  assert.equal(calls[0].function.name, 'f');
  assert.deepEqual(JSON.parse(calls[0].function.arguments), { a: 1 });
  assert.equal(events.at(-1).choices[0].finish_reason, 'tool_calls');
});

test('text that only looks like the start of a tag is sent once it is clearly not one', () => {
  const { content, events } = run(['a <to', 'day', ' b <'], result('a <today b <', null, 'a <today b <'));
  assert.equal(content.join(''), 'a <today b <');
  assert.equal(events.at(-1).choices[0].finish_reason, 'stop');
  assert.equal(events.flatMap((e) => e.choices?.[0]?.delta?.tool_calls ?? []).length, 0);
});

test('a call cut off by the token budget is sent as text', () => {
  const text = 'x <tool_call>{"name": "f", "argu';
  const { content } = run(['x ', '<tool_call>{"name": "f", "argu'], { ...result(text, null, text), finishReason: 'length' });
  assert.equal(content.join(''), text);
});
