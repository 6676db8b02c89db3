// Hugging Face model directories: config.json (+ generation_config.json) and safetensors weights,
// single-file or sharded through model.safetensors.index.json.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelFormatError, ModelNotFoundError } from '../core/errors.js';
import { parseHfConfig, type ModelConfig } from './config.js';
import type { ReadOptions } from './open.js';
import { SafetensorsFile, type TensorInfo } from './safetensors.js';
import type { TensorKey, TensorSource } from './weights.js';

/** Internal name -> HF name: the only place HF weight names appear. */
export function hfTensorName(key: TensorKey): string {
  if (key === 'tokEmbed') return 'model.embed_tokens.weight';
  if (key === 'finalNorm') return 'model.norm.weight';
  if (key === 'lmHead') return 'lm_head.weight';
  const [, layer, role] = key.split('.') as [string, string, string];
  const p = `model.layers.${layer}.`;
  switch (role) {
    case 'attnNorm': return `${p}input_layernorm.weight`;
    case 'ffnNorm': return `${p}post_attention_layernorm.weight`;
    case 'wq': return `${p}self_attn.q_proj.weight`;
    case 'wk': return `${p}self_attn.k_proj.weight`;
    case 'wv': return `${p}self_attn.v_proj.weight`;
    case 'wo': return `${p}self_attn.o_proj.weight`;
    case 'bq': return `${p}self_attn.q_proj.bias`;
    case 'bk': return `${p}self_attn.k_proj.bias`;
    case 'bv': return `${p}self_attn.v_proj.bias`;
    case 'qNorm': return `${p}self_attn.q_norm.weight`;
    case 'kNorm': return `${p}self_attn.k_norm.weight`;
    case 'w1': return `${p}mlp.gate_proj.weight`;
    case 'w2': return `${p}mlp.down_proj.weight`;
    case 'w3': return `${p}mlp.up_proj.weight`;
    default: throw new Error(`unknown tensor key ${key}`);
  }
}

export function readJsonFile(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ModelNotFoundError(`cannot read ${what} at ${file}: ${(e as Error).message}.`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`${file} is not valid JSON (${(e as Error).message}); the file is damaged.`);
  }
}

export function isHfDirectory(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'config.json'));
}

export function readHfConfig(dir: string): ModelConfig {
  const cfgFile = path.join(dir, 'config.json');
  const genFile = path.join(dir, 'generation_config.json');
  const gen = fs.existsSync(genFile) ? readJsonFile(genFile, 'generation_config.json') : undefined;
  return parseHfConfig(readJsonFile(cfgFile, 'config.json'), cfgFile, gen);
}

/** A TensorSource over one or more safetensors files. */
export class SafetensorsSource implements TensorSource {
  readonly where: string;
  private readonly files: SafetensorsFile[];
  private readonly byName = new Map<string, { file: SafetensorsFile; info: TensorInfo }>();

  private constructor(where: string, files: SafetensorsFile[]) {
    this.where = where;
    this.files = files;
    for (const f of files) for (const [name, info] of f.tensors) this.byName.set(name, { file: f, info });
  }

  /** Over files already open (a browser's fetched or picked shards); `where` names the model in errors. */
  static fromFiles(where: string, files: SafetensorsFile[]): SafetensorsSource {
    return new SafetensorsSource(where, files);
  }

  static openDirectory(dir: string, opts: ReadOptions = {}): SafetensorsSource {
    const single = path.join(dir, 'model.safetensors');
    const index = path.join(dir, 'model.safetensors.index.json');
    if (fs.existsSync(index)) {
      const json = readJsonFile(index, 'model.safetensors.index.json') as { weight_map?: Record<string, string> };
      const map = json?.weight_map;
      if (!map || typeof map !== 'object') {
        throw new ModelFormatError(`${index}: missing "weight_map"; the index file is damaged.`);
      }
      const shardNames = [...new Set(Object.values(map))].sort();
      const files: SafetensorsFile[] = [];
      try {
        for (const s of shardNames) {
          if (typeof s !== 'string' || s.includes('/') || s.includes('\\')) {
            throw new ModelFormatError(`${index}: shard name ${JSON.stringify(s)} is not a plain file name.`);
          }
          files.push(SafetensorsFile.open(path.join(dir, s), opts));
        }
      } catch (e) {
        for (const f of files) f.close();
        throw e;
      }
      return new SafetensorsSource(dir, files);
    }
    if (fs.existsSync(single)) return new SafetensorsSource(dir, [SafetensorsFile.open(single, opts)]);
    const hasBin = fs.existsSync(path.join(dir, 'pytorch_model.bin'));
    throw new ModelNotFoundError(
      `${dir} has no model.safetensors or model.safetensors.index.json` +
        (hasBin ? ' (only pytorch_model.bin, which we do not read: convert it to safetensors first).' : '.'),
    );
  }

  info(name: string): TensorInfo | undefined {
    return this.byName.get(name)?.info;
  }

  read(name: string) {
    const entry = this.byName.get(name);
    if (!entry) throw new ModelFormatError(`${this.where}: tensor "${name}" is missing.`);
    return entry.file.read(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
