// Locating ../shared (models and corpus) for tests. In CI (any non-empty CI) a missing file is a failure;
// elsewhere the test is skipped with a visible message.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inCi } from './ci.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root (tests run from dist/test/...). */
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
export const SHARED_ROOT = process.env['QUANTSPEC_SHARED'] ?? path.resolve(REPO_ROOT, '..', 'shared');

/**
 * Absolute path of a file or folder under ../shared, or a skip reason when it is missing outside CI.
 * Throws in CI so that missing data fails loudly.
 */
export function sharedPath(rel: string): { path: string; skip: false } | { path: string; skip: string } {
  const p = path.join(SHARED_ROOT, rel);
  if (fs.existsSync(p)) return { path: p, skip: false };
  const msg = `../shared/${rel} is missing (looked in ${SHARED_ROOT})`;
  if (inCi()) throw new Error(`${msg}; CI must provide ../shared beside the checkout.`);
  process.stderr.write(`# SKIP: ${msg}\n`);
  return { path: p, skip: msg };
}

export function readJson<T = any>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** The Hugging Face model folders under ../shared/models that carry a reference.json. */
export const HF_REFERENCE_MODELS = [
  'pdlm-5.8m',
  'pdlm-5.8m-bf16',
  'tiny-random/llama3-rope-scaling',
  'tiny-random/qwen2',
  'tiny-random/qwen3',
  'tiny-random/mistral',
  'tiny-random/llama-mha-f32',
];
