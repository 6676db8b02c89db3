// The engine inside a worker thread: loads a model once, runs generations in sessions ("slots")
// and streams chunks back. The main thread (engine/remote.ts) keeps its event loop free, so a
// server stays responsive during long prefills. Messages are plain objects (see remote.ts).

import { parentPort, workerData } from 'node:worker_threads';
import { QuantspecError } from '../core/errors.js';
import { loadModel, type LoadOptions, type Model, type ModelGenerateOptions } from './model.js';
import type { PromptInput, Session } from './session.js';
import { toolSyntaxOf, type ToolSyntax } from './tools.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

interface GenerateRequest {
  readonly type: 'generate';
  readonly id: number;
  readonly slot: number;
  readonly prompt: PromptInput;
  readonly options: ModelGenerateOptions;
}

type Request = GenerateRequest | { readonly type: 'cancel'; readonly id: number } | { readonly type: 'encode'; readonly id: number; readonly prompt: PromptInput };

export function serializeError(e: unknown): { name: string; code: string; message: string; fields?: Record<string, unknown> } {
  if (e instanceof QuantspecError) {
    // Own enumerable fields beyond Error's (param, promptTokens, contextLength, ...).
    const fields = Object.fromEntries(Object.entries(e).filter(([k, v]) => k !== 'code' && typeof v !== 'function'));
    return { name: e.name, code: e.code, message: e.message, fields };
  }
  return { name: 'Error', code: 'internal', message: (e as Error)?.message ?? String(e) };
}

async function main(): Promise<void> {
  const port = parentPort!;
  const { modelPath, options, slots } = workerData as { modelPath?: string; options: LoadOptions; slots: number };
  let model: Model;
  const warnings: string[] = [];
  try {
    model = await loadModel(modelPath, { ...options, onWarning: (w) => warnings.push(w) });
  } catch (e) {
    port.postMessage({ type: 'load-error', error: serializeError(e) });
    return;
  }
  const sessions: Session[] = [];
  // Slots that decode at the same time share each step's forward pass (continuous batching).
  // (A device backend queues the sessions' passes in order instead.)
  const batcher = slots > 1 && !model.runtime.device ? model.createBatcher(slots) : undefined;
  for (let i = 0; i < slots; i++) sessions.push(model.createSession({ batcher }));
  const running = new Map<number, AbortController>();
  port.postMessage({
    type: 'ready',
    warnings,
    info: {
      path: model.path, format: model.format, config: model.config, contextLength: model.contextLength,
      backend: model.backendName, loadMs: model.loadMs, loadTimings: model.loadTimings, weightBytes: model.weightBytes, draftBytes: model.draftBytes,
      plan: model.plan({}), chatTemplate: model.tokenizer.chatTemplate !== null, toolSyntax: syntaxOrNull(model.tokenizer),
    },
  });

  async function generate(req: GenerateRequest): Promise<void> {
    const abort = new AbortController();
    running.set(req.id, abort);
    try {
      const session = sessions[req.slot];
      if (!session) throw new QuantspecError('invalid_argument', `no slot ${req.slot}`);
      // Decoding options different from the slot's mode get a one-off session.
      const plan = model.plan(req.options);
      const s = JSON.stringify(plan) === JSON.stringify(session.parts.plan) ? session : model.createSession({ ...req.options, batcher });
      const gen = s.generate(req.prompt, { ...req.options, signal: abort.signal });
      for (;;) {
        const r = await gen.next();
        if (r.done) {
          port.postMessage({ type: 'done', id: req.id, result: r.value });
          break;
        }
        port.postMessage({ type: 'chunk', id: req.id, chunk: r.value });
      }
    } catch (e) {
      port.postMessage({ type: 'error', id: req.id, error: serializeError(e) });
    } finally {
      running.delete(req.id);
    }
  }

  port.on('message', (msg: Request) => {
    if (msg.type === 'generate') void generate(msg);
    else if (msg.type === 'cancel') running.get(msg.id)?.abort();
    else if (msg.type === 'encode') {
      try {
        port.postMessage({ type: 'encoded', id: msg.id, ids: sessions[0]!.encode(msg.prompt) });
      } catch (e) {
        port.postMessage({ type: 'error', id: msg.id, error: serializeError(e) });
      }
    }
  });
}

if (parentPort) void main();

/** The template's tool-call syntax, or null when it takes no tools or writes calls in a syntax not parsed (generate() says which). */
function syntaxOrNull(tokenizer: Tokenizer): ToolSyntax | null {
  try {
    return toolSyntaxOf(tokenizer);
  } catch {
    return null;
  }
}
