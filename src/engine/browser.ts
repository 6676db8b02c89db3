// Loading a model in a browser: its files are fetched from URLs (or taken from picked Files) by
// ranges, with progress: the header, then each tensor into a buffer of its own (model/ranged.ts),
// so no buffer holds a whole weights file and each tensor's memory goes once nothing views it
// (after its upload to the GPU); the forward passes run on WebGPU
// (navigator.gpu), or on the TypeScript reference kernels with backend 'reference'. Nothing here
// reaches Node's file system.

import { InvalidArgumentError, ModelNotFoundError } from '../core/errors.js';
import { createReferenceBackend } from '../kernels/reference/index.js';
import { openModelInMemory, type FileBytes, type ModelInMemory, type ResolvedModel } from '../model/load.js';
import { ModelFile } from '../model/open.js';
import { FIRST_HEADER_BYTES, readRanged, type RangedFormat, type RangeReader } from '../model/ranged.js';
import { ggufTokenizer } from '../tokenizer/gguf.js';
import { HfTokenizer } from '../tokenizer/hf.js';
import { Llama2cTokenizer } from '../tokenizer/llama2c.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { assembleModel, type LoadOptions, type Model } from './model.js';

/** A file to fetch (a URL, absolute or relative to the page) or one the user picked (a File or Blob). */
export type FileInput = string | URL | Blob;

/** A model's files, by format. */
export type ModelFiles =
  | { readonly llama2c: FileInput; readonly tokenizer: FileInput }
  | { readonly gguf: FileInput }
  | {
      readonly config: FileInput;
      readonly tokenizer: FileInput;
      readonly tokenizerConfig?: FileInput;
      readonly generationConfig?: FileInput;
      /** model.safetensors, or every shard. */
      readonly weights: FileInput | readonly FileInput[];
    };

export interface BrowserLoadOptions extends Omit<LoadOptions, 'backend' | 'tokenizer' | 'mmap'> {
  /** 'webgpu' (the default) or 'reference' (scalar TypeScript on the CPU, slow). */
  readonly backend?: 'webgpu' | 'reference';
  /** Bytes fetched so far and the total known so far (files report their size as their download starts). */
  readonly onFetchProgress?: (loadedBytes: number, totalBytes: number) => void;
}

function nameOf(f: FileInput): string {
  if (typeof f === 'string') return f;
  if (f instanceof URL) return f.href;
  return (f as { name?: string }).name ?? 'blob';
}

/** Download progress over several files: each adds its size once its response headers arrive. */
class FetchProgress {
  private loaded = 0;
  private total = 0;
  constructor(private readonly report?: (loaded: number, total: number) => void) {}
  expect(bytes: number): void {
    this.total += bytes;
    this.report?.(this.loaded, this.total);
  }
  add(bytes: number): void {
    this.loaded += bytes;
    this.report?.(this.loaded, Math.max(this.total, this.loaded));
  }
}

async function fetchOrFail(url: FileInput, name: string, init?: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url as string | URL, init);
  } catch (e) {
    throw new ModelNotFoundError(`cannot fetch ${name}: ${(e as Error).message}. Check the URL (and that the server allows it).`);
  }
  if (!res.ok || !res.body) throw new ModelNotFoundError(`fetching ${name} answered ${res.status} ${res.statusText}. Check the URL.`);
  return res;
}

/** A response's body into a buffer of `size` bytes (grown where the server announced none), with progress. */
async function readBody(res: Response, size: number, progress: FetchProgress): Promise<ArrayBuffer> {
  let buf = new Uint8Array(size);
  let at = 0;
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (at + value.length > buf.length) {
      const grown = new Uint8Array(Math.max(buf.length * 2, at + value.length));
      grown.set(buf.subarray(0, at));
      buf = grown;
    }
    buf.set(value, at);
    at += value.length;
    progress.add(value.length);
  }
  return at === buf.length ? buf.buffer : buf.slice(0, at).buffer;
}

/** One file's bytes, whole: a picked file read at once, a URL streamed into a buffer of its announced size. */
async function fetchFile(f: FileInput, progress: FetchProgress): Promise<FileBytes> {
  const name = nameOf(f);
  if (typeof f !== 'string' && !(f instanceof URL)) {
    progress.expect(f.size);
    const data = await f.arrayBuffer();
    progress.add(data.byteLength);
    return { name, data };
  }
  const res = await fetchOrFail(f, name);
  const announced = Number(res.headers.get('content-length') ?? NaN);
  const size = Number.isFinite(announced) && announced >= 0 ? announced : 0;
  progress.expect(size);
  return { name, data: await readBody(res, size, progress) };
}

/** The total size in a 206 answer's Content-Range ("bytes 0-1023/4096"), or NaN. */
function rangeTotal(res: Response): number {
  const m = /^bytes\s+\d+-\d+\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : NaN;
}

/**
 * A model file opened by ranged reads (model/ranged.ts): a picked file through Blob.slice, a URL
 * through HTTP Range requests. A server that answers the first range with the whole file (it
 * ignores Range) gets the whole file read at once instead, as does one that does not say the size.
 */
