// The browser's loader (engine/browser.ts, loadModelFiles) run in Node, which has fetch and Blob:
// every format from picked files (Blobs) or from URLs on a server at 127.0.0.1, read by ranges
// (or whole from a server that ignores Range), decodes the same tokens as loadModel on the same files. The forward passes take the reference
// kernels here (the browser test runs them on WebGPU).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { ModelNotFoundError } from '../../src/core/errors.js';
import { loadModelFiles, type ModelFiles } from '../../src/engine/browser.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { convertHfToGguf } from '../../src/model/gguf-writer.js';
import { FIRST_HEADER_BYTES } from '../../src/model/ranged.js';
import { tmpDir } from '../helpers/hfdir.js';
import { sharedPath } from '../helpers/shared.js';

const stories = sharedPath('models/stories260K');
const pdlm = sharedPath('models/pdlm-5.8m');
const qwen3 = sharedPath('models/tiny-random/qwen3');

const blob = (file: string) => new Blob([fs.readFileSync(file)]);

async function greedy(model: Model, prompt: string): Promise<readonly number[]> {
  return (await model.complete(prompt, { temperature: 0, maxTokens: 16, spec: 'quantspec', gamma: 3, ignoreEos: true })).generatedIds;
}

/** How the test server answers: Range honoured (206), or every request with the whole file, with or without content-length. */
type ServeMode = 'range' | 'whole' | 'chunked';

/** A static server over `dir` on 127.0.0.1; `sent` gets the body size of each answer. */
async function withServer<T>(dir: string, mode: ServeMode, fn: (base: string, sent: { status: number; bytes: number }[]) => Promise<T>): Promise<T> {
  const sent: { status: number; bytes: number }[] = [];
  const server = http.createServer((req, res) => {
    const file = path.join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    if (!file.startsWith(dir) || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    let data = fs.readFileSync(file);
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (mode === 'range' && range) {
      const a = Number(range[1]), b = Math.min(Number(range[2]), data.length - 1);
      res.writeHead(206, { 'content-length': b - a + 1, 'content-range': `bytes ${a}-${b}/${data.length}` });
      data = data.subarray(a, b + 1);
    } else {
      res.writeHead(200, mode === 'chunked' ? {} : { 'content-length': data.length });
    }
    sent.push({ status: res.statusCode, bytes: data.length });
    // In pieces, as a network delivers it.
    for (let i = 0; i < data.length; i += 65536) res.write(data.subarray(i, i + 65536));
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, sent);
  } finally {
    server.close();
  }
}

test('browser loader: a llama2.c checkpoint and tokenizer from picked files decode as loadModel does', { skip: stories.skip }, async () => {
  const bin = path.join(stories.path, 'stories260K.bin');
  const tok = path.join(stories.path, 'tok512.bin');
  const progress: [number, number][] = [];
  const files: ModelFiles = { llama2c: blob(bin), tokenizer: blob(tok) };
  const m = await loadModelFiles(files, { backend: 'reference', onFetchProgress: (done, total) => progress.push([done, total]) });
  // The first read (FIRST_HEADER_BYTES), then the tensors: the file's tail holds the legacy RoPE
  // tables (2 × seq_len 512 × head_dim / 2 × 4 bytes), which nothing reads past that first read.
  const size = fs.statSync(bin).size;
  assert.ok(size > FIRST_HEADER_BYTES);
  assert.deepEqual(progress[progress.length - 1], Array(2).fill(Math.max(FIRST_HEADER_BYTES, size - 2 * 512 * 4 * 4) + fs.statSync(tok).size));
  const ref = await loadModel(bin, { backend: 'reference' });
  assert.deepEqual(await greedy(m, 'Once upon a time'), await greedy(ref, 'Once upon a time'));
});

test('browser loader: a Hugging Face model from URLs, by ranges where the server honours them, whole otherwise', { skip: pdlm.skip }, async () => {
  const ref = await loadModel(pdlm.path, { backend: 'reference' });
  const want = await greedy(ref, 'Call me Ishmael.');
  const weights = fs.statSync(path.join(pdlm.path, 'model.safetensors')).size;
  for (const mode of ['range', 'whole', 'chunked'] as const) {
    await withServer(pdlm.path, mode, async (base, sent) => {
      const progress: [number, number][] = [];
      const m = await loadModelFiles({
        config: `${base}/config.json`, tokenizer: `${base}/tokenizer.json`, tokenizerConfig: `${base}/tokenizer_config.json`, generationConfig: `${base}/generation_config.json`,
        weights: `${base}/model.safetensors`,
      }, { backend: 'reference', onFetchProgress: (done, total) => progress.push([done, total]) });
      assert.deepEqual(await greedy(m, 'Call me Ishmael.'), want, mode);
      const last = progress[progress.length - 1]!;
      assert.ok(last[0] === last[1], `${mode}: progress ends at ${last}`);
      const largest = Math.max(...sent.map((r) => r.bytes));
      if (mode === 'range') {
        // pdlm's safetensors: a header, 4 MiB of embeddings, then 6 layers of 9 tensors and a norm
        assert.ok(sent.filter((r) => r.status === 206).length >= 56, `${sent.length} answers`);
        assert.ok(largest <= 4096 * 256 * 4, `a single answer of ${largest} bytes: the weights were not read by ranges`);
      } else {
        assert.equal(largest, weights, `${mode}: the whole file in one answer`);
      }
    });
  }
  await withServer(pdlm.path, 'range', async (base) => {
    await assert.rejects(
      loadModelFiles({ config: `${base}/config.json`, tokenizer: `${base}/tokenizer.json`, weights: `${base}/missing.safetensors` }, { backend: 'reference' }),
      (e: unknown) => e instanceof ModelNotFoundError && /404/.test((e as Error).message),
    );
  });
});

test('browser loader: picked files are read by slices, one tensor at a time', { skip: pdlm.skip }, async () => {
  const file = path.join(pdlm.path, 'model.safetensors');
  const slices: number[] = [];
  class CountingBlob extends Blob {
    override slice(start?: number, end?: number, type?: string): Blob {
      slices.push((end ?? this.size) - (start ?? 0));
      return super.slice(start, end, type);
    }
  }
  const j = (f: string) => new Blob([fs.readFileSync(path.join(pdlm.path, f))]);
  const m = await loadModelFiles({ config: j('config.json'), tokenizer: j('tokenizer.json'), tokenizerConfig: j('tokenizer_config.json'), weights: new CountingBlob([fs.readFileSync(file)]) }, { backend: 'reference' });
  assert.ok(slices.length >= 56 && Math.max(...slices) <= 4096 * 256 * 4, `${slices.length} slices, the largest ${Math.max(...slices)} bytes`);
  assert.deepEqual(await greedy(m, 'Call me Ishmael.'), await greedy(await loadModel(pdlm.path, { backend: 'reference' }), 'Call me Ishmael.'));
});

test('browser loader: a GGUF file (with its own tokenizer) from a picked file', { skip: qwen3.skip }, async () => {
  const dir = tmpDir('browser-gguf');
  const file = path.join(dir, 'qwen3.gguf');
  convertHfToGguf(qwen3.path, file, 'f16');
  const m = await loadModelFiles({ gguf: blob(file) }, { backend: 'reference' });
  const ref = await loadModel(file, { backend: 'reference' });
  assert.equal(m.format, 'gguf');
  assert.deepEqual(await greedy(m, 'Hello there'), await greedy(ref, 'Hello there'));
  assert.deepEqual(m.tokenizer.encode('Hello there'), ref.tokenizer.encode('Hello there'));
});
