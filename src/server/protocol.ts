// OpenAI wire format: request validation and response shapes. snake_case lives only here.

import type { ChatMessage, ChatTool, ChatToolCall, ResponseFormat, ToolChoice } from '../engine/api.js';
import type { ChunkLogprob, GenerationResult } from '../engine/session.js';
import type { ModelGenerateOptions } from '../engine/model.js';

/** An error answered to the client in OpenAI's shape. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, opts: { type?: string; param?: string | null; code?: string | null; headers?: Record<string, string> } = {}) {
    super(message);
    this.status = status;
    this.type = opts.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
    this.headers = opts.headers ?? {};
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const bad = (message: string, param: string, code = 'invalid_value'): HttpError => new HttpError(400, message, { param, code });

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optNumber(body: Json, key: string, lo: number, hi: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
    throw bad(`'${key}' must be a number between ${lo} and ${hi}, got ${JSON.stringify(v)}.`, key);
  }
  return v;
}

function optInt(body: Json, key: string, lo: number, hi: number): number | undefined {
  const v = optNumber(body, key, lo, hi);
  if (v !== undefined && !Number.isInteger(v)) throw bad(`'${key}' must be an integer, got ${v}.`, key);
  return v;
}

function optBool(body: Json, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(`'${key}' must be a boolean, got ${JSON.stringify(v)}.`, key);
  return v;
}

/** The fields both endpoints share. */
export interface ParsedRequest {
  readonly model: string;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly options: ModelGenerateOptions;
  readonly logprobs: boolean;
}

export interface ParsedChat extends ParsedRequest {
  readonly messages: ChatMessage[];
  readonly tools: ChatTool[];
  readonly toolChoice: ToolChoice;
}

/** `tools`: function definitions ({"type": "function", "function": {name, description, parameters}}). */
function parseTools(v: unknown): ChatTool[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad("'tools' must be a list of function tools.", 'tools');
  if (v.length > 128) throw bad(`at most 128 tools, got ${v.length}.`, 'tools');
  const names = new Set<string>();
  return v.map((t, i) => {
    const f = isObject(t) ? t['function'] : undefined;
    if (!isObject(t) || t['type'] !== 'function' || !isObject(f)) throw bad(`tools[${i}] must be {"type": "function", "function": {"name": ..., "parameters": ...}}.`, `tools[${i}]`);
    const name = f['name'];
    if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw bad(`tools[${i}].function.name must be 1-64 letters, digits, _ or -.`, `tools[${i}].function.name`);
    if (names.has(name)) throw bad(`tools[${i}]: the name "${name}" is used twice.`, `tools[${i}].function.name`);
    names.add(name);
    const params = f['parameters'];
    if (params !== undefined && params !== null && !isObject(params)) throw bad(`tools[${i}].function.parameters must be a JSON schema object.`, `tools[${i}].function.parameters`);
    const description = f['description'];
    if (description !== undefined && description !== null && typeof description !== 'string') throw bad(`tools[${i}].function.description must be a string.`, `tools[${i}].function.description`);
    return { name, description: description ?? undefined, parameters: params ?? { type: 'object', properties: {} } };
  });
}

/** `tool_choice`: none, auto (the default with tools), required, or {"type": "function", "function": {"name": ...}}. */
function parseToolChoice(v: unknown, tools: readonly ChatTool[]): ToolChoice {
  if (v === undefined || v === null) return tools.length > 0 ? 'auto' : 'none';
  if (v === 'none') return 'none';
  if (tools.length === 0) throw bad("'tool_choice' needs 'tools' to choose from.", 'tool_choice');
  if (v === 'auto' || v === 'required') return v;
  const f = isObject(v) ? v['function'] : undefined;
  if (isObject(v) && v['type'] === 'function' && isObject(f) && typeof f['name'] === 'string') {
    if (!tools.some((t) => t.name === f['name'])) throw bad(`'tool_choice' names "${f['name']}", which is not one of the tools.`, 'tool_choice');
    return { name: f['name'] };
  }
  throw bad("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}.", 'tool_choice');
}

