// Prompts and models of the losslessness tests (greedy QuantSpec == plain decoding over the INT8
// cache), shared by the CPU tests and the WebGPU backend's.

import * as fs from 'node:fs';
import type { DecodingOptions } from '../../src/speculative/modes.js';
import type { Model } from '../../src/engine/model.js';
import { collect } from '../../src/engine/session.js';
import { HF_REFERENCE_MODELS, sharedPath } from './shared.js';

export const corpus = sharedPath('corpus/eval-moby-tail.txt');
const text = corpus.skip ? '' : fs.readFileSync(corpus.path, 'utf8');

/** Prompts of about 8, 100 and `long` tokens cut from the corpus. */
export function prompts(model: Model, long: number): number[][] {
  const ids = model.tokenizer.encode(text.slice(5000), { addSpecial: false });
  const bos = model.tokenizer.bosId !== null ? [model.tokenizer.bosId] : [];
  return [8, 100, long].map((n) => [...bos, ...ids.slice(0, n - bos.length)]);
}

/**
 * A fresh session each time: with gamma 'auto' a shared session's controller keeps what it learnt
 * (on these tiny models, that speculation does not pay) and may decode 40 tokens without a round;
 * a fresh controller speculates until it has measured the draft, so every call has rounds.
 */
export async function greedy(model: Model, ids: number[], opts: DecodingOptions, maxTokens: number) {
  return collect(model.createSession({ ...opts, contextLength: 512 }).generate({ ids }, { temperature: 0, maxTokens, ignoreEos: true }));
}

export const MODELS: { name: string; file?: string; long: number; groups: number[] }[] = [
  { name: 'stories260K', file: 'stories260K.bin', long: 300, groups: [128, 16] },
  ...HF_REFERENCE_MODELS.map((name) => ({
    name,
    long: name.startsWith('pdlm') ? 300 : 180,
    groups: name.startsWith('pdlm') ? [128] : [16],
  })),
];

