// `quantspec generate` and `quantspec chat`.

import * as readline from 'node:readline';
import { InvalidArgumentError } from '../core/errors.js';
import { loadModel, type Model } from '../engine/model.js';
import type { GenerateOptions, GenerationResult, PromptInput, Session } from '../engine/session.js';
import type { BackendName, PrefillActivations } from '../engine/api.js';
import { resolveSampling, SYNTHETIC_MODELS } from '../engine/api.js';
import type { ChatMessage } from '../engine/api.js';
import { DECODING_FLAGS, int, list, MODEL_FLAGS, modelPathOf, num, parse, SAMPLING_FLAGS, str, type Flags } from './args.js';
import type { DecodingOptions, KvMode, SpecMode } from '../engine/api.js';
import { formatBytes, ProgressBar } from './progress.js';

export const GENERATE_USAGE = `usage: quantspec generate [--model PATH] --prompt TEXT [options]

Streams a completion to stdout. Without --model, the embedded pdlm-5.8m model is used.
  --model, -m PATH      Hugging Face directory (config.json + safetensors), GGUF file or llama2.c .bin
  --synthetic NAME      instead of --model: random weights with the exact shapes and vocabulary of
                        ${SYNTHETIC_MODELS.join(', ')} (speed and memory only)
  --tokenizer PATH      tokenizer file when it is not beside the model
  --prompt, -p TEXT     the prompt (read from stdin when omitted and stdin is not a terminal)
  --chat                apply the model's chat template to the prompt (as one user message)
  --system TEXT         system message for --chat
  --max-tokens N        most tokens to generate (default 256)
  --temperature T       0 = greedy (default 0.8)
  --top-k K             default 40 (0 = off)
  --top-p P             default 0.95 (1 = off)
  --min-p P             default 0.05 (0 = off)
  --repeat-penalty R    default 1 (off)
  --presence-penalty X  --frequency-penalty X   OpenAI-style penalties (default 0)
  --seed S              random seed (default: from the clock)
  --stop TEXT           stop string (repeatable)
  --ignore-eos          keep generating past end-of-sequence
  --ctx N               context length (default: the model's, at most 4096)
  --prefill-activations bf16|f32
                        the prompt's matmuls with BF16/F16 weights: BF16 activations on AMX (default
                        bf16, as PyTorch and llama.cpp), or f32 for the exact path everywhere
  --prefill-chunk N     prompt tokens per forward pass (default 128); 512 (llama.cpp's batch) reads
                        an F16/BF16 model's weights a quarter as often during a long prompt, at the
                        cost of a longer wait before a cancel or another request is served
  --no-mmap             read the weights into memory instead of mapping the file (for a file that
                        may change while the model runs)
  --backend NAME        auto (native CPU kernels, else reference) | cpu | reference (scalar
                        TypeScript) | webgpu (whole passes on a GPU: Dawn in Node, navigator.gpu in a browser)

Decoding (QuantSpec is the default):
  --spec MODE           auto (QuantSpec, adaptive γ, plain decoding where it would not pay) | none |
                        quantspec | streaming (StreamingLLM draft) | snapkv (SnapKV draft)
  --gamma N|auto        draft length (default: auto for --spec auto, else 4)
  --kv fp|f16|int8|int4 the target's KV: F32 cache (the reference), F16 cache, or the hierarchical cache read at 8 (or 4) bits
  --kv-group G          tokens per key group of the hierarchical cache (default 128)
  --draft-bits 4        draft weight bits;  --draft-group N  columns per group (default 32)
  --draft-layers L      all | all+head | mlp | attn | wq,wk,... (default all linear layers)
  --draft-head 8|4|none the draft's output head: 8-bit (default), 4-bit, or the target's own
  --stats               print speculative statistics and KV bytes to stderr
  --json                after the text, print one JSON object (ids, text, timings, stats, kv_bytes) last`;