/** An assistant message's earlier `tool_calls`, with their arguments parsed from JSON text. */
function parseHistoryCalls(v: unknown, i: number): ChatToolCall[] {
  if (!Array.isArray(v)) throw bad(`messages[${i}].tool_calls must be a list.`, `messages[${i}].tool_calls`);
  return v.map((c, j) => {
    const f = isObject(c) ? c['function'] : undefined;
    if (!isObject(c) || !isObject(f) || typeof f['name'] !== 'string' || typeof f['arguments'] !== 'string') {
      throw bad(`messages[${i}].tool_calls[${j}] must be {"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}.`, `messages[${i}].tool_calls`);
    }
    let args: unknown;
    try {
      args = JSON.parse(f['arguments']);
    } catch {
      throw bad(`messages[${i}].tool_calls[${j}].function.arguments is not valid JSON text.`, `messages[${i}].tool_calls`);
    }
    return { id: typeof c['id'] === 'string' ? c['id'] : `call_${j}`, name: f['name'], arguments: args };
  });
}

export interface ParsedCompletion extends ParsedRequest {
  readonly prompt: string | number[];
  readonly echo: boolean;
}

export interface Limits {
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly defaults: ModelGenerateOptions;
}

function parseCommon(
  body: Json, limits: Limits, defaultMaxTokens: number | undefined, maxTokensKeys: readonly string[] = ['max_completion_tokens', 'max_tokens'],
): { base: ParsedRequest; maxTokens: number | undefined } {
  const model = body['model'];
  if (typeof model !== 'string' || model.length === 0) throw bad("'model' is required and must be a string.", 'model', 'missing_required_parameter');
  const n = optInt(body, 'n', 1, 128);
  if (n !== undefined && n !== 1) throw bad(`only n = 1 is supported, got ${n}.`, 'n', 'unsupported_value');
  const stream = optBool(body, 'stream') ?? false;
  const so = body['stream_options'];
  if (so !== undefined && so !== null && !isObject(so)) throw bad("'stream_options' must be an object.", 'stream_options');
  const includeUsage = isObject(so) && so['include_usage'] === true;
  let maxTokens = defaultMaxTokens;
  for (const key of [...maxTokensKeys].reverse()) maxTokens = optInt(body, key, 1, limits.contextLength) ?? maxTokens;
  let stop: string[] | undefined;
  const s = body['stop'];
  if (typeof s === 'string') stop = [s];
  else if (Array.isArray(s)) {
    if (s.length > 16 || !s.every((x) => typeof x === 'string')) throw bad("'stop' must be a string or a list of at most 16 strings.", 'stop');
    stop = s as string[];
  } else if (s !== undefined && s !== null) throw bad("'stop' must be a string or a list of strings.", 'stop');
  const lb = body['logit_bias'];
  if (lb !== undefined && lb !== null && !isObject(lb)) throw bad("'logit_bias' must be an object of token id to bias.", 'logit_bias');
  const options: ModelGenerateOptions = {
    ...limits.defaults,
    temperature: optNumber(body, 'temperature', 0, 2) ?? limits.defaults.temperature,
    topP: optNumber(body, 'top_p', 0, 1) ?? limits.defaults.topP,
    topK: optInt(body, 'top_k', 0, limits.vocabSize) ?? limits.defaults.topK,
    minP: optNumber(body, 'min_p', 0, 1) ?? limits.defaults.minP,
    seed: optInt(body, 'seed', -(2 ** 53), 2 ** 53) ?? limits.defaults.seed,
    presencePenalty: optNumber(body, 'presence_penalty', -2, 2) ?? limits.defaults.presencePenalty,
    frequencyPenalty: optNumber(body, 'frequency_penalty', -2, 2) ?? limits.defaults.frequencyPenalty,
    repetitionPenalty: optNumber(body, 'repetition_penalty', 0.01, 10) ?? optNumber(body, 'repeat_penalty', 0.01, 10) ?? limits.defaults.repetitionPenalty,
    ignoreEos: optBool(body, 'ignore_eos') ?? limits.defaults.ignoreEos,
    stop: stop ?? limits.defaults.stop,
    maxTokens,
    logitBias: lb ? (lb as Record<string, number>) : undefined,
  };
  if (options.topP === 0) throw bad("'top_p' must be greater than 0.", 'top_p');
  return { base: { model, stream, includeUsage, options, logprobs: false }, maxTokens };
}

