// A session owns one KV cache and its token history: prefill (chunked, with progress and prefix
// reuse across calls), then decoding through a Decoder, streamed as an AsyncGenerator.

import { CancelledError, ContextOverflowError, InvalidArgumentError, QuantspecError } from '../core/errors.js';
import { clockSeed, Xoshiro128 } from '../core/rng.js';
import { createScratch, promptPass, type ForwardScratch, type ModelRuntime } from '../model/forward.js';
import type { WeightSet } from '../model/weights.js';
import type { KvBytes, KvCache, KvCheckpoint, KvViewKind } from '../kv/cache.js';
import type { DecodingPlan } from '../speculative/modes.js';
import { acceptanceRate, meanAcceptedLength, perPosition, type SpecStats } from '../speculative/stats.js';
import { resolveLogitBias, resolveSampling, type SamplingParams } from '../sampling/params.js';
import { Sampler } from '../sampling/sampler.js';
import type { JsonConstraint } from '../sampling/constraint.js';
import type { ResponseFormat } from '../sampling/json-schema.js';
import type { Decoder, DecodeState, TokenLogprob } from '../speculative/decoder.js';
import { encodeChat, type ChatMessage, type ChatTool } from '../tokenizer/chat.js';
import { StreamDetokenizer } from '../tokenizer/stream.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { StopMatcher } from './stop.js';
import type { StepBatcher } from './batch.js';
import { constraintFor } from './structured.js';
import { type ParsedToolCall, splitToolCall, toolCallFormat, type ToolChoice, toolSyntaxOf } from './tools.js';

/** A prompt: raw text (BOS added as the tokenizer does), chat messages, or token ids as given. */
export type PromptInput =
  | string
  | { readonly messages: readonly ChatMessage[]; readonly tools?: readonly ChatTool[]; readonly toolChoice?: ToolChoice }
  | { readonly ids: readonly number[] };

