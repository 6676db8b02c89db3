// Bad model input gets a named error that says what is wrong and what to do.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ModelFormatError, ModelNotFoundError, QuantspecError, ShapeMismatchError, TokenizerError, UnsupportedArchitectureError,
  UnsupportedDtypeError,
} from '../../src/core/errors.js';
import { loadModel } from '../../src/engine/model.js';
import { hfTensors, tmpDir, writeHfModel } from '../helpers/hfdir.js';
import { hfConfigJson, randomWeights, tinyConfig } from '../helpers/tiny.js';

const config = tinyConfig({ vocabSize: 4096, tiedEmbeddings: true });
const weights = randomWeights(config, 1);

async function rejects(dir: string, cls: new (...a: any[]) => QuantspecError, pattern: RegExp): Promise<void> {
  await assert.rejects(loadModel(dir), (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match((e as Error).message, pattern);
    return true;
  });
}

test('a well-formed directory loads (control for the cases below)', async () => {
  const m = await loadModel(writeHfModel(config, weights));
  assert.equal(m.config.dim, config.dim);
});

test('a missing path or a folder without weights is ModelNotFoundError', async () => {
  await rejects(path.join(tmpDir(), 'nope'), ModelNotFoundError, /does not exist/);
  const dir = writeHfModel(config, weights);
  fs.rmSync(path.join(dir, 'model.safetensors'));
  await rejects(dir, ModelNotFoundError, /no model\.safetensors/);
});

test('a truncated safetensors file is ModelFormatError', async () => {
  const dir = writeHfModel(config, weights);
  const file = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100));
  await rejects(dir, ModelFormatError, /truncated/);
  fs.writeFileSync(file, bytes.subarray(0, 5));
  await rejects(dir, ModelFormatError, /too short/);
  fs.writeFileSync(file, bytes.subarray(0, 40));
  await rejects(dir, ModelFormatError, /header length/);
});

test('a header whose offsets overrun the file is ModelFormatError', async () => {
  const dir = writeHfModel(config, weights, {
    mutateHeader: (h) => {
      h['model.norm.weight'].data_offsets = [0, 1 << 30];
    },
  });
  await rejects(dir, ModelFormatError, /past the end/);
});

test('a header that is not JSON is ModelFormatError', async () => {
  const dir = writeHfModel(config, weights);
  const file = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  bytes[9] = 0x7b; // '{{' is not JSON
  bytes[8] = 0x7b;
  fs.writeFileSync(file, bytes);
  await rejects(dir, ModelFormatError, /not valid UTF-8 JSON/);
});

test('a tensor with the wrong shape for the config is ShapeMismatchError', async () => {
  const tensors = hfTensors(config, weights).map((t) =>
    t.name === 'model.layers.0.self_attn.k_proj.weight' ? { ...t, shape: [t.shape[1]!, t.shape[0]!] } : t,
  );
  await rejects(writeHfModel(config, weights, { tensors }), ShapeMismatchError, /k_proj.*\[32, 16\].*\[16, 32\]/s);
});

test('an unsupported dtype is UnsupportedDtypeError naming the dtype', async () => {
  const tensors = hfTensors(config, weights).map((t) =>
    t.name === 'model.layers.1.mlp.up_proj.weight' ? { ...t, dtype: 'I32' } : t,
  );
  await rejects(writeHfModel(config, weights, { tensors }), UnsupportedDtypeError, /I32.*F32, F16, BF16/);
});

test('an unknown architecture is UnsupportedArchitectureError listing the supported ones', async () => {
  const dir = writeHfModel(config, weights, { config: { ...hfConfigJson(config), model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'] } });
  await rejects(dir, UnsupportedArchitectureError, /gpt_neox.*LlamaForCausalLM/);
});

test('a missing tensor or tokenizer is named', async () => {
  const tensors = hfTensors(config, weights).filter((t) => t.name !== 'model.layers.1.mlp.down_proj.weight');
  await rejects(writeHfModel(config, weights, { tensors }), ModelFormatError, /down_proj.*missing/);
  const dir = writeHfModel(config, weights);
  fs.rmSync(path.join(dir, 'tokenizer.json'));
  await rejects(dir, TokenizerError, /tokenizer\.json/);
});

test('an untied config without lm_head.weight is ModelFormatError', async () => {
  const dir = writeHfModel(config, weights, { config: { ...hfConfigJson(config), tie_word_embeddings: false } });
  await rejects(dir, ModelFormatError, /lm_head\.weight.*missing/);
});

test('a llama2.c file that is truncated or has a nonsense header is ModelFormatError', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'model.bin');
  const header = Int32Array.from([64, 172, 5, 8, 4, 512, 512]);
  fs.writeFileSync(file, new Uint8Array(header.buffer));
  await rejects(file, ModelFormatError, /truncated/);
  fs.writeFileSync(file, new Uint8Array(Int32Array.from([-5, 0, 0, 0, 0, 0, 0]).buffer));
  await rejects(file, ModelFormatError, /not a llama2\.c checkpoint header/);
});
