// Resolve a model path to its format and read config + weights + tokenizer.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelNotFoundError } from '../core/errors.js';
import type { WeightTensor } from '../quant/format.js';
import type { ModelConfig } from './config.js';
import { hfTensorName, isHfDirectory, readHfConfig, SafetensorsSource } from './hf.js';
import { parseHfConfig } from './config.js';
import { SafetensorsFile } from './safetensors.js';
import { Llama2cSource, llama2cTensorName } from './llama2c.js';
import type { GgufFile } from './gguf.js';
import { ggufTensorName, openGguf, openGgufFile } from './gguf-model.js';
import { ModelFile, type ReadOptions } from './open.js';
import { isSyntheticPath, SYNTHETIC_PREFIX, syntheticConfig, SyntheticSource } from './synthetic.js';
import { loadWeightSet, type LoadProgress, type TensorKey, type TensorSource, type WeightSet } from './weights.js';

export type ModelFormat = 'hf' | 'llama2c' | 'gguf' | 'synthetic';

export interface ResolvedModel {
  readonly format: ModelFormat;
  /** The directory or file that was opened. */
  readonly path: string;
  readonly config: ModelConfig;
  readonly source: TensorSource;
  readonly nameOf: (key: TensorKey) => string;
  /** The parsed GGUF header, for its tokenizer metadata. */
  readonly gguf?: GgufFile;
}

function llama2cInDirectory(dir: string): string | null {
  const bins = fs.readdirSync(dir).filter((f) => f.endsWith('.bin') && !/^tok(enizer)?\d*\.bin$/.test(f));
  return bins.length === 1 ? path.join(dir, bins[0]!) : null;
}

/** Open a model's tensors and config without reading weight data yet (files are mapped unless opts.mmap is false). */
export function openModel(modelPath: string, opts: ReadOptions = {}): ResolvedModel {
  if (isSyntheticPath(modelPath)) {
    const name = modelPath.slice(SYNTHETIC_PREFIX.length);
    const config = syntheticConfig(name);
    return { format: 'synthetic', path: modelPath, config, source: new SyntheticSource(name, config), nameOf: hfTensorName };
  }
  const p = path.resolve(modelPath);
  if (!fs.existsSync(p)) throw new ModelNotFoundError(`model path ${p} does not exist. Pass a model directory or file.`);
  const stat = fs.statSync(p);
  if (stat.isDirectory()) {
    if (isHfDirectory(p)) {
      const config = readHfConfig(p);
      return { format: 'hf', path: p, config, source: SafetensorsSource.openDirectory(p, opts), nameOf: hfTensorName };
    }
    const bin = llama2cInDirectory(p);
    if (bin) return openModel(bin, opts);
    throw new ModelNotFoundError(
      `${p} is neither a Hugging Face model directory (no config.json) nor a folder with one llama2.c .bin checkpoint.`,
    );
  }
  if (p.endsWith('.gguf')) {
    const { config, source } = openGguf(p, opts);
    return { format: 'gguf', path: p, config, source, nameOf: ggufTensorName, gguf: source.gguf };
  }
  if (p.endsWith('.safetensors')) return openModel(path.dirname(p), opts);
  if (p.endsWith('.bin')) {
    const source = Llama2cSource.open(p, opts);
    return { format: 'llama2c', path: p, config: source.config, source, nameOf: llama2cTensorName };
  }
  throw new ModelNotFoundError(`${p}: unrecognised model file (expected a directory, .gguf, .bin or .safetensors).`);
}

/** A file held in memory: a browser's fetched or picked file. */
export interface FileBytes {
  readonly name: string;
  readonly data: ArrayBuffer;
}

/**
 * A model whose files are held in memory, by format: whole (ModelFile.fromBuffer) or as the
 * byte ranges of their header and tensors (model/ranged.ts). The browser's loader opens these
 * (engine/browser.ts).
 */
export type ModelInMemory =
  | { readonly format: 'llama2c'; readonly file: ModelFile }
  | { readonly format: 'gguf'; readonly file: ModelFile }
  | { readonly format: 'hf'; readonly name: string; readonly config: unknown; readonly generationConfig?: unknown; readonly shards: readonly ModelFile[] };

/** Open a model held in memory: its tensors are views of the buffers where their offsets allow. */
export function openModelInMemory(m: ModelInMemory): ResolvedModel {
  switch (m.format) {
    case 'llama2c': {
      const source = Llama2cSource.fromFile(m.file);
      return { format: 'llama2c', path: m.file.path, config: source.config, source, nameOf: llama2cTensorName };
    }
    case 'gguf': {
      const { config, source } = openGgufFile(m.file);
      return { format: 'gguf', path: m.file.path, config, source, nameOf: ggufTensorName, gguf: source.gguf };
    }
    case 'hf': {
      const config = parseHfConfig(m.config, `${m.name}/config.json`, m.generationConfig);
      const files = m.shards.map((f) => SafetensorsFile.fromFile(f));
      return { format: 'hf', path: m.name, config, source: SafetensorsSource.fromFiles(m.name, files), nameOf: hfTensorName };
    }
  }
}

export function loadWeights(m: ResolvedModel, prepare: (w: WeightTensor) => WeightTensor, onProgress?: LoadProgress): WeightSet {
  try {
    return loadWeightSet(m.config, m.source, m.nameOf, prepare, onProgress);
  } finally {
    m.source.close();
  }
}
