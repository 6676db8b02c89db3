// GGML quantized blocks built from known values, for tests: each encoder returns the bytes and
// the values a correct decoder must read back (F16 scales rounded as stored).

import { f16ToF32, f32ToF16 } from '../../src/core/half.js';

/** Q8_0 blocks of 32: F16 d = max|x|/127, int8 q = round(x/d). Returns the bytes and the decoded values. */
export function encodeQ8_0(x: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const nb = x.length / 32;
  const bytes = new Uint8Array(nb * 34);
  const values = new Float32Array(x.length);
  const dv = new DataView(bytes.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const dBits = f32ToF16(amax / 127);
    const d = f16ToF32(dBits);
    dv.setUint16(b * 34, dBits, true);
    for (let j = 0; j < 32; j++) {
      const q = d > 0 ? Math.max(-127, Math.min(127, Math.round(x[b * 32 + j]! / d))) : 0;
      dv.setInt8(b * 34 + 2 + j, q);
      values[b * 32 + j] = Math.fround(d * q);
    }
  }
  return { bytes, values };
}

/** Q4_0 blocks of 32: F16 d, q in 0..15 with w = (q - 8)·d; byte j = element j | element j+16 << 4. */
export function encodeQ4_0(x: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const nb = x.length / 32;
  const bytes = new Uint8Array(nb * 18);
  const values = new Float32Array(x.length);
  const dv = new DataView(bytes.buffer);
  for (let b = 0; b < nb; b++) {
    let v = 0;
    for (let j = 0; j < 32; j++) if (Math.abs(x[b * 32 + j]!) > Math.abs(v)) v = x[b * 32 + j]!;
    const dBits = f32ToF16(v / -8);
    const d = f16ToF32(dBits);
    dv.setUint16(b * 18, dBits, true);
    for (let j = 0; j < 32; j++) {
      const q = d !== 0 ? Math.max(0, Math.min(15, Math.round(x[b * 32 + j]! / d) + 8)) : 8;
      bytes[b * 18 + 2 + (j & 15)] |= j < 16 ? q : q << 4;
      values[b * 32 + j] = (q - 8) * d;
    }
  }
  return { bytes, values };
}

/** Q4_K super-blocks of 256 with fixed 6-bit scales: exercises the scale packing of all 8 sub-blocks. */
export function encodeQ4_K(x: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const nb = x.length / 256;
  const bytes = new Uint8Array(nb * 144);
  const values = new Float32Array(x.length);
  const dv = new DataView(bytes.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * 144;
    const d = f16ToF32(f32ToF16(0.01));
    const dmin = f16ToF32(f32ToF16(0.02));
    dv.setUint16(o, f32ToF16(d), true);
    dv.setUint16(o + 2, f32ToF16(dmin), true);
    // sub-block s: scale sc[s] and min m[s], 6 bits each, packed as ggml does.
    const sc = [10, 20, 30, 40, 50, 60, 33, 63];
    const m = [5, 15, 25, 35, 45, 55, 1, 62];
    const scales = bytes.subarray(o + 4, o + 16);
    for (let j = 0; j < 4; j++) {
      scales[j] = (sc[j]! & 63) | ((sc[j + 4]! >> 4) << 6);
      scales[j + 4] = (m[j]! & 63) | ((m[j + 4]! >> 4) << 6);
      scales[j + 8] = (sc[j + 4]! & 15) | ((m[j + 4]! & 15) << 4);
    }
    for (let s = 0; s < 8; s++) {
      for (let l = 0; l < 32; l++) {
        const i = b * 256 + s * 32 + l;
        const q = Math.max(0, Math.min(15, Math.round((x[i]! + dmin * m[s]!) / (d * sc[s]!))));
        const byte = o + 16 + (s >> 1) * 32 + l;
        bytes[byte] |= s % 2 === 0 ? q : q << 4;
        values[i] = d * sc[s]! * q - dmin * m[s]!;
      }
    }
  }
  return { bytes, values };
}

/** Q4_1 blocks of 32: d and m in F16, value = d·q + m with q in [0, 15], nibbles laid out as Q4_0's. */
export function encodeQ4_1(x: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const nb = x.length / 32;
  const bytes = new Uint8Array(nb * 20);
  const values = new Float32Array(x.length);
  const dv = new DataView(bytes.buffer);
  for (let b = 0; b < nb; b++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < 32; j++) {
      lo = Math.min(lo, x[b * 32 + j]!);
      hi = Math.max(hi, x[b * 32 + j]!);
    }
    const dBits = f32ToF16((hi - lo) / 15);
    const mBits = f32ToF16(lo);
    const d = f16ToF32(dBits);
    const m = f16ToF32(mBits);
    dv.setUint16(b * 20, dBits, true);
    dv.setUint16(b * 20 + 2, mBits, true);
    for (let j = 0; j < 32; j++) {
      const q = d !== 0 ? Math.max(0, Math.min(15, Math.round((x[b * 32 + j]! - m) / d))) : 0;
      bytes[b * 20 + 4 + (j & 15)] |= j < 16 ? q : q << 4;
      values[b * 32 + j] = d * q + m;
    }
  }
  return { bytes, values };
}

/**
 * Q6_K super-blocks of 256 (210 bytes: ql[128] low nibbles, qh[64] high 2-bit pairs, 16 int8
 * scales, d in F16), value = d·scale[s]·(q - 32) with q in [0, 63] and s = element / 16, in ggml's
 * interleaving: in each half of 128, element l (0-31) of quarter k takes its low nibble from
 * ql[64·half + l + 32·(k & 1)] (high nibble when k ≥ 2) and its top bits from bits 2k of qh[32·half + l].
 */
export function encodeQ6_K(x: Float32Array): { bytes: Uint8Array; values: Float32Array } {
  const nb = x.length / 256;
  const bytes = new Uint8Array(nb * 210);
  const values = new Float32Array(x.length);
  const dv = new DataView(bytes.buffer);
  const scales = [17, -23, 31, 12, -9, 27, 20, -31, 5, 14, -18, 25, 30, -11, 8, 22];
  for (let b = 0; b < nb; b++) {
    const o = b * 210;
    let amax = 0;
    for (let j = 0; j < 256; j++) amax = Math.max(amax, Math.abs(x[b * 256 + j]!));
    const dBits = f32ToF16(amax / (31 * 31) || 1e-3);
    const d = f16ToF32(dBits);
    dv.setUint16(o + 208, dBits, true);
    for (let s = 0; s < 16; s++) dv.setInt8(o + 192 + s, scales[s]!);
    for (let half = 0; half < 2; half++) {
      for (let k = 0; k < 4; k++) {
        for (let l = 0; l < 32; l++) {
          const e = half * 128 + k * 32 + l; // element within the super-block
          const sc = scales[e >> 4]!;
          const q = Math.max(0, Math.min(63, Math.round(x[b * 256 + e]! / (d * sc)) + 32));
          const qlByte = o + half * 64 + l + 32 * (k & 1);
          bytes[qlByte] |= k < 2 ? q & 15 : (q & 15) << 4;
          bytes[o + 128 + half * 32 + l] |= (q >> 4) << (2 * k);
          values[b * 256 + e] = d * sc * (q - 32);
        }
      }
    }
  }
  return { bytes, values };
}

export const ENCODERS = { Q8_0: [8, encodeQ8_0], Q4_0: [2, encodeQ4_0], Q4_1: [3, encodeQ4_1], Q4_K: [12, encodeQ4_K], Q6_K: [14, encodeQ6_K] } as const;
