// Tokenizers from GGUF metadata (tokenizer.ggml.*): GPT-2-style byte-level BPE becomes a
// tokenizer.json for @huggingface/tokenizers; SentencePiece-style ("llama") vocabularies use the
// score-driven merge of tokenizer/llama2c.ts with "▁" for spaces and <0xNN> byte fallback.

import { TokenizerError } from '../core/errors.js';

/** The part of a GGUF file a vocabulary is read from (model/gguf.ts GgufFile satisfies it). */
export interface GgufVocabSource {
  readonly path: string;
  readonly metadata: ReadonlyMap<string, unknown>;
}
import { HfTokenizer } from './hf.js';
import { Llama2cTokenizer } from './llama2c.js';
import type { Tokenizer } from './tokenizer.js';

const TOKEN_TYPE_CONTROL = 3;
const TOKEN_TYPE_USER_DEFINED = 4;

/** Pre-tokenizer regexes of the vocabularies llama.cpp names in tokenizer.ggml.pre. */
const PRE_REGEX: Readonly<Record<string, string>> = {
  'llama-bpe': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

function strings(g: GgufVocabSource, key: string): string[] | null {
  const v = g.metadata.get(key);
  if (!Array.isArray(v)) return null;
  if (!v.every((x) => typeof x === 'string')) throw new TokenizerError(`${g.path}: ${key} must be a list of strings.`);
  return v as string[];
}

function numbers(g: GgufVocabSource, key: string): number[] | null {
  const v = g.metadata.get(key);
  if (!Array.isArray(v)) return null;
  return v.map((x) => Number(x));
}

function id(g: GgufVocabSource, key: string): number | undefined {
  const v = g.metadata.get(key);
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : undefined;
}

export function ggufTokenizer(g: GgufVocabSource, modelEosIds: readonly number[]): Tokenizer {
  const model = g.metadata.get('tokenizer.ggml.model');
  const tokens = strings(g, 'tokenizer.ggml.tokens');
  if (!tokens) throw new TokenizerError(`${g.path} has no tokenizer.ggml.tokens; pass the tokenizer option with a tokenizer.json.`);
  const types = numbers(g, 'tokenizer.ggml.token_type') ?? [];
  const bos = id(g, 'tokenizer.ggml.bos_token_id');
  const eos = id(g, 'tokenizer.ggml.eos_token_id');
  const addBos = g.metadata.get('tokenizer.ggml.add_bos_token');
  const template = g.metadata.get('tokenizer.chat_template');
  if (model === 'gpt2') {
    const merges = strings(g, 'tokenizer.ggml.merges') ?? [];
    const pre = (g.metadata.get('tokenizer.ggml.pre') as string | undefined) ?? 'default';
    let preTokenizer: Record<string, unknown>;
    if (pre === 'default' || pre === 'gpt-2') preTokenizer = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    else if (PRE_REGEX[pre]) {
      preTokenizer = { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { Regex: PRE_REGEX[pre] }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ] };
    } else {
      throw new TokenizerError(`${g.path}: pre-tokenizer "${pre}" is not supported (gpt-2, default, llama-bpe, qwen2); pass the tokenizer option with a tokenizer.json.`);
    }
    const special = tokens
      .map((content, i) => ({ id: i, content, special: types[i] === TOKEN_TYPE_CONTROL, single_word: false, lstrip: false, rstrip: false, normalized: false }))
      .filter((t) => types[t.id] === TOKEN_TYPE_CONTROL || types[t.id] === TOKEN_TYPE_USER_DEFINED);
    const tokenizerJson = {
      version: '1.0',
      added_tokens: special,
      normalizer: null,
      pre_tokenizer: preTokenizer,
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: false, byte_fallback: false, vocab: Object.fromEntries(tokens.map((t, i) => [t, i])), merges,
      },
    };
    const config: Record<string, unknown> = {
      add_bos_token: addBos === true,
      ...(bos !== undefined ? { bos_token: tokens[bos] } : {}),
      ...(eos !== undefined ? { eos_token: tokens[eos] } : {}),
      ...(typeof template === 'string' ? { chat_template: template } : {}),
    };
    return new HfTokenizer(tokenizerJson, config, modelEosIds);
  }
  if (model === 'llama') {
    const scores = numbers(g, 'tokenizer.ggml.scores');
    if (!scores || scores.length !== tokens.length) throw new TokenizerError(`${g.path}: tokenizer.ggml.scores must give one score per token.`);
    const enc = new TextEncoder();
    return new Llama2cTokenizer(tokens.map((t) => enc.encode(t)), Float32Array.from(scores), {
      bosId: bos ?? 1,
      eosIds: [...new Set([...modelEosIds, ...(eos !== undefined ? [eos] : [])])],
      addsBos: addBos !== false,
      space: '▁',
      specialIds: tokens.map((_, i) => i).filter((i) => types[i] === TOKEN_TYPE_CONTROL),
      chatTemplate: typeof template === 'string' ? template : null,
      bosText: bos !== undefined ? tokens[bos]! : '<s>',
      eosText: eos !== undefined ? tokens[eos]! : '</s>',
    });
  }
  throw new TokenizerError(`${g.path}: tokenizer model "${String(model)}" is not supported (gpt2, llama); pass the tokenizer option with a tokenizer.json.`);
}
