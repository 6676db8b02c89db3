// GGUF in and out: our writer's files load back with the source model's numbers and greedy tokens;
// hand-built Q8_0 / Q4_0 / Q4_1 / Q4_K / Q6_K tensors decode to the values they encode; malformed files get
// named errors, never a crash or a hang (10,000 mutated headers).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelFormatError, QuantspecError, UnsupportedArchitectureError, UnsupportedDtypeError } from '../../src/core/errors.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import { scoreSequence } from '../../src/engine/eval.js';
import { decodeRow } from '../../src/kernels/reference/rows.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { GgufValueType, parseGgufBytes, readGguf, readGgufTensor } from '../../src/model/gguf.js';
import { convertHfToGguf, writeGguf, type GgufTensorOut } from '../../src/model/gguf-writer.js';
import { HF_REFERENCE_MODELS, readJson, sharedPath } from '../helpers/shared.js';
import { tmpDir } from '../helpers/hfdir.js';
import { maxAbsDiff } from '../helpers/tiny.js';
import { ENCODERS } from '../helpers/ggml-blocks.js';

async function lastLogits(m: Model, ids: number[]): Promise<Float32Array> {
  let out = new Float32Array(0);
  await scoreSequence(m, ids, (pos, row) => {
    if (pos === ids.length - 1) out = row.slice();
  });
  return out;
}

const greedy = async (m: Model, ids: number[], n: number) =>
  (await m.complete({ ids }, { spec: 'none', kv: 'fp', temperature: 0, maxTokens: n, ignoreEos: true })).generatedIds;

for (const name of HF_REFERENCE_MODELS) {
  const dir = sharedPath(`models/${name}`);
  test(`${name}: quantspec convert writes a GGUF that loads back with the same logits and greedy tokens`, { skip: dir.skip }, async () => {
    const ref = readJson(path.join(dir.path, 'reference.json'));
    const prompts: number[][] = ref.prompts.map((p: any) => p.prompt_ids ?? p.input_ids);
    const hf = await loadModel(dir.path, { contextLength: 256, draft: false });
    for (const dtype of ['f32', 'f16'] as const) {
      const file = path.join(tmpDir(), `model-${dtype}.gguf`);
      convertHfToGguf(dir.path, file, dtype);
      const g = await loadModel(file, { contextLength: 256, draft: false });
      assert.equal(g.format, 'gguf');
      // GGUF stores epsilon as F32; RoPE becomes interleaved (llama) with q/k rows permuted to match.
      // Mistral is written as llama.cpp's 'llama' architecture.
      const same = (c: typeof g.config) => ({ ...c, arch: c.arch === 'mistral' ? 'llama' : c.arch, ropeStyle: 0, ropeScaling: 0, normEps: 0 });
      assert.deepEqual(same(g.config), same(hf.config));
      assert.ok(Math.abs(g.config.normEps - hf.config.normEps) <= hf.config.normEps * 1e-6);
      const text = 'Call me Ishmael. Some years ago — never mind how long.';
      assert.deepEqual(g.tokenizer.encode(text), hf.tokenizer.encode(text), 'tokenizer from GGUF metadata');
      assert.equal(g.tokenizer.decode(g.tokenizer.encode(text)), text);
      for (const ids of prompts.slice(0, 2)) {
        const d = maxAbsDiff(await lastLogits(g, ids), await lastLogits(hf, ids));
        // F32: the same numbers up to rounding; F16: weights rounded to 11 bits.
        assert.ok(d < (dtype === 'f32' ? 1e-3 : 0.25), `${dtype}: max |logit diff| ${d}`);
        if (dtype === 'f32') assert.deepEqual(await greedy(g, ids, 12), await greedy(hf, ids, 12));
      }
    }
  });
}


