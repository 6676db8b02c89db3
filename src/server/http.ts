// OpenAI-compatible HTTP server over a worker-hosted model: /v1/chat/completions and
// /v1/completions (JSON or SSE streaming), /v1/models, /health, /metrics. Requests beyond the
// slots wait in a bounded queue; a client that disconnects cancels its generation.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContextOverflowError, InvalidArgumentError, QuantspecError } from '../core/errors.js';
import type { ModelGenerateOptions } from '../engine/model.js';
import type { RemoteModel } from '../engine/remote.js';
import type { ChunkLogprob, GenerationChunk, GenerationResult, PromptInput } from '../engine/session.js';
import { Metrics } from './metrics.js';
import {
  chatLogprobs, completionLogprobs, finishReason, HttpError, inRequestTerms, parseChat, parseCompletion, timings, usage,
  type Limits, type ParsedRequest,
} from './protocol.js';

export interface ServerOptions {
  readonly host: string;
  readonly port: number;
  readonly apiKey?: string;
  /** Concurrent generations (sessions in the worker). */
  readonly parallel: number;
  /** Requests allowed to wait for a slot; more get 429. */
  readonly maxQueue: number;
  readonly maxBodyBytes: number;
  /** The id clients name in `model` (and /v1/models lists). */
  readonly modelId: string;
  /** Generation defaults from the command line. */
  readonly defaults: ModelGenerateOptions;
  readonly log?: (line: string) => void;
}

type State = { kind: 'loading' } | { kind: 'ready'; model: RemoteModel } | { kind: 'failed'; message: string };

export class QuantspecServer {
  readonly options: ServerOptions;
  readonly metrics = new Metrics();
  private state: State = { kind: 'loading' };
  private readonly server: http.Server;
  private readonly freeSlots: number[] = [];
  private readonly waiting: { resolve: (slot: number) => void; reject: (e: Error) => void }[] = [];
  private readonly inFlight = new Set<AbortController>();
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly keyDigest: Buffer | null;
  private closing = false;