export interface GenerateOptions extends Partial<SamplingParams> {
  /** Most tokens to generate (default 256); generation also stops when the context is full. */
  readonly maxTokens?: number;
  readonly seed?: number;
  readonly stop?: readonly string[];
  /** Keep going past end-of-sequence tokens. */
  readonly ignoreEos?: boolean;
  /** Additive logit biases by token id (as OpenAI's API takes them), in [-100, 100]. */
  readonly logitBias?: Readonly<Record<number, number>>;
  readonly signal?: AbortSignal;
  readonly onPrefillProgress?: (done: number, total: number) => void;
  /** Report each token's log-probability and this many top alternatives (0..20); off when undefined. */
  readonly logprobs?: number;
  /**
   * Constrain the output to JSON: any object (`json_object`) or a value matching a JSON schema
   * (`json_schema`), by masking the tokens that cannot continue one (plain and speculative alike).
   */
  readonly responseFormat?: ResponseFormat;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface GenerationChunk {
  /** New text (never a broken UTF-8 sequence, never part of a stop string). */
  readonly text: string;
  /** Token ids accepted since the previous chunk. */
  readonly tokens: readonly number[];
  /** With the logprobs option: one entry per token of `tokens`, with each token's text. */
  readonly logprobs?: readonly ChunkLogprob[];
}

export interface ChunkLogprob {
  readonly id: number;
  readonly text: string;
  readonly logprob: number;
  readonly top: readonly { readonly id: number; readonly text: string; readonly logprob: number }[];
}

export interface Timings {
  readonly promptTokens: number;
  /** Prompt tokens whose K/V were reused from the previous call. */
  readonly cachedTokens: number;
  /** Time to the first generated token, prefill included. */
  readonly prefillMs: number;
  readonly prefillTokensPerS: number;
  readonly generatedTokens: number;
  readonly decodeMs: number;
  readonly decodeTokensPerS: number;
}

/** Speculative decoding statistics of one generation (the paper's definitions). */
export interface SpeculationStats {
  readonly mode: string;
  readonly rounds: number;
  readonly drafted: number;
  readonly accepted: number;
  /** accepted / drafted (= accepted / (γ·rounds) for a fixed γ). */
  readonly acceptanceRate: number;
  /** Tokens emitted per round: accepted drafts + the target's own token. */
  readonly meanAcceptedLength: number;
  /** Acceptance rate of each draft position. */
  readonly perPosition: readonly number[];
  /** lengths[n] = rounds that accepted exactly n drafts. */
  readonly acceptedLengths: readonly number[];
  /** Tokens produced by plain target steps (adaptive fallback). */
  readonly plainSteps: number;
  readonly draftMs: number;
  readonly verifyMs: number;
  /** γ of the last round (0 if the last step was plain). */
  readonly gamma: number;
}

export interface GenerationResult {
  readonly promptIds: readonly number[];
  readonly generatedIds: readonly number[];
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly timings: Timings;
  /** The decoding mode used (spec, kv, γ). */
  readonly decoding: { readonly spec: string; readonly kv: string; readonly gamma: number | 'auto' };
  /** Present when a speculative decoder ran. */
  readonly stats: SpeculationStats | null;
  /** Bytes the session's KV cache holds, by part. */
  readonly kvBytes: KvBytes;
  /**
   * With tools offered: the call the model wrote (null when it answered in text, or stopped
   * mid-call), and `content`, the text before the call.
   */
  readonly toolCall?: ParsedToolCall | null;
  readonly content?: string;
}

export interface SessionParts {
  /** Shares each step's forward pass with the other sessions of the model that step at the same time. */
  readonly batcher?: StepBatcher;
  readonly rt: ModelRuntime;
  readonly target: WeightSet;
  readonly tokenizer: Tokenizer;
  readonly cache: KvCache;
  readonly targetView: KvViewKind;
  readonly decoder: Decoder;
  readonly plan: DecodingPlan;
  readonly contextLength: number;
  readonly prefillChunk: number;
  /** Largest number of positions one decoder step can append (γ + 1 for speculation). */
  readonly maxStep: number;
}

/** What prefillPrompt() did: prompt tokens, those reused from the cache, the time it took. */
export interface PrefillResult {
  readonly promptTokens: number;
  readonly cachedTokens: number;
  readonly prefillMs: number;
  readonly cancelled: boolean;
}

/** A saved session state (Session.checkpoint). */
export interface SessionCheckpoint {
  readonly history: readonly number[];
  readonly kv: KvCheckpoint;
}

const DEFAULT_MAX_TOKENS = 256;

export class Session {
  readonly parts: SessionParts;
  private readonly scratch: ForwardScratch;
  private readonly probs: Float32Array;
  /** Tokens whose K/V are in the cache, plus the last one that is not yet (cache.length === length - 1). */
  private history: number[] = [];
  private saved: SessionCheckpoint | null = null;
  private busy = false;

  constructor(parts: SessionParts) {
    this.parts = parts;
    const maxBatch = Math.max(parts.prefillChunk, parts.maxStep);
    this.scratch = createScratch(parts.rt.config, maxBatch, parts.maxStep, parts.contextLength);
    this.probs = new Float32Array(parts.rt.config.vocabSize);
  }

  get contextLength(): number {
    return this.parts.contextLength;
  }

  /** Token ids for a prompt, validated against the vocabulary. */
  encode(input: PromptInput): number[] {
    const tok = this.parts.tokenizer;
    if (typeof input === 'string') return tok.encode(input);
    if ('messages' in input) return encodeChat(tok, input.messages, input.tools ?? []);
    const { vocabSize } = this.parts.rt.config;
    for (const id of input.ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new InvalidArgumentError(`prompt token id ${id} is outside the vocabulary [0, ${vocabSize}).`, 'prompt');
      }
    }
    return [...input.ids];
  }

  /**
   * Save the session's state (its tokens and KV). restore() returns to it, so that several
   * completions of one prompt each start from the same prefilled cache: prefillPrompt() it,
   * checkpoint, and restore before each generate of that prompt. (A checkpoint taken after a
   * generation includes its tokens; a later generate of the bare prompt rewrites the prompt's last
   * position, after which that checkpoint cannot be restored.)
   */
  checkpoint(): SessionCheckpoint {
    if (this.busy) throw new InvalidArgumentError('this session is generating; checkpoint it between generations.');
    return (this.saved = { history: [...this.history], kv: this.parts.cache.checkpoint() });
  }

