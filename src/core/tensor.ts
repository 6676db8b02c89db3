// Dense tensors as loaded from model files. Matrices are row-major [rows, cols] as in PyTorch
// (`out = x · Wᵀ`, one output per row). Quantized formats live in quant/format.ts.

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