export const CHAT_USAGE = `usage: quantspec chat [--model PATH] [--system TEXT] [options]

Interactive chat through the model's chat template. Type a message and press enter;
/reset starts over, /exit (or Ctrl-D) quits. Takes the sampling options of generate.`;

/** --draft-head: 8, 4 or none (0) as draft.headBits (other values are the engine's to reject). */
function draftHeadBits(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value === 'none') return 0;
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`--draft-head takes 8, 4 or none, got "${value}".`, 'draft.headBits');
  return Number(value);
}

/** --draft-bits/--draft-group/--draft-layers/--draft-head/--draft-symmetric as loadModel's draft options (validated by the engine). */
export function draftOptions(flags: Flags): { bits?: number; groupSize?: number; layers?: string; headBits?: number; symmetric?: boolean } {
  return {
    bits: int(flags, 'draft-bits'),
    groupSize: int(flags, 'draft-group'),
    layers: str(flags, 'draft-layers'),
    headBits: draftHeadBits(str(flags, 'draft-head')),
    symmetric: flags['draft-symmetric'] === true ? true : undefined,
  };
}

/** --spec/--gamma/--kv... as engine decoding options (validated by the engine). */
export function decodingOptions(flags: Flags): DecodingOptions {
  const gamma = str(flags, 'gamma');
  return {
    spec: str(flags, 'spec') as SpecMode | undefined,
    gamma: gamma === 'auto' ? 'auto' : int(flags, 'gamma'),
    kv: str(flags, 'kv') as KvMode | undefined,
    keyGroupSize: int(flags, 'kv-group'),
    valueGroupSize: int(flags, 'kv-value-group'),
  };
}

/** Whether the decoding mode these flags ask for reads the QuantSpec draft (auto and quantspec do). */
export function needsDraft(flags: Flags): boolean {
  const spec = str(flags, 'spec');
  return spec === undefined || spec === 'auto' || spec === 'quantspec';
}

export async function loadForCli(flags: Flags, withDraft = true): Promise<Model> {
  const bar = new ProgressBar('loading', formatBytes);
  const backend = str(flags, 'backend');
  const model = await loadModel(modelPathOf(flags), {
    ...decodingOptions(flags),
    draft: withDraft && draftOptions(flags),
    tokenizer: str(flags, 'tokenizer'),
    backend: backend as BackendName | undefined,
    contextLength: int(flags, 'ctx'),
    prefillActivations: str(flags, 'prefill-activations') as PrefillActivations | undefined,
    prefillChunk: int(flags, 'prefill-chunk'),
    mmap: flags['no-mmap'] === true ? false : undefined,
    onLoadProgress: (done, total) => bar.update(done, total),
    onWarning: (msg) => process.stderr.write(`quantspec: warning: ${msg}\n`),
  });
  bar.done();
  return model;
}