  /** Return to this session's latest checkpoint (KvCacheError if its positions were rewritten since). */
  restore(checkpoint: SessionCheckpoint): void {
    if (this.busy) throw new InvalidArgumentError('this session is generating; restore it between generations.');
    if (checkpoint !== this.saved) throw new InvalidArgumentError("restore() takes this session's latest checkpoint.", 'checkpoint');
    this.parts.cache.restore(checkpoint.kv);
    this.history = [...checkpoint.history];
  }

  /** A prompt's ids, checked to leave room for at least one generated token. */
  private promptIds(input: PromptInput): number[] {
    const promptIds = this.encode(input);
    if (promptIds.length === 0) throw new InvalidArgumentError('the prompt is empty (no tokens).', 'prompt');
    const context = this.parts.contextLength;
    if (promptIds.length >= context) {
      throw new ContextOverflowError(
        `the prompt has ${promptIds.length} tokens but the context holds ${context} (at least one more is needed to generate). ` +
          'Shorten the prompt or raise contextLength.',
        promptIds.length,
        context,
      );
    }
    return promptIds;
  }

  /**
   * Put a prompt's K/V in the cache without generating (every token but the last, which the first
   * step of a later generate() of this prompt feeds). With checkpoint() after it, each later
   * completion of the prompt starts from the same prefilled cache.
   */
  async prefillPrompt(input: PromptInput, options: Pick<GenerateOptions, 'signal' | 'onPrefillProgress'> = {}): Promise<PrefillResult> {
    if (this.busy) throw new InvalidArgumentError('this session is already generating; create another session for concurrent requests.');
    const promptIds = this.promptIds(input);
    this.busy = true;
    try {
      const t0 = performance.now();
      const reused = this.reusePrefix(promptIds);
      this.history = [];
      const cancelled = await this.prefill(promptIds, reused, options);
      if (!cancelled) this.history = promptIds;
      return { promptTokens: promptIds.length, cachedTokens: reused, prefillMs: performance.now() - t0, cancelled };
    } finally {
      this.busy = false;
    }
  }

  /** Stream a completion. The generator's return value is the full result. */
  async *generate(input: PromptInput, options: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult> {
    if (this.busy) throw new InvalidArgumentError('this session is already generating; create another session for concurrent requests.');
    const sampling = resolveSampling(options);
    const bias = resolveLogitBias(options.logitBias, this.parts.rt.config.vocabSize);
    const maxTokens = options.maxTokens ?? DEFAULT_MAX_TOKENS;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      throw new InvalidArgumentError(`maxTokens must be a positive integer, got ${JSON.stringify(options.maxTokens)}.`, 'maxTokens');
    }
    if (options.seed !== undefined && !Number.isInteger(options.seed)) {
      throw new InvalidArgumentError(`seed must be an integer, got ${JSON.stringify(options.seed)}.`, 'seed');
    }
    if (options.logprobs !== undefined && (!Number.isInteger(options.logprobs) || options.logprobs < 0 || options.logprobs > 20)) {
      throw new InvalidArgumentError(`logprobs must be an integer in [0, 20], got ${JSON.stringify(options.logprobs)}.`, 'logprobs');
    }
    const tok = this.parts.tokenizer;
    const tools = typeof input === 'object' && 'messages' in input ? input.tools ?? [] : [];
    const toolFormat = tools.length > 0 ? toolCallFormat(tok, tools, (input as { toolChoice?: ToolChoice }).toolChoice ?? 'auto') : null;
    const constraint = constraintFor(options.responseFormat, toolFormat, tok, this.parts.rt.config.vocabSize, options.ignoreEos ?? false);
    const promptIds = this.promptIds(input);
    this.busy = true;
    try {
      const r = yield* this.run(promptIds, new Sampler(sampling, this.parts.rt.config.vocabSize, bias), maxTokens, options, constraint);
      if (toolFormat === null) return r;
      const { content, call } = splitToolCall(r.text, toolSyntaxOf(tok)!);
      return { ...r, toolCall: call, content };
    } finally {
      this.busy = false;
    }
  }

