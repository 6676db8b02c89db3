// Synthetic models: the exact shapes, vocabulary sizes and special-token ids of published models
// with deterministic random BF16 weights (as vLLM's `--load-format dummy`), so benchmarks run at
// the shapes users run without downloading anything. Their output is noise and their acceptance
// rates mean nothing; only speed and memory do.

import { ModelNotFoundError } from '../core/errors.js';
import { f32ToBf16 } from '../core/half.js';
import type { WeightTensor } from '../quant/format.js';
import { parseHfConfig, type ModelConfig } from './config.js';
import type { GgufInput } from './gguf-writer.js';
import { hfTensorName } from './hf.js';
import { tensorKeysOf, type TensorKey, type TensorSource } from './weights.js';

type Json = Record<string, unknown>;

interface Preset {
  /** The published model these shapes are taken from. */
  readonly published: string;
  /** The fields of its config.json that define the computation. */
  readonly config: Json;
  /** Its special tokens: id and text. */
  readonly special: readonly { readonly id: number; readonly content: string }[];
  readonly bos: string | null;
  readonly eos: string;
}

const LLAMA3_SPECIAL = [
  { id: 128000, content: '<|begin_of_text|>' },
  { id: 128001, content: '<|end_of_text|>' },
  { id: 128006, content: '<|start_header_id|>' },
  { id: 128007, content: '<|end_header_id|>' },
  { id: 128008, content: '<|eom_id|>' },
  { id: 128009, content: '<|eot_id|>' },
];
const QWEN_SPECIAL = [
  { id: 151643, content: '<|endoftext|>' },
  { id: 151644, content: '<|im_start|>' },
  { id: 151645, content: '<|im_end|>' },
];

const PRESETS: Readonly<Record<string, Preset>> = {
  'llama-3.2-1b': {
    published: 'meta-llama/Llama-3.2-1B',
    config: {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16,
      num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, vocab_size: 128256, max_position_embeddings: 131072,
      rms_norm_eps: 1e-5, rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      tie_word_embeddings: true, bos_token_id: 128000, eos_token_id: 128001,
    },
    special: LLAMA3_SPECIAL, bos: '<|begin_of_text|>', eos: '<|end_of_text|>',
  },
  'llama-3.1-8b': {
    published: 'meta-llama/Llama-3.1-8B',
    config: {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
      num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, vocab_size: 128256, max_position_embeddings: 131072,
      rms_norm_eps: 1e-5, rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      tie_word_embeddings: false, bos_token_id: 128000, eos_token_id: 128001,
    },
    special: LLAMA3_SPECIAL, bos: '<|begin_of_text|>', eos: '<|end_of_text|>',
  },
  'qwen2.5-0.5b': {
    published: 'Qwen/Qwen2.5-0.5B',
    config: {
      architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
      num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, max_position_embeddings: 32768, rms_norm_eps: 1e-6,
      rope_theta: 1000000, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32768,
      bos_token_id: 151643, eos_token_id: 151643,
    },
    special: QWEN_SPECIAL, bos: null, eos: '<|endoftext|>',
  },
  'qwen3-1.7b': {
    published: 'Qwen/Qwen3-1.7B',
    config: {
      architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 2048, intermediate_size: 6144, num_hidden_layers: 28,
      num_attention_heads: 16, num_key_value_heads: 8, head_dim: 128, vocab_size: 151936, max_position_embeddings: 40960,
      rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: true, use_sliding_window: false, sliding_window: null,
      bos_token_id: 151643, eos_token_id: 151645,
    },
    special: QWEN_SPECIAL, bos: null, eos: '<|im_end|>',
  },
};

export const SYNTHETIC_MODELS: readonly string[] = Object.keys(PRESETS);

/** The prefix that names a synthetic model where a model path is expected. */
export const SYNTHETIC_PREFIX = 'synthetic:';

export function isSyntheticPath(p: string): boolean {
  return p.startsWith(SYNTHETIC_PREFIX);
}

function preset(name: string): Preset {
  const p = PRESETS[name.toLowerCase()];
  if (!p) {
    throw new ModelNotFoundError(`unknown synthetic model "${name}". Choose one of: ${SYNTHETIC_MODELS.join(', ')}.`);
  }
  return p;
}

/** The published model a synthetic one copies, e.g. meta-llama/Llama-3.2-1B. */
export function syntheticPublished(name: string): string {
  return preset(name).published;
}

export function syntheticConfig(name: string): ModelConfig {
  return parseHfConfig(preset(name).config, `synthetic model ${name}`);
}

/** The 256 byte-level BPE symbols (GPT-2's byte-to-unicode table), indexed by byte. */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return out;
}

/**
 * A byte-level BPE tokenizer.json with no merges: ids 0-255 are the bytes, so any text encodes
 * to its UTF-8 bytes and decodes back exactly; the other ids up to the vocabulary size are the
 * preset's special tokens and fillers whose text is `<id>` (no merge ever produces them).
 */
