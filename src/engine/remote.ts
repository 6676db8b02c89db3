// A model running in a worker thread, driven from the main thread: the same streaming API as
// Model.generate(), but the forward passes never block this thread's event loop.

import { Worker } from 'node:worker_threads';
import * as errors from '../core/errors.js';
import type { ModelConfig } from '../model/config.js';
import type { DecodingPlan } from '../speculative/modes.js';
import type { LoadOptions, LoadTimings, ModelGenerateOptions } from './model.js';
import type { GenerationChunk, GenerationResult, PromptInput } from './session.js';
import type { ToolSyntax } from './tools.js';

export interface RemoteModelInfo {
  readonly path: string;
  readonly format: string;
  readonly config: ModelConfig;
  readonly contextLength: number;
  readonly backend: string;
  readonly loadMs: number;
  readonly loadTimings: LoadTimings;
  readonly weightBytes: number;
  readonly draftBytes: number;
  readonly plan: DecodingPlan;
  readonly chatTemplate: boolean;
  /** How the chat template writes tool calls (null: it takes no tools, or in a syntax not parsed). */
  readonly toolSyntax: ToolSyntax | null;
}

interface SerializedError {
  readonly name: string;
  readonly code: string;
  readonly message: string;
  readonly fields?: Record<string, unknown>;
}

/** Rebuild a named error from the worker with its own class and fields, so `instanceof` works. */
function reviveError(e: SerializedError): Error {
  if (e.code === 'internal') return new Error(e.message);
  const err = new errors.QuantspecError(e.code, e.message);
  const cls = (errors as Record<string, unknown>)[e.name];
  if (typeof cls === 'function') Object.setPrototypeOf(err, (cls as { prototype: object }).prototype);
  Object.defineProperty(err, 'name', { value: e.name });
  Object.assign(err, e.fields ?? {});
  return err;
}

type Listener = (msg: { type: string; chunk?: GenerationChunk; result?: GenerationResult; error?: SerializedError; ids?: number[] }) => void;

export class RemoteModel {
  readonly info: RemoteModelInfo;
  readonly warnings: readonly string[];
  readonly slots: number;
  private readonly worker: Worker;
  private readonly listeners = new Map<number, Listener>();
  private nextId = 1;
  private closed = false;

  private constructor(worker: Worker, info: RemoteModelInfo, warnings: string[], slots: number) {
    this.worker = worker;
    this.info = info;
    this.warnings = warnings;
    this.slots = slots;
    worker.on('message', (msg: { type: string; id: number }) => this.listeners.get(msg.id)?.(msg as Parameters<Listener>[0]));
  }

  /** Start a worker, load the model there, and create `slots` sessions (concurrent generations). */
  static async load(modelPath: string | undefined, options: LoadOptions = {}, slots = 1): Promise<RemoteModel> {
    const { onLoadProgress: _p, onWarning, ...cloneable } = options;
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { modelPath, options: cloneable, slots } });
    return new Promise((resolve, reject) => {
      const onMessage = (msg: { type: string; info?: RemoteModelInfo; warnings?: string[]; error?: SerializedError }) => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        if (msg.type === 'ready') {
          for (const w of msg.warnings ?? []) onWarning?.(w);
          resolve(new RemoteModel(worker, msg.info!, msg.warnings ?? [], slots));
        } else {
          void worker.terminate();
          reject(reviveError(msg.error!));
        }
      };
      const onError = (e: Error) => {
        worker.off('message', onMessage);
        reject(e);
      };
      worker.on('message', onMessage);
      worker.once('error', onError);
    });
  }

  /** Token ids of a prompt (chat template applied for messages). */
  encode(prompt: PromptInput): Promise<number[]> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.listeners.set(id, (msg) => {
        this.listeners.delete(id);
        if (msg.type === 'encoded') resolve(msg.ids!);
        else reject(reviveError(msg.error!));
      });
      this.worker.postMessage({ type: 'encode', id, prompt });
    });
  }

  /**
   * Stream a generation in session `slot`. Returning from the generator early (or `signal`)
   * cancels it in the worker and frees the slot.
   */
  async *generate(prompt: PromptInput, options: ModelGenerateOptions = {}, slot = 0): AsyncGenerator<GenerationChunk, GenerationResult> {
    if (this.closed) throw new errors.QuantspecError('closed', 'the model worker has been closed.');
    const id = this.nextId++;
    const queue: Parameters<Listener>[0][] = [];
    let wake: (() => void) | null = null;
    this.listeners.set(id, (msg) => {
      queue.push(msg);
      wake?.();
    });
    const { signal, onPrefillProgress: _p, ...cloneable } = options;
    const cancel = () => this.worker.postMessage({ type: 'cancel', id });
    signal?.addEventListener('abort', cancel, { once: true });
    this.worker.postMessage({ type: 'generate', id, slot, prompt, options: cloneable });
    let finished = false;
    try {
      for (;;) {
        while (queue.length === 0) await new Promise<void>((r) => (wake = r));
        wake = null;
        const msg = queue.shift()!;
        if (msg.type === 'chunk') yield msg.chunk!;
        else if (msg.type === 'done') {
          finished = true;
          return msg.result!;
        } else {
          finished = true;
          throw reviveError(msg.error!);
        }
      }
    } finally {
      signal?.removeEventListener('abort', cancel);
      if (!finished) {
        // The consumer stopped early: cancel, and wait for the worker to release the slot.
        cancel();
        while (!queue.some((m) => m.type === 'done' || m.type === 'error')) await new Promise<void>((r) => (wake = r));
      }
      this.listeners.delete(id);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.worker.terminate();
  }
}