  private async *run(
    promptIds: number[], sampler: Sampler, maxTokens: number, options: GenerateOptions, constraint: JsonConstraint | null,
  ): AsyncGenerator<GenerationChunk, GenerationResult> {
    const { rt, target, cache, tokenizer, decoder } = this.parts;
    const t0 = performance.now();
    const reused = this.reusePrefix(promptIds);
    this.history = []; // restored on success; an exception leaves nothing to reuse
    const tokens = promptIds.slice();
    const state: DecodeState = {
      rt, target, cache, targetView: this.parts.targetView, scratch: this.scratch,
      sampler, rng: new Xoshiro128(options.seed ?? clockSeed()),
      tokens, probs: this.probs, reproducible: options.seed !== undefined,
      logprobTop: options.logprobs ?? -1, logprobs: [],
      constraint: constraint ? { constraint, state: constraint.initial() } : null,
    };
    decoder.begin();
    let cancelled = await this.prefill(tokens, reused, options);
    if (!cancelled) decoder.onPrefill(state);
    const eos = options.ignoreEos ? new Set<number>() : new Set(tokenizer.eosIds);
    const detok = new StreamDetokenizer(tokenizer, promptIds);
    const stops = new StopMatcher(options.stop ?? []);
    const generated: number[] = [];
    let text = '';
    let finish: FinishReason = cancelled ? 'cancelled' : 'length';
    let firstMs = 0;
    let firstCount = 0;
    const budget = Math.min(maxTokens, this.parts.contextLength - promptIds.length);
    while (!cancelled && generated.length < budget) {
      if (options.signal?.aborted) {
        finish = 'cancelled';
        break;
      }
      // A step may append at most this many positions and emit this many tokens.
      const maxNew = Math.min(this.parts.contextLength - cache.length, budget - generated.length);
      const step = this.parts.batcher ? await this.parts.batcher.step(this.parts, state, maxNew) : await decoder.step(state, maxNew);
      if (firstMs === 0) {
        firstMs = performance.now() - t0;
        firstCount = step.count;
      }
      // Commit: the step's tokens up to EOS, a stop string or the budget; the cache keeps the
      // positions of every committed token but the last, and only then are groups quantized.
      const before = generated.length;
      let chunkText = '';
      let stopped = false;
      for (let i = 0; i < step.count && generated.length < budget; i++) {
        const id = step.tokens[i]!;
        tokens.push(id);
        if (eos.has(id)) {
          stopped = true;
          break;
        }
        generated.push(id);
        const r = stops.push(detok.push(id));
        chunkText += r.emit;
        if (r.stopped) {
          stopped = true;
          break;
        }
      }
      cache.truncate(tokens.length - 1);
      cache.flush();
      const emitted = generated.slice(before); // EOS is not part of the output
      const logprobs = state.logprobTop >= 0 ? this.describeLogprobs(state.logprobs.splice(0).slice(0, emitted.length)) : undefined;
      if (chunkText || emitted.length) {
        text += chunkText;
        yield logprobs ? { text: chunkText, tokens: emitted, logprobs } : { text: chunkText, tokens: emitted };
      }
      if (stopped) {
        finish = 'stop';
        break;
      }
      await yieldToEventLoop();
    }
    if (finish !== 'stop') {
      const tail = stops.push(detok.flush()).emit + stops.flush();
      if (tail) {
        text += tail;
        yield { text: tail, tokens: [] };
      }
    }
    this.history = tokens;
    const end = performance.now();
    const prefillMs = firstMs || end - t0;
    const decodeMs = firstMs ? end - t0 - firstMs : 0;
    const decoded = Math.max(0, generated.length - firstCount);
    const plan = this.parts.plan;
    return {
      promptIds,
      generatedIds: generated,
      text,
      finishReason: finish,
      decoding: { spec: plan.spec, kv: plan.kv, gamma: plan.gamma },
      stats: decoder.stats ? speculationStats(decoder.name, decoder.stats) : null,
      kvBytes: cache.byteSize(),
      timings: {
        promptTokens: promptIds.length,
        cachedTokens: reused,
        prefillMs,
        prefillTokensPerS: prefillMs > 0 ? ((promptIds.length - reused) / prefillMs) * 1000 : 0,
        generatedTokens: generated.length,
        decodeMs,
        decodeTokensPerS: decodeMs > 0 ? (decoded / decodeMs) * 1000 : 0,
      },
    };
  }

