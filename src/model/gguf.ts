// GGUF reader (versions 2 and 3): a bounds-checked streaming parse of the header, metadata and
// tensor table, then tensors read on demand. F32/F16/BF16 are read as they are; Q4_0 and Q4_1 map
// onto the engine's 4-bit blocks and Q8_0 matrices onto its 8-bit blocks (native kernels run both
// directly); Q4_K and Q6_K are dequantized to F32. Malformed files get ModelFormatError, unknown types UnsupportedDtypeError.

import * as fs from 'node:fs';
import { ModelFormatError, UnsupportedDtypeError } from '../core/errors.js';
import { f16Lookup, f32ToF16 } from '../core/half.js';
import type { DenseTensor } from '../core/tensor.js';
import type { WeightTensor } from '../quant/format.js';
import { ModelFile, openModelFile } from './open.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF"
const DEFAULT_ALIGNMENT = 32;
const MAX_STRING = 1 << 26; // 64 MiB: far above any real key, value or tensor name
const MAX_DIMS = 8;

export enum GgufValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
  ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

/** ggml tensor types this reader knows: block size (elements) and bytes per block. */
export const GGML_TYPES: Readonly<Record<number, { name: string; block: number; bytes: number }>> = {
  0: { name: 'F32', block: 1, bytes: 4 },
  1: { name: 'F16', block: 1, bytes: 2 },
  2: { name: 'Q4_0', block: 32, bytes: 18 },
  3: { name: 'Q4_1', block: 32, bytes: 20 },
  8: { name: 'Q8_0', block: 32, bytes: 34 },
  12: { name: 'Q4_K', block: 256, bytes: 144 },
  14: { name: 'Q6_K', block: 256, bytes: 210 },
  30: { name: 'BF16', block: 1, bytes: 2 },
};

/** Names of other ggml types, for error messages. */
const OTHER_TYPE_NAMES: Readonly<Record<number, string>> = {
  6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 13: 'Q5_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS',
  18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32',
  27: 'I64', 28: 'F64', 29: 'IQ1_M',
};

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml dims, innermost first (ne0 = columns). */
  readonly dims: readonly number[];
  readonly type: number;
  /** Absolute byte offset in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  readonly alignment: number;
  readonly dataOffset: number;
}

/** Reads `length` bytes at `position` into `into` from `offset`; returns how many were read. */
type ReadAt = (into: Uint8Array, offset: number, length: number, position: number) => number;

const UTF8 = new TextDecoder('utf-8');

/** Reads header bytes on demand, never past the end of the file (plain typed arrays: no Node Buffer, so browsers parse GGUF too). */
class Cursor {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly readAt: ReadAt, readonly size: number, private readonly file: string) {}

  private ensure(n: number, what: string, prefix = ''): void {
    if (this.pos + n > this.size) {
      throw new ModelFormatError(`${this.file}: ${prefix}${what} at byte ${this.pos} needs ${n} bytes but the file ends at ${this.size}; it is truncated or damaged.`);
    }
    if (this.pos + n <= this.bufStart + this.buf.length) return;
    const want = Math.min(this.size - this.pos, Math.max(n, 1 << 20));
    this.buf = new Uint8Array(want);
    this.view = new DataView(this.buf.buffer);
    let done = 0;
    while (done < want) {
      const got = this.readAt(this.buf, done, want - done, this.pos + done);
      if (got === 0) throw new ModelFormatError(`${this.file}: unexpected end of file at byte ${this.pos + done}.`);
      done += got;
    }
    this.bufStart = this.pos;
  }

  private take(n: number, what: string, prefix = ''): number {
    this.ensure(n, what, prefix);
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  // take() may replace the buffer, so it runs before `this.view` is read.
  u8(what: string): number { const at = this.take(1, what); return this.view.getUint8(at); }
  i8(what: string): number { const at = this.take(1, what); return this.view.getInt8(at); }
  u16(what: string): number { const at = this.take(2, what); return this.view.getUint16(at, true); }
  i16(what: string): number { const at = this.take(2, what); return this.view.getInt16(at, true); }
  u32(what: string): number { const at = this.take(4, what); return this.view.getUint32(at, true); }
  i32(what: string): number { const at = this.take(4, what); return this.view.getInt32(at, true); }
  f32(what: string): number { const at = this.take(4, what); return this.view.getFloat32(at, true); }
  f64(what: string): number { const at = this.take(8, what); return this.view.getFloat64(at, true); }
  u64(what: string): bigint { const at = this.take(8, what); return this.view.getBigUint64(at, true); }
  i64(what: string): bigint { const at = this.take(8, what); return this.view.getBigInt64(at, true); }

  /**
   * A u64 that must fit a JS number and be at most `max`; `prefix` + `what` names it in the error
   * (joined only then: vocabularies read hundreds of thousands of these). Read as two u32 halves:
   * a BigInt per string cost more than the rest of the string.
   */
  count(what: string, max: number, prefix = ''): number {
    const at = this.take(8, what, prefix);
    const lo = this.view.getUint32(at, true), hi = this.view.getUint32(at + 4, true);
    const v = hi * 4294967296 + lo; // exact below 2^53; above it, far beyond any max anyway
    if (v > max) {
      const exact = (BigInt(hi) << 32n) | BigInt(lo);
      throw new ModelFormatError(`${this.file}: ${prefix}${what} is ${exact}, more than the ${max} the file could hold; the header is damaged.`);
    }
    return v;
  }

  string(what: string): string {
    const n = this.count(what, Math.min(MAX_STRING, this.size - this.pos), 'length of ');
    const at = this.take(n, what);
    const bytes = this.buf.subarray(at, at + n);
    // Vocabularies hold up to hundreds of thousands of short strings: ASCII skips the decoder.
    // (apply, not a spread: spreading a typed array walks its iterator, 5x slower.)
    let ascii = n <= 64;
    for (let i = 0; ascii && i < n; i++) if (bytes[i]! >= 0x80) ascii = false;
    return ascii ? String.fromCharCode.apply(null, bytes as unknown as number[]) : UTF8.decode(bytes);
  }
}

