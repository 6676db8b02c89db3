// How one generation is answered on each endpoint: the whole body at once, or as SSE events.
// Chat and legacy completions follow the Chat Completions wire format (chunks, then `[DONE]`);
// /v1/responses follows the Responses API (typed events with sequence numbers, no `[DONE]`).
// finish_reason is the engine's own (stop, length) plus `cancelled` for a stream the server cut
// off at shutdown, so a client can tell it from one that finished, and `tool_calls`.

import { randomUUID } from 'node:crypto';
import type { ChunkLogprob, GenerationChunk, GenerationResult, PromptInput } from '../engine/session.js';
import { chatLogprobs, completionLogprobs, type HttpError, timings, usage, type ParsedCompletion, type ParsedRequest } from './protocol.js';

/** Writes one SSE event (`event` names it; the Chat Completions format sends data only). */
export type SseWrite = (data: unknown, event?: string) => void;

export interface Reply {
  /** The non-streamed body. */
  full(r: GenerationResult, logprobs: readonly ChunkLogprob[]): unknown;
  /** Events before the first token. */
  start(write: SseWrite): void;
  delta(write: SseWrite, chunk: GenerationChunk): void;
  /** Events after the last token (the stream ends after them). */
  end(write: SseWrite, r: GenerationResult): void;
  /** An error after the stream began. */
  error(write: SseWrite, e: HttpError): void;
  /** The stream's closing line, if the format has one. */
  readonly terminator: string;
}

interface Base { readonly id: string; readonly created: number; readonly model: string }

function base(prefix: string, model: string): Base {
  return { id: `${prefix}-${randomUUID()}`, created: Math.floor(Date.now() / 1000), model };
}

/**
 * Chat Completions. With tools on offer (`toolOpen`: the template's opening tag of a call), a
 * stream holds back text that may be the start of a call, never sends the call's own text as
 * content, and ends with the call as a `tool_calls` delta and finish_reason `tool_calls`.
 */
