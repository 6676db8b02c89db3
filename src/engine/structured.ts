// Structured output for a session: a response format compiled to a token constraint over the
// model's vocabulary. Token texts are read once per tokenizer; constraints are kept per format, so
// a schema's cached masks serve every request that sends it again.

import { InvalidArgumentError } from '../core/errors.js';
import { JsonConstraint } from '../sampling/constraint.js';
import { compileResponseFormat, compileToolCall, type ResponseFormat, type ToolCallFormat } from '../sampling/json-schema.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

const textsOf = new WeakMap<Tokenizer, string[]>();
const constraintsOf = new WeakMap<Tokenizer, Map<string, JsonConstraint>>();
/** Distinct formats whose constraints (and mask caches) a tokenizer keeps. */
const KEPT_FORMATS = 8;

/**
 * Each token's text as it reads after another token (a SentencePiece decoder drops the leading
 * space of a sequence's first token, so decode it behind an anchor). Special tokens and tokens
 * that are part of a multi-byte character read as '' and are never allowed.
 */
export function tokenTexts(tokenizer: Tokenizer, vocabSize: number): string[] {
  const cached = textsOf.get(tokenizer);
  if (cached && cached.length === vocabSize) return cached;
  const anchor = tokenizer.encode('a', { addSpecial: false });
  const prefix = tokenizer.decode(anchor);
  const texts = new Array<string>(vocabSize).fill('');
  for (let id = 0; id < Math.min(vocabSize, tokenizer.vocabSize); id++) {
    const both = tokenizer.decode([...anchor, id]);
    if (!both.startsWith(prefix)) continue;
    const t = both.slice(prefix.length);
    if (!t.includes('\uFFFD')) texts[id] = t;
  }
  textsOf.set(tokenizer, texts);
  return texts;
}

/**
 * The constraint for a response format or a tool call (null for plain text), or a named error
 * saying what to change.
 */
export function constraintFor(
  format: ResponseFormat | undefined, tool: ToolCallFormat | null, tokenizer: Tokenizer, vocabSize: number, ignoreEos: boolean,
): JsonConstraint | null {
  const json = format !== undefined && format.type !== 'text';
  if (!json && tool === null) return null;
  if (json && tool !== null) throw new InvalidArgumentError('a JSON response format and tool calls cannot be combined; send one of them.', 'responseFormat');
  if (ignoreEos) throw new InvalidArgumentError('ignoreEos cannot be combined with a JSON response format or tools: the output ends when the value is complete.', 'ignoreEos');
  if (tokenizer.eosIds.length === 0) {
    throw new InvalidArgumentError('this model\'s tokenizer has no end-of-sequence token, so a JSON response cannot end; use plain text.', 'responseFormat');
  }
  let kept = constraintsOf.get(tokenizer);
  if (!kept) constraintsOf.set(tokenizer, (kept = new Map()));
  const key = JSON.stringify(tool ?? format);
  const hit = kept.get(key);
  if (hit) {
    kept.delete(key);
    kept.set(key, hit); // most recently used last
    return hit;
  }
  const vocab = { texts: tokenTexts(tokenizer, vocabSize), eosIds: tokenizer.eosIds };
  const constraint = tool !== null
    ? new JsonConstraint(compileToolCall(tool), vocab, tool.trigger ? tool.open : null)
    : new JsonConstraint(compileResponseFormat(format!)!, vocab);
  if (kept.size >= KEPT_FORMATS) kept.delete(kept.keys().next().value!);
  kept.set(key, constraint);
  return constraint;
}
