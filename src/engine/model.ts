// loadModel(): the library's entry point. A Model holds weights (target and 4-bit draft),
// tokenizer and backend, loaded once; Sessions hold KV caches and a decoding mode.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, TokenizerError } from '../core/errors.js';
import { selectBackend, type BackendName } from '../kernels/select.js';
import type { Backend } from '../kernels/backend.js';
import { openGpu } from '../kernels/webgpu/device.js';
import { GpuKernels } from '../kernels/webgpu/kernels.js';
import { GpuKvStorage } from '../kernels/webgpu/storage.js';
import type { KvStorage } from '../kv/layout.js';
import type { ModelConfig } from '../model/config.js';
import { createRuntime, type DeviceForward, type ModelRuntime, type PrefillActivations } from '../model/forward.js';
import { GpuForward } from '../model/gpu-forward.js';
import type { RopeTables } from '../model/rope.js';
import { loadWeights, openModel, type ModelFormat, type ResolvedModel } from '../model/load.js';
import { buildRopeTables } from '../model/rope.js';
import { mapMatrices, weightSetBytes, type WeightSet } from '../model/weights.js';
import { buildDraftWeights, type DraftOptions } from '../quant/draft.js';
import { weightBytes, type WeightTensor } from '../quant/format.js';
import { SYNTHETIC_PREFIX, syntheticPublished, syntheticTokenizer } from '../model/synthetic.js';
import { HfTokenizer } from '../tokenizer/hf.js';
import { Llama2cTokenizer } from '../tokenizer/llama2c.js';
import { ggufTokenizer } from '../tokenizer/gguf.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import {
  createCache, createDecoder, maxStepOf, resolveDecoding, resolveDraftOptions, targetViewOf, type DecodingOptions, type DecodingPlan,
} from '../speculative/modes.js';
import { StepBatcher } from './batch.js';
import { collect, Session, type GenerateOptions, type GenerationChunk, type GenerationResult, type PromptInput } from './session.js';

export interface LoadOptions extends DecodingOptions {
  /** Tokenizer file when it is not beside the weights (llama2.c tokenizer.bin or tokenizer.json). */
  readonly tokenizer?: string;
  readonly backend?: BackendName;
  /** Context length of sessions (default: the model's, at most 4096). */
  readonly contextLength?: number;
  /** Prompt tokens per prefill forward pass (default 128). */
  readonly prefillChunk?: number;
  /**
   * Activations of the prompt's matmuls with BF16 or F16 weights: 'bf16' (the default) rounds them
   * to BF16 with F32 accumulation where the backend has a BF16 GEMM (AMX-BF16), as PyTorch and
   * llama.cpp run BF16 models on CPU; 'f32' keeps the exact path. F32 weights always keep it. Decode, draft and verify steps
   * always take F32 activations, so QuantSpec stays identical to plain decoding either way.
   */
  readonly prefillActivations?: PrefillActivations;
  /**
   * Map the model's files into memory (the default, as llama.cpp): tensors stored in a dtype the
   * engine reads are views of the page cache, not copies. false reads each tensor into its own
   * buffer (llama.cpp's --no-mmap), for a file that may change while the model is loaded.
   */
  readonly mmap?: boolean;
  /**
   * The QuantSpec draft's weights: built at load time unless false. headBits: the draft's output
   * head at 8 bits (the default), 4, or 0 to share the target's.
   */
  readonly draft?: false | { bits?: number; groupSize?: number; layers?: string; symmetric?: boolean; headBits?: number };
  readonly onLoadProgress?: (loadedBytes: number, totalBytes: number) => void;
  /** Called with warnings meant for the user (e.g. a context beyond the trained length). */
  readonly onWarning?: (message: string) => void;
}

export interface SessionOptions extends DecodingOptions {
  readonly contextLength?: number;
  /** Batch this session's steps with the other sessions sharing the batcher (createBatcher()). */
  readonly batcher?: StepBatcher;
}

/** Per-call options of Model.generate(): generation settings plus the decoding mode. */
export type ModelGenerateOptions = GenerateOptions & DecodingOptions;

const DEFAULT_CONTEXT_CAP = 4096;

/** The embedded default model, used when no model path is given. */
export function defaultModelPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/src/engine -> package root
  return path.resolve(here, '..', '..', '..', 'models', 'pdlm-5.8m-bf16');
}

