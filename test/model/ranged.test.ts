// Ranged reads (model/ranged.ts): a file read as its header plus one buffer per tensor gives
// every tensor bit for bit as the whole file does, never reads a range twice or the whole file
// in one read, grows a header that the first read cut short, and names a reader that returns
// the wrong number of bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelFormatError } from '../../src/core/errors.js';
import { readGgufFile } from '../../src/model/gguf.js';
import { openGgufFile } from '../../src/model/gguf-model.js';
import { convertHfToGguf } from '../../src/model/gguf-writer.js';
import { Llama2cSource } from '../../src/model/llama2c.js';
import { ModelFile, RangeNotLoadedError } from '../../src/model/open.js';
import { readRanged, type RangedFormat, type RangeReader } from '../../src/model/ranged.js';
import { SafetensorsFile } from '../../src/model/safetensors.js';
import { tmpDir } from '../helpers/hfdir.js';
import { sharedPath } from '../helpers/shared.js';

const stories = sharedPath('models/stories260K');
const qwen3 = sharedPath('models/tiny-random/qwen3');

/** A reader over a file on disk that records each read. */
function diskReader(file: string, reads: [number, number][]): RangeReader {
  const bytes = fs.readFileSync(file);
  return {
    name: path.basename(file), size: bytes.length,
    read: async (offset, length) => {
      reads.push([offset, length]);
      return bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + Math.min(bytes.length, offset + length));
    },
  };
}

/** Reads overlap nowhere and none is the whole file. */
function checkReads(reads: [number, number][], size: number): void {
  assert.ok(reads.length > 1, `${reads.length} reads`);
  const sorted = [...reads].sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i]![0] >= sorted[i - 1]![0] + sorted[i - 1]![1], `reads ${sorted[i - 1]} and ${sorted[i]} overlap`);
  for (const [, n] of reads) assert.ok(n < size, `a read of ${n} bytes of a ${size}-byte file`);
}

/** Every tensor of `names` read through `open` on the ranged file equals the same read on the whole file. */
async function sameTensors(file: string, format: RangedFormat, firstBytes: number, open: (f: ModelFile) => (name: string) => unknown, names: string[]): Promise<[number, number][]> {
  const reads: [number, number][] = [];
  const ranged = await readRanged(diskReader(file, reads), format, { firstBytes });
  const whole = ModelFile.fromBuffer(file, fs.readFileSync(file).buffer.slice(0) as ArrayBuffer);
  const a = open(ranged), b = open(whole);
  assert.ok(names.length > 3);
  for (const n of names) assert.deepEqual(a(n), b(n), n);
  return reads;
}

test('ranged reads: safetensors, a header cut short by the first read, every tensor as from the whole file', { skip: qwen3.skip }, async () => {
  const file = path.join(qwen3.path, 'model.safetensors');
  const names = [...SafetensorsFile.fromFile(ModelFile.fromBuffer(file, fs.readFileSync(file).buffer as ArrayBuffer)).tensors.keys()];
  const reads = await sameTensors(file, 'safetensors', 16, (f) => { const s = SafetensorsFile.fromFile(f); return (n) => s.read(n); }, names);
  checkReads(reads, fs.statSync(file).size);
  assert.deepEqual(reads.slice(0, 2).map((r) => r[0]), [0, 16], 'the header grows from where the first read ended');
  assert.equal(reads.length, 2 + names.length, 'the header in two reads, then one read per tensor');
});

test('ranged reads: GGUF (metadata grown past a 64-byte first read, up to a cap) and its config, tensor by tensor', { skip: qwen3.skip }, async () => {
  const file = path.join(tmpDir('ranged-gguf'), 'qwen3.gguf');
  convertHfToGguf(qwen3.path, file, 'f16');
  const g = readGgufFile(ModelFile.fromBuffer(file, fs.readFileSync(file).buffer as ArrayBuffer));
  assert.ok(g.dataOffset > 4096, `metadata of ${g.dataOffset} bytes`);
  const names = [...g.tensors.keys()];
  const reads = await sameTensors(file, 'gguf', 64, (f) => { const { source, config } = openGgufFile(f); assert.equal(config.nLayers, 2); return (n) => source.read(n); }, names);
  checkReads(reads, fs.statSync(file).size);
  // A header larger than the cap is refused, by name, before it is read whole.
  await assert.rejects(readRanged(diskReader(file, []), 'gguf', { firstBytes: 64, maxHeaderBytes: 4096 }),
    (e: unknown) => e instanceof ModelFormatError && /header would take more than 4096 bytes/.test((e as Error).message));
  const headerReads = reads.filter((r) => r[0] < g.dataOffset).length;
  assert.equal(reads[0]![1], 64);
  assert.ok(headerReads >= 2, `the header took ${headerReads} reads from 64 bytes`);
});

test('ranged reads: a llama2.c checkpoint skips its legacy RoPE tables', { skip: stories.skip }, async () => {
  const file = path.join(stories.path, 'stories260K.bin');
  const names = ['tokEmbed', 'layers.0.wq', 'layers.4.w2', 'finalNorm'];
  const reads = await sameTensors(file, 'llama2c', 28, (f) => { const s = Llama2cSource.fromFile(f); return (n) => s.read(n); }, names);
  checkReads(reads, fs.statSync(file).size);
  // stories260K: seq_len 512, head_dim 8: two tables of 512 × 4 F32 values that nothing reads
  const read = reads.reduce((a, r) => a + r[1], 0);
  assert.equal(read, fs.statSync(file).size - 2 * 512 * 4 * 4);
});

test('ranged reads: a short read is a named error, and a range outside the fetched segments says so', async () => {
  const file = path.join(tmpDir('ranged-short'), 'x.safetensors');
  const header = Buffer.from(JSON.stringify({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  fs.writeFileSync(file, Buffer.concat([len, header, Buffer.alloc(16)]));
  const good = diskReader(file, []);
  const short: RangeReader = { ...good, read: async (o, l) => (await good.read(o, l)).slice(0, Math.max(0, l - 1)) };
  await assert.rejects(readRanged(short, 'safetensors'), (e: unknown) => e instanceof ModelFormatError && /asked for \d+ bytes at 0 and got/.test((e as Error).message));
  const f = ModelFile.fromSegments('x', 100, [{ offset: 0, data: new ArrayBuffer(10) }]);
  assert.throws(() => f.bytes(8, 4, 1, 'a tensor'), (e: unknown) => e instanceof RangeNotLoadedError && e.end === 12);
  assert.throws(() => f.bytes(96, 8, 1, 'a tensor'), ModelFormatError);
});