test('hand-built Q8_0, Q4_0, Q4_1, Q4_K and Q6_K tensors decode to their values and give the dequantized model\'s output', { skip: sharedPath('models/pdlm-5.8m').skip }, async () => {
  const dir = sharedPath('models/pdlm-5.8m').path;
  const ids = [0, 17, 943, 2048, 5, 300, 301, 302];
  for (const [kind, [type, encode]] of Object.entries(ENCODERS)) {
    const expected = new Map<string, Float32Array>();
    const quantized = path.join(tmpDir(), `${kind}.gguf`);
    const dequantized = path.join(tmpDir(), `${kind}-f32.gguf`);
    const block = kind === 'Q4_K' || kind === 'Q6_K' ? 256 : 32;
    convertHfToGguf(dir, quantized, 'f32', (name, t: DenseTensor): GgufTensorOut | null => {
      if (t.dtype !== 'f32' || t.shape[1]! % block !== 0) return null;
      const { bytes, values } = encode(t.data);
      expected.set(name, values);
      return { name, shape: t.shape, type, bytes };
    });
    assert.ok(expected.size > 0, `${kind}: some tensors were encoded`);
    // The same model with the encoded values written out as F32: what the quantized file must equal.
    convertHfToGguf(dir, dequantized, 'f32', (name, t) => {
      const v = expected.get(name);
      return v ? { name, shape: t.shape, type: 0, bytes: new Uint8Array(v.buffer) } : null;
    });
    const g = readGguf(quantized);
    for (const [name, values] of expected) {
      const t = readGgufTensor(g, name);
      const row = new Float32Array(t.shape[1]!);
      const got = new Float32Array(values.length);
      for (let r = 0; r < t.shape[0]!; r++) {
        decodeRow(row, t, r, row.length);
        got.set(row, r * row.length);
      }
      assert.ok(maxAbsDiff(got, values) < 1e-6, `${kind} ${name}: decoded values`);
    }
    // Reference kernels (exact float arithmetic): the quantized file runs as its dequantized twin.
    const a = await loadModel(quantized, { contextLength: 256, draft: false, backend: 'reference' });
    const b = await loadModel(dequantized, { contextLength: 256, draft: false, backend: 'reference' });
    assert.ok(maxAbsDiff(await lastLogits(a, ids), await lastLogits(b, ids)) < 1e-3, kind);
    assert.deepEqual(await greedy(a, ids, 8), await greedy(b, ids, 8));
  }
});

/** A small valid GGUF in memory: metadata of every value type and two tiny tensors. */
function smallGguf(): Uint8Array {
  const file = path.join(tmpDir(), 'small.gguf');
  writeGguf(file, [
    ['general.architecture', GgufValueType.STRING, 'llama'],
    ['llama.block_count', GgufValueType.UINT32, 1],
    ['llama.rope.freq_base', GgufValueType.FLOAT32, 10000],
    ['tokenizer.ggml.add_bos_token', GgufValueType.BOOL, true],
    ['tokenizer.ggml.tokens', GgufValueType.ARRAY, { type: GgufValueType.STRING, values: ['a', 'b', 'c'] }],
    ['tokenizer.ggml.token_type', GgufValueType.ARRAY, { type: GgufValueType.INT32, values: [1, 1, 3] }],
  ], [
    { name: 'a.weight', shape: [2, 32], type: 0, bytes: new Uint8Array(256) },
    { name: 'b.weight', shape: [1, 32], type: 8, bytes: new Uint8Array(34) },
  ]);
  return new Uint8Array(fs.readFileSync(file));
}

test('malformed GGUF: bad magic, truncation, data past the end, absurd counts, unknown types', async () => {
  const good = smallGguf();
  const parsed = parseGgufBytes(good);
  assert.equal(parsed.tensors.size, 2);
  assert.deepEqual(parsed.metadata.get('tokenizer.ggml.tokens'), ['a', 'b', 'c']);
  const mutate = (f: (b: Uint8Array) => void) => {
    const b = good.slice();
    f(b);
    return b;
  };
  const dv = (b: Uint8Array) => new DataView(b.buffer);
  const cases: [string, Uint8Array, RegExp][] = [
    ['bad magic', mutate((b) => (b[0] = 0x47 ^ 0xff)), /not a GGUF file/],
    ['version', mutate((b) => dv(b).setUint32(4, 7, true)), /version 7 is not supported/],
    ['truncated header', good.slice(0, 40), /truncated|ends at|could hold/],
    ['absurd tensor count', mutate((b) => dv(b).setBigUint64(8, 1n << 40n, true)), /tensor count/],
    ['absurd metadata count', mutate((b) => dv(b).setBigUint64(16, 1n << 60n, true)), /metadata count/],
    ['absurd string length', mutate((b) => dv(b).setBigUint64(24, 1n << 50n, true)), /length of metadata key/],
    // Cut inside the last tensor's bytes (the file may end with alignment padding).
    ['data past the end', good.slice(0, parsed.tensors.get('b.weight')!.offset + 20), /past the end/],
  ];
  for (const [what, bytes, pattern] of cases) {
    assert.throws(() => parseGgufBytes(bytes), (e: unknown) => {
      assert.ok(e instanceof ModelFormatError, `${what}: ${(e as Error)?.constructor?.name} ${(e as Error)?.message}`);
      assert.match((e as Error).message, pattern, what);
      return true;
    }, `${what}: expected a ModelFormatError`);
  }
  // An unknown tensor type is reported when the tensor is read, naming the type.
  const file = path.join(tmpDir(), 'q5.gguf');
  writeGguf(file, [['general.architecture', GgufValueType.STRING, 'llama']], [{ name: 'x.weight', shape: [1, 32], type: 6, bytes: new Uint8Array(22) }]);
  const g = readGguf(file);
  assert.throws(() => readGgufTensor(g, 'x.weight'), (e: unknown) => e instanceof UnsupportedDtypeError && /Q5_0/.test((e as Error).message));
  // An unknown architecture is named.
  const gpt = path.join(tmpDir(), 'gpt.gguf');
  writeGguf(gpt, [['general.architecture', GgufValueType.STRING, 'gpt2']], []);
  await assert.rejects(loadModel(gpt), UnsupportedArchitectureError);
});

