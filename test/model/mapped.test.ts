// Model files are mapped (LoadOptions.mmap, the default) where the native addon can map them:
// tensors in a dtype the engine reads are views of the page cache, equal to what reading the file
// gives, never written back to the file, and copied where their offset does not suit their dtype.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelFormatError } from '../../src/core/errors.js';
import { loadModel } from '../../src/engine/model.js';
import { NATIVE_ADDON_PATH } from '../../src/kernels/cpu/index.js';
import { convertHfToGguf } from '../../src/model/gguf-writer.js';
import { loadWeights, openModel } from '../../src/model/load.js';
import { ModelFile } from '../../src/model/open.js';
import { SafetensorsFile } from '../../src/model/safetensors.js';
import type { WeightSet } from '../../src/model/weights.js';
import type { WeightTensor } from '../../src/quant/format.js';
import { inCi } from '../helpers/ci.js';
import { sharedPath } from '../helpers/shared.js';
import { tmpDir, writeHfModel } from '../helpers/hfdir.js';
import { randomWeights, tinyConfig } from '../helpers/tiny.js';

const built = fs.existsSync(NATIVE_ADDON_PATH);
if (!built && inCi()) throw new Error(`${NATIVE_ADDON_PATH} is missing: .ci/run must build the native backend.`);
const skip = built ? false : 'native backend not built (npm run build:native): files are read, not mapped';
if (!built) process.stderr.write(`# SKIP: ${skip}\n`);

const config = tinyConfig({ vocabSize: 4096, tiedEmbeddings: false });

/** Every matrix and vector of a WeightSet as [name, typed array] (the matrices' data or codes). */
function arrays(w: WeightSet): [string, ArrayBufferView][] {
  const of = (t: WeightTensor | Float32Array): ArrayBufferView =>
    t instanceof Float32Array ? t : t.dtype === 'q4' || t.dtype === 'q8' ? t.codes : t.data;
  const out: [string, ArrayBufferView][] = [['tokEmbed', of(w.tokEmbed)], ['lmHead', of(w.lmHead)], ['finalNorm', of(w.finalNorm)]];
  w.layers.forEach((l, i) => {
    for (const role of ['attnNorm', 'wq', 'wk', 'wv', 'wo', 'ffnNorm', 'w1', 'w2', 'w3'] as const) out.push([`${i}.${role}`, of(l[role])]);
  });
  return out;
}

const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

/** Loads `file` mapped and read; asserts equal tensors, and views of the file where mapped. */
function assertMappedEqualsRead(file: string, size: number): void {
  const mapped = loadWeights(openModel(file, { mmap: true }), (w) => w);
  const read = loadWeights(openModel(file, { mmap: false }), (w) => w);
  const m = arrays(mapped);
  const r = arrays(read);
  assert.equal(m.length, r.length);
  let views = 0;
  for (let i = 0; i < m.length; i++) {
    const [name, a] = m[i]!;
    const b = r[i]![1];
    assert.deepEqual(bytesOf(a), bytesOf(b), `${path.basename(file)} ${name}`);
    assert.ok(b.buffer.byteLength < size, `${name}: a read tensor has its own buffer`);
    if (a.buffer.byteLength === size) views++;
  }
  // the tensors stored in F32/F16/BF16 are views of the one mapping of the file: at least the nine
  // per layer (the seven matrices and this fixture's two F32 norms)
  assert.ok(views >= 9 * config.nLayers, `${path.basename(file)}: ${views} tensors are views of the mapping`);
}

test('safetensors and GGUF tensors are views of the mapped file, equal to reading it', { skip }, () => {
  const dir = writeHfModel(config, randomWeights(config, 3, 'f16'));
  const st = path.join(dir, 'model.safetensors');
  assertMappedEqualsRead(dir, fs.statSync(st).size);
  const gguf = path.join(tmpDir(), 'tiny.gguf');
  convertHfToGguf(dir, gguf, 'f16');
  assertMappedEqualsRead(gguf, fs.statSync(gguf).size);
});

test('a llama2.c checkpoint is mapped too (stories260K)', { skip }, (t) => {
  const bin = sharedPath('models/stories260K/stories260K.bin');
  if (bin.skip) return t.skip(bin.skip);
  const mapped = loadWeights(openModel(bin.path, { mmap: true }), (w) => w);
  const read = loadWeights(openModel(bin.path, { mmap: false }), (w) => w);
  const size = fs.statSync(bin.path).size;
  const r = arrays(read);
  arrays(mapped).forEach(([name, a], i) => assert.deepEqual(bytesOf(a), bytesOf(r[i]![1]), name));
  assert.equal((mapped.layers[0]!.wq as { data: Float32Array }).data.buffer.byteLength, size, 'wq views the mapping');
});

test('writing into a mapped tensor changes this process only, never the file', { skip }, () => {
  const dir = writeHfModel(config, randomWeights(config, 4));
  const file = path.join(dir, 'model.safetensors');
  const before = fs.readFileSync(file);
  const st = SafetensorsFile.open(file);
  const t = st.read('model.layers.0.self_attn.q_proj.weight');
  st.close();
  assert.equal(t.data.buffer.byteLength, before.length, 'the tensor views the mapping');
  t.data.fill(0);
  assert.ok(t.data.every((x) => x === 0));
  assert.deepEqual(fs.readFileSync(file), before, 'the file is unchanged');
});

test('a tensor whose offset does not suit its dtype is copied, with the same values', { skip }, () => {
  // A safetensors file whose header is not padded: the F32 data starts at an odd byte.
  const values = Float32Array.from({ length: 24 }, (_, i) => i * 0.5 - 3);
  let json = JSON.stringify({ x: { dtype: 'F32', shape: [4, 6], data_offsets: [0, values.byteLength] } });
  while ((8 + json.length) % 4 !== 1) json += ' ';
  const header = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + header.length + values.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
  bytes.set(header, 8);
  bytes.set(new Uint8Array(values.buffer), 8 + header.length);
  const file = path.join(tmpDir(), 'odd.safetensors');
  fs.writeFileSync(file, bytes);
  const st = SafetensorsFile.open(file);
  const t = st.read('x');
  st.close();
  assert.deepEqual(Array.from(t.data), Array.from(values));
  assert.equal(t.data.buffer.byteLength, values.byteLength, 'copied into its own buffer');
});

test('a range past the end of a mapped file is ModelFormatError naming it', { skip }, () => {
  const file = path.join(tmpDir(), 'short.bin');
  fs.writeFileSync(file, new Uint8Array(100));
  const f = ModelFile.open(file);
  assert.ok(f.isMapped);
  assert.throws(() => f.bytes(64, 64, 4, 'tensor "w"'), (e: unknown) => e instanceof ModelFormatError && /tensor "w" ends at byte 128 but the file has 100/.test((e as Error).message));
  f.close();
});

test('a model loaded with mmap false generates the same tokens as a mapped one', async () => {
  const dir = writeHfModel(config, randomWeights(config, 5, 'bf16'));
  const opts = { maxTokens: 8, temperature: 0, ignoreEos: true } as const;
  const mapped = await loadModel(dir, { spec: 'none', draft: false });
  const read = await loadModel(dir, { spec: 'none', draft: false, mmap: false });
  const a = await mapped.complete('Once upon a time', opts);
  const b = await read.complete('Once upon a time', opts);
  assert.equal(a.generatedIds.length, 8);
  assert.deepEqual(a.generatedIds, b.generatedIds);
});