/** Milliseconds of the phases of loadModel (the rest of loadMs is opening the file, the tokenizer and the RoPE tables). */
export interface LoadTimings {
  readonly readMs: number;
  readonly draftMs: number;
  readonly repackMs: number;
  /** Uploading the weights to the GPU (0 on the CPU backends). */
  readonly uploadMs: number;
}

export class Model {
  readonly config: ModelConfig;
  readonly format: ModelFormat;
  readonly path: string;
  readonly tokenizer: Tokenizer;
  readonly backend: Backend;
  /** The target's weights; with the WebGPU backend only their shapes (the GPU holds the data). */
  readonly target: WeightSet;
  /** Bytes of the target weights as loaded (on the GPU, with the WebGPU backend). */
  readonly weightBytes: number;
  /** The 4-bit draft's weights (null when loaded with draft: false). */
  readonly draft: WeightSet | null;
  readonly draftOptions: DraftOptions | null;
  /** Bytes the draft adds on top of the target weights. */
  readonly draftBytes: number;
  readonly loadMs: number;
  /** Where loadMs went: reading the tensors, building the 4-bit draft, the backend's repacking of the target. */
  readonly loadTimings: LoadTimings;
  readonly contextLength: number;
  readonly prefillChunk: number;
  /** Config, backend and RoPE tables shared by every forward pass of this model. */
  readonly runtime: ModelRuntime;
  /** Where sessions' KV caches keep their data: the backend's arrays, or GPU buffers with --backend webgpu. */
  readonly kvStorage: KvStorage;
  private readonly defaults: DecodingOptions;
  private readonly sessions = new Map<string, Session>();

  constructor(init: {
    resolved: ResolvedModel; tokenizer: Tokenizer; backend: Backend; target: WeightSet; draft: WeightSet | null; weightBytes: number;
    draftOptions: DraftOptions | null; draftBytes: number; loadMs: number; loadTimings: LoadTimings; contextLength: number; prefillChunk: number;
    prefillActivations: PrefillActivations; defaults: DecodingOptions; rope: RopeTables; device: DeviceForward | null; kvStorage: KvStorage;
  }) {
    this.config = init.resolved.config;
    this.format = init.resolved.format;
    this.path = init.resolved.path;
    this.tokenizer = init.tokenizer;
    this.backend = init.backend;
    this.target = init.target;
    this.draft = init.draft;
    this.weightBytes = init.weightBytes;
    this.draftOptions = init.draftOptions;
    this.draftBytes = init.draftBytes;
    this.loadMs = init.loadMs;
    this.loadTimings = init.loadTimings;
    this.contextLength = init.contextLength;
    this.prefillChunk = init.prefillChunk;
    this.defaults = init.defaults;
    this.runtime = createRuntime(this.config, this.backend, init.rope, init.prefillActivations, init.device);
    this.kvStorage = init.kvStorage;
  }

  /** What runs the forward passes: the CPU backend's name, or the device's ('webgpu: <adapter>'). */
  get backendName(): string {
    return this.runtime.device?.name ?? this.backend.name;
  }

  /** Resolve decoding options (falling back to the load-time defaults). */
  plan(options: DecodingOptions = {}): DecodingPlan {
    const merged = { ...this.defaults, ...stripUndefined(options) };
    const plan = resolveDecoding(this.config, merged);
    if (plan.needsDraftWeights && !this.draft) {
      // Without draft weights, auto means plain decoding; an explicit quantspec is an error.
      if (plan.spec === 'auto') return { ...plan, spec: 'none', needsDraftWeights: false };
      throw new InvalidArgumentError("spec quantspec needs the draft weights; the model was loaded with draft: false.", 'spec');
    }
    return plan;
  }

  /** A batcher for up to `maxSequences` sessions of this model that decode at the same time. */
  createBatcher(maxSequences: number): StepBatcher {
    if (this.runtime.device) {
      throw new InvalidArgumentError('continuous batching runs on the CPU backends; with the WebGPU backend each session steps alone (its passes queue in order).', 'batcher');
    }
    return new StepBatcher(this.runtime, this.target, maxSequences, this.contextLength);
  }

  createSession(options: SessionOptions = {}): Session {
    const context = options.contextLength ?? this.contextLength;
    if (!Number.isInteger(context) || context < 2 || context > this.contextLength) {
      throw new InvalidArgumentError(`a session's contextLength must be an integer in [2, ${this.contextLength}], got ${context}.`, 'contextLength');
    }
    const plan = this.plan(options);
    const cache = createCache(plan, this.config, this.kvStorage, context, this.prefillChunk);
    return new Session({
      batcher: options.batcher,
      rt: this.runtime,
      target: this.target,
      tokenizer: this.tokenizer,
      cache,
      targetView: targetViewOf(plan.kv),
      decoder: createDecoder(plan, this.config, cache, this.target, this.draft),
      plan,
      contextLength: context,
      prefillChunk: this.prefillChunk,
      maxStep: maxStepOf(plan),
    });
  }

