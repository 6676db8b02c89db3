// Reference 4- and 8-bit group quantization of weight matrices (round to nearest), used to build
// the draft's weights at load time. Groups are `groupSize` consecutive columns of a row.

import { InvalidArgumentError } from '../core/errors.js';
import { readDenseRow, type DenseTensor } from '../core/tensor.js';
import { f16Lookup, f32ToF16 } from '../core/half.js';
import { groupsPerRow, type Q4Tensor, type Q8Tensor } from './format.js';

const f16 = f16Lookup();

/** Round half to even (the one rounding rule of the project). */
function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Quantize a dense [rows, cols] matrix to 4 bits per weight.
 * symmetric (like llama.cpp Q4_0): scale = v/-8 for the group's largest-magnitude value v, q = x/scale + 8.
 * asymmetric (like Q4_1): scale = (max - min)/15, q = (x - min)/scale.
 */
export function quantizeQ4(t: DenseTensor, groupSize: number, symmetric: boolean): Q4Tensor {
  if (t.shape.length !== 2) throw new InvalidArgumentError(`only matrices can be quantized, got shape [${t.shape.join(', ')}].`);
  if (!Number.isInteger(groupSize) || groupSize < 2 || groupSize % 2 !== 0) {
    throw new InvalidArgumentError(`draft.groupSize must be an even integer >= 2, got ${groupSize}.`, 'draft.groupSize');
  }
  const [rows, cols] = t.shape as [number, number];
  const nGroups = groupsPerRow(cols, groupSize);
  const rowBytes = (nGroups * groupSize) / 2;
  const codes = new Uint8Array(rows * rowBytes);
  const scales = new Float32Array(rows * nGroups);
  const mins = symmetric ? null : new Float32Array(rows * nGroups);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    readDenseRow(row, t, r, cols);
    for (let g = 0; g < nGroups; g++) {
      const lo = g * groupSize;
      const hi = Math.min(cols, lo + groupSize);
      let scale: number;
      let offset: number;
      if (symmetric) {
        let v = 0;
        for (let j = lo; j < hi; j++) if (Math.abs(row[j]!) > Math.abs(v)) v = row[j]!;
        scale = Math.fround(v / -8);
        offset = 0;
      } else {
        let mn = Infinity;
        let mx = -Infinity;
        for (let j = lo; j < hi; j++) {
          mn = Math.min(mn, row[j]!);
          mx = Math.max(mx, row[j]!);
        }
        scale = Math.fround((mx - mn) / 15);
        offset = mn;
        mins![r * nGroups + g] = mn;
      }
      scales[r * nGroups + g] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      for (let j = lo; j < hi; j++) {
        let q = symmetric ? rint(row[j]! * inv) + 8 : rint((row[j]! - offset) * inv);
        q = q < 0 ? 0 : q > 15 ? 15 : q;
        const byte = r * rowBytes + (j >> 1);
        codes[byte] = j & 1 ? codes[byte]! | (q << 4) : q;
      }
    }
  }
  return { dtype: 'q4', packing: 'pairs', shape: [rows, cols], groupSize, symmetric, codes, scales, mins };
}

/**
 * The same weights in 'blocks32' packing for the native kernels: every group of a multiple of 32
 * columns is split into blocks of 32 sharing its scale; symmetric groups get min = -8·scale.
 * Returns null for group sizes that are not a multiple of 32.
 */
export function repackQ4Blocks32(w: Q4Tensor): Q4Tensor | null {
  if (w.packing === 'blocks32') return w;
  if (w.groupSize % 32 !== 0) return null;
  // Scales and minimums become F16 (round to nearest); the codes stay as quantized.
  const [rows, cols] = w.shape;
  const nb = Math.ceil(cols / 32);
  const nGroups = groupsPerRow(cols, w.groupSize);
  const rowBytes = (nGroups * w.groupSize) >> 1;
  const codes = new Uint8Array(rows * nb * 16); // [rows, nb, 16]
  const scales = new Uint16Array(rows * nb); // [rows, nb] F16
  const mins = new Uint16Array(rows * nb); // [rows, nb] F16
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const gi = r * nGroups + Math.floor((b * 32) / w.groupSize);
      const scale = w.scales[gi]!;
      scales[r * nb + b] = f32ToF16(scale);
      mins[r * nb + b] = f32ToF16(w.symmetric ? -8 * scale : w.mins![gi]!);
      for (let i = 0; i < 32; i++) {
        const j = b * 32 + i;
        if (j >= cols) break;
        const byte = w.codes[r * rowBytes + (j >> 1)]!;
        const q = j & 1 ? byte >> 4 : byte & 15;
        const o = (r * nb + b) * 16 + (i & 15);
        codes[o] = i < 16 ? codes[o]! | q : codes[o]! | (q << 4);
      }
    }
  }
  return { dtype: 'q4', packing: 'blocks32', shape: w.shape, groupSize: 32, codes, scales, mins };
}