/**
 * An output format in the wire's shape: Chat Completions nests the schema (`{"type":
 * "json_schema", "json_schema": {"name", "schema", "strict"}}`), the Responses API flattens it
 * (`text.format`: `{"type": "json_schema", "name", "schema", "strict"}`).
 */
function parseFormat(format: unknown, param: string, nested: boolean): ResponseFormat {
  if (!isObject(format) || typeof format['type'] !== 'string') throw bad(`'${param}' must be an object with a string 'type'.`, param);
  const type = format['type'];
  if (type === 'text' || type === 'json_object') return { type };
  if (type !== 'json_schema') throw bad(`'${param}' type "${type}" is not one of text, json_object, json_schema.`, param, 'unsupported_value');
  const holder = nested ? format['json_schema'] : format;
  if (!isObject(holder)) throw bad(`'${param}.json_schema' must be an object with the schema in 'schema'.`, param);
  const schema = holder['schema'];
  if (schema === undefined) throw bad(`'${param}${nested ? '.json_schema' : ''}.schema' is required.`, param, 'missing_required_parameter');
  if (!isObject(schema)) throw bad(`'${param}${nested ? '.json_schema' : ''}.schema' must be a JSON schema object.`, param);
  return { type: 'json_schema', schema };
}

function messageText(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part, j) => {
      if (isObject(part) && part['type'] === 'text' && typeof part['text'] === 'string') return part['text'];
      throw bad(`messages[${i}].content[${j}] must be a text part ({"type": "text", "text": ...}); other content types are not supported.`, `messages[${i}].content`);
    }).join('');
  }
  if (content === null || content === undefined) return '';
  throw bad(`messages[${i}].content must be a string or a list of text parts.`, `messages[${i}].content`);
}

export function parseChat(body: unknown, limits: Limits): ParsedChat {
  if (!isObject(body)) throw bad('the request body must be a JSON object.', 'body');
  // Legacy function calling is refused, never ignored: a client that sends it expects calls back.
  for (const key of ['functions', 'function_call']) {
    if (body[key] !== undefined && body[key] !== null) {
      throw bad(`'${key}' (legacy function calling) is not supported; send 'tools' and 'tool_choice' instead.`, key, 'unsupported_parameter');
    }
  }
  const tools = parseTools(body['tools']);
  const toolChoice = parseToolChoice(body['tool_choice'], tools);
  const msgs = body['messages'];
  if (!Array.isArray(msgs) || msgs.length === 0) throw bad("'messages' must be a non-empty list.", 'messages', 'missing_required_parameter');
  const messages: ChatMessage[] = msgs.map((m, i) => {
    if (!isObject(m) || typeof m['role'] !== 'string') throw bad(`messages[${i}] must be an object with a string 'role'.`, `messages[${i}]`);
    if (!['system', 'developer', 'user', 'assistant', 'tool'].includes(m['role'] as string)) {
      throw bad(`messages[${i}].role "${m['role'] as string}" is not one of system, developer, user, assistant, tool.`, `messages[${i}].role`);
    }
    const role = m['role'] === 'developer' ? 'system' : (m['role'] as string);
    const message: { role: string; content: string; toolCalls?: ChatToolCall[]; toolCallId?: string } = { role, content: messageText(m['content'], i) };
    if (m['tool_calls'] !== undefined && m['tool_calls'] !== null) message.toolCalls = parseHistoryCalls(m['tool_calls'], i);
    if (role === 'tool') {
      if (typeof m['tool_call_id'] !== 'string') throw bad(`messages[${i}] (role "tool") needs the 'tool_call_id' of the call it answers.`, `messages[${i}].tool_call_id`);
      message.toolCallId = m['tool_call_id'];
    }
    return message;
  });
  const rf = body['response_format'];
  const responseFormat = rf === undefined || rf === null ? undefined : parseFormat(rf, 'response_format', true);
  const { base } = parseCommon(body, limits, undefined);
  const logprobs = optBool(body, 'logprobs') ?? false;
  const top = optInt(body, 'top_logprobs', 0, 20);
  if (top !== undefined && !logprobs) throw bad("'top_logprobs' needs 'logprobs': true.", 'top_logprobs');
  return { ...base, messages, tools, toolChoice, logprobs, options: { ...base.options, logprobs: logprobs ? top ?? 0 : undefined, responseFormat } };
}

