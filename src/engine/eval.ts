// Teacher-forced scoring: logits at every position of a fixed token sequence, and perplexity over
// consecutive windows of a text (`quantspec eval`).

import { ContextOverflowError, InvalidArgumentError } from '../core/errors.js';
import { computeLogits, createScratch, forward, passLogits, PROMPT_PASS } from '../model/forward.js';
import { createCache, targetViewOf, type KvMode } from '../speculative/modes.js';
import type { Model } from './model.js';

/** How scoreSequence runs its chunks: as decode steps ('exact') or as prompt prefill ('prompt'). */
export type ScoringPasses = 'exact' | 'prompt';

/** Called with the logits row that predicts ids[position + 1]; `row` is valid only during the call. */
export type LogitsRowCallback = (position: number, row: Float32Array) => void;

/**
 * Feed ids from position 0 of a fresh cache, calling back with every position's logits. With kv
 * 'int8'/'int4' the hierarchical cache is flushed before each chunk, as during generation, and
 * attention reads it at that precision. `passes` 'prompt' runs the chunks as prefill runs a
 * prompt (BF16 weights may take BF16 activations, LoadOptions.prefillActivations); the default
 * 'exact' runs them as decode steps do.
 */
export async function scoreSequence(
  model: Model, ids: readonly number[], onRow: LogitsRowCallback, chunk = 64, kv: KvMode = 'fp', passes: ScoringPasses = 'exact',
): Promise<void> {
  const rt = model.runtime;
  const { vocabSize } = rt.config;
  if (ids.length > model.contextLength) {
    throw new ContextOverflowError(
      `a sequence of ${ids.length} tokens does not fit the context of ${model.contextLength}; use a smaller window or a larger contextLength.`,
      ids.length,
      model.contextLength,
    );
  }
  const plan = model.plan({ spec: 'none', kv });
  const cache = createCache(plan, rt.config, model.kvStorage, Math.max(ids.length, 2), chunk);
  const scratch = createScratch(rt.config, chunk, chunk, ids.length);
  for (let pos = 0; pos < ids.length; ) {
    cache.flush();
    const n = Math.min(chunk, ids.length - pos, cache.room);
    let logits: Float32Array;
    if (passes === 'prompt' && !rt.device) {
      forward(rt, model.target, cache, targetViewOf(kv), ids, pos, n, scratch, PROMPT_PASS);
      logits = computeLogits(rt, model.target, scratch, 0, n);
    } else {
      // Exact passes, as decode steps run them (a device has no BF16-activation path: always these).
      logits = await passLogits(rt, model.target, cache, targetViewOf(kv), ids, pos, n, scratch);
    }
    for (let r = 0; r < n; r++) onRow(pos + r, logits.subarray(r * vocabSize, (r + 1) * vocabSize));
    pos += n;
  }
}

export interface WindowScore {
  readonly window: number;
  /** Index of the window's first text token in the encoded text. */
  readonly start: number;
  readonly nPredicted: number;
  readonly meanNll: number;
  readonly perplexity: number;
}

export interface PerplexityResult {
  readonly perplexity: number;
  readonly tokens: number;
  readonly windows: readonly WindowScore[];
}

/** -log softmax(row)[target], computed stably in double precision. */
export function negLogLikelihood(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return Math.log(sum) + max - row[target]!;
}

/**
 * Perplexity over consecutive windows of `window` tokens. Each window is BOS + the next
 * window - 1 text tokens (when the tokenizer has a BOS), scored from position 0, so every text
 * token is predicted exactly once and BOS never is.
 */
export async function perplexity(
  model: Model, text: string, window: number, onWindow?: (w: WindowScore) => void, kv: KvMode = 'fp', passes: ScoringPasses = 'exact',
): Promise<PerplexityResult> {
  if (!Number.isInteger(window) || window < 2) throw new InvalidArgumentError(`window must be an integer >= 2, got ${window}.`, 'window');
  const bos = model.tokenizer.bosId;
  const ids = model.tokenizer.encode(text, { addSpecial: false });
  const stride = bos !== null ? window - 1 : window;
  const windows: WindowScore[] = [];
  let totalNll = 0;
  let totalN = 0;
  for (let start = 0, w = 0; start < ids.length; start += stride, w++) {
    const body = ids.slice(start, start + stride);
    const seq = bos !== null ? [bos, ...body] : body;
    if (seq.length < 2) break;
    let nll = 0;
    await scoreSequence(model, seq, (pos, row) => {
      if (pos + 1 < seq.length) nll += negLogLikelihood(row, seq[pos + 1]!);
    }, 64, kv, passes);
    const n = seq.length - 1;
    const score = { window: w, start, nPredicted: n, meanNll: nll / n, perplexity: Math.exp(nll / n) };
    windows.push(score);
    onWindow?.(score);
    totalNll += nll;
    totalN += n;
  }
  return { perplexity: Math.exp(totalNll / Math.max(1, totalN)), tokens: totalN, windows };
}
