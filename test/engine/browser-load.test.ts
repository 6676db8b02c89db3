// The browser's loader (engine/browser.ts, loadModelFiles) run in Node, which has fetch and Blob:
// every format from picked files (Blobs) or from URLs on a server at 127.0.0.1, opened in memory,
// decodes the same tokens as loadModel on the same files. The forward passes take the reference
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
import { tmpDir } from '../helpers/hfdir.js';
import { sharedPath } from '../helpers/shared.js';

const stories = sharedPath('models/stories260K');
const pdlm = sharedPath('models/pdlm-5.8m');
const qwen3 = sharedPath('models/tiny-random/qwen3');

const blob = (file: string) => new Blob([fs.readFileSync(file)]);

async function greedy(model: Model, prompt: string): Promise<readonly number[]> {
  return (await model.complete(prompt, { temperature: 0, maxTokens: 16, spec: 'quantspec', gamma: 3, ignoreEos: true })).generatedIds;
}

/** A static server over `dir` on 127.0.0.1; `chunked` leaves out content-length (the loader then grows its buffer). */
async function withServer<T>(dir: string, chunked: boolean, fn: (base: string) => Promise<T>): Promise<T> {
  const server = http.createServer((req, res) => {
    const file = path.join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    if (!file.startsWith(dir) || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const data = fs.readFileSync(file);
    res.writeHead(200, chunked ? {} : { 'content-length': data.length });
    // In pieces, as a network delivers it.
    for (let i = 0; i < data.length; i += 65536) res.write(data.subarray(i, i + 65536));
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.close();
  }
}

test('browser loader: a llama2.c checkpoint and tokenizer from picked files decode as loadModel does', { skip: stories.skip }, async () => {
  const bin = path.join(stories.path, 'stories260K.bin');
  let fetched = 0;
  const files: ModelFiles = { llama2c: blob(bin), tokenizer: blob(path.join(stories.path, 'tok512.bin')) };
  const m = await loadModelFiles(files, { backend: 'reference', onFetchProgress: (done) => (fetched = done) });
  assert.equal(fetched, fs.statSync(bin).size + fs.statSync(path.join(stories.path, 'tok512.bin')).size);
  const ref = await loadModel(bin, { backend: 'reference' });
  assert.deepEqual(await greedy(m, 'Once upon a time'), await greedy(ref, 'Once upon a time'));
});

test('browser loader: a Hugging Face model from URLs (streamed, with and without content-length)', { skip: pdlm.skip }, async () => {
  const ref = await loadModel(pdlm.path, { backend: 'reference' });
  const want = await greedy(ref, 'Call me Ishmael.');
  for (const chunked of [false, true]) {
    await withServer(pdlm.path, chunked, async (base) => {
      const progress: [number, number][] = [];
      const m = await loadModelFiles({
        config: `${base}/config.json`, tokenizer: `${base}/tokenizer.json`, tokenizerConfig: `${base}/tokenizer_config.json`, generationConfig: `${base}/generation_config.json`,
        weights: `${base}/model.safetensors`,
      }, { backend: 'reference', onFetchProgress: (done, total) => progress.push([done, total]) });
      assert.deepEqual(await greedy(m, 'Call me Ishmael.'), want, `chunked ${chunked}`);
      const last = progress[progress.length - 1]!;
      assert.ok(last[0] >= fs.statSync(path.join(pdlm.path, 'model.safetensors')).size && last[0] === last[1], `progress ends at ${last}`);
    });
  }
  await withServer(pdlm.path, false, async (base) => {
    await assert.rejects(
      loadModelFiles({ config: `${base}/config.json`, tokenizer: `${base}/tokenizer.json`, weights: `${base}/missing.safetensors` }, { backend: 'reference' }),
      (e: unknown) => e instanceof ModelNotFoundError && /404/.test((e as Error).message),
    );
  });
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
