// Safetensors reader: parses the header once, then gives each tensor's byte range on demand, as a
// view of the mapped file or read into its own buffer (open.ts; never a whole-file copy). Every
// offset is checked against the file size first.

import { ModelFormatError, UnsupportedDtypeError } from '../core/errors.js';
import { type DenseTensor, numel, shapeString } from '../core/tensor.js';
import { ModelFile, type ByteRange, type ReadOptions } from './open.js';

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const DTYPE_SIZES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};
const SUPPORTED = ['F32', 'F16', 'BF16'];

export interface TensorInfo {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor's data in the file. */
  readonly offset: number;
  readonly byteLength: number;
  readonly file: string;
}

export class SafetensorsFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly file: ModelFile;

  private constructor(file: ModelFile, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.path = file.path;
    this.file = file;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  static open(path: string, opts: ReadOptions = {}): SafetensorsFile {
    return SafetensorsFile.fromFile(ModelFile.open(path, opts));
  }

  /** A safetensors file from an open file (one in memory, in a browser); closed here when it is not one. */
  static fromFile(file: ModelFile): SafetensorsFile {
    try {
      const { tensors, metadata } = parseHeader(file);
      return new SafetensorsFile(file, tensors, metadata);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** The byte ranges of the tensors (what a ranged reader fetches). */
  byteRanges(): ByteRange[] {
    return [...this.tensors.values()].map((t) => ({ offset: t.offset, length: t.byteLength }));
  }

  /** One tensor: a view of the mapped file where its offset suits its dtype, else its own copy. */
  read(name: string): DenseTensor {
    const info = this.tensors.get(name);
    if (!info) throw new ModelFormatError(`${this.path}: tensor "${name}" is not in this file.`);
    if (!SUPPORTED.includes(info.dtype)) {
      throw new UnsupportedDtypeError(
        `${this.path}: tensor "${name}" has dtype ${info.dtype}; supported dtypes are ${SUPPORTED.join(', ')}. ` +
          'Convert the checkpoint to F32, F16 or BF16.',
      );
    }
    const el = DTYPE_SIZES[info.dtype]!;
    const b = this.file.bytes(info.offset, info.byteLength, el, `tensor "${name}"`);
    if (info.dtype === 'F32') return { dtype: 'f32', shape: info.shape, data: new Float32Array(b.buffer, b.byteOffset, info.byteLength / 4) };
    return { dtype: info.dtype === 'F16' ? 'f16' : 'bf16', shape: info.shape, data: new Uint16Array(b.buffer, b.byteOffset, info.byteLength / 2) };
  }

  close(): void {
    this.file.close();
  }
}

function parseHeader(f: ModelFile): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const { size, path: file } = f;
  const name = file.split(/[\\/]/).pop()!;
  if (size < 8) throw new ModelFormatError(`${name}: ${size} bytes is too short for a safetensors file (truncated?).`);
  const lenBuf = new Uint8Array(8);
  f.readInto(lenBuf, 0, 'the header length');
  const headerLen = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
  if (headerLen < 2 || headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
    throw new ModelFormatError(
      `${name}: header length ${headerLen} does not fit a ${size}-byte file; the file is truncated or not safetensors.`,
    );
  }
  const headerBytes = new Uint8Array(headerLen);
  f.readInto(headerBytes, 8, 'the header');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    throw new ModelFormatError(`${name}: the header is not valid UTF-8 JSON; the file is damaged or not safetensors.`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelFormatError(`${name}: the header must be a JSON object.`);
  }
  const dataStart = 8 + headerLen;
  const dataSize = size - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [key, raw] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      metadata = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, string>;
      continue;
    }
    tensors.set(key, parseEntry(key, raw, name, file, dataStart, dataSize));
  }
  return { tensors, metadata };
}

function parseEntry(key: string, raw: unknown, name: string, file: string, dataStart: number, dataSize: number): TensorInfo {
  const bad = (why: string): never => {
    throw new ModelFormatError(`${name}: tensor "${key}": ${why}. The file is damaged or was written incorrectly.`);
  };
  if (typeof raw !== 'object' || raw === null) bad('entry is not an object');
  const e = raw as Record<string, unknown>;
  const dtype = e['dtype'];
  const shape = e['shape'];
  const offsets = e['data_offsets'];
  if (typeof dtype !== 'string') bad('missing dtype');
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) bad('bad shape');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    bad('bad data_offsets');
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) bad(`data_offsets [${begin}, ${end}] are reversed`);
  if (end > dataSize) {
    bad(`data_offsets end ${end} is past the end of the data section (${dataSize} bytes); the file is truncated`);
  }
  const elSize = DTYPE_SIZES[dtype as string];
  const dims = shape as number[];
  if (elSize !== undefined && (end - begin) !== numel(dims) * elSize) {
    bad(`shape ${shapeString(dims)} of ${dtype} needs ${numel(dims) * elSize} bytes but data_offsets span ${end - begin}`);
  }
  return { name: key, dtype: dtype as string, shape: dims, offset: dataStart + begin, byteLength: end - begin, file };
}