/** out[0..cols) = row `row` of a Q4 matrix, dequantized. */
export function dequantQ4Row(out: Float32Array, w: Q4Tensor, row: number): void {
  const cols = w.shape[1];
  if (w.packing === 'blocks32') {
    const nb = Math.ceil(cols / 32);
    for (let j = 0; j < cols; j++) {
      const b = j >> 5;
      const i = j & 31;
      const byte = w.codes[(row * nb + b) * 16 + (i & 15)]!;
      const q = i < 16 ? byte & 15 : byte >> 4;
      out[j] = q * f16[w.scales[row * nb + b]!]! + f16[w.mins[row * nb + b]!]!;
    }
    return;
  }
  const g = w.groupSize;
  const nGroups = groupsPerRow(cols, g);
  const rowBytes = (nGroups * g) >> 1;
  for (let j = 0; j < cols; j++) {
    const byte = w.codes[row * rowBytes + (j >> 1)]!;
    const q = j & 1 ? byte >> 4 : byte & 15;
    const gi = row * nGroups + Math.floor(j / g);
    out[j] = w.symmetric ? (q - 8) * w.scales[gi]! : q * w.scales[gi]! + w.mins![gi]!;
  }
}

/**
 * Quantize a dense [rows, cols] matrix to 8 bits per weight, symmetric (like llama.cpp Q8_0):
 * scale = amax/127 for the group's largest magnitude amax, q = rint(x/scale) in -127..127.
 */
export function quantizeQ8(t: DenseTensor, groupSize: number): Q8Tensor {
  if (t.shape.length !== 2) throw new InvalidArgumentError(`only matrices can be quantized, got shape [${t.shape.join(', ')}].`);
  if (!Number.isInteger(groupSize) || groupSize < 1) {
    throw new InvalidArgumentError(`the 8-bit group size must be an integer >= 1, got ${groupSize}.`, 'draft.groupSize');
  }
  const [rows, cols] = t.shape as [number, number];
  const nGroups = groupsPerRow(cols, groupSize);
  const rowLen = nGroups * groupSize;
  const codes = new Int8Array(rows * rowLen);
  const scales = new Float32Array(rows * nGroups);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    readDenseRow(row, t, r, cols);
    for (let g = 0; g < nGroups; g++) {
      const lo = g * groupSize;
      const hi = Math.min(cols, lo + groupSize);
      let amax = 0;
      for (let j = lo; j < hi; j++) amax = Math.max(amax, Math.abs(row[j]!));
      const scale = Math.fround(amax / 127);
      scales[r * nGroups + g] = scale;
      const inv = scale === 0 ? 0 : 1 / scale;
      for (let j = lo; j < hi; j++) {
        const q = rint(row[j]! * inv);
        codes[r * rowLen + j] = q < -127 ? -127 : q > 127 ? 127 : q;
      }
    }
  }
  return { dtype: 'q8', packing: 'groups', shape: [rows, cols], groupSize, codes, scales };
}

/**
 * The same weights in 'blocks32' packing for the native kernels: groups of a multiple of 32
 * columns split into blocks of 32 sharing its scale, rounded to F16 (the codes stay as quantized).
 * Returns null for group sizes that are not a multiple of 32.
 */
export function repackQ8Blocks32(w: Q8Tensor): Q8Tensor | null {
  if (w.packing === 'blocks32') return w;
  if (w.groupSize % 32 !== 0) return null;
  const [rows, cols] = w.shape;
  const nb = Math.ceil(cols / 32);
  const nGroups = groupsPerRow(cols, w.groupSize);
  const rowLen = nGroups * w.groupSize;
  const codes = new Int8Array(rows * nb * 32); // [rows, nb, 32]
  const scales = new Uint16Array(rows * nb); // [rows, nb] F16
  for (let r = 0; r < rows; r++) {
    codes.set(w.codes.subarray(r * rowLen, r * rowLen + nb * 32), r * nb * 32);
    for (let b = 0; b < nb; b++) scales[r * nb + b] = f32ToF16(w.scales[r * nGroups + Math.floor((b * 32) / w.groupSize)]!);
  }
  return { dtype: 'q8', packing: 'blocks32', shape: w.shape, groupSize: 32, codes, scales };
}

/** out[0..cols) = row `row` of a Q8 matrix, dequantized. */
export function dequantQ8Row(out: Float32Array, w: Q8Tensor, row: number): void {
  const cols = w.shape[1];
  const g = w.groupSize;
  const nGroups = groupsPerRow(cols, g);
  const rowLen = nGroups * g;
  for (let j = 0; j < cols; j++) {
    const gi = row * nGroups + Math.floor(j / g);
    const scale = w.packing === 'blocks32' ? f16[w.scales[gi]!]! : w.scales[gi]!;
    out[j] = w.codes[row * rowLen + j]! * scale;
  }
}