export interface ParsedResponses extends ParsedRequest {
  readonly messages: ChatMessage[];
  readonly instructions: string | null;
  /** `text.format` as sent (`{type: 'text'}` when absent). */
  readonly format: unknown;
}

/** Text of a Responses API input item's content: a string or input_text/output_text parts. */
function itemText(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part, j) => {
      if (isObject(part) && ['input_text', 'output_text', 'text'].includes(part['type'] as string) && typeof part['text'] === 'string') return part['text'];
      throw bad(`input[${i}].content[${j}] must be an input_text part ({"type": "input_text", "text": ...}); other content types are not supported.`, `input[${i}].content`);
    }).join('');
  }
  throw bad(`input[${i}].content must be a string or a list of input_text parts.`, `input[${i}].content`);
}

/** POST /v1/responses with text input and output (no stored state, no tools). */
export function parseResponses(body: unknown, limits: Limits): ParsedResponses {
  if (!isObject(body)) throw bad('the request body must be a JSON object.', 'body');
  for (const key of ['previous_response_id', 'conversation']) {
    if (body[key] !== undefined && body[key] !== null) {
      throw bad(`'${key}' is not supported: this server stores no responses; send the whole conversation in 'input'.`, key, 'unsupported_parameter');
    }
  }
  if (body['background'] === true) throw bad("'background' responses are not supported.", 'background', 'unsupported_value');
  if (Array.isArray(body['tools']) ? body['tools'].length > 0 : body['tools'] !== undefined && body['tools'] !== null) {
    throw bad('tools are not supported on /v1/responses by this server.', 'tools', 'unsupported_parameter');
  }
  const input = body['input'];
  let messages: ChatMessage[];
  if (typeof input === 'string') messages = [{ role: 'user', content: input }];
  else if (Array.isArray(input) && input.length > 0) {
    messages = input.map((m, i) => {
      if (!isObject(m) || (m['type'] !== undefined && m['type'] !== 'message') || typeof m['role'] !== 'string') {
        throw bad(`input[${i}] must be a message ({"role": ..., "content": ...}); other item types are not supported.`, `input[${i}]`);
      }
      if (!['system', 'developer', 'user', 'assistant'].includes(m['role'] as string)) {
        throw bad(`input[${i}].role "${m['role'] as string}" is not one of system, developer, user, assistant.`, `input[${i}].role`);
      }
      return { role: m['role'] === 'developer' ? 'system' : (m['role'] as string), content: itemText(m['content'], i) };
    });
  } else throw bad("'input' is required: a string or a non-empty list of messages.", 'input', 'missing_required_parameter');
  const ins = body['instructions'];
  if (ins !== undefined && ins !== null && typeof ins !== 'string') throw bad("'instructions' must be a string.", 'instructions');
  const instructions = typeof ins === 'string' ? ins : null;
  if (instructions) messages = [{ role: 'system', content: instructions }, ...messages];
  const text = body['text'];
  if (text !== undefined && text !== null && !isObject(text)) throw bad("'text' must be an object.", 'text');
  const format = isObject(text) && text['format'] !== undefined ? text['format'] : { type: 'text' };
  const responseFormat = parseFormat(format, 'text.format', false);
  const { base } = parseCommon({ ...body, stop: undefined, logit_bias: undefined, stream_options: undefined, n: undefined }, limits, undefined, ['max_output_tokens']);
  return { ...base, messages, instructions, format, options: { ...base.options, responseFormat } };
}

