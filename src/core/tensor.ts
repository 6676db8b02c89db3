// Dense tensors as loaded from model files. Matrices are row-major [rows, cols] as in PyTorch
// (`out = x · Wᵀ`, one output per row). Quantized formats live in quant/format.ts.

import { f16Lookup } from './half.js';

export type DenseDtype = 'f32' | 'f16' | 'bf16';

export type DenseTensor =
  | { readonly dtype: 'f32'; readonly shape: readonly number[]; readonly data: Float32Array }
  | { readonly dtype: 'f16'; readonly shape: readonly number[]; readonly data: Uint16Array }
  | { readonly dtype: 'bf16'; readonly shape: readonly number[]; readonly data: Uint16Array };

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function bytesPerElement(dtype: DenseDtype): number {
  return dtype === 'f32' ? 4 : 2;
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

const bfBits = new Uint32Array(1);
const bfFloat = new Float32Array(bfBits.buffer);
let f16Table: Float32Array | null = null;

/** out[0..cols) = row `row` of a dense [rows, cols] matrix, as F32. */
export function readDenseRow(out: Float32Array, t: DenseTensor, row: number, cols: number): void {
  const base = row * cols;
  switch (t.dtype) {
    case 'f32':
      for (let j = 0; j < cols; j++) out[j] = t.data[base + j]!;
      return;
    case 'f16': {
      const table = (f16Table ??= f16Lookup());
      for (let j = 0; j < cols; j++) out[j] = table[t.data[base + j]!]!;
      return;
    }
    case 'bf16':
      for (let j = 0; j < cols; j++) {
        bfBits[0] = t.data[base + j]! << 16;
        out[j] = bfFloat[0]!;
      }
      return;
  }
}
