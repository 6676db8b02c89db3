// Packed weight formats and the WeightTensor union that kernels dispatch on (DESIGN rule 5:
// precision is a discriminated union chosen at load time, never probed).

import type { DenseTensor } from '../core/tensor.js';

/**
 * 4-bit group-quantized matrix [rows, cols]; groups of `groupSize` consecutive columns of a row.
 * - packing 'pairs' (quantizer output): element 2i in the low nibble, 2i+1 in the high nibble;
 *   symmetric: w = (q - 8)·scale; asymmetric: w = q·scale + min; F32 scales and minimums.
 * - packing 'blocks32' (native kernels): groups of 32; byte j of a block holds element j (low) and
 *   j + 16 (high), as llama.cpp's Q4 blocks; w = q·scale + min with F16 scale and min (5 bits per
 *   weight in all).
 * A row's last group may be partial (cols % groupSize); its unused nibbles are zero.
 */
export type Q4Tensor =
  | {
      readonly dtype: 'q4';
      readonly packing: 'pairs';
      readonly shape: readonly [number, number];
      readonly groupSize: number;
      readonly symmetric: boolean;
      readonly codes: Uint8Array; // [rows, nGroups * groupSize / 2]
      readonly scales: Float32Array; // [rows, nGroups]
      readonly mins: Float32Array | null; // [rows, nGroups], null when symmetric
    }
  | {
      readonly dtype: 'q4';
      readonly packing: 'blocks32';
      readonly shape: readonly [number, number];
      readonly groupSize: 32;
      readonly codes: Uint8Array; // [rows, nb, 16], nb = ceil(cols / 32)
      readonly scales: Uint16Array; // [rows, nb] F16
      readonly mins: Uint16Array; // [rows, nb] F16
    };

/**
 * 8-bit symmetric group-quantized matrix [rows, cols]: w = q·scale, q signed.
 * - packing 'groups' (quantizer output): q in -127..127, F32 scales per group of `groupSize`
 *   consecutive columns.
 * - packing 'blocks32' (native kernels, and GGUF Q8_0 as stored): groups of 32 with F16 scales,
 *   llama.cpp's Q8_0 blocks with the scales kept apart (8.5 bits per weight).
 * Codes are [rows, nGroups * groupSize]; a row's last group may be partial, its unused codes zero.
 */
export type Q8Tensor =
  | {
      readonly dtype: 'q8';
      readonly packing: 'groups';
      readonly shape: readonly [number, number];
      readonly groupSize: number;
      readonly codes: Int8Array; // [rows, nGroups * groupSize]
      readonly scales: Float32Array; // [rows, nGroups]
    }
  | {
      readonly dtype: 'q8';
      readonly packing: 'blocks32';
      readonly shape: readonly [number, number];
      readonly groupSize: 32;
      readonly codes: Int8Array; // [rows, nb * 32], nb = ceil(cols / 32)
      readonly scales: Uint16Array; // [rows, nb] F16
    };

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