export function parseCompletion(body: unknown, limits: Limits): ParsedCompletion {
  if (!isObject(body)) throw bad('the request body must be a JSON object.', 'body');
  let prompt: string | number[];
  const p = body['prompt'];
  if (typeof p === 'string') prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => Number.isInteger(x))) {
    for (const id of p as number[]) {
      if (id < 0 || id >= limits.vocabSize) throw bad(`prompt token ${id} is outside the vocabulary [0, ${limits.vocabSize}).`, 'prompt');
    }
    prompt = p as number[];
  } else if (Array.isArray(p) && p.length > 1) {
    throw bad("only one prompt per request is supported ('prompt' as a string, a list of one string, or token ids).", 'prompt', 'unsupported_value');
  } else {
    throw bad("'prompt' is required: a string or a list of token ids.", 'prompt', 'missing_required_parameter');
  }
  if (body['suffix'] !== undefined && body['suffix'] !== null) throw bad("'suffix' is not supported.", 'suffix', 'unsupported_parameter');
  if (body['best_of'] !== undefined && body['best_of'] !== null && body['best_of'] !== 1) throw bad("only 'best_of' = 1 is supported.", 'best_of', 'unsupported_value');
  // OpenAI's completions default is 16 tokens.
  const { base } = parseCommon(body, limits, 16);
  const lp = optInt(body, 'logprobs', 0, 5);
  return {
    ...base, prompt, echo: optBool(body, 'echo') ?? false, logprobs: lp !== undefined,
    options: { ...base.options, logprobs: lp },
  };
}

export function usage(r: GenerationResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: r.promptIds.length, completion_tokens: r.generatedIds.length, total_tokens: r.promptIds.length + r.generatedIds.length };
}

/** llama-server's timing names, with QuantSpec's draft counts. */
export function timings(r: GenerationResult): Record<string, number> {
  const t = r.timings;
  const promptN = t.promptTokens - t.cachedTokens;
  return {
    prompt_n: promptN,
    prompt_ms: t.prefillMs,
    prompt_per_token_ms: promptN > 0 ? t.prefillMs / promptN : 0,
    prompt_per_second: t.prefillTokensPerS,
    predicted_n: t.generatedTokens,
    predicted_ms: t.decodeMs,
    predicted_per_token_ms: t.generatedTokens > 0 ? (t.prefillMs + t.decodeMs) / t.generatedTokens : 0,
    predicted_per_second: t.decodeTokensPerS,
    cache_n: t.cachedTokens,
    draft_n: r.stats?.drafted ?? 0,
    draft_n_accepted: r.stats?.accepted ?? 0,
  };
}

/** Chat logprobs content entries. */
export function chatLogprobs(entries: readonly ChunkLogprob[]): { content: unknown[] } {
  const bytes = (s: string) => Array.from(new TextEncoder().encode(s));
  return {
    content: entries.map((e) => ({
      token: e.text, logprob: e.logprob, bytes: bytes(e.text),
      top_logprobs: e.top.map((t) => ({ token: t.text, logprob: t.logprob, bytes: bytes(t.text) })),
    })),
  };
}

/** Legacy completions logprobs. */
export function completionLogprobs(entries: readonly ChunkLogprob[], offset: number): Record<string, unknown> {
  const offsets: number[] = [];
  let o = offset;
  for (const e of entries) {
    offsets.push(o);
    o += e.text.length;
  }
  return {
    tokens: entries.map((e) => e.text),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((t) => [t.text, t.logprob]))),
    text_offset: offsets,
  };
}

/** Library option names (as engine errors spell them) and the request fields that set them. */
const FIELD_OF_OPTION: Readonly<Record<string, string>> = {
  maxTokens: 'max_tokens', topK: 'top_k', topP: 'top_p', minP: 'min_p', repetitionPenalty: 'repetition_penalty',
  presencePenalty: 'presence_penalty', frequencyPenalty: 'frequency_penalty', penaltyWindow: 'penalty_window',
  logitBias: 'logit_bias', logprobs: 'top_logprobs', responseFormat: 'response_format', ignoreEos: 'ignore_eos',
};

/** An engine error's message and parameter in the API's words (snake_case request fields). */
export function inRequestTerms(message: string, param: string | undefined): { message: string; param: string | null } {
  const text = message.replace(/(?<![\w.])([a-z][a-zA-Z]*)(?![\w])/g, (word) => FIELD_OF_OPTION[word] ?? word);
  return { message: text, param: param === undefined ? null : (FIELD_OF_OPTION[param] ?? param) };
}