export function chatReply(parsed: ParsedRequest, model: string, toolOpen: string | null = null): Reply {
  const b = base('chatcmpl', model);
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    ({ id: b.id, object: 'chat.completion.chunk', created: b.created, model, system_fingerprint: 'quantspec', choices, ...extra });
  const callId = `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
  const toolCalls = (r: GenerationResult) =>
    r.toolCall ? [{ id: callId, type: 'function', function: { name: r.toolCall.name, arguments: JSON.stringify(r.toolCall.arguments) } }] : undefined;
  const finish = (r: GenerationResult) => (r.toolCall ? 'tool_calls' : r.finishReason);
  let pending = ''; // text held back: it may be the start of a call
  let inCall = false;
  let sent = 0; // characters of the output sent as content
  const content = (write: SseWrite, text: string, lp: readonly ChunkLogprob[]) => {
    if (text.length === 0 && lp.length === 0) return;
    sent += text.length;
    write(chunk([{ index: 0, delta: { content: text }, logprobs: parsed.logprobs ? chatLogprobs(lp) : null, finish_reason: null }]));
  };
  return {
    terminator: 'data: [DONE]\n\n',
    full: (r, lp) => ({
      id: b.id, object: 'chat.completion', created: b.created, model, system_fingerprint: 'quantspec',
      choices: [{
        index: 0,
        message: r.toolCall ? { role: 'assistant', content: r.content ? r.content : null, tool_calls: toolCalls(r) } : { role: 'assistant', content: r.text },
        logprobs: parsed.logprobs ? chatLogprobs(lp) : null, finish_reason: finish(r),
      }],
      usage: usage(r), timings: timings(r),
    }),
    start: (write) => write(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }])),
    delta: (write, c) => {
      const lp = c.logprobs ?? [];
      if (toolOpen === null) return content(write, c.text, lp);
      if (inCall) return;
      pending += c.text;
      const at = pending.indexOf(toolOpen);
      if (at >= 0) {
        inCall = true;
        content(write, pending.slice(0, at), lp);
        pending = '';
        return;
      }
      let keep = Math.min(pending.length, toolOpen.length - 1);
      while (keep > 0 && !toolOpen.startsWith(pending.slice(pending.length - keep))) keep--;
      content(write, pending.slice(0, pending.length - keep), lp);
      pending = pending.slice(pending.length - keep);
    },
    end: (write, r) => {
      // Without a call (the model answered in text, or stopped mid-call), the rest is content.
      if (!r.toolCall && sent < r.text.length) content(write, r.text.slice(sent), []);
      const calls = toolCalls(r);
      if (calls) write(chunk([{ index: 0, delta: { tool_calls: calls.map((c, index) => ({ index, ...c })) }, logprobs: null, finish_reason: null }]));
      write(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: finish(r) }], { timings: timings(r) }));
      if (parsed.includeUsage) write(chunk([], { usage: usage(r) }));
    },
    error: (write, e) => write(e.body()),
  };
}

export function completionReply(parsed: ParsedCompletion, model: string, prompt: PromptInput): Reply {
  const b = base('cmpl', model);
  const echo = parsed.echo && typeof prompt === 'string' ? prompt : '';
  let offset = 0;
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    ({ id: b.id, object: 'text_completion', created: b.created, model, system_fingerprint: 'quantspec', choices, ...extra });
  return {
    terminator: 'data: [DONE]\n\n',
    full: (r, lp) => ({
      id: b.id, object: 'text_completion', created: b.created, model, system_fingerprint: 'quantspec',
      choices: [{ index: 0, text: echo + r.text, logprobs: parsed.logprobs ? completionLogprobs(lp, echo.length) : null, finish_reason: r.finishReason }],
      usage: usage(r), timings: timings(r),
    }),
    start: (write) => {
      if (echo) write(chunk([{ index: 0, text: echo, logprobs: null, finish_reason: null }]));
      offset = echo.length;
    },
    delta: (write, c) => {
      write(chunk([{ index: 0, text: c.text, logprobs: parsed.logprobs ? completionLogprobs(c.logprobs ?? [], offset) : null, finish_reason: null }]));
      offset += c.text.length;
    },
    end: (write, r) => {
      write(chunk([{ index: 0, text: '', logprobs: null, finish_reason: r.finishReason }], { timings: timings(r) }));
      if (parsed.includeUsage) write(chunk([], { usage: usage(r) }));
    },
    error: (write, e) => write(e.body()),
  };
}

/** Request fields the Responses API echoes in its response object. */
export interface ResponsesEcho {
  readonly instructions: string | null;
  readonly maxOutputTokens: number | null;
  readonly temperature: number | null;
  readonly topP: number | null;
  /** `text.format` as the request sent it (`{type: 'text'}` by default). */
  readonly format: unknown;
}

export function responsesReply(echo: ResponsesEcho, model: string): Reply {
  const id = `resp_${randomUUID().replace(/-/g, '')}`;
  const itemId = `msg_${randomUUID().replace(/-/g, '')}`;
  const createdAt = Math.floor(Date.now() / 1000);
  let sequence = 0;
  let text = '';
  const part = (t: string) => ({ type: 'output_text', text: t, annotations: [], logprobs: [] });
  const item = (status: string, content: unknown[]) => ({ id: itemId, type: 'message', status, role: 'assistant', content });
  const response = (status: string, output: unknown[], r?: GenerationResult) => ({
    id, object: 'response', created_at: createdAt, status, model, output,
    error: null,
    incomplete_details: r === undefined || status !== 'incomplete' ? null : { reason: r.finishReason === 'length' ? 'max_output_tokens' : 'cancelled' },
    instructions: echo.instructions, max_output_tokens: echo.maxOutputTokens, temperature: echo.temperature, top_p: echo.topP,
    parallel_tool_calls: false, tool_choice: 'none', tools: [], text: { format: echo.format }, store: false, metadata: {},
    usage: r === undefined ? null : {
      input_tokens: r.promptIds.length, input_tokens_details: { cached_tokens: r.timings.cachedTokens },
      output_tokens: r.generatedIds.length, output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: r.promptIds.length + r.generatedIds.length,
    },
  });
  const status = (r: GenerationResult) => (r.finishReason === 'stop' ? 'completed' : 'incomplete');
  const event = (write: SseWrite, type: string, fields: Record<string, unknown>) => write({ type, sequence_number: sequence++, ...fields }, type);
  const at = { item_id: itemId, output_index: 0, content_index: 0 };
  return {
    terminator: '',
    full: (r) => response(status(r), [item('completed', [part(r.text)])], r),
    start: (write) => {
      event(write, 'response.created', { response: response('in_progress', []) });
      event(write, 'response.in_progress', { response: response('in_progress', []) });
      event(write, 'response.output_item.added', { output_index: 0, item: item('in_progress', []) });
      event(write, 'response.content_part.added', { ...at, part: part('') });
    },
    delta: (write, c) => {
      text += c.text;
      event(write, 'response.output_text.delta', { ...at, delta: c.text, logprobs: [] });
    },
    end: (write, r) => {
      event(write, 'response.output_text.done', { ...at, text, logprobs: [] });
      event(write, 'response.content_part.done', { ...at, part: part(text) });
      const done = item(r.finishReason === 'stop' ? 'completed' : 'incomplete', [part(text)]);
      event(write, 'response.output_item.done', { output_index: 0, item: done });
      const s = status(r);
      event(write, s === 'completed' ? 'response.completed' : 'response.incomplete', { response: response(s, [done], r) });
    },
    error: (write, e) => event(write, 'error', { code: e.code, message: e.message, param: e.param }),
  };
}
