// Argument parsing helpers: typed flag values with named errors.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../core/errors.js';
import { SYNTHETIC_PREFIX } from '../engine/api.js';

export type Flags = Record<string, string | boolean | string[] | undefined>;

export function parse(argv: string[], options: NonNullable<ParseArgsConfig['options']>): { flags: Flags; positionals: string[] } {
  // Accept negative numbers as values (`--presence-penalty -0.5`), which parseArgs calls ambiguous.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const opt = a.startsWith('--') && !a.includes('=') ? options[a.slice(2)] : undefined;
    if (opt?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else {
      args.push(a);
    }
  }
  try {
    const r = parseArgs({ args, options, strict: true, allowPositionals: true });
    return { flags: r.values as Flags, positionals: r.positionals };
  } catch (e) {
    throw new InvalidArgumentError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}. Run with --help for usage.`);
  }
}

export function str(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function num(flags: Flags, name: string): number | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`--${name} expects a number, got "${v}".`, name);
  return n;
}

export function int(flags: Flags, name: string): number | undefined {
  const n = num(flags, name);
  if (n !== undefined && !Number.isInteger(n)) throw new InvalidArgumentError(`--${name} expects an integer, got ${n}.`, name);
  return n;
}

export function list(flags: Flags, name: string): string[] {
  const v = flags[name];
  if (Array.isArray(v)) return v;
  return typeof v === 'string' ? [v] : [];
}

/** The generation flags shared by generate, chat and serve. */
export const SAMPLING_FLAGS = {
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repeat-penalty': { type: 'string' },
  'presence-penalty': { type: 'string' },
  'frequency-penalty': { type: 'string' },
  seed: { type: 'string' },
  stop: { type: 'string', multiple: true },
  'ignore-eos': { type: 'boolean' },
} as const;

export const MODEL_FLAGS = {
  model: { type: 'string', short: 'm' },
  synthetic: { type: 'string' },
  tokenizer: { type: 'string' },
  backend: { type: 'string' },
  ctx: { type: 'string' },
  'prefill-activations': { type: 'string' },
  'prefill-chunk': { type: 'string' },
  'no-mmap': { type: 'boolean' },
} as const;

/**
 * The model a command reads: --model PATH, or --synthetic NAME (random weights with a published
 * model's shapes, model/synthetic.ts) as the path `synthetic:NAME`; undefined for the default.
 */
export function modelPathOf(flags: Flags): string | undefined {
  const model = str(flags, 'model');
  const synthetic = str(flags, 'synthetic');
  if (model !== undefined && synthetic !== undefined) {
    throw new InvalidArgumentError('--model and --synthetic name two models; pass one of them.', 'synthetic');
  }
  return synthetic !== undefined ? `${SYNTHETIC_PREFIX}${synthetic}` : model;
}

/** Decoding-mode flags shared by generate, chat, serve and bench. */
export const DECODING_FLAGS = {
  spec: { type: 'string' },
  gamma: { type: 'string' },
  kv: { type: 'string' },
  'kv-group': { type: 'string' },
  'kv-value-group': { type: 'string' },
  'draft-bits': { type: 'string' },
  'draft-group': { type: 'string' },
  'draft-layers': { type: 'string' },
  'draft-head': { type: 'string' },
  'draft-symmetric': { type: 'boolean' },
} as const;

/** Library option names (as library errors spell them) and the flags that set them. */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  maxTokens: '--max-tokens', topK: '--top-k', topP: '--top-p', minP: '--min-p', repetitionPenalty: '--repeat-penalty',
  presencePenalty: '--presence-penalty', frequencyPenalty: '--frequency-penalty', contextLength: '--ctx',
  keyGroupSize: '--kv-group', valueGroupSize: '--kv-value-group', spec: '--spec', kv: '--kv', gamma: '--gamma',
  'draft.bits': '--draft-bits', 'draft.groupSize': '--draft-group', 'draft.layers': '--draft-layers', 'draft.headBits': '--draft-head', tokenizer: '--tokenizer',
  dtype: '--dtype', backend: '--backend', prefillActivations: '--prefill-activations', prefillChunk: '--prefill-chunk', window: '--window', text: '--text', modes: '--modes',
};

/**
 * A library error's message in the command line's words: each library option name it mentions
 * (as a whole word) becomes its flag, so the user sees what to type.
 */
export function inFlagTerms(message: string): string {
  return message.replace(/(?<![\w.-])(draft\.[a-zA-Z]+|[a-z][a-zA-Z]*)(?![\w-])/g, (word) => FLAG_OF_OPTION[word] ?? word);
}
