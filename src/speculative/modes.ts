// Decoding modes: which cache, which view the target reads, which draft (none for plain decoding,
// or QuantSpec / StreamingLLM / SnapKV). Resolves user options into one plan, and wires the draft's
// weights and KV view into a Decoder: the engine never sees which pass is the draft.

import { InvalidArgumentError } from '../core/errors.js';
import type { KvCache } from '../kv/cache.js';
import { FpKvCache } from '../kv/fp-cache.js';
import { checkGroups, DEFAULT_KEY_GROUP, defaultValueGroup, HierKvCache } from '../kv/hier-cache.js';
import type { KvStorage } from '../kv/layout.js';
import type { ModelConfig } from '../model/config.js';
import { parseDraftRoles, type DraftOptions, DEFAULT_DRAFT } from '../quant/draft.js';
import type { WeightSet } from '../model/weights.js';
import { Decoder } from './decoder.js';
import { snapKvDraft, sparseStride, streamingDraft } from './sparse.js';

export type SpecMode = 'auto' | 'none' | 'quantspec' | 'streaming' | 'snapkv';
/** 'fp': F32 cache (the reference); 'f16': F16 cache; 'int8'/'int4': the hierarchical cache's views. */
export type KvMode = 'fp' | 'f16' | 'int8' | 'int4';

export const SPEC_MODES: readonly SpecMode[] = ['auto', 'none', 'quantspec', 'streaming', 'snapkv'];
export const KV_MODES: readonly KvMode[] = ['fp', 'f16', 'int8', 'int4'];

/** Whether a KV mode keeps every position in full precision (a plain cache, no planes). */
export function isFullPrecision(kv: KvMode): kv is 'fp' | 'f16' {
  return kv === 'fp' || kv === 'f16';
}

/** The view of the cache a KV mode's target reads. */
export function targetViewOf(kv: KvMode): 'fp' | 'int8' | 'int4' {
  return isFullPrecision(kv) ? 'fp' : kv;
}
export const MAX_AUTO_GAMMA = 8;
const MIN_PREFILL_SLACK = 16;

export interface DecodingOptions {
  /** Default 'auto': QuantSpec with adaptive γ, plain decoding where speculation would not pay. */
  readonly spec?: SpecMode;
  /** Draft length, or 'auto'. Default: 'auto' for spec auto, 4 otherwise. */
  readonly gamma?: number | 'auto';
  /** The target's KV: 'fp' (F32 cache), 'f16' (F16 cache) or the hierarchical cache read at 8 (or 4) bits. */
  readonly kv?: KvMode;
  /** Tokens per key group G (default 128). */
  readonly keyGroupSize?: number;
  /** Channels per value group (default min(128, head_dim)). */
  readonly valueGroupSize?: number;
}

/** A resolved decoding mode. */
export interface DecodingPlan {
  readonly spec: SpecMode;
  readonly kv: KvMode;
  readonly gamma: number | 'auto';
  readonly maxGamma: number;
  readonly keyGroupSize: number;
  readonly valueGroupSize: number;
  /** Whether the QuantSpec draft weights are needed. */
  readonly needsDraftWeights: boolean;
}

export function resolveDecoding(config: ModelConfig, o: DecodingOptions = {}): DecodingPlan {
  const spec = o.spec ?? 'auto';
  if (!SPEC_MODES.includes(spec)) throw new InvalidArgumentError(`spec must be one of ${SPEC_MODES.join(', ')}, got "${spec}".`, 'spec');
  if (o.kv !== undefined && !KV_MODES.includes(o.kv)) {
    throw new InvalidArgumentError(`kv must be one of ${KV_MODES.join(', ')}, got "${o.kv}".`, 'kv');
  }
  const sparse = spec === 'streaming' || spec === 'snapkv';
  const kv: KvMode = o.kv ?? (spec === 'none' || sparse ? 'fp' : 'int8');
  let mode = spec;
  if (sparse && !isFullPrecision(kv)) {
    throw new InvalidArgumentError(`spec ${spec} drafts from a full-precision cache; use kv fp or f16 (or leave kv unset).`, 'kv');
  }
  if (spec === 'quantspec' && kv !== 'int8') {
    throw new InvalidArgumentError('spec quantspec verifies against the INT8 view of the hierarchical cache; use kv int8 (or leave kv unset).', 'kv');
  }
  // auto with a cache QuantSpec cannot verify against is plain decoding over that cache.
  if (spec === 'auto' && kv !== 'int8') mode = 'none';
  const gamma = o.gamma ?? (spec === 'auto' ? 'auto' : 4);
  if (gamma !== 'auto' && (!Number.isInteger(gamma) || gamma < 1 || gamma > 32)) {
    throw new InvalidArgumentError(`gamma must be an integer in [1, 32] or "auto", got ${JSON.stringify(gamma)}.`, 'gamma');
  }
  const keyGroupSize = o.keyGroupSize ?? DEFAULT_KEY_GROUP;
  const valueGroupSize = o.valueGroupSize ?? defaultValueGroup(config.headDim);
  const maxGamma = gamma === 'auto' ? Math.min(MAX_AUTO_GAMMA, keyGroupSize - 1) : gamma;
  if (!isFullPrecision(kv)) {
    checkGroups(config.headDim, keyGroupSize, valueGroupSize);
    // A verify pass (γ + 1 tokens) must fit in one key group (see HierKvCache).
    if (mode !== 'none' && maxGamma + 1 > keyGroupSize) {
      throw new InvalidArgumentError(`gamma ${maxGamma} needs a key group of at least ${maxGamma + 1}; raise keyGroupSize or lower gamma.`, 'gamma');
    }
  }
  return {
    spec: mode,
    kv,
    gamma,
    maxGamma,
    keyGroupSize,
    valueGroupSize,
    needsDraftWeights: mode === 'quantspec' || mode === 'auto',
  };
}

