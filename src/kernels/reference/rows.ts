// Decoding one row of any weight format to F32: the single definition of what each format means,
// shared by the reference matmul and embedding lookup.

import { readDenseRow } from '../../core/tensor.js';
import { groupsPerRow, type WeightTensor } from '../../quant/format.js';
import { dequantQ4Row } from '../../quant/weights.js';

/** out[0..cols) = row `row` of w as F32. */
export function decodeRow(out: Float32Array, w: WeightTensor, row: number, cols: number): void {
  switch (w.dtype) {
    case 'f32':
    case 'f16':
    case 'bf16':
      readDenseRow(out, w, row, cols);
      return;
    case 'q4':
      dequantQ4Row(out, w, row);
      return;
    case 'q8': {
      const g = w.groupSize;
      const nGroups = groupsPerRow(cols, g);
      const rowLen = nGroups * g;
      for (let j = 0; j < cols; j++) out[j] = w.codes[row * rowLen + j]! * w.scales[row * nGroups + Math.floor(j / g)]!;
      return;
    }
  }
}
