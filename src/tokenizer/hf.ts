// tokenizer.json + tokenizer_config.json through @huggingface/tokenizers.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { TokenizerError } from '../core/errors.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';

type Json = Record<string, unknown>;

const END_OF_TURN = ['<|im_end|>', '<|eot_id|>', '<|end|>', '<end_of_turn>', '<|endoftext|>'];

function readJson(file: string): Json {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new TokenizerError(`cannot read ${file}: ${(e as Error).message}.`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Json;
  } catch (e) {
    throw new TokenizerError(`${file} is not a valid JSON object (${(e as Error).message}).`);
  }
}

/** A special-token entry in tokenizer_config.json is a string or {content: string}. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json)['content'] === 'string') return (v as Json)['content'] as string;
  return null;
}

function pickTemplate(raw: unknown): string | null {
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw)) {
    // Newer configs hold a list of named templates; "default" is the chat one.
    const named = raw as { name?: string; template?: string }[];
    const t = named.find((x) => x.name === 'default') ?? named[0];
    return typeof t?.template === 'string' ? t.template : null;
  }
  return null;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosIds: readonly number[];
  readonly addsBos: boolean;
  readonly chatTemplate: string | null;
  readonly templateTokens: Readonly<Record<string, string>>;
  private readonly impl: HfTokenizerImpl;
  private readonly specialIds: Set<number>;

  constructor(tokenizerJson: Json, config: Json, modelEosIds: readonly number[]) {
    try {
      this.impl = new HfTokenizerImpl(tokenizerJson, config);
    } catch (e) {
      throw new TokenizerError(`tokenizer.json could not be loaded: ${(e as Error).message}.`);
    }
    this.vocabSize = this.impl.get_vocab(true).size;
    const bos = tokenString(config['bos_token']);
    const eos = tokenString(config['eos_token']);
    this.bosId = bos !== null ? (this.impl.token_to_id(bos) ?? null) : null;
    const eosId = eos !== null ? this.impl.token_to_id(eos) : undefined;
    // Like llama.cpp, end-of-turn tokens of common chat formats also end generation.
    const eot = END_OF_TURN.map((t) => this.impl.token_to_id(t)).filter((id): id is number => id !== undefined);
    this.eosIds = [...new Set([...modelEosIds, ...(eosId !== undefined ? [eosId] : []), ...eot])];
    this.specialIds = new Set([...this.impl.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    const probe = this.impl.encode('a', { add_special_tokens: true }).ids;
    const configAddsBos = config['add_bos_token'] === true;
    this.addsBos = this.bosId !== null && (probe[0] === this.bosId || configAddsBos);
    this.chatTemplate = pickTemplate(config['chat_template']);
    const tokens: Record<string, string> = {};
    for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const s = tokenString(config[k]);
      if (s !== null) tokens[k] = s;
    }
    this.templateTokens = tokens;
  }

  /** Load from a model directory (or an explicit tokenizer.json path). */
  static fromPath(p: string, modelEosIds: readonly number[] = []): HfTokenizer {
    const file = fs.existsSync(p) && fs.statSync(p).isDirectory() ? path.join(p, 'tokenizer.json') : p;
    if (!fs.existsSync(file)) {
      throw new TokenizerError(`no tokenizer.json at ${file}. Pass the tokenizer option with the path of a tokenizer.json.`);
    }
    const cfgFile = path.join(path.dirname(file), 'tokenizer_config.json');
    const config = fs.existsSync(cfgFile) ? readJson(cfgFile) : {};
    // Older tokenizer_config.json files keep the chat template in a separate file.
    const jinjaFile = path.join(path.dirname(file), 'chat_template.jinja');
    if (config['chat_template'] === undefined && fs.existsSync(jinjaFile)) config['chat_template'] = fs.readFileSync(jinjaFile, 'utf8');
    return new HfTokenizer(readJson(file), config, modelEosIds);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecial !== false;
    const ids = this.impl.encode(text, { add_special_tokens: addSpecial }).ids;
    // tokenizer_config.json's add_bos_token applies even when tokenizer.json has no post-processor.
    if (addSpecial && this.addsBos && this.bosId !== null && ids[0] !== this.bosId) ids.unshift(this.bosId);
    return ids;
  }

  decode(ids: readonly number[], options: { readonly keepSpecial?: boolean } = {}): string {
    const keep = options.keepSpecial === true;
    const filtered = keep ? [...ids] : ids.filter((id) => !this.specialIds.has(id));
    if (filtered.length === 0) return '';
    return this.impl.decode(filtered, { skip_special_tokens: !keep, clean_up_tokenization_spaces: false });
  }
}
