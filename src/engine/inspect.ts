// Model summary without reading weight data: architecture, tensors, parameters, memory.

import { kvDimOf, type ModelConfig } from '../model/config.js';
import { openModel, type ModelFormat } from '../model/load.js';
import { hierLayout } from '../kv/hier-cache.js';
import { bufferSlack, resolveDecoding } from '../speculative/modes.js';
import type { TensorKey } from '../model/weights.js';

export interface TensorSummary {
  readonly name: string;
  readonly role: TensorKey;
  readonly dtype: string;
  readonly shape: readonly number[];
}

export interface ModelSummary {
  readonly path: string;
  readonly format: ModelFormat;
  readonly config: ModelConfig;
  readonly tensors: readonly TensorSummary[];
  readonly parameters: number;
  readonly weightBytes: number;
  readonly dtypes: readonly string[];
  /** KV cache bytes at `contextLength` for each storage the engine offers. */
  readonly kv: KvEstimate;
}

export interface KvEstimate {
  readonly contextLength: number;
  readonly f32: number;
  readonly f16: number;
  /** The hierarchical cache (default groups, adaptive-γ buffer), by part. */
  readonly hier: { readonly total: number; readonly upper: number; readonly lower: number; readonly meta: number; readonly buffer: number };
  /** Bytes one decode step reads at full context: the target's INT8 view and the draft's INT4 view. */
  readonly readInt8: number;
  readonly readInt4: number;
  readonly keyGroupSize: number;
  readonly valueGroupSize: number;
}

/** KV memory of a cache of `contextLength` positions, for each storage. */
export function kvEstimate(c: ModelConfig, contextLength: number, prefillChunk = 128): KvEstimate {
  const plan = resolveDecoding(c, { spec: 'auto' });
  const lay = hierLayout(c.nKvHeads, c.headDim, contextLength, plan.keyGroupSize, plan.valueGroupSize, bufferSlack(plan, prefillChunk));
  const n = c.nLayers;
  const hier = { upper: lay.upper * n, lower: lay.lower * n, meta: lay.meta * n, buffer: lay.fp * n };
  // Both views read the metadata and the buffer; the draft skips the lower plane.
  const bufferUsed = (lay.fp * n * Math.min(lay.fpRows, contextLength - lay.planeTokens)) / lay.fpRows;
  return {
    contextLength,
    f32: fpKvBytes(c, contextLength, 4),
    f16: fpKvBytes(c, contextLength, 2),
    hier: { ...hier, total: hier.upper + hier.lower + hier.meta + hier.buffer },
    readInt8: hier.upper + hier.lower + hier.meta + bufferUsed,
    readInt4: hier.upper + hier.meta + bufferUsed,
    keyGroupSize: plan.keyGroupSize,
    valueGroupSize: plan.valueGroupSize,
  };
}

export function tensorKeys(c: ModelConfig, withOutput: boolean): TensorKey[] {
  const keys: TensorKey[] = ['tokEmbed'];
  for (let l = 0; l < c.nLayers; l++) {
    const roles = ['attnNorm', 'wq', 'wk', 'wv', 'wo'];
    if (c.qkvBias) roles.push('bq', 'bk', 'bv');
    if (c.qkNorm) roles.push('qNorm', 'kNorm');
    roles.push('ffnNorm', 'w1', 'w2', 'w3');
    for (const r of roles) keys.push(`layers.${l}.${r}` as TensorKey);
  }
  keys.push('finalNorm');
  if (withOutput) keys.push('lmHead');
  return keys;
}

/** Bytes of a full-precision K+V cache: 2 · layers · positions · kvDim · bytesPerValue. */
export function fpKvBytes(c: ModelConfig, positions: number, bytesPerValue: number): number {
  return 2 * c.nLayers * positions * kvDimOf(c) * bytesPerValue;
}

export function inspectModel(modelPath: string, contextLength?: number): ModelSummary {
  const m = openModel(modelPath);
  try {
    const c = m.config;
    const hasOutput = !c.tiedEmbeddings && m.source.info(m.nameOf('lmHead')) !== undefined;
    const tensors: TensorSummary[] = [];
    let parameters = 0;
    let weightBytes = 0;
    for (const role of tensorKeys(c, hasOutput)) {
      const name = m.nameOf(role);
      const info = m.source.info(name);
      if (!info) continue;
      tensors.push({ name, role, dtype: info.dtype, shape: info.shape });
      parameters += info.shape.reduce((a, b) => a * b, 1);
      weightBytes += info.byteLength;
    }
    const context = contextLength ?? c.trainedContextLength;
    return {
      path: m.path,
      format: m.format,
      config: c,
      tensors,
      parameters,
      weightBytes,
      dtypes: [...new Set(tensors.map((t) => t.dtype))],
      kv: kvEstimate(c, context),
    };
  } finally {
    m.source.close();
  }
}