function readValue(c: Cursor, type: number, key: string, depth = 0): GgufValue {
  switch (type) {
    case GgufValueType.UINT8: return c.u8(key);
    case GgufValueType.INT8: return c.i8(key);
    case GgufValueType.UINT16: return c.u16(key);
    case GgufValueType.INT16: return c.i16(key);
    case GgufValueType.UINT32: return c.u32(key);
    case GgufValueType.INT32: return c.i32(key);
    case GgufValueType.FLOAT32: return c.f32(key);
    case GgufValueType.BOOL: return c.u8(key) !== 0;
    case GgufValueType.STRING: return c.string(key);
    case GgufValueType.UINT64: return c.u64(key);
    case GgufValueType.INT64: return c.i64(key);
    case GgufValueType.FLOAT64: return c.f64(key);
    case GgufValueType.ARRAY: {
      if (depth > 2) throw new ModelFormatError(`metadata "${key}": arrays nested too deeply.`);
      const elType = c.u32(`element type of ${key}`);
      // Every element takes at least one byte: the count cannot exceed what is left of the file.
      const n = c.count(`element count of ${key}`, c.size - c.pos);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, elType, key, depth + 1);
      return out;
    }
    default:
      throw new ModelFormatError(`metadata "${key}" has unknown value type ${type}; the file is damaged or from a newer GGUF version.`);
  }
}

function typeName(type: number): string {
  return GGML_TYPES[type]?.name ?? OTHER_TYPE_NAMES[type] ?? `#${type}`;
}

/** Parse the header of an open GGUF file (a file in memory, in a browser). */
export function readGgufFile(f: ModelFile): GgufFile {
  return parseHeader((into, off, len, pos) => {
    const n = Math.min(len, f.size - pos);
    f.readInto(into.subarray(off, off + n), pos, 'the header');
    return n;
  }, f.size, f.path);
}

/** Parse the header of a GGUF file (no tensor data is read). */
export function readGguf(file: string): GgufFile {
  const fd = openModelFile(file);
  try {
    const size = fs.fstatSync(fd).size;
    return parseHeader((into, off, len, pos) => fs.readSync(fd, into, off, len, pos), size, file);
  } finally {
    fs.closeSync(fd);
  }
}

/** Parse a GGUF header held in memory (tests and tools). */
export function parseGgufBytes(bytes: Uint8Array, name = 'buffer'): GgufFile {
  return parseHeader((into, off, len, pos) => {
    const part = bytes.subarray(pos, Math.min(pos + len, bytes.length));
    into.set(part, off);
    return part.length;
  }, bytes.length, name);
}