export function syntheticTokenizer(name: string): { tokenizerJson: Json; tokenizerConfig: Json } {
  const p = preset(name);
  const vocabSize = (p.config['vocab_size'] as number);
  const sym = byteSymbols();
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[sym[b]!] = b;
  const special = new Map(p.special.map((s) => [s.id, s.content]));
  const enc = new TextEncoder();
  for (let id = 256; id < vocabSize; id++) {
    if (special.has(id)) continue;
    vocab[[...enc.encode(`<${id}>`)].map((b) => sym[b]).join('')] = id;
  }
  const added = p.special.map((s) => ({ id: s.id, content: s.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const bos = p.bos !== null ? p.special.find((s) => s.content === p.bos)! : null;
  const tokenizerJson: Json = {
    version: '1.0',
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: bos
      ? { type: 'TemplateProcessing', single: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] } } }
      : null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
      byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  const tokenizerConfig: Json = { bos_token: p.bos, eos_token: p.eos, add_bos_token: p.bos !== null };
  return { tokenizerJson, tokenizerConfig };
}

function shapeOf(c: ModelConfig, key: TensorKey): { shape: number[]; norm: boolean } {
  const q = c.nHeads * c.headDim, kv = c.nKvHeads * c.headDim;
  if (key === 'tokEmbed' || key === 'lmHead') return { shape: [c.vocabSize, c.dim], norm: false };
  if (key === 'finalNorm') return { shape: [c.dim], norm: true };
  const role = key.split('.')[2]!;
  switch (role) {
    case 'attnNorm': case 'ffnNorm': return { shape: [c.dim], norm: true };
    case 'qNorm': case 'kNorm': return { shape: [c.headDim], norm: true };
    case 'wq': return { shape: [q, c.dim], norm: false };
    case 'wk': case 'wv': return { shape: [kv, c.dim], norm: false };
    case 'wo': return { shape: [c.dim, q], norm: false };
    case 'bq': return { shape: [q], norm: false };
    case 'bk': case 'bv': return { shape: [kv], norm: false };
    case 'w1': case 'w3': return { shape: [c.hiddenDim, c.dim], norm: false };
    case 'w2': return { shape: [c.dim, c.hiddenDim], norm: false };
    default: throw new Error(`unknown tensor key ${key}`);
  }
}

/** A synthetic model as GGUF input (model/gguf-writer.ts writeModelGguf). */
export function syntheticGgufInput(name: string): GgufInput {
  const config = syntheticConfig(name);
  const { tokenizerJson, tokenizerConfig } = syntheticTokenizer(name);
  return { name: `synthetic ${name.toLowerCase()}`, config, source: new SyntheticSource(name.toLowerCase(), config), tokenizerJson, tokenizerConfig };
}

/** Standard deviation of the random weights (the usual initializer range). */
const WEIGHT_STD = 0.02;

/** 65,536 BF16 values, a uniform distribution of std WEIGHT_STD in quantile order: a random 16-bit index draws one. */
function uniformTable(): Uint16Array {
  const a = WEIGHT_STD * Math.sqrt(3);
  const t = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) t[i] = f32ToBf16(((i + 0.5) / 65536 * 2 - 1) * a);
  return t;
}

/** FNV-1a of a string: each tensor's own seed. */
function hashName(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Tensors made on read: BF16, norm weights 1, every other value drawn independently (xorshift32
 * seeded by the tensor's name, two draws per step) from a uniform distribution of std 0.02. The
 * same name gives the same tensor on every run and machine.
 */
export class SyntheticSource implements TensorSource {
  readonly where: string;
  private readonly shapes = new Map<string, { shape: number[]; norm: boolean }>();
  private table: Uint16Array | null = null;

  constructor(readonly name: string, readonly config: ModelConfig) {
    this.where = `synthetic model ${name}`;
    for (const key of tensorKeysOf(config)) this.shapes.set(hfTensorName(key), shapeOf(config, key));
  }

  info(name: string): { readonly dtype: string; readonly shape: readonly number[]; readonly byteLength: number } | undefined {
    const s = this.shapes.get(name);
    return s ? { dtype: 'BF16', shape: s.shape, byteLength: 2 * s.shape.reduce((a, b) => a * b, 1) } : undefined;
  }

  read(name: string): WeightTensor {
    const s = this.shapes.get(name);
    if (!s) throw new ModelNotFoundError(`${this.where} has no tensor ${name}.`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = new Uint16Array(n);
    if (s.norm) {
      data.fill(f32ToBf16(1));
    } else {
      const table = (this.table ??= uniformTable());
      let x = hashName(name) || 1;
      for (let i = 0; i < n; i += 2) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        data[i] = table[x & 0xffff]!;
        if (i + 1 < n) data[i + 1] = table[x >>> 16]!;
      }
    }
    return { dtype: 'bf16', shape: s.shape, data };
  }

  close(): void {}
}
