// Scalar reference kernels: short, obviously correct loops (the oracle for faster backends).

import { colsOf, rowsOf, type WeightTensor } from '../../quant/format.js';
import { ShapeMismatchError } from '../../core/errors.js';
import type { RopeLayout } from '../backend.js';
import { decodeRow } from './rows.js';

let rowScratch = new Float32Array(0);

function scratchRow(cols: number): Float32Array {
  // Grows once to the widest matrix seen; no allocation in steady state.
  if (rowScratch.length < cols) rowScratch = new Float32Array(cols);
  return rowScratch;
}

/**
 * out[n, rows] = x[n, cols] · Wᵀ. Each weight row is decoded once and reused for all n tokens,
 * four tokens at a time so each weight load feeds four products.
 */
export function matmul(out: Float32Array, x: Float32Array, w: WeightTensor, nTokens: number): void {
  const rows = rowsOf(w);
  const cols = colsOf(w);
  if (x.length < nTokens * cols || out.length < nTokens * rows) {
    throw new ShapeMismatchError(`matmul: x needs ${nTokens * cols} floats and out ${nTokens * rows} for W [${rows}, ${cols}]`);
  }
  const f32 = w.dtype === 'f32' ? w.data : null;
  const row = scratchRow(cols);
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
    for (; t + 3 < nTokens; t += 4) {
      const x0 = t * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let j = 0; j < cols; j++) {
        const wj = src[base + j]!;
        s0 += wj * x[x0 + j]!;
        s1 += wj * x[x1 + j]!;
        s2 += wj * x[x2 + j]!;
        s3 += wj * x[x3 + j]!;
      }
      out[t * rows + r] = s0;
      out[(t + 1) * rows + r] = s1;
      out[(t + 2) * rows + r] = s2;
      out[(t + 3) * rows + r] = s3;
    }
    for (; t < nTokens; t++) {
      const xo = t * cols;
      let s0 = 0, s1 = 0;
      let j = 0;
      for (; j + 1 < cols; j += 2) {
        s0 += src[base + j]! * x[xo + j]!;
        s1 += src[base + j + 1]! * x[xo + j + 1]!;
      }
      if (j < cols) s0 += src[base + j]! * x[xo + j]!;
      out[t * rows + r] = s0 + s1;
    }
  }
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
