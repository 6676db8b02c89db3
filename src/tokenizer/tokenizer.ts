// The tokenizer contract shared by tokenizer.json (HF), llama2.c tokenizer.bin and GGUF vocabularies.

export interface EncodeOptions {
  /** Add the special tokens the tokenizer adds by default (BOS for Llama-family). Default true. */
  readonly addSpecial?: boolean;
}

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  /** Token ids that end generation. */
  readonly eosIds: readonly number[];
  /** Whether encode() with addSpecial adds BOS. */
  readonly addsBos: boolean;
  /** Jinja chat template, when the model ships one. */
  readonly chatTemplate: string | null;
  /** Strings the chat template may reference (bos_token, eos_token, ...). */
  readonly templateTokens: Readonly<Record<string, string>>;
  encode(text: string, options?: EncodeOptions): number[];
  /** Decode ids to text; special tokens (BOS/EOS/control) are skipped unless `keepSpecial`. */
  decode(ids: readonly number[], options?: { readonly keepSpecial?: boolean }): string;
}
