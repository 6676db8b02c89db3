// Synthetic models (--synthetic NAME): the shapes are the published models' (checked through
// their published parameter counts, not through the presets), the weights are deterministic, the
// byte-level tokenizer round-trips any text, and bad names get a named error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelNotFoundError } from '../../src/core/errors.js';
import { bf16ToF32 } from '../../src/core/half.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import { openModel } from '../../src/model/load.js';
import { SYNTHETIC_MODELS, syntheticConfig, syntheticTokenizer, SyntheticSource } from '../../src/model/synthetic.js';
import { hfTensorName } from '../../src/model/hf.js';
import { tensorKeysOf } from '../../src/model/weights.js';
import { HfTokenizer } from '../../src/tokenizer/hf.js';

/** Parameters of a synthetic model, summed from the shapes its source reports. */
function parameters(name: string): { total: number; embedding: number } {
  const config = syntheticConfig(name);
  const source = new SyntheticSource(name, config);
  let total = 0;
  for (const key of tensorKeysOf(config)) total += source.info(hfTensorName(key))!.shape.reduce((a, b) => a * b, 1);
  return { total, embedding: config.vocabSize * config.dim };
}

test('synthetic presets have the published parameter counts of their models', () => {
  assert.deepEqual([...SYNTHETIC_MODELS].sort(), ['llama-3.1-8b', 'llama-3.2-1b', 'qwen2.5-0.5b', 'qwen3-1.7b']);
  // Exact totals from the models' safetensors metadata (tied embeddings counted once).
  assert.equal(parameters('llama-3.2-1b').total, 1_235_814_400);
  assert.equal(parameters('llama-3.1-8b').total, 8_030_261_248);
  assert.equal(parameters('qwen2.5-0.5b').total, 494_032_768);
  // Qwen3-1.7B's model card: 1.7B parameters, 1.4B of them outside the embedding (tied).
  const q3 = parameters('qwen3-1.7b');
  assert.equal(Math.round(q3.total / 1e8) / 10, 1.7);
  assert.equal(Math.round((q3.total - q3.embedding) / 1e8) / 10, 1.4);
  const c = syntheticConfig('Qwen3-1.7B');
  assert.equal(c.headDim, 128, 'Qwen3-1.7B has 128-wide heads (16 x 128 = 2048 query channels)');
  assert.equal(c.qkNorm, true);
  assert.equal(syntheticConfig('qwen2.5-0.5b').qkvBias, true);
  assert.equal(syntheticConfig('llama-3.2-1b').ropeScaling.type, 'llama3');
  assert.equal(syntheticConfig('llama-3.1-8b').tiedEmbeddings, false);
});

test('synthetic weights are deterministic, distinct per tensor, of std 0.02, with unit norms', () => {
  const config = syntheticConfig('qwen2.5-0.5b');
  const a = new SyntheticSource('qwen2.5-0.5b', config), b = new SyntheticSource('qwen2.5-0.5b', config);
  const wq = a.read('model.layers.3.self_attn.q_proj.weight') as DenseTensor;
  assert.deepEqual(wq.shape, [896, 896]);
  assert.equal(wq.dtype, 'bf16');
  assert.deepEqual((b.read('model.layers.3.self_attn.q_proj.weight') as DenseTensor).data, wq.data, 'the same name gives the same tensor');
  const wk = (a.read('model.layers.3.self_attn.k_proj.weight') as DenseTensor).data as Uint16Array;
  const q = wq.data as Uint16Array;
  let same = 0;
  for (let i = 0; i < wk.length; i++) if (wk[i] === q[i]) same++;
  assert.ok(same < wk.length / 100, `k and q share ${same} of ${wk.length} values`);
  let sum = 0, sq = 0;
  for (let i = 0; i < q.length; i++) {
    const x = bf16ToF32(q[i]!);
    sum += x;
    sq += x * x;
  }
  const mean = sum / q.length, std = Math.sqrt(sq / q.length - mean * mean);
  assert.ok(Math.abs(mean) < 2e-4, `mean ${mean}`);
  assert.ok(Math.abs(std - 0.02) < 4e-4, `std ${std}`);
  const norm = (a.read('model.layers.0.input_layernorm.weight') as DenseTensor).data as Uint16Array;
  assert.ok(norm.every((x) => bf16ToF32(x) === 1));
  assert.equal(a.info('model.layers.99.self_attn.q_proj.weight'), undefined);
  assert.throws(() => a.read('lm_head.weight'), ModelNotFoundError, 'a tied model has no lm_head');
});

test('the synthetic tokenizer: UTF-8 bytes as ids, exact round trips, special ids of the published model', () => {
  const { tokenizerJson, tokenizerConfig } = syntheticTokenizer('llama-3.2-1b');
  const tok = new HfTokenizer(tokenizerJson, tokenizerConfig, syntheticConfig('llama-3.2-1b').eosIds);
  assert.equal(tok.vocabSize, 128256);
  assert.equal(tok.bosId, 128000);
  assert.ok(tok.eosIds.includes(128001));
  const text = 'Héllo, wörld ✓\n\ttabs  and  spaces';
  const bytes = [...new TextEncoder().encode(text)];
  assert.deepEqual(tok.encode(text), [128000, ...bytes]);
  assert.deepEqual(tok.encode(text, { addSpecial: false }), bytes);
  assert.equal(tok.decode(tok.encode(text)), text);
  assert.equal(tok.decode([300, 65]), '<300>A', 'ids beyond the bytes decode as <id>');
  const qwen = syntheticTokenizer('qwen3-1.7b');
  const qt = new HfTokenizer(qwen.tokenizerJson, qwen.tokenizerConfig, syntheticConfig('qwen3-1.7b').eosIds);
  assert.equal(qt.vocabSize, 151936);
  assert.equal(qt.bosId, null, 'Qwen adds no BOS');
  assert.deepEqual(qt.encode('ab'), [97, 98]);
  assert.ok(qt.eosIds.includes(151645));
});

test('openModel takes synthetic:NAME; an unknown name lists the known ones', () => {
  const m = openModel('synthetic:Llama-3.2-1B');
  assert.equal(m.format, 'synthetic');
  assert.equal(m.config.nLayers, 16);
  assert.throws(() => openModel('synthetic:gpt-5'), (e: Error) => e instanceof ModelNotFoundError && /llama-3\.2-1b, .*qwen3-1\.7b/.test(e.message));
});
