// Reference hierarchical KV quantizer (DESIGN 2.1), in emulated F32 arithmetic (Math.fround at
// every step) so that a C kernel doing the same IEEE float operations produces identical codes.
// Rounding: half to even everywhere (as torch.round and C rintf). Metadata: F16, and the codes are
// computed against the F16-rounded scale and minimum, so dequantization matches what was coded.

import { f16Lookup, f32ToF16 } from '../../core/half.js';
import type { FpRows, KvHandle, KvPlanes, KvRowsCopy } from '../../kv/layout.js';

const f16 = f16Lookup();
const F16_MAX = 65504;
const fr = Math.fround;

/** Round half to even. */
export function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function clampF16(x: number): number {
  return x > F16_MAX ? F16_MAX : x < -F16_MAX ? -F16_MAX : x;
}

/** F16 bits of (scale, min) for a group spanning [min, max]. */
export function groupMeta(min: number, max: number): { sBits: number; mnBits: number } {
  const mnBits = f32ToF16(clampF16(min));
  const mn = f16[mnBits]!;
  const s = fr(fr(clampF16(max) - mn) / 15);
  return { sBits: f32ToF16(Math.max(0, s)), mnBits };
}

/** Codes of x in a group (s, mn), packed as u | (l + 8) << 4: upper u in 0..15, lower l in -8..7. */
export function encode(x: number, s: number, mn: number): number {
  if (s === 0) return 8 << 4; // constant group: every value is mn
  let u = rint(fr(fr(x - mn) / s));
  u = u < 0 ? 0 : u > 15 ? 15 : u;
  const r = fr(x - fr(mn + fr(u * s)));
  let l = rint(fr(r / fr(s / 16)));
  l = l < -8 ? -8 : l > 7 ? 7 : l;
  return u | ((l + 8) << 4);
}

function setNibble(plane: Uint8Array, index: number, odd: boolean, code: number): void {
  const b = plane[index]!;
  plane[index] = odd ? (b & 0x0f) | (code << 4) : (b & 0xf0) | code;
}

function fpValue(rows: Uint16Array | Float32Array, dtype: 'f32' | 'f16', i: number): number {
  return dtype === 'f32' ? rows[i]! : f16[rows[i]!]!;
}

export function quantizeKv(planes: KvPlanes, fp: FpRows, srcRow: number, dstPos: number, nTokens: number): void {
  const { kvDim, keyGroupSize: G, valueGroupSize: Gv } = planes;
  const half = kvDim >> 1;
  // Keys: per channel over each group of G tokens.
  for (let g0 = 0; g0 < nTokens; g0 += G) {
    const metaRow = ((dstPos + g0) / G) * kvDim;
    for (let c = 0; c < kvDim; c++) {
      let min = Infinity;
      let max = -Infinity;
      for (let t = 0; t < G; t++) {
        const x = fpValue(fp.keys, fp.dtype, (srcRow + g0 + t) * kvDim + c);
        if (x < min) min = x;
        if (x > max) max = x;
      }
      const { sBits, mnBits } = groupMeta(min, max);
      planes.kScale[metaRow + c] = sBits;
      planes.kMin[metaRow + c] = mnBits;
      const s = f16[sBits]!;
      const mn = f16[mnBits]!;
      for (let t = 0; t < G; t++) {
        const code = encode(fpValue(fp.keys, fp.dtype, (srcRow + g0 + t) * kvDim + c), s, mn);
        const byte = (dstPos + g0 + t) * half + (c >> 1);
        setNibble(planes.kUpper, byte, (c & 1) === 1, code & 15);
        setNibble(planes.kLower, byte, (c & 1) === 1, code >> 4);
      }
    }
  }
  // Values: per token over each group of Gv channels.
  const groups = kvDim / Gv;
  for (let t = 0; t < nTokens; t++) {
    const src = (srcRow + t) * kvDim;
    for (let g = 0; g < groups; g++) {
      let min = Infinity;
      let max = -Infinity;
      for (let c = g * Gv; c < (g + 1) * Gv; c++) {
        const x = fpValue(fp.values, fp.dtype, src + c);
        if (x < min) min = x;
        if (x > max) max = x;
      }
      const { sBits, mnBits } = groupMeta(min, max);
      planes.vScale[(dstPos + t) * groups + g] = sBits;
      planes.vMin[(dstPos + t) * groups + g] = mnBits;
      const s = f16[sBits]!;
      const mn = f16[mnBits]!;
      for (let c = g * Gv; c < (g + 1) * Gv; c++) {
        const code = encode(fpValue(fp.values, fp.dtype, src + c), s, mn);
        const byte = (dstPos + t) * half + (c >> 1);
        setNibble(planes.vUpper, byte, (c & 1) === 1, code & 15);
        setNibble(planes.vLower, byte, (c & 1) === 1, code >> 4);
      }
    }
  }
}

/** Write nTokens F32 rows k, v [nTokens, kvDim] into fp at `row`, converted to fp's dtype. */
export function writeKv(fp: FpRows, row: number, k: Float32Array, v: Float32Array, nTokens: number, kvDim: number): void {
  const base = row * kvDim;
  const len = nTokens * kvDim;
  if (fp.dtype === 'f32') {
    for (let i = 0; i < len; i++) {
      fp.keys[base + i] = k[i]!;
      fp.values[base + i] = v[i]!;
    }
    return;
  }
  for (let i = 0; i < len; i++) {
    fp.keys[base + i] = f32ToF16(k[i]!);
    fp.values[base + i] = f32ToF16(v[i]!);
  }
}

/** Move rows [from, from + nRows) of fp to rows [0, nRows) (copyWithin allows the overlap). */
export function shiftKv(fp: FpRows, from: number, nRows: number, kvDim: number): void {
  fp.keys.copyWithin(0, from * kvDim, (from + nRows) * kvDim);
  fp.values.copyWithin(0, from * kvDim, (from + nRows) * kvDim);
}

/** A CPU copy of rows: the arrays' first rows·kvDim elements. */
interface CpuRowsCopy extends KvRowsCopy {
  readonly keys: FpRows['keys'];
  readonly values: FpRows['values'];
}

export function saveKv(fp: FpRows, nRows: number, kvDim: number): KvRowsCopy {
  const copy: CpuRowsCopy = { rows: nRows, keys: fp.keys.slice(0, nRows * kvDim), values: fp.values.slice(0, nRows * kvDim) };
  return copy;
}

export function restoreKv(fp: FpRows, copy: KvRowsCopy): void {
  const c = copy as CpuRowsCopy;
  (fp.keys as Float32Array | Uint16Array).set(c.keys as Float32Array & Uint16Array);
  (fp.values as Float32Array | Uint16Array).set(c.values as Float32Array & Uint16Array);
}

/** The reference kernels read a view's fields directly: its handle has nothing to refresh. */
export const NO_HANDLE: KvHandle = { refresh() {} };
