// Build Hugging Face model directories on disk from tiny in-code models (for loader tests).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ModelConfig } from '../../src/model/config.js';
import { hfTensorName } from '../../src/model/hf.js';
import { tensorKeys } from '../../src/engine/inspect.js';
import type { TensorKey, WeightSet } from '../../src/model/weights.js';
import { REPO_ROOT } from './shared.js';
import { safetensorsBytes, type TensorToWrite } from './safetensors-writer.js';
import { hfConfigJson } from './tiny.js';

export function tmpDir(prefix = 'quantspec-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

function tensorOf(w: WeightSet, key: TensorKey): { data: Float32Array | Uint16Array; dtype: string; shape: readonly number[] } {
  // Tensor keys are the WeightSet's own field names.
  const pick = (): any => {
    if (key === 'tokEmbed' || key === 'finalNorm' || key === 'lmHead') return w[key];
    const [, l, role] = key.split('.') as [string, string, string];
    return (w.layers[Number(l)]! as any)[role];
  };
  const t = pick();
  if (t instanceof Float32Array) return { data: t, dtype: 'F32', shape: [t.length] };
  return { data: t.data, dtype: t.dtype.toUpperCase(), shape: t.shape };
}

/** The safetensors tensors of a WeightSet under HF names. */
export function hfTensors(c: ModelConfig, w: WeightSet): TensorToWrite[] {
  return tensorKeys(c, !c.tiedEmbeddings).map((key) => {
    const t = tensorOf(w, key);
    return { name: hfTensorName(key), dtype: t.dtype, shape: t.shape, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  });
}

/**
 * Write config.json, model.safetensors and the embedded model's tokenizer into a fresh folder.
 * `tensors` / `mutateHeader` let tests damage the file.
 */
export function writeHfModel(
  c: ModelConfig, w: WeightSet,
  opts: { dir?: string; tensors?: TensorToWrite[]; mutateHeader?: (h: Record<string, any>) => void; config?: Record<string, unknown> } = {},
): string {
  const dir = opts.dir ?? tmpDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(opts.config ?? hfConfigJson(c)));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), safetensorsBytes(opts.tensors ?? hfTensors(c, w), opts.mutateHeader));
  const tokDir = path.join(REPO_ROOT, 'models', 'pdlm-5.8m-bf16');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(tokDir, f), path.join(dir, f));
  return dir;
}
