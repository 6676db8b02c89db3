// ModelConfig: one validated, frozen description of the network, whatever file it came from.
// HF config.json keys are read only here (DESIGN rule 9: HF names stay in the loader tables).

import { ModelConfigError, UnsupportedArchitectureError } from '../core/errors.js';

export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3';

/** 'neox' = HF rotate_half (element i pairs with i + headDim/2); 'interleaved' = pairs (2i, 2i+1). */
export type RopeStyle = 'neox' | 'interleaved';

export type RopeScaling =
  | { readonly type: 'none' }
  | { readonly type: 'linear'; readonly factor: number }
  /** Per-frequency divisors, as GGUF's rope_freqs.weight carries llama3 scaling. */
  | { readonly type: 'factors'; readonly factors: Float32Array }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositions: number;
    };

export interface ModelConfig {
  readonly arch: Architecture;
  readonly dim: number;
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  /** Positions the model was trained for (max_position_embeddings / seq_len). */
  readonly trainedContextLength: number;
  readonly normEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling;
  readonly ropeStyle: RopeStyle;
  readonly qkvBias: boolean;
  readonly qkNorm: boolean;
  readonly tiedEmbeddings: boolean;
  /** Sliding-window attention width, or null for full attention. */
  readonly slidingWindow: number | null;
  readonly bosId: number | null;
  readonly eosIds: readonly number[];
}

export const SUPPORTED_ARCHITECTURES: Readonly<Record<string, Architecture>> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};

const MODEL_TYPES: readonly Architecture[] = ['llama', 'mistral', 'qwen2', 'qwen3'];

export function qDimOf(c: ModelConfig): number {
  return c.nHeads * c.headDim;
}

export function kvDimOf(c: ModelConfig): number {
  return c.nKvHeads * c.headDim;
}

type Json = Record<string, unknown>;

function supportedList(): string {
  return `${Object.keys(SUPPORTED_ARCHITECTURES).join(', ')} (model_type ${MODEL_TYPES.join(', ')})`;
}

function resolveArchitecture(json: Json, where: string): Architecture {
  const modelType = json['model_type'];
  const archs = Array.isArray(json['architectures']) ? (json['architectures'] as unknown[]) : [];
  if (typeof modelType === 'string') {
    if ((MODEL_TYPES as readonly string[]).includes(modelType)) return modelType as Architecture;
    throw new UnsupportedArchitectureError(
      `${where}: model_type "${modelType}" is not supported. Supported: ${supportedList()}.`,
    );
  }
  for (const a of archs) {
    if (typeof a === 'string' && a in SUPPORTED_ARCHITECTURES) return SUPPORTED_ARCHITECTURES[a]!;
  }
  const named = archs.length ? `architectures ${JSON.stringify(archs)}` : 'no model_type or architectures';
  throw new UnsupportedArchitectureError(`${where}: ${named} is not supported. Supported: ${supportedList()}.`);
}

function positiveInt(json: Json, key: string, where: string, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ModelConfigError(`${where}: "${key}" must be a positive integer, got ${JSON.stringify(json[key])}.`);
  }
  return v;
}

function positiveNumber(json: Json, key: string, where: string, fallback: number): number {
  const v = json[key] ?? fallback;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
    throw new ModelConfigError(`${where}: "${key}" must be a positive number, got ${JSON.stringify(json[key])}.`);
  }
  return v;
}

function parseRopeScaling(raw: unknown, where: string): RopeScaling {
  if (raw === null || raw === undefined) return { type: 'none' };
  if (typeof raw !== 'object') throw new ModelConfigError(`${where}: rope_scaling must be an object or null.`);
  const r = raw as Json;
  const type = r['rope_type'] ?? r['type'];
  if (type === 'default') return { type: 'none' };
  const factor = positiveNumber(r, 'factor', `${where} rope_scaling`, NaN);
  if (type === 'linear') return { type: 'linear', factor };
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor,
      lowFreqFactor: positiveNumber(r, 'low_freq_factor', `${where} rope_scaling`, 1),
      highFreqFactor: positiveNumber(r, 'high_freq_factor', `${where} rope_scaling`, 4),
      originalMaxPositions: positiveInt(r, 'original_max_position_embeddings', `${where} rope_scaling`, 8192),
    };
  }
  throw new ModelConfigError(
    `${where}: rope_scaling type ${JSON.stringify(type)} is not supported (supported: default, linear, llama3).`,
  );
}

function tokenIds(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
  return [];
}

/**
 * Parse a Hugging Face config.json object. `generation` (generation_config.json) may override
 * bos/eos ids, as transformers does.
 */
export function parseHfConfig(json: unknown, where: string, generation?: unknown): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(`${where}: config.json must hold a JSON object.`);
  }
  const j = json as Json;
  const arch = resolveArchitecture(j, where);
  // transformers >= 5 nests rope settings under rope_parameters.
  const ropeParams = (typeof j['rope_parameters'] === 'object' && j['rope_parameters']) as Json | false;
  const dim = positiveInt(j, 'hidden_size', where);
  const nHeads = positiveInt(j, 'num_attention_heads', where);
  const nKvHeads = positiveInt(j, 'num_key_value_heads', where, nHeads);
  const headDim = positiveInt(j, 'head_dim', where, Math.floor(dim / nHeads));
  if (nHeads % nKvHeads !== 0) {
    throw new ModelConfigError(
      `${where}: num_attention_heads (${nHeads}) must be a multiple of num_key_value_heads (${nKvHeads}).`,
    );
  }
  if (headDim % 2 !== 0) throw new ModelConfigError(`${where}: head_dim must be even for RoPE, got ${headDim}.`);
  const ropeTheta = positiveNumber(ropeParams || j, 'rope_theta', where, 10000);
  const ropeScaling = parseRopeScaling(ropeParams ? ropeParams : j['rope_scaling'], where);
  const gen = (typeof generation === 'object' && generation !== null ? generation : {}) as Json;
  const bos = tokenIds(gen['bos_token_id'] ?? j['bos_token_id']);
  const eosIds = tokenIds(gen['eos_token_id'] ?? j['eos_token_id']);
  const useSliding = arch === 'mistral' ? true : j['use_sliding_window'] === true;
  const sw = j['sliding_window'];
  return Object.freeze({
    arch,
    dim,
    hiddenDim: positiveInt(j, 'intermediate_size', where),
    nLayers: positiveInt(j, 'num_hidden_layers', where),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: positiveInt(j, 'vocab_size', where),
    trainedContextLength: positiveInt(j, 'max_position_embeddings', where, 2048),
    normEps: positiveNumber(j, 'rms_norm_eps', where, 1e-6),
    ropeTheta,
    ropeScaling,
    ropeStyle: 'neox' as const,
    qkvBias: arch === 'qwen2' || j['attention_bias'] === true,
    qkNorm: arch === 'qwen3',
    // transformers' default for all four architectures is untied.
    tiedEmbeddings: j['tie_word_embeddings'] === true,
    slidingWindow: useSliding && typeof sw === 'number' && sw > 0 ? sw : null,
    bosId: bos.length ? bos[0]! : null,
    eosIds,
  });
}

/** Describe a config in one line, for logs and `inspect`. */
export function describeConfig(c: ModelConfig): string {
  return (
    `${c.arch}: ${c.nLayers} layers, dim ${c.dim}, hidden ${c.hiddenDim}, heads ${c.nHeads}/${c.nKvHeads} ` +
    `(head_dim ${c.headDim}), vocab ${c.vocabSize}, context ${c.trainedContextLength}`
  );
}
