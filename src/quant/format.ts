// Packed weight formats and the WeightTensor union that kernels dispatch on (DESIGN rule 5:
// precision is a discriminated union chosen at load time, never probed).

import type { DenseTensor } from '../core/tensor.js';

/**
 * 4-bit group-quantized matrix [rows, cols]; groups of `groupSize` consecutive columns of a row.
 * symmetric: w = (q - 8)·scale; asymmetric: w = q·scale + min. Codes q in 0..15, two per byte:
 * - packing 'pairs': element 2i in the low nibble, 2i+1 in the high nibble (quantizer output);
 * - packing 'blocks32' (native kernels, groupSize 32, always with mins): per block of 32, byte j
 *   holds element j (low) and j + 16 (high), as llama.cpp's Q4 blocks.
 * A row's last group may be partial (cols % groupSize); its unused nibbles are zero.
 */
export interface Q4Tensor {
  readonly dtype: 'q4';
  readonly packing: 'pairs' | 'blocks32';
  readonly shape: readonly [number, number];
  readonly groupSize: number;
  readonly symmetric: boolean;
  readonly codes: Uint8Array; // [rows, nGroups * groupSize / 2]
  readonly scales: Float32Array; // [rows, nGroups]
  readonly mins: Float32Array | null; // [rows, nGroups], null when symmetric
}

/** 8-bit symmetric group-quantized matrix: w = q·scale, q in -127..127. */
export interface Q8Tensor {
  readonly dtype: 'q8';
  readonly shape: readonly [number, number];
  readonly groupSize: number;
  readonly codes: Int8Array; // [rows, nGroups * groupSize]
  readonly scales: Float32Array; // [rows, nGroups]
}

export type QuantTensor = Q4Tensor | Q8Tensor;

export type WeightTensor = DenseTensor | QuantTensor;

export function groupsPerRow(cols: number, groupSize: number): number {
  return Math.ceil(cols / groupSize);
}

/** Bytes a tensor occupies in memory (codes + metadata). */
export function weightBytes(t: WeightTensor): number {
  switch (t.dtype) {
    case 'f32':
    case 'f16':
    case 'bf16':
      return t.data.byteLength;
    case 'q4':
      return t.codes.byteLength + t.scales.byteLength + (t.mins ? t.mins.byteLength : 0);
    case 'q8':
      return t.codes.byteLength + t.scales.byteLength;
  }
}

export function rowsOf(t: WeightTensor): number {
  return t.shape[0]!;
}

export function colsOf(t: WeightTensor): number {
  return t.shape.length > 1 ? t.shape[1]! : 1;
}