function parseHeader(readAt: ReadAt, size: number, file: string): GgufFile {
  const c = new Cursor(readAt, size, file);
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) throw new ModelFormatError(`${file} is not a GGUF file (bad magic 0x${magic.toString(16)}).`);
  const version = c.u32('version');
  if (version !== 2 && version !== 3) {
    throw new ModelFormatError(`${file}: GGUF version ${version} is not supported (versions 2 and 3 are).`);
  }
  // Each tensor info takes at least 24 bytes and each key-value pair at least 12.
  const nTensors = c.count('tensor count', Math.floor(size / 24));
  const nKv = c.count('metadata count', Math.floor(size / 12));
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key ${i}`);
    const type = c.u32(`type of ${key}`);
    metadata.set(key, readValue(c, type, key));
  }
  const alignRaw = metadata.get('general.alignment');
  const alignment = typeof alignRaw === 'number' ? alignRaw : DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment < 1 || alignment > 1 << 20 || (alignment & (alignment - 1)) !== 0) {
    throw new ModelFormatError(`${file}: general.alignment ${String(alignRaw)} must be a power of two.`);
  }
  const infos: { name: string; dims: number[]; type: number; rel: bigint }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor name ${i}`);
    const nDims = c.u32(`dimension count of ${name}`);
    if (nDims < 1 || nDims > MAX_DIMS) throw new ModelFormatError(`${file}: tensor "${name}" has ${nDims} dimensions.`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.count(`dimension ${d} of ${name}`, 2 ** 40));
    infos.push({ name, dims, type: c.u32(`type of ${name}`), rel: c.u64(`offset of ${name}`) });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const tensors = new Map<string, GgufTensorInfo>();
  for (const t of infos) {
    if (tensors.has(t.name)) throw new ModelFormatError(`${file}: tensor "${t.name}" appears twice.`);
    const info = GGML_TYPES[t.type];
    if (!info) {
      // An unsupported type is only fatal when the model needs the tensor.
      tensors.set(t.name, { name: t.name, dims: t.dims, type: t.type, offset: -1, byteLength: -1 });
      continue;
    }
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (elements > 2 ** 48) throw new ModelFormatError(`${file}: tensor "${t.name}" claims ${elements} elements.`);
    if (elements % info.block !== 0 || t.dims[0]! % info.block !== 0) {
      throw new ModelFormatError(`${file}: tensor "${t.name}" (${typeName(t.type)}) has ${t.dims[0]} columns, not a multiple of its block of ${info.block}.`);
    }
    const byteLength = (elements / info.block) * info.bytes;
    const offset = BigInt(dataOffset) + t.rel;
    if (offset + BigInt(byteLength) > BigInt(size)) {
      throw new ModelFormatError(`${file}: tensor "${t.name}" data (${byteLength} bytes at ${offset}) runs past the end of the file (${size} bytes); it is truncated.`);
    }
    if (t.rel % BigInt(alignment) !== 0n) throw new ModelFormatError(`${file}: tensor "${t.name}" is not aligned to ${alignment} bytes.`);
    tensors.set(t.name, { name: t.name, dims: t.dims, type: t.type, offset: Number(offset), byteLength });
  }
  return { path: file, version, metadata, tensors, alignment, dataOffset };
}

const f16 = f16Lookup();

/**
 * Read one tensor: dense as stored, Q4_0/Q4_1 as 4-bit blocks, Q8_0 matrices as 8-bit blocks,
 * other quantized types (and Q8_0 vectors) as F32.
 * `file` (the open GGUF) gives F32/F16/BF16 tensors as views of its mapping; without it the
 * tensor is read from g.path.
 */
export function readGgufTensor(g: GgufFile, name: string, file?: ModelFile): WeightTensor {
  const t = g.tensors.get(name);
  if (!t) throw new ModelFormatError(`${g.path}: tensor "${name}" is missing.`);
  const info = GGML_TYPES[t.type];
  if (!info || t.offset < 0) {
    throw new UnsupportedDtypeError(
      `${g.path}: tensor "${name}" has type ${typeName(t.type)}; supported GGUF types are ${Object.values(GGML_TYPES).map((x) => x.name).join(', ')}. ` +
        'Requantize the file (for example to Q8_0 or F16).',
    );
  }
  const align = info.name === 'F32' ? 4 : info.name === 'F16' || info.name === 'BF16' || info.name === 'Q8_0' ? 2 : 1;
  const own = file ?? ModelFile.open(g.path, { mmap: false });
  let bytes: Uint8Array;
  try {
    bytes = own.bytes(t.offset, t.byteLength, align, `tensor "${name}"`);
  } finally {
    if (!file) own.close();
  }
  const shape = [...t.dims].reverse();
  const cols = t.dims[0]!;
  const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (info.name) {
    case 'F32': return { dtype: 'f32', shape, data: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) };
    case 'F16': return { dtype: 'f16', shape, data: new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2) };
    case 'BF16': return { dtype: 'bf16', shape, data: new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2) };
    case 'Q4_0':
    case 'Q4_1': {
      const nb = rows * (cols / 32);
      const codes = new Uint8Array(nb * 16);
      const scales = new Uint16Array(nb);
      const mins = new Uint16Array(nb);
      const stride = info.bytes;
      for (let b = 0; b < nb; b++) {
        const o = b * stride;
        const d = dv.getUint16(o, true);
        scales[b] = d;
        // Q4_0: w = (q - 8)·d, i.e. min = -8·d (exact in F16); Q4_1 stores d and m.
        mins[b] = info.name === 'Q4_0' ? f32ToF16(-8 * f16[d]!) : dv.getUint16(o + 2, true);
        codes.set(bytes.subarray(o + stride - 16, o + stride), b * 16);
      }
      return { dtype: 'q4', packing: 'blocks32', shape: [rows, cols], groupSize: 32, codes, scales, mins };
    }
    case 'Q8_0': {
      if (shape.length === 2) {
        // Matrices stay 8-bit: the codes and F16 scales of the 34-byte blocks (2-byte aligned)
        // moved apart, 17 halfwords at a time, into the engine's Q8 blocks of 32.
        const nb = rows * (cols / 32);
        const src = new Uint16Array(bytes.buffer, bytes.byteOffset, nb * 17);
        const codes = new Int8Array(nb * 32);
        const codes16 = new Uint16Array(codes.buffer);
        const scales = new Uint16Array(nb);
        for (let b = 0; b < nb; b++) {
          const o = b * 17;
          scales[b] = src[o]!;
          for (let i = 0; i < 16; i++) codes16[b * 16 + i] = src[o + 1 + i]!;
        }
        return { dtype: 'q8', packing: 'blocks32', shape: [rows, cols], groupSize: 32, codes, scales };
      }
      const out = new Float32Array(rows * cols);
      for (let b = 0; b < out.length / 32; b++) {
        const d = f16[dv.getUint16(b * 34, true)]!;
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * dv.getInt8(b * 34 + 2 + j);
      }
      return { dtype: 'f32', shape, data: out };
    }
    case 'Q4_K': return { dtype: 'f32', shape, data: dequantQ4K(bytes, rows * cols) };
    case 'Q6_K': return { dtype: 'f32', shape, data: dequantQ6K(bytes, rows * cols) };
    default: throw new UnsupportedDtypeError(`${g.path}: tensor "${name}" has type ${info.name}.`);
  }
}

