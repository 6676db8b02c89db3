// OpenAI-compatible HTTP server over a worker-hosted model: /v1/chat/completions,
// /v1/completions and /v1/responses (JSON or SSE streaming), /v1/models, /health, /metrics.
// Requests beyond the slots wait in a bounded queue; a client that disconnects cancels its
// generation. Host, Origin and content type are checked first (guard.ts).

import { createHash, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContextOverflowError, InvalidArgumentError, QuantspecError } from '../core/errors.js';
import type { ModelGenerateOptions } from '../engine/model.js';
import type { RemoteModel } from '../engine/remote.js';
import type { GenerationChunk, GenerationResult, PromptInput } from '../engine/session.js';
import { type AccessPolicy, checkAccess, checkJsonContentType, corsHeaders, routeLabel } from './guard.js';
import { Metrics } from './metrics.js';
import { HttpError, inRequestTerms, parseChat, parseCompletion, parseResponses, type Limits, type ParsedRequest } from './protocol.js';
import { chatReply, completionReply, type Reply, responsesReply, type SseWrite } from './replies.js';

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
  /** Web origins whose pages may call the server (`*`: any); the server's own origin always may. */
  readonly allowedOrigins?: readonly string[];
  /** Host header names accepted beyond the loopback ones when bound to loopback (`*`: any). */
  readonly allowedHosts?: readonly string[];
  /** Time a client has to send its headers (default 30 s). */
  readonly headersTimeoutMs?: number;
  /** Time a client has to send its whole request, headers and body (default 60 s); generation time does not count. */
  readonly requestTimeoutMs?: number;
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
  private readonly access: AccessPolicy;
  private closing = false;

  constructor(options: ServerOptions) {
    this.options = options;
    for (let i = 0; i < options.parallel; i++) this.freeSlots.push(i);
    this.keyDigest = options.apiKey ? createHash('sha256').update(options.apiKey).digest() : null;
    this.access = { allowedOrigins: options.allowedOrigins ?? [], allowedHosts: options.allowedHosts ?? [], bindHost: options.host };
    const requestTimeout = options.requestTimeoutMs ?? 60_000;
    const headersTimeout = Math.min(options.headersTimeoutMs ?? 30_000, requestTimeout);
    // Node's timers cover receiving the request only: once its body is in, a generation may run
    // for as long as it needs. The check interval bounds how late a timeout fires.
    this.server = http.createServer({ requestTimeout, headersTimeout, connectionsCheckingInterval: Math.min(1000, Math.max(50, headersTimeout / 4)) }, (req, res) => {
      this.handle(req, res).catch((e) => this.fail(res, req, e));
    });
    // Bytes that are not HTTP (a body without a length after a GET or DELETE, garbage, oversize
    // headers): an OpenAI-shaped 400 (431 for headers) instead of Node's empty reply, then close.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const [status, reason, message, code] = timedOut
        ? [408, 'Request Timeout', `the request was not received in time (headers within ${headersTimeout} ms, the whole request within ${requestTimeout} ms).`, 'request_timeout']
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'Request Header Fields Too Large', `the request is not valid HTTP (${err.code}).`, 'bad_http']
          : [400, 'Bad Request', `the request is not valid HTTP (${err.code ?? 'parse error'}).`, 'bad_http'];
      // A request whose headers were parsed is counted by its handler (it sees the socket go).
      if (timedOut) (socket as { [TIMED_OUT]?: boolean })[TIMED_OUT] = true;
      else this.metrics.countRequest('unmatched', status);
      const body = JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code } });
      socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
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
    const origin = checkAccess(req, this.access);
    if (origin !== null) {
      for (const [k, v] of Object.entries(corsHeaders(origin, req, req.method === 'OPTIONS'))) res.setHeader(k, v);
    }
    if (req.method === 'OPTIONS') {
      // A CORS preflight from an allowed origin (or the server's own): no body, no API key.
      this.metrics.countRequest(routeLabel(route), 204);
      res.writeHead(204, { allow: 'GET, POST, OPTIONS' });
      res.end();
      return;
    }
    if (route === '/health' && req.method === 'GET') return this.health(res);
    this.authorize(req);
    if (route === '/metrics' && req.method === 'GET') {
      this.send(res, req, 200, this.metrics.render(), 'text/plain; version=0.0.4');
      return;
    }
    if (route === '/v1/models' && req.method === 'GET') {
      this.sendJson(res, req, 200, { object: 'list', data: [this.modelCard()] });
      return;
    }
    if (route.startsWith('/v1/models/') && req.method === 'GET') {
      let id: string;
      try {
        id = decodeURIComponent(route.slice('/v1/models/'.length));
      } catch {
        throw new HttpError(400, 'the model id in the path is not valid percent-encoding.', { param: 'model', code: 'invalid_value' });
      }
      if (id !== this.options.modelId) {
        throw new HttpError(404, `the model '${id}' does not exist; this server serves '${this.options.modelId}'.`, { param: 'model', code: 'model_not_found' });
      }
      this.sendJson(res, req, 200, this.modelCard());
      return;
    }
    if (route === '/v1/chat/completions' || route === '/v1/completions' || route === '/v1/responses') {
      if (req.method !== 'POST') throw new HttpError(405, `${route} takes POST.`, { code: 'method_not_allowed' });
      checkJsonContentType(req);
      const body = await this.readJson(req);
      const model = this.model();
      const limits: Limits = { contextLength: model.info.contextLength, vocabSize: model.info.config.vocabSize, defaults: this.options.defaults };
      let parsed: ParsedRequest;
      let prompt: PromptInput;
      let reply: Reply;
      if (route === '/v1/chat/completions') {
        const chat = parseChat(body, limits);
        const offered = chat.tools.length > 0 && chat.toolChoice !== 'none';
        prompt = { messages: chat.messages, tools: chat.tools, toolChoice: chat.toolChoice };
        [parsed, reply] = [chat, chatReply(chat, this.options.modelId, offered ? model.info.toolSyntax?.open ?? null : null)];
      } else if (route === '/v1/completions') {
        const c = parseCompletion(body, limits);
        prompt = typeof c.prompt === 'string' ? c.prompt : { ids: c.prompt };
        [parsed, reply] = [c, completionReply(c, this.options.modelId, prompt)];
      } else {
        const r = parseResponses(body, limits);
        const o = r.options;
        [parsed, prompt] = [r, { messages: r.messages }];
        reply = responsesReply({
          instructions: r.instructions, maxOutputTokens: o.maxTokens ?? null, temperature: o.temperature ?? null, topP: o.topP ?? null, format: r.format,
        }, this.options.modelId);
      }
      if (parsed.model !== this.options.modelId) {
        throw new HttpError(404, `the model '${parsed.model}' does not exist; this server serves '${this.options.modelId}'.`, { param: 'model', code: 'model_not_found' });
      }
      await this.complete(req, res, model, parsed, prompt, reply);
      return;
    }
    throw new HttpError(404, `no route ${req.method} ${route}.`, { code: 'not_found' });
  }

  private modelCard(): Record<string, unknown> {
    const model = this.model();
    return {
      id: this.options.modelId, object: 'model', created: this.created, owned_by: 'quantspec',
      meta: { context_length: model.info.contextLength, architecture: model.info.config.arch, backend: model.info.backend, decoding: model.info.plan },
    };
  }

  private health(res: http.ServerResponse): void {
    const s = this.state;
    const status = s.kind === 'ready' ? 200 : s.kind === 'loading' ? 503 : 500;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(s.kind === 'ready' ? { status: 'ok' } : s.kind === 'loading' ? { status: 'loading' } : { status: 'error', message: s.message }));
    this.metrics.countRequest(routeLabel('/health'), status);
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
        failed = true;
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
        const shape = jsonShapeProblem(body, MAX_JSON_DEPTH);
        if (shape !== null) {
          reject(new HttpError(400, `the request body ${shape}.`, { code: 'invalid_json' }));
          return;
        }
        resolve(body);
      });
      // The body stopped short: the client hung up mid-upload, or took too long (then Node has answered 408).
      const cut = () => {
        if (failed) return;
        failed = true;
        reject((req.socket as { [TIMED_OUT]?: boolean })[TIMED_OUT]
          ? new HttpError(408, 'the request body was not received in time.', { code: 'request_timeout' })
          : new HttpError(499, 'the client closed the connection before sending the whole body.', { code: 'client_closed' }));
      };
      req.on('error', cut);
      req.on('close', cut);
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
    req: http.IncomingMessage, res: http.ServerResponse, model: RemoteModel, parsed: ParsedRequest, prompt: PromptInput, reply: Reply,
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
        if (parsed.stream) await this.stream(req, res, reply, gen, first);
        else {
          let r = first;
          const chunks: GenerationChunk[] = [];
          while (!r.done) {
            chunks.push(r.value);
            r = await gen.next();
          }
          this.metrics.recordGeneration(r.value);
          if (r.value.finishReason === 'cancelled') {
            // The client left (nobody reads this) or the server is shutting down.
            throw new HttpError(503, 'the server shut down before the generation finished; retry the request.', { code: 'server_shutting_down' });
          }
          this.sendJson(res, req, 200, reply.full(r.value, chunks.flatMap((c) => c.logprobs ?? [])));
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

  private async stream(
    req: http.IncomingMessage, res: http.ServerResponse, reply: Reply,
    gen: AsyncGenerator<GenerationChunk, GenerationResult>, first: IteratorResult<GenerationChunk, GenerationResult>,
  ): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    this.metrics.countRequest(routeOf(req), 200);
    const write: SseWrite = (data, event) => {
      if (!res.writableEnded && !res.destroyed) res.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`);
    };
    const finish = () => {
      if (!res.writableEnded && !res.destroyed) res.end(reply.terminator);
    };
    reply.start(write);
    let r = first;
    try {
      while (!r.done) {
        if (r.value.text || (r.value.logprobs?.length ?? 0) > 0) reply.delta(write, r.value);
        r = await gen.next();
      }
    } catch (e) {
      // Errors after the headers: an error event, then the end of the stream.
      reply.error(write, toHttpError(e));
      finish();
      return;
    }
    this.metrics.recordGeneration(r.value);
    reply.end(write, r.value);
    finish();
  }

  private sendJson(res: http.ServerResponse, req: http.IncomingMessage, status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.send(res, req, status, JSON.stringify(body), 'application/json', headers);
  }

  private send(res: http.ServerResponse, req: http.IncomingMessage, status: number, body: string, type: string, headers: Record<string, string> = {}): void {
    this.metrics.countRequest(routeOf(req), status);
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  }

  private fail(res: http.ServerResponse, req: http.IncomingMessage, e: unknown): void {
    const err = toHttpError(e);
    // Only the server's own faults get a stack; a client that leaves or is slow gets one line.
    if (err.status >= 500 && err.status !== 503) this.options.log?.(`error on ${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}`);
    else if (err.status === 499 || err.status === 408) this.options.log?.(`${req.method} ${routeOf(req)}: ${err.message} (${err.status})`);
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

/** Marks a socket whose request Node timed out (the clientError handler answered 408). */
const TIMED_OUT = Symbol('timedOut');

/** The metrics label of a request: a route template, never the raw path. */
function routeOf(req: http.IncomingMessage): string {
  return routeLabel(new URL(req.url ?? '/', 'http://x').pathname.replace(/\/+$/, '') || '/');
}

/** Deepest nesting a request body may have (OpenAI requests need 4: body, messages, message, content parts). */
const MAX_JSON_DEPTH = 32;

/**
 * What is wrong with a parsed body's shape, or null: arrays/objects nested more than `limit`
 * levels, or a string (key or value) with an unpaired UTF-16 surrogate (`"\\ud800"`), which is
 * valid JSON but no text. Iterative, so a hostile body cannot overflow the stack.
 */
function jsonShapeProblem(value: unknown, limit: number): string | null {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) return 'has a string with an unpaired UTF-16 surrogate escape (not valid Unicode text)';
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth > limit) return `nests arrays or objects more than ${limit} levels deep`;
    if (Array.isArray(v)) for (const child of v) stack.push([child, depth + 1]);
    else {
      for (const [k, child] of Object.entries(v)) stack.push([k, depth], [child, depth + 1]);
    }
  }
  return null;
}

const LONE_SURROGATE = /\p{Cs}/u;
