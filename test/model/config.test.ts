import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelConfigError, UnsupportedArchitectureError } from '../../src/core/errors.js';
import { parseHfConfig } from '../../src/model/config.js';
import { inverseFrequencies } from '../../src/model/rope.js';

const base = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 100, max_position_embeddings: 512, rms_norm_eps: 1e-5,
};

test('head_dim defaults to hidden/heads and an explicit head_dim wins', () => {
  assert.equal(parseHfConfig(base, 'x').headDim, 16);
  const c = parseHfConfig({ ...base, head_dim: 32 }, 'x');
  assert.equal(c.headDim, 32);
});

test('architecture flags: qwen2 has qkv bias, qwen3 q/k norm, mistral sliding window', () => {
  const q2 = parseHfConfig({ ...base, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] }, 'x');
  assert.equal(q2.qkvBias, true);
  assert.equal(q2.qkNorm, false);
  const q3 = parseHfConfig({ ...base, model_type: 'qwen3' }, 'x');
  assert.equal(q3.qkNorm, true);
  assert.equal(q3.qkvBias, false);
  const m = parseHfConfig({ ...base, model_type: 'mistral', sliding_window: 4096 }, 'x');
  assert.equal(m.slidingWindow, 4096);
  assert.equal(parseHfConfig({ ...base, model_type: 'mistral', sliding_window: null }, 'x').slidingWindow, null);
});

test('an unknown model_type or architecture is a named error listing what is supported', () => {
  for (const cfg of [{ ...base, model_type: 'gpt2' }, { ...base, model_type: undefined, architectures: ['GPT2LMHeadModel'] }]) {
    assert.throws(() => parseHfConfig(cfg, 'cfg.json'), (e: unknown) => {
      assert.ok(e instanceof UnsupportedArchitectureError);
      assert.match((e as Error).message, /LlamaForCausalLM.*Qwen3ForCausalLM/);
      return true;
    });
  }
});

test('invalid numbers name the offending key', () => {
  assert.throws(() => parseHfConfig({ ...base, hidden_size: -1 }, 'x'), (e: unknown) => e instanceof ModelConfigError && /hidden_size/.test((e as Error).message));
  assert.throws(() => parseHfConfig({ ...base, num_key_value_heads: 3 }, 'x'), /multiple of num_key_value_heads/);
  assert.throws(() => parseHfConfig({ ...base, rope_scaling: { type: 'yarn', factor: 4 } }, 'x'), /not supported/);
});

test('rope_scaling parses legacy "type", llama3 and transformers-5 rope_parameters', () => {
  assert.deepEqual(parseHfConfig({ ...base, rope_scaling: { type: 'linear', factor: 8 } }, 'x').ropeScaling, { type: 'linear', factor: 8 });
  const l3 = parseHfConfig({
    ...base, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  }, 'x');
  assert.equal(l3.ropeScaling.type, 'llama3');
  const t5 = parseHfConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 5e5 } }, 'x');
  assert.equal(t5.ropeTheta, 5e5);
  assert.equal(t5.ropeScaling.type, 'none');
});

test('llama3 rope scaling keeps high frequencies, divides low ones and blends the band between', () => {
  const plain = inverseFrequencies(16, 500000, { type: 'none' });
  const scaled = inverseFrequencies(16, 500000, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 });
  let kept = 0, divided = 0, blended = 0;
  for (let j = 0; j < 8; j++) {
    const wavelen = (2 * Math.PI) / plain[j]!;
    if (wavelen < 16) { assert.equal(scaled[j], plain[j]); kept++; }
    else if (wavelen > 64) { assert.ok(Math.abs(scaled[j]! - plain[j]! / 8) < 1e-12); divided++; }
    else { assert.ok(scaled[j]! < plain[j]! && scaled[j]! > plain[j]! / 8); blended++; }
  }
  // As the fixture README says: 1 unchanged, 1 smoothed, 6 divided for head_dim 16.
  assert.deepEqual([kept, blended, divided], [1, 1, 6]);
});