test('fuzz: 10,000 mutated headers parse or fail with a named error, never crash or hang', () => {
  const good = smallGguf();
  const headerEnd = Math.min(good.length, 400);
  const rng = new Xoshiro128(5);
  let failures = 0;
  const t0 = performance.now();
  for (let i = 0; i < 10_000; i++) {
    let b = good.slice();
    const kind = rng.next();
    const flips = 1 + Math.floor(rng.next() * 4);
    for (let f = 0; f < flips; f++) {
      const at = Math.floor(rng.next() * headerEnd);
      if (kind < 0.5) b[at] = Math.floor(rng.next() * 256);
      else if (kind < 0.8) b[at] = [0x00, 0xff, 0x7f, 0x80][Math.floor(rng.next() * 4)]!;
      else b = b.slice(0, Math.floor(rng.next() * b.length));
    }
    try {
      parseGgufBytes(b);
    } catch (e) {
      assert.ok(e instanceof QuantspecError, `mutation ${i}: ${(e as Error)?.name}: ${(e as Error)?.message}`);
      failures++;
    }
  }
  assert.ok(failures > 1000, `${failures} of 10,000 mutations were rejected`);
  assert.ok(performance.now() - t0 < 60_000);
});

test('convert --dtype q4_0: each value within half a quantization step of the source (or clamped to 7 steps), largest of each block exact', { skip: sharedPath('models/pdlm-5.8m').skip }, async () => {
  const dir = sharedPath('models/pdlm-5.8m').path;
  const file = path.join(tmpDir(), 'q4_0.gguf');
  convertHfToGguf(dir, file, 'q4_0');
  const g = readGguf(file);
  assert.equal(g.metadata.get('general.file_type'), 2);
  const hf = await loadModel(dir, { contextLength: 256, draft: false });
  const source = hf.target.layers[0]!.wv as DenseTensor;
  const t = readGgufTensor(g, 'blk.0.attn_v.weight');
  assert.equal(g.tensors.get('blk.0.attn_v.weight')!.type, 2);
  const cols = source.shape[1]!;
  const want = new Float32Array(cols);
  const got = new Float32Array(cols);
  for (let r = 0; r < source.shape[0]!; r++) {
    decodeRow(want, source, r, cols);
    decodeRow(got, t, r, cols);
    for (let b = 0; b < cols / 32; b++) {
      let m = 0;
      for (let j = 0; j < 32; j++) if (Math.abs(want[b * 32 + j]!) > Math.abs(m)) m = want[b * 32 + j]!;
      const step = Math.abs(m) / 8;
      const tol = Math.abs(m) * 2 ** -10 + 1e-6; // the scale is rounded to F16 (relative 2^-11, up to 8 steps)
      for (let j = 0; j < 32; j++) {
        const x = want[b * 32 + j]!;
        const err = Math.abs(got[b * 32 + j]! - x);
        if (x === m) assert.ok(err <= tol, `row ${r} col ${b * 32 + j}: the block's largest value is off by ${err}`);
        // Codes run from −8 to +7 steps on m's side: values beyond 7.5 steps on the other side clamp
        // to 7 steps and may be off by up to one step; all others by at most half a step.
        const clamped = Math.sign(x) !== Math.sign(m) && Math.abs(x) > 7.5 * step;
        const bound = clamped ? Math.abs(x) - 7 * step : step / 2;
        assert.ok(err <= bound + tol, `row ${r} col ${b * 32 + j}: |error| ${err} > ${bound}`);
      }
    }
  }
  // The file runs: the same tokenizer, and logits within 4-bit noise of the source model.
  const q = await loadModel(file, { contextLength: 256, draft: false });
  const ids = [0, 17, 943, 2048, 5, 300, 301, 302];
  const a = await lastLogits(q, ids);
  const b = await lastLogits(hf, ids);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  assert.ok(Math.sqrt(num / den) < 0.2, `relative logit error ${Math.sqrt(num / den)}`);
});