  constructor(options: ServerOptions) {
    this.options = options;
    for (let i = 0; i < options.parallel; i++) this.freeSlots.push(i);
    this.keyDigest = options.apiKey ? createHash('sha256').update(options.apiKey).digest() : null;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => this.fail(res, req, e));
    });
    // Bytes that are not HTTP (a body without a length after a GET or DELETE, garbage, oversize
    // headers): an OpenAI-shaped 400 (431 for headers) instead of Node's empty reply, then close.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body = JSON.stringify({ error: { message: `the request is not valid HTTP (${err.code ?? 'parse error'}).`, type: 'invalid_request_error', param: null, code: 'bad_http' } });
      socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
    this.server.requestTimeout = 0; // long generations
    this.server.headersTimeout = 30_000;
  }

  /** Start listening at once (health answers 503 until the model is ready), then load it. */
  async listen(load: () => Promise<RemoteModel>): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => resolve());
    });
    load().then(
      (model) => {
        if (this.closing) void model.close();
        else this.state = { kind: 'ready', model };
      },
      (e: Error) => {
        this.state = { kind: 'failed', message: e.message };
        this.options.log?.(`model failed to load: ${e.message}`);
      },
    );
    return (this.server.address() as AddressInfo).port;
  }

  /** Ready once the model has loaded (rejects if loading failed). */
  async ready(): Promise<void> {
    while (this.state.kind === 'loading') await new Promise((r) => setTimeout(r, 20));
    if (this.state.kind === 'failed') throw new Error(this.state.message);
  }

  /** Stop accepting connections, cancel in-flight generations, release the model. */
  async shutdown(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const w of this.waiting.splice(0)) w.reject(new HttpError(503, 'the server is shutting down.'));
    for (const a of this.inFlight) a.abort();
    const deadline = Date.now() + 5000;
    while (this.inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.server.closeAllConnections();
    await closed;
    if (this.state.kind === 'ready') await this.state.model.close();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = url.pathname.replace(/\/+$/, '') || '/';
    if (route === '/health' && req.method === 'GET') return this.health(res);
    this.authorize(req);
    if (route === '/metrics' && req.method === 'GET') {
      this.send(res, req, 200, this.metrics.render(), 'text/plain; version=0.0.4');
      return;
    }
    if (route === '/v1/models' && req.method === 'GET') {
      const model = this.model();
      this.sendJson(res, req, 200, {
        object: 'list',
        data: [{
          id: this.options.modelId, object: 'model', created: this.created, owned_by: 'quantspec',
          meta: { context_length: model.info.contextLength, architecture: model.info.config.arch, backend: model.info.backend, decoding: model.info.plan },
        }],
      });
      return;
    }
    if (route === '/v1/chat/completions' || route === '/v1/completions') {
      if (req.method !== 'POST') throw new HttpError(405, `${route} takes POST.`, { code: 'method_not_allowed' });
      const body = await this.readJson(req);
      const model = this.model();
      const limits: Limits = { contextLength: model.info.contextLength, vocabSize: model.info.config.vocabSize, defaults: this.options.defaults };
      const chat = route === '/v1/chat/completions';
      const parsed = chat ? parseChat(body, limits) : parseCompletion(body, limits);
      if (parsed.model !== this.options.modelId) {
        throw new HttpError(404, `the model '${parsed.model}' does not exist; this server serves '${this.options.modelId}'.`, { param: 'model', code: 'model_not_found' });
      }
      const prompt: PromptInput = chat
        ? { messages: (parsed as ReturnType<typeof parseChat>).messages }
        : typeof (parsed as ReturnType<typeof parseCompletion>).prompt === 'string'
          ? ((parsed as ReturnType<typeof parseCompletion>).prompt as string)
          : { ids: (parsed as ReturnType<typeof parseCompletion>).prompt as number[] };
      await this.complete(req, res, model, chat, parsed, prompt);
      return;
    }
    throw new HttpError(404, `no route ${req.method} ${route}.`, { code: 'not_found' });
  }

  private health(res: http.ServerResponse): void {
    const s = this.state;
    const status = s.kind === 'ready' ? 200 : s.kind === 'loading' ? 503 : 500;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(s.kind === 'ready' ? { status: 'ok' } : s.kind === 'loading' ? { status: 'loading' } : { status: 'error', message: s.message }));
    this.metrics.countRequest('/health', status);
  }

  private model(): RemoteModel {
    if (this.state.kind === 'ready') return this.state.model;
    if (this.state.kind === 'loading') throw new HttpError(503, 'the model is still loading; retry shortly.', { code: 'model_loading', headers: { 'retry-after': '1' } });
    throw new HttpError(500, `the model failed to load: ${this.state.message}`, { code: 'model_load_failed' });
  }

  private authorize(req: http.IncomingMessage): void {
    if (!this.keyDigest) return;
    const header = req.headers['authorization'] ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    // Compare digests: constant time, whatever the length of what was sent.
    const ok = m !== null && timingSafeEqual(createHash('sha256').update(m[1]!.trim()).digest(), this.keyDigest);
    if (!ok) throw new HttpError(401, 'a valid API key is required: send "Authorization: Bearer <key>".', { type: 'invalid_request_error', code: 'invalid_api_key' });
  }

  private readJson(req: http.IncomingMessage): Promise<unknown> {
    const limit = this.options.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      return Promise.reject(new HttpError(413, `the request body is ${declared} bytes; the limit is ${limit}.`, { code: 'request_too_large' }));
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let failed = false;
      req.on('data', (c: Buffer) => {
        if (failed) return;
        size += c.length;
        if (size > limit) {
          failed = true;
          reject(new HttpError(413, `the request body exceeds the limit of ${limit} bytes.`, { code: 'request_too_large' }));
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (failed) return;
        let text: string;
        try {
          text = UTF8.decode(Buffer.concat(chunks));
        } catch {
          reject(new HttpError(400, 'the request body is not valid UTF-8.', { code: 'invalid_json' }));
          return;
        }
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch (e) {
          reject(new HttpError(400, `the request body is not valid JSON: ${(e as Error).message}.`, { code: 'invalid_json' }));
          return;
        }
        if (nestedDeeperThan(body, MAX_JSON_DEPTH)) {
          reject(new HttpError(400, `the request body nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep.`, { code: 'invalid_json' }));
          return;
        }
        resolve(body);
      });
      req.on('error', (e) => {
        failed = true;
        reject(e);
      });
    });
  }

  private acquireSlot(abort: AbortController): Promise<number> {
    const free = this.freeSlots.pop();
    if (free !== undefined) return Promise.resolve(free);
    if (this.waiting.length >= this.options.maxQueue) {
      return Promise.reject(new HttpError(429, `all ${this.options.parallel} slots are busy and ${this.waiting.length} requests are queued; retry later.`, {
        type: 'rate_limit_exceeded', code: 'rate_limit_exceeded', headers: { 'retry-after': '1' },
      }));
    }
    return new Promise<number>((resolve, reject) => {
      const entry = { resolve, reject };
      this.waiting.push(entry);
      this.metrics.queueDepth = this.waiting.length;
      abort.signal.addEventListener('abort', () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          this.metrics.queueDepth = this.waiting.length;
          reject(new HttpError(499, 'the client closed the connection.'));
        }
      }, { once: true });
    });
  }

  private releaseSlot(slot: number): void {
    const next = this.waiting.shift();
    this.metrics.queueDepth = this.waiting.length;
    if (next) next.resolve(slot);
    else this.freeSlots.push(slot);
  }

  private async complete(
    req: http.IncomingMessage, res: http.ServerResponse, model: RemoteModel, chat: boolean, parsed: ParsedRequest, prompt: PromptInput,
  ): Promise<void> {
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) abort.abort();
    };
    res.on('close', onClose);
    this.inFlight.add(abort);
    let slot: number | null = null;
    try {
      slot = await this.acquireSlot(abort);
      this.metrics.activeSlots++;
      const gen = model.generate(prompt, { ...parsed.options, signal: abort.signal }, slot);
      try {
        // The first step surfaces request errors (prompt too long, bad template) before any header.
        const first = await gen.next();
        if (parsed.stream) await this.stream(req, res, chat, parsed, gen, first, prompt);
        else {
          let r = first;
          const chunks: GenerationChunk[] = [];
          while (!r.done) {
            chunks.push(r.value);
            r = await gen.next();
          }
          this.metrics.recordGeneration(r.value);
          this.sendJson(res, req, 200, this.fullResponse(chat, parsed, r.value, chunks.flatMap((c) => c.logprobs ?? []), prompt));
        }
      } finally {
        await gen.return(undefined as never);
      }
    } finally {
      res.off('close', onClose);
      this.inFlight.delete(abort);
      if (slot !== null) {
        this.metrics.activeSlots--;
        this.releaseSlot(slot);
      }
    }
  }

  private fullResponse(chat: boolean, parsed: ParsedRequest, r: GenerationResult, lp: ChunkLogprob[], prompt: PromptInput): Record<string, unknown> {
    const base = { created: Math.floor(Date.now() / 1000), model: this.options.modelId, system_fingerprint: 'quantspec' };
    if (chat) {
      return {
        id: `chatcmpl-${randomUUID()}`, object: 'chat.completion', ...base,
        choices: [{ index: 0, message: { role: 'assistant', content: r.text }, logprobs: parsed.logprobs ? chatLogprobs(lp) : null, finish_reason: finishReason(r) }],
        usage: usage(r), timings: timings(r),
      };
    }
    const echo = (parsed as ReturnType<typeof parseCompletion>).echo && typeof prompt === 'string' ? prompt : '';
    return {
      id: `cmpl-${randomUUID()}`, object: 'text_completion', ...base,
      choices: [{ index: 0, text: echo + r.text, logprobs: parsed.logprobs ? completionLogprobs(lp, echo.length) : null, finish_reason: finishReason(r) }],
      usage: usage(r), timings: timings(r),
    };
  }

  private async stream(
    req: http.IncomingMessage, res: http.ServerResponse, chat: boolean, parsed: ParsedRequest,
    gen: AsyncGenerator<GenerationChunk, GenerationResult>, first: IteratorResult<GenerationChunk, GenerationResult>, prompt: PromptInput,
  ): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    this.metrics.countRequest(new URL(req.url ?? '/', 'http://x').pathname, 200);
    const id = chat ? `chatcmpl-${randomUUID()}` : `cmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const send = (choices: unknown[], extra: Record<string, unknown> = {}) => {
      if (!res.writableEnded && !res.destroyed) {
        res.write(`data: ${JSON.stringify({ id, object, created, model: this.options.modelId, system_fingerprint: 'quantspec', choices, ...extra })}\n\n`);
      }
    };
    let offset = 0;
    const delta = (c: GenerationChunk) => {
      if (chat) {
        send([{ index: 0, delta: { content: c.text }, logprobs: parsed.logprobs ? chatLogprobs(c.logprobs ?? []) : null, finish_reason: null }]);
      } else {
        send([{ index: 0, text: c.text, logprobs: parsed.logprobs ? completionLogprobs(c.logprobs ?? [], offset) : null, finish_reason: null }]);
        offset += c.text.length;
      }
    };
    if (chat) send([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
    else if ((parsed as ReturnType<typeof parseCompletion>).echo && typeof prompt === 'string') {
      send([{ index: 0, text: prompt, logprobs: null, finish_reason: null }]);
      offset += prompt.length;
    }
    let r = first;
    try {
      while (!r.done) {
        if (r.value.text || (r.value.logprobs?.length ?? 0) > 0) delta(r.value);
        r = await gen.next();
      }
    } catch (e) {
      // Errors after the headers: an error event, then the end of the stream.
      const err = toHttpError(e);
      if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(err.body())}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    const result = r.value;
    this.metrics.recordGeneration(result);
    const fr = result.finishReason === 'cancelled' ? null : finishReason(result);
    if (chat) send([{ index: 0, delta: {}, logprobs: null, finish_reason: fr }], { timings: timings(result) });
    else send([{ index: 0, text: '', logprobs: null, finish_reason: fr }], { timings: timings(result) });
    if (parsed.includeUsage) send([], { usage: usage(result) });
    if (!res.writableEnded && !res.destroyed) res.end('data: [DONE]\n\n');
  }

  private sendJson(res: http.ServerResponse, req: http.IncomingMessage, status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.send(res, req, status, JSON.stringify(body), 'application/json', headers);
  }

  private send(res: http.ServerResponse, req: http.IncomingMessage, status: number, body: string, type: string, headers: Record<string, string> = {}): void {
    this.metrics.countRequest(new URL(req.url ?? '/', 'http://x').pathname, status);
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  }

  private fail(res: http.ServerResponse, req: http.IncomingMessage, e: unknown): void {
    const err = toHttpError(e);
    if (err.status >= 500 && err.status !== 503) this.options.log?.(`error on ${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}`);
    if (res.headersSent) {
      if (!res.writableEnded) res.end();
      return;
    }
    this.sendJson(res, req, err.status, err.body(), err.headers);
  }
}

/** Map engine errors to HTTP: user mistakes are 4xx with the engine's message. */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof ContextOverflowError) return new HttpError(400, e.message, { param: 'messages', code: 'context_length_exceeded' });
  if (e instanceof InvalidArgumentError) {
    const { message, param } = inRequestTerms(e.message, e.param);
    return new HttpError(400, message, { param, code: 'invalid_value' });
  }
  if (e instanceof QuantspecError && ['tokenizer', 'invalid_argument'].includes(e.code)) {
    return new HttpError(400, e.message, { code: e.code });
  }
  return new HttpError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, { code: 'internal_error' });
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Deepest nesting a request body may have (OpenAI requests need 4: body, messages, message, content parts). */
const MAX_JSON_DEPTH = 32;

/** Whether arrays/objects in `value` nest more than `limit` levels (iterative: a hostile body cannot overflow the stack). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > limit) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}
