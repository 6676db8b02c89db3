// Sampling parameters: defaults, validation with named errors.

import { InvalidArgumentError } from '../core/errors.js';

export interface SamplingParams {
  /** 0 = greedy (argmax). */
  readonly temperature: number;
  /** Keep the k most likely tokens; 0 = off. */
  readonly topK: number;
  /** Keep the smallest set whose probability reaches topP; 1 = off. */
  readonly topP: number;
  /** Drop tokens below minP × the top probability; 0 = off. */
  readonly minP: number;
  /** >1 discourages repeating tokens of the recent window (CTRL-style); 1 = off. */
  readonly repetitionPenalty: number;
  /** OpenAI-style: subtract for every token present in the window; 0 = off. */
  readonly presencePenalty: number;
  /** OpenAI-style: subtract per occurrence in the window; 0 = off. */
  readonly frequencyPenalty: number;
  /** How many recent tokens the penalties look at; -1 = the whole context. */
  readonly penaltyWindow: number;
}

/** llama.cpp's defaults, which users of local models expect. */
export const DEFAULT_SAMPLING: SamplingParams = Object.freeze({
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  penaltyWindow: 64,
});

function check(ok: boolean, param: string, value: unknown, rule: string): void {
  if (!ok) throw new InvalidArgumentError(`${param} must be ${rule}, got ${JSON.stringify(value)}.`, param);
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Fill defaults and validate; throws InvalidArgumentError naming the parameter. */
export function resolveSampling(p: Partial<SamplingParams> = {}): SamplingParams {
  const r = { ...DEFAULT_SAMPLING, ...Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) };
  check(isNum(r.temperature) && r.temperature >= 0 && r.temperature <= 100, 'temperature', r.temperature, 'a number in [0, 100]');
  check(Number.isInteger(r.topK) && r.topK >= 0, 'topK', r.topK, 'an integer >= 0 (0 = off)');
  check(isNum(r.topP) && r.topP > 0 && r.topP <= 1, 'topP', r.topP, 'a number in (0, 1]');
  check(isNum(r.minP) && r.minP >= 0 && r.minP <= 1, 'minP', r.minP, 'a number in [0, 1]');
  check(isNum(r.repetitionPenalty) && r.repetitionPenalty > 0 && r.repetitionPenalty <= 10, 'repetitionPenalty', r.repetitionPenalty, 'a number in (0, 10]');
  check(isNum(r.presencePenalty) && Math.abs(r.presencePenalty) <= 2, 'presencePenalty', r.presencePenalty, 'a number in [-2, 2]');
  check(isNum(r.frequencyPenalty) && Math.abs(r.frequencyPenalty) <= 2, 'frequencyPenalty', r.frequencyPenalty, 'a number in [-2, 2]');
  check(Number.isInteger(r.penaltyWindow) && r.penaltyWindow >= -1, 'penaltyWindow', r.penaltyWindow, 'an integer >= -1');
  return Object.freeze(r);
}

export function isGreedy(p: SamplingParams): boolean {
  return p.temperature === 0 || p.topK === 1;
}

/** Validate a logit-bias map: integer token ids in the vocabulary, finite biases in [-100, 100]. */
export function resolveLogitBias(bias: Readonly<Record<string | number, number>> | undefined, vocabSize: number): Record<number, number> {
  const out: Record<number, number> = {};
  if (bias === undefined) return out;
  if (typeof bias !== 'object' || bias === null || Array.isArray(bias)) {
    throw new InvalidArgumentError('logitBias must be an object mapping token ids to biases.', 'logitBias');
  }
  for (const [key, v] of Object.entries(bias)) {
    const id = Number(key);
    check(Number.isInteger(id) && id >= 0 && id < vocabSize, 'logitBias', key, `a token id in [0, ${vocabSize})`);
    check(isNum(v) && Math.abs(v) <= 100, 'logitBias', v, 'a number in [-100, 100]');
    out[id] = v;
  }
  return out;
}
