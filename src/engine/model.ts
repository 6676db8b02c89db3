// loadModel(): the library's entry point. A Model holds weights, tokenizer and backend (loaded
// once); Sessions hold KV caches. model.generate() uses a default session.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, TokenizerError } from '../core/errors.js';
import { selectBackend, type BackendName } from '../kernels/select.js';
import type { Backend } from '../kernels/backend.js';
import { FpKvCache } from '../kv/fp-cache.js';
import type { ModelConfig } from '../model/config.js';
import { kvDimOf } from '../model/config.js';
import { createRuntime, type ModelRuntime } from '../model/forward.js';
import { loadWeights, openModel, type ModelFormat, type ResolvedModel } from '../model/load.js';
import { buildRopeTables } from '../model/rope.js';
import { weightSetBytes, type WeightSet } from '../model/weights.js';
import { PlainDecoder } from '../spec/decoder.js';
import { HfTokenizer } from '../tokenizer/hf.js';
import { Llama2cTokenizer } from '../tokenizer/llama2c.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { collect, Session, type GenerateOptions, type GenerationChunk, type GenerationResult, type PromptInput } from './session.js';

export interface LoadOptions {
  /** Tokenizer file when it is not beside the weights (llama2.c tokenizer.bin or tokenizer.json). */
  readonly tokenizer?: string;
  readonly backend?: BackendName;
  /** Context length of sessions (default: the model's, at most 4096). */
  readonly contextLength?: number;
  /** Prompt tokens per prefill forward pass (default 128). */
  readonly prefillChunk?: number;
  readonly onLoadProgress?: (loadedBytes: number, totalBytes: number) => void;
  /** Called once with warnings meant for the user (e.g. a context beyond the trained length). */
  readonly onWarning?: (message: string) => void;
}

export interface SessionOptions {
  readonly contextLength?: number;
}

const DEFAULT_CONTEXT_CAP = 4096;

/** The embedded default model, used when no model path is given. */
export function defaultModelPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/src/engine -> package root
  return path.resolve(here, '..', '..', '..', 'models', 'pdlm-5.8m-bf16');
}

export class Model {
  readonly config: ModelConfig;
  readonly format: ModelFormat;
  readonly path: string;
  readonly tokenizer: Tokenizer;
  readonly backend: Backend;
  readonly target: WeightSet;
  readonly loadMs: number;
  readonly contextLength: number;
  readonly prefillChunk: number;
  /** Config, backend and RoPE tables shared by every forward pass of this model. */
  readonly runtime: ModelRuntime;
  private defaultSession: Session | null = null;

  constructor(init: {
    resolved: ResolvedModel; tokenizer: Tokenizer; backend: Backend; target: WeightSet; loadMs: number;
    contextLength: number; prefillChunk: number;
  }) {
    this.config = init.resolved.config;
    this.format = init.resolved.format;
    this.path = init.resolved.path;
    this.tokenizer = init.tokenizer;
    this.backend = init.backend;
    this.target = init.target;
    this.loadMs = init.loadMs;
    this.contextLength = init.contextLength;
    this.prefillChunk = init.prefillChunk;
    this.runtime = createRuntime(this.config, this.backend, buildRopeTables(this.config, this.contextLength));
  }

  /** Bytes of the target weights as held in memory. */
  get weightBytes(): number {
    return weightSetBytes(this.target);
  }

  createSession(options: SessionOptions = {}): Session {
    const ctx = options.contextLength ?? this.contextLength;
    if (!Number.isInteger(ctx) || ctx < 2 || ctx > this.contextLength) {
      throw new InvalidArgumentError(`session context must be an integer in [2, ${this.contextLength}], got ${ctx}.`, 'ctx');
    }
    return new Session({
      rt: this.runtime,
      target: this.target,
      tokenizer: this.tokenizer,
      cache: new FpKvCache(this.config.nLayers, kvDimOf(this.config), ctx),
      targetView: 'fp',
      decoder: new PlainDecoder(),
      contextLength: ctx,
      prefillChunk: this.prefillChunk,
      maxStep: 1,
    });
  }

  private session(): Session {
    this.defaultSession ??= this.createSession();
    return this.defaultSession;
  }

  /** Stream a completion from the default session (which reuses the KV of a shared prompt prefix). */
  generate(prompt: PromptInput, options: GenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult> {
    return this.session().generate(prompt, options);
  }

  /** Generate to the end and return the result. */
  complete(prompt: PromptInput, options: GenerateOptions = {}): Promise<GenerationResult> {
    return collect(this.generate(prompt, options));
  }
}

function loadTokenizer(m: ResolvedModel, tokenizerPath?: string): Tokenizer {
  if (m.format === 'hf') return HfTokenizer.fromPath(tokenizerPath ?? m.path, m.config.eosIds);
  const dir = path.dirname(m.path);
  const candidates = tokenizerPath ? [tokenizerPath] : [path.join(dir, 'tokenizer.bin'), path.join(dir, `tok${m.config.vocabSize}.bin`)];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) {
    throw new TokenizerError(`no llama2.c tokenizer found (looked for ${candidates.join(', ')}). Pass --tokenizer PATH.`);
  }
  if (found.endsWith('.json')) return HfTokenizer.fromPath(found, m.config.eosIds);
  return Llama2cTokenizer.fromFile(found, m.config.vocabSize);
}

export async function loadModel(modelPath?: string, options: LoadOptions = {}): Promise<Model> {
  const t0 = performance.now();
  const resolved = openModel(modelPath ?? defaultModelPath());
  const { config } = resolved;
  let tokenizer: Tokenizer;
  try {
    tokenizer = loadTokenizer(resolved, options.tokenizer);
  } catch (e) {
    resolved.source.close();
    throw e;
  }
  const contextLength = options.contextLength ?? Math.min(config.maxSeqLen, DEFAULT_CONTEXT_CAP);
  if (!Number.isInteger(contextLength) || contextLength < 2) {
    resolved.source.close();
    throw new InvalidArgumentError(`context length must be an integer >= 2, got ${options.contextLength}.`, 'ctx');
  }
  if (contextLength > config.maxSeqLen) {
    options.onWarning?.(`context ${contextLength} is beyond the ${config.maxSeqLen} positions this model was trained for; quality may drop.`);
  }
  if (config.slidingWindow !== null && contextLength > config.slidingWindow) {
    options.onWarning?.(`this model uses sliding-window attention of ${config.slidingWindow}; positions beyond it are masked.`);
  }
  const prefillChunk = options.prefillChunk ?? 128;
  if (!Number.isInteger(prefillChunk) || prefillChunk < 1) {
    resolved.source.close();
    throw new InvalidArgumentError(`prefill chunk must be a positive integer, got ${prefillChunk}.`, 'prefill_chunk');
  }
  const backend = selectBackend(options.backend);
  const target = loadWeights(resolved, (w) => backend.prepareWeight(w), options.onLoadProgress);
  return new Model({ resolved, tokenizer, backend, target, loadMs: performance.now() - t0, contextLength, prefillChunk });
}