/** 6-bit scale and minimum of sub-block j of a Q4_K super-block (the packing of ggml's K quants). */
function scaleMinK4(j: number, s: Uint8Array, o: number): [number, number] {
  if (j < 4) return [s[o + j]! & 63, s[o + j + 4]! & 63];
  return [(s[o + j + 4]! & 0xf) | ((s[o + j - 4]! >> 6) << 4), (s[o + j + 4]! >> 4) | ((s[o + j]! >> 6) << 4)];
}

/** Q4_K: super-blocks of 256 = 8 sub-blocks of 32, w = d·sc·q - dmin·m. */
export function dequantQ4K(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  for (let b = 0; b < n / 256; b++) {
    const o = b * 144;
    const d = f16[dv.getUint16(o, true)]!;
    const dmin = f16[dv.getUint16(o + 2, true)]!;
    const qs = o + 16;
    for (let j = 0; j < 8; j += 2) {
      const [sc1, m1] = scaleMinK4(j, bytes, o + 4);
      const [sc2, m2] = scaleMinK4(j + 1, bytes, o + 4);
      for (let l = 0; l < 32; l++) {
        const q = bytes[qs + (j / 2) * 32 + l]!;
        out[b * 256 + j * 32 + l] = d * sc1 * (q & 0xf) - dmin * m1;
        out[b * 256 + (j + 1) * 32 + l] = d * sc2 * (q >> 4) - dmin * m2;
      }
    }
  }
  return out;
}

/** Q6_K: super-blocks of 256, 6-bit codes split into 4 low and 2 high bits, 16 int8 scales. */
export function dequantQ6K(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  for (let b = 0; b < n / 256; b++) {
    const o = b * 210;
    const d = f16[dv.getUint16(o + 208, true)]!;
    for (let half = 0; half < 2; half++) {
      const ql = o + half * 64;
      const qh = o + 128 + half * 32;
      const sc = o + 192 + half * 8;
      const y = b * 256 + half * 128;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = bytes[qh + l]!;
        const q1 = ((bytes[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((bytes[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((bytes[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((bytes[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[y + l] = d * dv.getInt8(sc + is) * q1;
        out[y + l + 32] = d * dv.getInt8(sc + is + 2) * q2;
        out[y + l + 64] = d * dv.getInt8(sc + is + 4) * q3;
        out[y + l + 96] = d * dv.getInt8(sc + is + 6) * q4;
      }
    }
  }
  return out;
}

/** Typed metadata access with named errors. */
export function metaNumber(g: GgufFile, key: string, fallback?: number): number {
  const v = g.metadata.get(key);
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (fallback !== undefined) return fallback;
  throw new ModelFormatError(`${g.path}: metadata "${key}" is missing or not a number.`);
}

export function metaString(g: GgufFile, key: string): string | undefined {
  const v = g.metadata.get(key);
  return typeof v === 'string' ? v : undefined;
}

export function dense(t: WeightTensor): DenseTensor | null {
  return t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16' ? t : null;
}