/** Positions one decoder step may append: γ + 1 for speculation, 1 for plain decoding. */
export function maxStepOf(plan: DecodingPlan): number {
  return plan.spec === 'none' ? 1 : plan.maxGamma + 1;
}

/** Buffer rows beyond 2G: room for a verify pass, and a little more so prefill chunks stay large. */
export function bufferSlack(plan: DecodingPlan, prefillChunk: number): number {
  return Math.max(maxStepOf(plan), Math.min(prefillChunk, MIN_PREFILL_SLACK));
}

export function createCache(
  plan: DecodingPlan, config: ModelConfig, storage: KvStorage, contextLength: number, prefillChunk: number,
): KvCache {
  if (isFullPrecision(plan.kv)) {
    const stride = plan.spec === 'streaming' || plan.spec === 'snapkv' ? sparseStride(contextLength) : 0;
    return new FpKvCache(config.nLayers, config.nKvHeads, config.headDim, contextLength, storage, stride, plan.kv === 'fp' ? 'f32' : 'f16');
  }
  return new HierKvCache({
    nLayers: config.nLayers,
    nKvHeads: config.nKvHeads,
    headDim: config.headDim,
    contextLength,
    keyGroupSize: plan.keyGroupSize,
    valueGroupSize: plan.valueGroupSize,
    slack: bufferSlack(plan, prefillChunk),
    storage,
  });
}

/** The decoder of a plan: the draft's weights and KV view, or none (plain decoding, γ = 0). */
export function createDecoder(plan: DecodingPlan, config: ModelConfig, cache: KvCache, target: WeightSet, draftWeights: WeightSet | null): Decoder {
  const opts = { gamma: plan.gamma, maxGamma: plan.maxGamma };
  switch (plan.spec) {
    case 'none':
      return new Decoder(null, config.vocabSize, opts);
    case 'streaming':
    case 'snapkv': {
      if (!(cache instanceof FpKvCache) || cache.sparseStride === 0) {
        throw new InvalidArgumentError(`spec ${plan.spec} drafts from a full-precision cache with a sparse view; make the cache with createCache.`, 'spec');
      }
      const draft = plan.spec === 'streaming' ? streamingDraft(target, cache) : snapKvDraft(target, cache);
      return new Decoder(draft, config.vocabSize, opts);
    }
    case 'auto':
    case 'quantspec':
      if (!draftWeights) throw new InvalidArgumentError('this model was loaded without draft weights; load it with the draft enabled.', 'spec');
      return new Decoder({ name: 'quantspec', weights: draftWeights, view: 'int4' }, config.vocabSize, opts);
  }
}

/** Draft weight options from user-facing settings. */
export function resolveDraftOptions(o: { bits?: number; groupSize?: number; layers?: string; symmetric?: boolean; headBits?: number } = {}): DraftOptions {
  if (o.bits !== undefined && o.bits !== 4) throw new InvalidArgumentError(`draft.bits supports 4 only, got ${o.bits}.`, 'draft.bits');
  const groupSize = o.groupSize ?? DEFAULT_DRAFT.groupSize;
  if (!Number.isInteger(groupSize) || groupSize < 2 || groupSize % 2 !== 0) {
    throw new InvalidArgumentError(`draft.groupSize must be an even integer >= 2, got ${groupSize}.`, 'draft.groupSize');
  }
  if (o.headBits !== undefined && o.headBits !== 0 && o.headBits !== 4 && o.headBits !== 8) {
    throw new InvalidArgumentError(`draft.headBits is 8, 4 or 0 (the target's head), got ${o.headBits}.`, 'draft.headBits');
  }
  const roles = o.layers !== undefined ? parseDraftRoles(o.layers) : DEFAULT_DRAFT.roles;
  if (roles.includes('lm_head') && o.headBits !== undefined && o.headBits !== 4) {
    throw new InvalidArgumentError(`draft layers with lm_head make a 4-bit head, but draft.headBits is ${o.headBits}; give one of them.`, 'draft.headBits');
  }
  return {
    bits: 4,
    groupSize,
    symmetric: o.symmetric ?? DEFAULT_DRAFT.symmetric,
    roles,
    headBits: roles.includes('lm_head') ? 4 : (o.headBits as 0 | 4 | 8 | undefined) ?? DEFAULT_DRAFT.headBits,
  };
}
