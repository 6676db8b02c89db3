// `quantspec eval`: perplexity over consecutive windows of a text file.

import * as fs from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';
import { perplexity } from '../engine/eval.js';
import { int, MODEL_FLAGS, parse, str } from './args.js';
import { loadForCli } from './generate.js';
import type { KvMode } from '../engine/api.js';

export const EVAL_USAGE = `usage: quantspec eval [--model PATH] --text FILE [--window N] [--kv fp|f16|int8|int4] [--kv-group G] [--json]

Perplexity of the model on FILE, over consecutive windows of N tokens (default: the context
length). Each window starts with BOS and is scored independently from position 0. --kv selects
the KV cache: F32, or the hierarchical cache read at 8 bits (the target) or 4 bits (the draft).`;

export async function runEval(argv: string[]): Promise<number> {
  const { flags } = parse(argv, {
    ...MODEL_FLAGS, text: { type: 'string' }, window: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    kv: { type: 'string' }, 'kv-group': { type: 'string' }, 'kv-value-group': { type: 'string' },
  });
  if (flags['help']) {
    process.stdout.write(`${EVAL_USAGE}\n`);
    return 0;
  }
  const file = str(flags, 'text');
  if (!file) throw new InvalidArgumentError('--text FILE is required. Run with --help for usage.', 'text');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new InvalidArgumentError(`cannot read --text ${file}: ${(e as Error).message}.`, 'text');
  }
  const model = await loadForCli({ ...flags, spec: 'none' }, false);
  const window = int(flags, 'window') ?? model.contextLength;
  const kv = (str(flags, 'kv') ?? 'fp') as KvMode;
  model.plan({ spec: 'none', kv }); // validate --kv before the long run
  const t0 = performance.now();
  const result = await perplexity(model, text, window, (w) => {
    if (!flags['json']) process.stdout.write(`window ${w.window}: ${w.nPredicted} tokens, ppl ${w.perplexity.toFixed(4)}\n`);
  }, kv);
  const seconds = (performance.now() - t0) / 1000;
  if (flags['json']) {
    process.stdout.write(`${JSON.stringify({
      perplexity: result.perplexity,
      tokens: result.tokens,
      window,
      kv,
      seconds,
      windows: result.windows.map((w) => ({
        window: w.window, start: w.start, n_predicted: w.nPredicted, mean_nll: w.meanNll, perplexity: w.perplexity,
      })),
    })}\n`);
  } else {
    process.stdout.write(`perplexity ${result.perplexity.toFixed(4)} over ${result.tokens} tokens (${seconds.toFixed(1)} s)\n`);
  }
  return 0;
}
