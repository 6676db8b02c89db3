// Tiny random models built in code, for unit tests of every architecture path.

import { Xoshiro128 } from '../../src/core/rng.js';
import { f32ToBf16, f32ToF16 } from '../../src/core/half.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import { createReferenceBackend } from '../../src/kernels/reference/index.js';
import type { Backend } from '../../src/kernels/backend.js';
import type { ModelConfig } from '../../src/model/config.js';
import { kvDimOf, qDimOf } from '../../src/model/config.js';
import { computeLogits, createRuntime, createScratch, forward, type ModelRuntime } from '../../src/model/forward.js';
import { FpKvCache } from '../../src/kv/fp-cache.js';
import { buildRopeTables } from '../../src/model/rope.js';
import type { LayerWeights, WeightSet } from '../../src/model/weights.js';
import type { WeightTensor } from '../../src/quant/format.js';

export function tinyConfig(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    arch: 'llama', dim: 32, hiddenDim: 48, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 8, vocabSize: 64, trainedContextLength: 256,
    normEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'none' }, ropeStyle: 'neox', qkvBias: false, qkNorm: false,
    tiedEmbeddings: true, slidingWindow: null, bosId: 0, eosIds: [1],
    ...over,
  };
}

export function gaussian(rng: Xoshiro128): number {
  const u = Math.max(rng.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

export function randomMatrix(rng: Xoshiro128, rows: number, cols: number, std: number, dtype: 'f32' | 'f16' | 'bf16' = 'f32'): DenseTensor {
  const v = new Float32Array(rows * cols);
  for (let i = 0; i < v.length; i++) v[i] = gaussian(rng) * std;
  if (dtype === 'f32') return { dtype, shape: [rows, cols], data: v };
  const conv = dtype === 'f16' ? f32ToF16 : f32ToBf16;
  return { dtype, shape: [rows, cols], data: Uint16Array.from(v, conv) };
}

function vec(rng: Xoshiro128, n: number, mean: number, std: number): Float32Array {
  return Float32Array.from({ length: n }, () => mean + std * gaussian(rng));
}

/** Random weights with gains that keep activations O(1) and logits spread out. */
export function randomWeights(c: ModelConfig, seed: number, dtype: 'f32' | 'f16' | 'bf16' = 'f32'): WeightSet {
  const rng = new Xoshiro128(seed);
  const qDim = qDimOf(c);
  const kvDim = kvDimOf(c);
  const m = (rows: number, cols: number, gain: number): WeightTensor => randomMatrix(rng, rows, cols, gain / Math.sqrt(cols), dtype);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    layers.push({
      attnNorm: vec(rng, c.dim, 1, 0.1),
      wq: m(qDim, c.dim, 2), wk: m(kvDim, c.dim, 2), wv: m(kvDim, c.dim, 1.5), wo: m(c.dim, qDim, 2),
      bq: c.qkvBias ? vec(rng, qDim, 0, 0.5) : null,
      bk: c.qkvBias ? vec(rng, kvDim, 0, 0.5) : null,
      bv: c.qkvBias ? vec(rng, kvDim, 0, 0.5) : null,
      qNorm: c.qkNorm ? vec(rng, c.headDim, 2, 0.3) : null,
      kNorm: c.qkNorm ? vec(rng, c.headDim, 2, 0.3) : null,
      ffnNorm: vec(rng, c.dim, 1, 0.1),
      w1: m(c.hiddenDim, c.dim, 1.5), w2: m(c.dim, c.hiddenDim, 2), w3: m(c.hiddenDim, c.dim, 1.5),
    });
  }
  const tokEmbed = randomMatrix(rng, c.vocabSize, c.dim, 1, dtype);
  const lmHead = c.tiedEmbeddings ? tokEmbed : m(c.vocabSize, c.dim, 4);
  return { tokEmbed, layers, finalNorm: vec(rng, c.dim, 1, 0.1), lmHead };
}

export function tinyRuntime(c: ModelConfig, contextLength = c.trainedContextLength, backend: Backend = createReferenceBackend()): ModelRuntime {
  return createRuntime(c, backend, buildRopeTables(c, contextLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Random token ids in [lo, vocab). */
export function randomTokens(seed: number, n: number, vocab: number, lo = 2): number[] {
  const rng = new Xoshiro128(seed);
  return Array.from({ length: n }, () => lo + Math.floor(rng.next() * (vocab - lo)));
}

/** HF config.json object for a tiny config (inverse of parseHfConfig for the fields it reads). */
export function hfConfigJson(c: ModelConfig, architecture = 'LlamaForCausalLM'): Record<string, unknown> {
  return {
    architectures: [architecture], model_type: c.arch, hidden_size: c.dim, intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers, num_attention_heads: c.nHeads, num_key_value_heads: c.nKvHeads, head_dim: c.headDim,
    vocab_size: c.vocabSize, max_position_embeddings: c.trainedContextLength, rms_norm_eps: c.normEps, rope_theta: c.ropeTheta,
    rope_scaling: null, tie_word_embeddings: c.tiedEmbeddings, bos_token_id: c.bosId, eos_token_id: c.eosIds[0],
  };
}

/** Logits of every position, feeding `ids` in chunks of `chunk` tokens. */
export function allLogits(rt: ModelRuntime, w: WeightSet, ids: number[], chunk: number): Float32Array {
  const c = rt.config;
  const cache = new FpKvCache(c.nLayers, c.nKvHeads, c.headDim, ids.length, rt.backend);
  const s = createScratch(c, chunk, chunk, ids.length);
  const out = new Float32Array(ids.length * c.vocabSize);
  for (let pos = 0; pos < ids.length; pos += chunk) {
    const n = Math.min(chunk, ids.length - pos);
    forward(rt, w, cache, 'fp', ids, pos, n, s);
    out.set(computeLogits(rt, w, s, 0, n).subarray(0, n * c.vocabSize), pos * c.vocabSize);
  }
  return out;
}

