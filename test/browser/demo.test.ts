// End to end in a browser: Debian's Chromium, driven by playwright-core (headless, WebGPU on its
// SwiftShader adapter), loads the demo page (examples/browser) from its server on 127.0.0.1, which
// fetches stories260K and its tokenizer, generates greedily with QuantSpec on WebGPU, and must show
// llama2.c's golden text. A screenshot of the page is kept in test-artifacts/.
// In CI (.ci/run installs chromium) a missing browser fails; elsewhere it skips.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { loadModel } from '../../src/engine/model.js';
import { inCi } from '../helpers/ci.js';
import { STORIES260K_GOLDEN } from '../helpers/reference.js';
import { REPO_ROOT, SHARED_ROOT, sharedPath } from '../helpers/shared.js';

const CHROMIUM = process.env['QUANTSPEC_CHROMIUM'] ?? '/usr/bin/chromium';
let skip: string | false = false;
if (!fs.existsSync(CHROMIUM)) {
  if (inCi()) throw new Error(`${CHROMIUM} is missing: .ci/run must install Debian's chromium.`);
  skip = `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  process.stderr.write(`# SKIP: ${skip}\n`);
}
const stories = sharedPath('models/stories260K');
const pdlm = sharedPath('models/pdlm-5.8m');

/** The demo's own server (examples/browser/serve.mjs): the repository, and /models/ from ../shared/models. */
async function serve(): Promise<http.Server> {
  const mod = (await import(pathToFileURL(path.join(REPO_ROOT, 'examples', 'browser', 'serve.mjs')).href)) as {
    serveDemo(o: { models: string }): Promise<http.Server>;
  };
  return mod.serveDemo({ models: path.join(SHARED_ROOT, 'models') });
}

test('browser: the demo page generates stories260K\'s golden text with QuantSpec on WebGPU', { skip: skip || stories.skip, timeout: 240000 }, async () => {
  const server = await serve();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--enable-unsafe-webgpu', '--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const { port } = server.address() as AddressInfo;
    const q = new URLSearchParams({
      model: '/models/stories260K/stories260K.bin', tokenizer: '/models/stories260K/tok512.bin',
      prompt: 'Once upon a time', max: '60', temperature: '0', spec: 'quantspec', run: '1',
    });
    await page.goto(`http://127.0.0.1:${port}/examples/browser/index.html?${q}`);
    await page.waitForSelector('body[data-state=done], body[data-state=error]', { timeout: 200000 });
    fs.mkdirSync(path.join(REPO_ROOT, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: path.join(REPO_ROOT, 'test-artifacts', 'browser-demo.png'), fullPage: true });
    const state = await page.getAttribute('body', 'data-state');
    assert.equal(state, 'done', `the page ended in ${state}: ${await page.textContent('#load-status')} ${errors.join('; ')}`);
    assert.match((await page.textContent('#adapter')) ?? '', /^webgpu: /, 'the passes ran on WebGPU');
    const text = await page.getAttribute('#output', 'data-text');
    assert.equal(`Once upon a time${text}`, STORIES260K_GOLDEN);
    assert.equal(await page.textContent('#output'), STORIES260K_GOLDEN, 'the streamed chunks add up to the text');
    assert.match((await page.textContent('#acceptance')) ?? '', /^\d+%$/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});

test('browser: picked files of a Hugging Face model load and decode as the CPU does', { skip: skip || pdlm.skip, timeout: 240000 }, async () => {
  const prompt = 'Call me Ishmael.';
  const want = await (await loadModel(pdlm.path)).complete(prompt, { temperature: 0, maxTokens: 12, spec: 'none', kv: 'int8' });
  const server = await serve();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--enable-unsafe-webgpu', '--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const { port } = server.address() as AddressInfo;
    await page.goto(`http://127.0.0.1:${port}/examples/browser/index.html`);
    // As a user would: pick the files, load, then generate.
    await page.setInputFiles('#files', ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']
      .map((f) => path.join(pdlm.path, f)));
    await page.click('#load');
    await page.waitForSelector('body[data-state=ready], body[data-state=error]', { timeout: 120000 });
    assert.equal(await page.getAttribute('body', 'data-state'), 'ready', `${await page.textContent('#load-status')} ${errors.join('; ')}`);
    await page.fill('#prompt', prompt);
    await page.fill('#max-tokens', '12');
    await page.selectOption('#spec', 'none');
    await page.click('#generate');
    await page.waitForSelector('body[data-state=done], body[data-state=error]', { timeout: 200000 });
    assert.equal(await page.getAttribute('#output', 'data-text'), want.text);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});