  private describeLogprobs(entries: readonly TokenLogprob[]): ChunkLogprob[] {
    const tok = this.parts.tokenizer;
    const text = (id: number) => tok.decode([id], { keepSpecial: true });
    return entries.map((e) => ({ id: e.id, text: text(e.id), logprob: e.logprob, top: e.top.map((t) => ({ id: t.id, text: text(t.id), logprob: t.logprob })) }));
  }

  /** Keep the longest cached prefix of the new prompt (at least one prompt token must be fed). */
  private reusePrefix(promptIds: readonly number[]): number {
    const { cache } = this.parts;
    const h = this.history;
    let common = 0;
    const limit = Math.min(h.length - 1, promptIds.length - 1, cache.length);
    while (common < limit && h[common] === promptIds[common]) common++;
    if (common < cache.floor) common = 0;
    cache.truncate(common);
    return common;
  }

  /** Feed prompt tokens [from, L-1) in chunks; the last prompt token is fed by the first decoder step. */
  private async prefill(tokens: number[], from: number, options: Pick<GenerateOptions, 'signal' | 'onPrefillProgress'>): Promise<boolean> {
    const { rt, target, cache, targetView, prefillChunk } = this.parts;
    const end = tokens.length - 1;
    const total = end - from;
    // A device runs a chunk while the next one is recorded: each chunk's pass is awaited after
    // the next is queued (and the last before returning), so errors still surface here.
    let running: Promise<unknown> | null = null;
    for (let pos = from; pos < end; ) {
      if (options.signal?.aborted) return true;
      cache.flush();
      const n = Math.min(prefillChunk, end - pos, cache.room);
      const pending = promptPass(rt, target, cache, targetView, tokens, pos, n, this.scratch);
      pending?.catch(() => undefined); // awaited below; meanwhile a rejection is not unhandled
      if (running) await running;
      running = pending;
      pos += n;
      options.onPrefillProgress?.(pos - from, total);
      if (pos < end) await yieldToEventLoop();
    }
    if (running) await running;
    cache.flush();
    return false;
  }
}

function speculationStats(mode: string, s: SpecStats): SpeculationStats {
  return {
    mode,
    rounds: s.rounds,
    drafted: s.drafted,
    accepted: s.accepted,
    acceptanceRate: acceptanceRate(s),
    meanAcceptedLength: meanAcceptedLength(s),
    perPosition: perPosition(s),
    acceptedLengths: [...s.lengths],
    plainSteps: s.plainSteps,
    draftMs: s.draftMs,
    verifyMs: s.verifyMs,
    gamma: s.gamma,
  };
}

/**
 * Let other work run (timers, I/O, a browser's rendering) between steps: setImmediate in Node; in
 * a browser a message to itself, which unlike a 0 ms timeout is not clamped to 4 ms.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => (typeof setImmediate === 'function' ? setImmediate(resolve) : postToSelf(resolve)));
}

let postToSelf: (run: () => void) => void = (run) => {
  const channel = new MessageChannel();
  const waiting: (() => void)[] = [];
  // (Node's MessagePort types lack the DOM's onmessage, which browsers and Node both have.)
  (channel.port1 as unknown as { onmessage: () => void }).onmessage = () => waiting.shift()?.();
  postToSelf = (next) => {
    waiting.push(next);
    channel.port2.postMessage(0);
  };
  postToSelf(run);
};

/** Run a generation to the end and return its result (chunks are discarded). */
export async function collect(gen: AsyncGenerator<GenerationChunk, GenerationResult>): Promise<GenerationResult> {
  for (;;) {
    const r = await gen.next();
    if (r.done) return r.value;
  }
}

export function isUserError(e: unknown): e is QuantspecError {
  return e instanceof QuantspecError && !(e instanceof CancelledError);
}