async function openModelFile(f: FileInput, format: RangedFormat, progress: FetchProgress): Promise<ModelFile> {
  const name = nameOf(f);
  let fetched = 0;
  let reader: RangeReader;
  if (typeof f !== 'string' && !(f instanceof URL)) {
    const blob = f;
    progress.expect(blob.size);
    reader = {
      name, size: blob.size,
      read: async (offset, length) => {
        const data = await blob.slice(offset, offset + length).arrayBuffer();
        progress.add(data.byteLength);
        fetched += data.byteLength;
        return data;
      },
    };
  } else {
    const url = f;
    const probe = await fetchOrFail(url, name, { headers: { range: `bytes=0-${FIRST_HEADER_BYTES - 1}` } });
    const size = probe.status === 206 ? rangeTotal(probe) : NaN;
    if (!Number.isFinite(size)) {
      const announced = Number(probe.headers.get('content-length') ?? NaN);
      const whole = Number.isFinite(announced) && announced >= 0 ? announced : 0;
      progress.expect(whole);
      return ModelFile.fromBuffer(name, await readBody(probe, whole, progress));
    }
    progress.expect(size);
    const first = new Uint8Array(await readBody(probe, Math.min(size, FIRST_HEADER_BYTES), progress));
    fetched = first.length;
    reader = {
      name, size,
      read: async (offset, length) => {
        if (offset + length <= first.length) return first.slice(offset, offset + length).buffer;
        const res = await fetchOrFail(url, name, { headers: { range: `bytes=${offset}-${offset + length - 1}` } });
        if (res.status !== 206) {
          throw new ModelNotFoundError(`fetching bytes ${offset}-${offset + length - 1} of ${name} answered ${res.status} instead of 206 (partial content); the server stopped honouring Range.`);
        }
        const data = await readBody(res, length, progress);
        fetched += data.byteLength;
        return data;
      },
    };
  }
  const file = await readRanged(reader, format);
  progress.expect(fetched - reader.size); // the bytes never fetched (padding, unused tables) leave the total
  return file;
}

async function fetchJson(f: FileInput, progress: FetchProgress): Promise<unknown> {
  const { name, data } = await fetchFile(f, progress);
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch (e) {
    throw new ModelNotFoundError(`${name} is not JSON (${(e as Error).message}).`);
  }
}

/** The model and its tokenizer from its files, fetched concurrently. */
async function openFiles(files: ModelFiles, progress: FetchProgress): Promise<{ resolved: ResolvedModel; tokenizer: Tokenizer }> {
  if ('llama2c' in files) {
    const [model, tok] = await Promise.all([openModelFile(files.llama2c, 'llama2c', progress), fetchFile(files.tokenizer, progress)]);
    const resolved = openModelInMemory({ format: 'llama2c', file: model });
    return { resolved, tokenizer: Llama2cTokenizer.fromBytes(new Uint8Array(tok.data), resolved.config.vocabSize, tok.name) };
  }
  if ('gguf' in files) {
    const resolved = openModelInMemory({ format: 'gguf', file: await openModelFile(files.gguf, 'gguf', progress) });
    return { resolved, tokenizer: ggufTokenizer(resolved.gguf!, resolved.config.eosIds) };
  }
  if (!('config' in files) || !files.weights) {
    throw new InvalidArgumentError('model files must be { llama2c, tokenizer }, { gguf } or { config, tokenizer, weights }.', 'files');
  }
  const shards = Array.isArray(files.weights) ? files.weights : [files.weights as FileInput];
  const optional = (f: FileInput | undefined) => (f === undefined ? Promise.resolve(undefined) : fetchJson(f, progress));
  const [config, generationConfig, tokenizerJson, tokenizerConfig, weights] = await Promise.all([
    fetchJson(files.config, progress), optional(files.generationConfig), fetchJson(files.tokenizer, progress),
    optional(files.tokenizerConfig), Promise.all(shards.map((s) => openModelFile(s, 'safetensors', progress))),
  ]);
  const bytes: ModelInMemory = { format: 'hf', name: nameOf(files.config).replace(/\/?config\.json$/, '') || 'model', config, generationConfig, shards: weights };
  const resolved = openModelInMemory(bytes);
  return { resolved, tokenizer: new HfTokenizer(tokenizerJson as Record<string, unknown>, (tokenizerConfig ?? {}) as Record<string, unknown>, resolved.config.eosIds) };
}

/**
 * Load a model in a browser from its files (URLs or picked Files): llama2.c checkpoint and
 * tokenizer.bin, a GGUF file, or a Hugging Face model's config.json, tokenizer.json and
 * safetensors. Generation then works as with loadModel (Model.generate streams tokens).
 */
export async function loadModelFiles(files: ModelFiles, options: BrowserLoadOptions = {}): Promise<Model> {
  const t0 = performance.now();
  const backend = options.backend ?? 'webgpu';
  if (backend !== 'webgpu' && backend !== 'reference') {
    throw new InvalidArgumentError(`a browser runs backend 'webgpu' or 'reference', got ${JSON.stringify(backend)}.`, 'backend');
  }
  const { resolved, tokenizer } = await openFiles(files, new FetchProgress(options.onFetchProgress));
  return assembleModel(resolved, tokenizer, { ...options, backend }, t0, createReferenceBackend());
}
