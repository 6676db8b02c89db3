// `quantspec generate` and `quantspec chat`.

import * as readline from 'node:readline';
import { InvalidArgumentError } from '../core/errors.js';
import { loadModel, type Model } from '../engine/model.js';
import type { GenerateOptions, GenerationResult, PromptInput, Session } from '../engine/session.js';
import type { BackendName } from '../kernels/select.js';
import { resolveSampling } from '../sampling/params.js';
import type { ChatMessage } from '../tokenizer/chat.js';
import { int, list, MODEL_FLAGS, num, parse, SAMPLING_FLAGS, str, type Flags } from './args.js';
import { formatBytes, ProgressBar } from './progress.js';

export const GENERATE_USAGE = `usage: quantspec generate [--model PATH] --prompt TEXT [options]

Streams a completion to stdout. Without --model, the embedded pdlm-5.8m model is used.
  --model, -m PATH      Hugging Face directory (config.json + safetensors) or llama2.c .bin
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
  --backend NAME        reference (scalar TypeScript) | auto
  --json                after the text, print one JSON object (ids, text, timings) as the last line`;

export const CHAT_USAGE = `usage: quantspec chat [--model PATH] [--system TEXT] [options]

Interactive chat through the model's chat template. Type a message and press enter;
/reset starts over, /exit (or Ctrl-D) quits. Takes the sampling options of generate.`;

export async function loadForCli(flags: Flags): Promise<Model> {
  const bar = new ProgressBar('loading', formatBytes);
  const backend = str(flags, 'backend');
  const model = await loadModel(str(flags, 'model'), {
    tokenizer: str(flags, 'tokenizer'),
    backend: backend as BackendName | undefined,
    contextLength: int(flags, 'ctx'),
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
    ...MODEL_FLAGS, ...SAMPLING_FLAGS,
    prompt: { type: 'string', short: 'p' }, chat: { type: 'boolean' }, system: { type: 'string' },
    json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  });
  if (flags['help']) {
    process.stdout.write(`${GENERATE_USAGE}\n`);
    return 0;
  }
  let text = str(flags, 'prompt');
  if (text === undefined && !process.stdin.isTTY) text = (await readStdin()) || undefined;
  if (text === undefined) throw new InvalidArgumentError('--prompt is required (or pipe the prompt on stdin). Run with --help for usage.', 'prompt');
  const options = generationOptions(flags);
  const model = await loadForCli(flags);
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
  return 0;
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
      prompt_tokens: t.promptTokens,
      generated_tokens: t.generatedTokens,
      prefill_ms: round(t.prefillMs),
      prefill_tokens_per_s: round(t.prefillTokensPerS),
      decode_ms: round(t.decodeMs),
      decode_tokens_per_s: round(t.decodeTokensPerS),
    },
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

export async function runChat(argv: string[]): Promise<number> {
  const { flags } = parse(argv, { ...MODEL_FLAGS, ...SAMPLING_FLAGS, system: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
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
