// Decoding one row of any weight format to F32: the single definition of what each format means,
// shared by the reference matmul and embedding lookup.

import { readDenseRow } from '../../core/tensor.js';
import type { WeightTensor } from '../../quant/format.js';
import { dequantQ4Row, dequantQ8Row } from '../../quant/weights.js';

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
    case 'q8':
      dequantQ8Row(out, w, row);
      return;
  }
}
