// Scalar reference kernels: short, obviously correct loops (the oracle for faster backends).

import { colsOf, rowsOf, type WeightTensor } from '../../quant/format.js';
import { ShapeMismatchError } from '../../core/errors.js';
import { bf16ToF32, f32ToBf16 } from '../../core/half.js';
import type { RopeLayout } from '../backend.js';
import { decodeRow } from './rows.js';

let rowScratch = new Float32Array(0);

function scratchRow(cols: number): Float32Array {
  // Grows once to the widest matrix seen; no allocation in steady state.
  if (rowScratch.length < cols) rowScratch = new Float32Array(cols);
  return rowScratch;
}

/**
 * out[n, rows] = x[n, cols] · Wᵀ. Each weight row is decoded once and reused for all n tokens.
 * Batch-invariant: every output is summed in the same order (even and odd columns, then added)
 * whatever n is, so a token's result does not depend on the batch it was computed in.
 */
export function matmul(out: Float32Array, x: Float32Array, w: WeightTensor, nTokens: number): void {
  const rows = rowsOf(w);
  const cols = colsOf(w);
  if (x.length < nTokens * cols || out.length < nTokens * rows) {
    throw new ShapeMismatchError(`matmul: x needs ${nTokens * cols} floats and out ${nTokens * rows} for W [${rows}, ${cols}]`);
  }
  const f32 = w.dtype === 'f32' ? w.data : null;
  const row = scratchRow(cols);
  const even = cols & ~1;
  for (let r = 0; r < rows; r++) {
    let src: Float32Array = row;
    let base = 0;
    if (f32) {
      src = f32;
      base = r * cols;
    } else {
      decodeRow(row, w, r, cols);
    }
    let t = 0;
    for (; t + 1 < nTokens; t += 2) {
      const x0 = t * cols;
      const x1 = x0 + cols;
      let a0 = 0, b0 = 0, a1 = 0, b1 = 0;
      for (let j = 0; j < even; j += 2) {
        const w0 = src[base + j]!;
        const w1 = src[base + j + 1]!;
        a0 += w0 * x[x0 + j]!;
        b0 += w1 * x[x0 + j + 1]!;
        a1 += w0 * x[x1 + j]!;
        b1 += w1 * x[x1 + j + 1]!;
      }
      if (even < cols) {
        a0 += src[base + even]! * x[x0 + even]!;
        a1 += src[base + even]! * x[x1 + even]!;
      }
      out[t * rows + r] = a0 + b0;
      out[(t + 1) * rows + r] = a1 + b1;
    }
    if (t < nTokens) {
      const x0 = t * cols;
      let a0 = 0, b0 = 0;
      for (let j = 0; j < even; j += 2) {
        a0 += src[base + j]! * x[x0 + j]!;
        b0 += src[base + j + 1]! * x[x0 + j + 1]!;
      }
      if (even < cols) a0 += src[base + even]! * x[x0 + even]!;
      out[t * rows + r] = a0 + b0;
    }
  }
}

let promptScratch = new Float32Array(0);

/**
 * The prompt matmul (Backend.matmulPrompt) for BF16 and F16 weights: x rounded to BF16 (to nearest
 * even), then matmul's sums (in double precision) with the weights as they are. False for other dtypes.
 */
export function matmulPrompt(out: Float32Array, x: Float32Array, w: WeightTensor, nTokens: number): boolean {
  if (w.dtype !== 'bf16' && w.dtype !== 'f16') return false;
  const len = nTokens * colsOf(w);
  if (x.length < len) throw new ShapeMismatchError(`matmulPrompt: x needs ${len} floats for W [${rowsOf(w)}, ${colsOf(w)}]`);
  if (promptScratch.length < len) promptScratch = new Float32Array(len);
  for (let i = 0; i < len; i++) promptScratch[i] = bf16ToF32(f32ToBf16(x[i]!));
  matmul(out, promptScratch, w, nTokens);
  return true;
}

export function addBias(x: Float32Array, bias: Float32Array, nRows: number, dim: number): void {
  for (let r = 0; r < nRows; r++) for (let j = 0; j < dim; j++) x[r * dim + j] += bias[j]!;
}

export function rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, nRows: number, dim: number, eps: number): void {
  for (let r = 0; r < nRows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[o + j]! * x[o + j]!;
    // HF computes in F32: w * (x * rsqrt(mean(x²) + eps)).
    const inv = Math.fround(1 / Math.sqrt(Math.fround(ss / dim) + eps));
    for (let j = 0; j < dim; j++) out[o + j] = weight[j]! * Math.fround(x[o + j]! * inv);
  }
}

export function rope(
  x: Float32Array, nTokens: number, nHeads: number, headDim: number, startPos: number,
  cos: Float32Array, sin: Float32Array, layout: RopeLayout,
): void {
  const half = headDim >> 1;
  for (let t = 0; t < nTokens; t++) {
    const tab = (startPos + t) * half;
    for (let h = 0; h < nHeads; h++) {
      const o = (t * nHeads + h) * headDim;
      for (let j = 0; j < half; j++) {
        const c = cos[tab + j]!;
        const s = sin[tab + j]!;
        const ia = layout === 0 ? o + j : o + 2 * j;
        const ib = layout === 0 ? o + j + half : o + 2 * j + 1;
        const a = x[ia]!;
        const b = x[ib]!;
        x[ia] = a * c - b * s;
        x[ib] = b * c + a * s;
      }
    }
  }
}

export function siluMul(gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    gate[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
}

export function add(out: Float32Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] += x[i]!;
}

export function embed(out: Float32Array, table: WeightTensor, tokens: Int32Array, nTokens: number): void {
  const dim = colsOf(table);
  const row = scratchRow(dim);
  for (let t = 0; t < nTokens; t++) {
    decodeRow(row, table, tokens[t]!, dim);
    for (let j = 0; j < dim; j++) out[t * dim + j] = row[j]!;
  }
}