/** Generation flags as engine options, validated before any model is loaded. */
export function generationOptions(flags: Flags): GenerateOptions {
  const options: GenerateOptions = {
    maxTokens: int(flags, 'max-tokens'),
    temperature: num(flags, 'temperature'),
    topK: int(flags, 'top-k'),
    topP: num(flags, 'top-p'),
    minP: num(flags, 'min-p'),
    repetitionPenalty: num(flags, 'repeat-penalty'),
    presencePenalty: num(flags, 'presence-penalty'),
    frequencyPenalty: num(flags, 'frequency-penalty'),
    seed: int(flags, 'seed'),
    stop: list(flags, 'stop'),
    ignoreEos: flags['ignore-eos'] === true,
  };
  resolveSampling(options);
  if (options.maxTokens !== undefined && options.maxTokens < 1) {
    throw new InvalidArgumentError(`--max-tokens must be at least 1, got ${options.maxTokens}.`, 'max-tokens');
  }
  return options;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Stream one generation to stdout, with a prefill progress bar; returns the result. */
export async function streamToStdout(session: Session, prompt: PromptInput, options: GenerateOptions): Promise<GenerationResult> {
  const bar = new ProgressBar('prefill', (n) => `${n} tok`);
  const gen = session.generate(prompt, { ...options, onPrefillProgress: (d, t) => bar.update(d, t) });
  let wrote = false;
  for (;;) {
    const r = await gen.next();
    if (!wrote) {
      bar.done();
      wrote = true;
    }
    if (r.done) return r.value;
    if (r.value.text) process.stdout.write(r.value.text);
  }
}

export async function runGenerate(argv: string[]): Promise<number> {
  const { flags } = parse(argv, {
    ...MODEL_FLAGS, ...SAMPLING_FLAGS, ...DECODING_FLAGS,
    prompt: { type: 'string', short: 'p' }, chat: { type: 'boolean' }, system: { type: 'string' },
    json: { type: 'boolean' }, stats: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  });
  if (flags['help']) {
    process.stdout.write(`${GENERATE_USAGE}\n`);
    return 0;
  }
  let text = str(flags, 'prompt');
  if (text === undefined && !process.stdin.isTTY) text = (await readStdin()) || undefined;
  if (text === undefined) throw new InvalidArgumentError('--prompt is required (or pipe the prompt on stdin). Run with --help for usage.', 'prompt');
  const options = generationOptions(flags);
  const model = await loadForCli(flags, needsDraft(flags));
  const messages: ChatMessage[] = [];
  const system = str(flags, 'system');
  if (system !== undefined) messages.push({ role: 'system', content: system });
  messages.push({ role: 'user', content: text });
  const prompt: PromptInput = flags['chat'] ? { messages } : text;
  const result = await streamToStdout(model.createSession(), prompt, options);
  if (flags['json']) {
    if (result.text.length > 0 && !result.text.endsWith('\n')) process.stdout.write('\n');
    process.stdout.write(`${JSON.stringify(resultJson(model, result))}\n`);
  } else {
    process.stdout.write('\n');
  }
  if (flags['stats']) process.stderr.write(statsText(model, result));
  return 0;
}

/** Human-readable statistics for --stats. */
export function statsText(model: Model, r: GenerationResult): string {
  const t = r.timings;
  const lt = model.loadTimings;
  const lines = [
    `load ${model.loadMs.toFixed(0)} ms: read ${lt.readMs.toFixed(0)} ms, draft ${lt.draftMs.toFixed(0)} ms, repack ${lt.repackMs.toFixed(0)} ms` +
      (model.runtime.device ? `, upload to the GPU ${lt.uploadMs.toFixed(0)} ms` : ''),
    `backend ${model.backendName}; decoding: spec ${r.decoding.spec}, kv ${r.decoding.kv}, gamma ${r.decoding.gamma}`,
    `prompt ${t.promptTokens} tokens (${t.cachedTokens} reused) in ${t.prefillMs.toFixed(1)} ms: ${t.prefillTokensPerS.toFixed(1)} tok/s`,
    `generated ${t.generatedTokens} tokens, decode ${t.decodeTokensPerS.toFixed(1)} tok/s`,
  ];
  const s = r.stats;
  if (s) {
    lines.push(
      `speculation (${s.mode}): ${s.rounds} rounds, ${s.accepted}/${s.drafted} drafts accepted ` +
        `(acceptance ${(s.acceptanceRate * 100).toFixed(1)}%${model.format === 'synthetic' ? ', meaningless: synthetic weights' : ''}), ${s.meanAcceptedLength.toFixed(2)} tokens/round, ` +
        `${s.plainSteps} plain steps`,
      `  per position: ${s.perPosition.map((p) => (p * 100).toFixed(0) + '%').join(' ')}`,
      `  draft ${s.draftMs.toFixed(1)} ms, verify ${s.verifyMs.toFixed(1)} ms, last gamma ${s.gamma}`,
    );
  }
  const kv = r.kvBytes;
  lines.push(
    `kv cache ${formatBytes(kv.total)}: buffer ${formatBytes(kv.fp)}, upper ${formatBytes(kv.upper)}, ` +
      `lower ${formatBytes(kv.lower)}, scales ${formatBytes(kv.meta)}`,
  );
  if (model.draftBytes > 0) lines.push(`draft weights: +${formatBytes(model.draftBytes)} on top of ${formatBytes(model.weightBytes)}`);
  return `${lines.join('\n')}\n`;
}

/** The --json object: field names are a stable contract for scripts. */
export function resultJson(model: Model, r: GenerationResult): Record<string, unknown> {
  const t = r.timings;
  return {
    prompt_ids: r.promptIds,
    generated_ids: r.generatedIds,
    text: r.text,
    finish_reason: r.finishReason,
    timings: {
      load_ms: round(model.loadMs),
      load_read_ms: round(model.loadTimings.readMs),
      load_draft_ms: round(model.loadTimings.draftMs),
      load_repack_ms: round(model.loadTimings.repackMs),
      load_upload_ms: round(model.loadTimings.uploadMs),
      prompt_tokens: t.promptTokens,
      generated_tokens: t.generatedTokens,
      prefill_ms: round(t.prefillMs),
      prefill_tokens_per_s: round(t.prefillTokensPerS),
      decode_ms: round(t.decodeMs),
      decode_tokens_per_s: round(t.decodeTokensPerS),
    },
    backend: model.backendName,
    decoding: r.decoding,
    stats: r.stats && {
      rounds: r.stats.rounds,
      drafted: r.stats.drafted,
      accepted: r.stats.accepted,
      acceptance_rate: r.stats.acceptanceRate,
      mean_accepted_length: r.stats.meanAcceptedLength,
      per_position: r.stats.perPosition,
      accepted_lengths: r.stats.acceptedLengths,
      plain_steps: r.stats.plainSteps,
      draft_ms: round(r.stats.draftMs),
      verify_ms: round(r.stats.verifyMs),
      gamma: r.stats.gamma,
    },
    kv_bytes: { total: r.kvBytes.total, buffer: r.kvBytes.fp, upper: r.kvBytes.upper, lower: r.kvBytes.lower, meta: r.kvBytes.meta },
    draft_bytes: model.draftBytes,
    /** Random weights (--synthetic): the text and the acceptance mean nothing. */
    synthetic: model.format === 'synthetic',
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

export async function runChat(argv: string[]): Promise<number> {
  const { flags } = parse(argv, {
    ...MODEL_FLAGS, ...SAMPLING_FLAGS, ...DECODING_FLAGS, system: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (flags['help']) {
    process.stdout.write(`${CHAT_USAGE}\n`);
    return 0;
  }
  const options = generationOptions(flags);
  const model = await loadForCli(flags);
  if (!model.tokenizer.chatTemplate) {
    throw new InvalidArgumentError('this model has no chat template; use `quantspec generate` instead.');
  }
  const session = model.createSession();
  const system = str(flags, 'system');
  const start = (): ChatMessage[] => (system !== undefined ? [{ role: 'system', content: system }] : []);
  let messages = start();
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY === true });
  const interactive = process.stdin.isTTY === true;
  if (interactive) process.stdout.write('> ');
  for await (const line of rl) {
    const input = line.trim();
    if (input === '/exit' || input === '/quit') break;
    if (input === '/reset') {
      messages = start();
      if (interactive) process.stdout.write('(conversation reset)\n> ');
      continue;
    }
    if (input.length === 0) {
      if (interactive) process.stdout.write('> ');
      continue;
    }
    messages.push({ role: 'user', content: input });
    const result = await streamToStdout(session, { messages }, options);
    messages.push({ role: 'assistant', content: result.text });
    process.stdout.write(interactive ? '\n> ' : '\n');
  }
  rl.close();
  return 0;
}