  /** The default session for a decoding mode (it reuses the KV of a shared prompt prefix). */
  private session(options: DecodingOptions): Session {
    const plan = this.plan(options);
    const key = JSON.stringify(plan);
    let s = this.sessions.get(key);
    if (!s) {
      s = this.createSession(options);
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Stream a completion; decoding options (spec, gamma, kv, ...) select the default session's mode. */
  generate(prompt: PromptInput, options: ModelGenerateOptions = {}): AsyncGenerator<GenerationChunk, GenerationResult> {
    return this.session(options).generate(prompt, options);
  }

  /** Generate to the end and return the result. */
  complete(prompt: PromptInput, options: ModelGenerateOptions = {}): Promise<GenerationResult> {
    return collect(this.generate(prompt, options));
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function loadTokenizer(m: ResolvedModel, tokenizerPath?: string): Tokenizer {
  if (m.format === 'hf') return HfTokenizer.fromPath(tokenizerPath ?? m.path, m.config.eosIds);
  if (m.format === 'synthetic') {
    if (tokenizerPath) return HfTokenizer.fromPath(tokenizerPath, m.config.eosIds);
    const { tokenizerJson, tokenizerConfig } = syntheticTokenizer(m.path.slice(SYNTHETIC_PREFIX.length));
    return new HfTokenizer(tokenizerJson, tokenizerConfig, m.config.eosIds);
  }
  if (m.format === 'gguf') {
    return tokenizerPath ? HfTokenizer.fromPath(tokenizerPath, m.config.eosIds) : ggufTokenizer(m.gguf!, m.config.eosIds);
  }
  const dir = path.dirname(m.path);
  const candidates = tokenizerPath ? [tokenizerPath] : [path.join(dir, 'tokenizer.bin'), path.join(dir, `tok${m.config.vocabSize}.bin`)];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) {
    throw new TokenizerError(`no llama2.c tokenizer found (looked for ${candidates.join(', ')}). Pass the tokenizer option with its path.`);
  }
  if (found.endsWith('.json')) return HfTokenizer.fromPath(found, m.config.eosIds);
  return Llama2cTokenizer.fromFile(found, m.config.vocabSize);
}

export async function loadModel(modelPath?: string, options: LoadOptions = {}): Promise<Model> {
  const t0 = performance.now();
  const resolved = openModel(modelPath ?? defaultModelPath(), { mmap: options.mmap });
  let tokenizer: Tokenizer;
  try {
    tokenizer = loadTokenizer(resolved, options.tokenizer);
  } catch (e) {
    resolved.source.close();
    throw e;
  }
  return assembleModel(resolved, tokenizer, options, t0);
}

/**
 * A Model from an opened model and its tokenizer: what loadModel (files) and the browser's loader
 * (fetched or picked files, src/browser.ts) share. `cpu` is the CPU backend that prepares the
 * weights (the draft's quantizer) when the forward passes run on WebGPU; loadModel picks it as
 * selectBackend does.
 * Closes `resolved`'s source on every path.
 */
export async function assembleModel(resolved: ResolvedModel, tokenizer: Tokenizer, options: LoadOptions, t0: number, cpu?: Backend): Promise<Model> {
  const { config } = resolved;
  let contextLength: number;
  let prefillChunk: number;
  let draftOptions: DraftOptions | null;
  try {
    contextLength = options.contextLength ?? Math.min(config.trainedContextLength, DEFAULT_CONTEXT_CAP);
    if (!Number.isInteger(contextLength) || contextLength < 2) {
      throw new InvalidArgumentError(`contextLength must be an integer >= 2, got ${options.contextLength}.`, 'contextLength');
    }
    prefillChunk = options.prefillChunk ?? 128;
    if (!Number.isInteger(prefillChunk) || prefillChunk < 1) {
      throw new InvalidArgumentError(`prefillChunk must be a positive integer, got ${prefillChunk}.`, 'prefillChunk');
    }
    if (options.prefillActivations !== undefined && options.prefillActivations !== 'bf16' && options.prefillActivations !== 'f32') {
      throw new InvalidArgumentError(`prefillActivations must be 'bf16' or 'f32', got ${JSON.stringify(options.prefillActivations)}.`, 'prefillActivations');
    }
    draftOptions = options.draft === false ? null : resolveDraftOptions(options.draft ?? {});
    resolveDecoding(config, options); // validate the default decoding mode before reading weights
  } catch (e) {
    resolved.source.close();
    throw e;
  }
  if (resolved.format === 'synthetic') {
    options.onWarning?.(`${resolved.path} has random weights with the shapes of ${syntheticPublished(resolved.path.slice(SYNTHETIC_PREFIX.length))}: its text and acceptance mean nothing; its speed and memory are real.`);
  }
  if (contextLength > config.trainedContextLength) {
    options.onWarning?.(`context ${contextLength} is beyond the ${config.trainedContextLength} positions this model was trained for; quality may drop.`);
  }
  if (config.slidingWindow !== null && contextLength > config.slidingWindow) {
    options.onWarning?.(`this model uses sliding-window attention of ${config.slidingWindow}; positions beyond it are masked.`);
  }
  // With WebGPU the CPU backend only prepares the weights (the draft's quantizer): no warning when
  // it falls back to the reference kernels, which then never run a forward pass.
  const gpu = options.backend === 'webgpu';
  let backend: Backend;
  let kernels: GpuKernels | null = null;
  try {
    backend = cpu ?? selectBackend(gpu ? 'auto' : options.backend, gpu ? undefined : options.onWarning);
    if (gpu) kernels = new GpuKernels(await openGpu());
  } catch (e) {
    resolved.source.close();
    throw e;
  }
  // One progress bar over the three phases: the bytes read, then the bytes of the matrices the
  // draft quantizes and the backend repacks (each counted as it is done).
  const progress = options.onLoadProgress;
  let readTotal = 0;
  const phases = draftOptions ? 3 : 2;
  const tRead = performance.now();
  const dense = loadWeights(resolved, (w) => w, progress && ((done, total) => {
    readTotal = total;
    progress(done, phases * total);
  }));
  const tDraft = performance.now();
  let processed = 0;
  const counted = (fn: (w: WeightTensor) => WeightTensor) => (w: WeightTensor): WeightTensor => {
    const out = fn(w);
    processed += weightBytes(w);
    if (progress && readTotal > 0) progress(Math.min(readTotal + processed, phases * readTotal), phases * readTotal);
    return out;
  };
  const prepare = (w: WeightTensor) => backend.prepareWeight(w);
  const fast = backend.quantizeQ4?.bind(backend);
  const fast8 = backend.quantizeQ8?.bind(backend);
  const draft = draftOptions ? buildDraftWeights(dense, draftOptions, prepare, counted((w) => w), fast, fast8) : null;
  const tRepack = performance.now();
  const target = mapMatrices(dense, counted(prepare));
  const tEnd = performance.now();
  if (progress && readTotal > 0) progress(phases * readTotal, phases * readTotal);
  const rope = buildRopeTables(config, contextLength);
  let device: GpuForward | null = null;
  const tUpload = performance.now();
  const targetBytes = weightSetBytes(target);
  let held = { target, draft: draft?.weights ?? null };
  if (kernels) {
    const rt = createRuntime(config, backend, rope);
    device = new GpuForward(kernels, config, rope, rt.attn, rt.ropeLayout, prefillChunk);
    // The GPU holds the weights from here on: the CPU copies go (a browser's fetched tensors,
    // the draft's codes), and the model keeps their shapes only.
    const [t, d] = device.releaseHost(draft ? [target, draft.weights] : [target]);
    held = { target: t!, draft: d ?? null };
  }
  const defaults: DecodingOptions = {
    spec: options.spec, gamma: options.gamma, kv: options.kv, keyGroupSize: options.keyGroupSize, valueGroupSize: options.valueGroupSize,
  };
  return new Model({
    resolved, tokenizer, backend, target: held.target, draft: held.draft, weightBytes: targetBytes, draftOptions, draftBytes: draft?.extraBytes ?? 0,
    loadMs: performance.now() - t0,
    loadTimings: { readMs: tDraft - tRead, draftMs: tRepack - tDraft, repackMs: tEnd - tRepack, uploadMs: performance.now() - tUpload }, contextLength, prefillChunk,
    prefillActivations: options.prefillActivations ?? 'bf16', defaults: stripUndefined(defaults),
    rope, device, kvStorage: kernels ? new GpuKvStorage(kernels) : backend,
  });
}
