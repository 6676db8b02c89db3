// Decoding one row of any weight format to F32: the single definition of what each format means,
// shared by the reference matmul and embedding lookup.

import { f16Lookup } from '../../core/half.js';
import { groupsPerRow, type WeightTensor } from '../../quant/format.js';

const f16 = f16Lookup();
const bfBits = new Uint32Array(1);
const bfFloat = new Float32Array(bfBits.buffer);

/** out[0..cols) = row `row` of w as F32. */
export function decodeRow(out: Float32Array, w: WeightTensor, row: number, cols: number): void {
  switch (w.dtype) {
    case 'f32': {
      const base = row * cols;
      for (let j = 0; j < cols; j++) out[j] = w.data[base + j]!;
      return;
    }
    case 'f16': {
      const base = row * cols;
      for (let j = 0; j < cols; j++) out[j] = f16[w.data[base + j]!]!;
      return;
    }
    case 'bf16': {
      const base = row * cols;
      for (let j = 0; j < cols; j++) {
        bfBits[0] = w.data[base + j]! << 16;
        out[j] = bfFloat[0]!;
      }
      return;
    }
    case 'q4': {
      const g = w.groupSize;
      const nGroups = groupsPerRow(cols, g);
      const rowBytes = (nGroups * g) >> 1;
      for (let j = 0; j < cols; j++) {
        const byte = w.codes[row * rowBytes + (j >> 1)]!;
        const q = j & 1 ? byte >> 4 : byte & 15;
        const gi = row * nGroups + Math.floor(j / g);
        out[j] = w.symmetric ? (q - 8) * w.scales[gi]! : q * w.scales[gi]! + w.mins![gi]!;
      }
      return;
    }
    case 'q8': {
      const g = w.groupSize;
      const nGroups = groupsPerRow(cols, g);
      const rowLen = nGroups * g;
      for (let j = 0; j < cols; j++) out[j] = w.codes[row * rowLen + j]! * w.scales[row * nGroups + Math.floor(j / g)]!;
      return;
    }
  }
}

