// Reference attention over a KV layer view: quantized history read at 4 or 8 bits, then the
// full-precision rows. It computes one exact softmax per query (no block merging), which makes it
// the oracle for the blocked log-sum-exp kernels of faster backends.

import type { AttentionShape, KvLayerView, KvPlanes } from '../backend.js';

let headScratch = new Float32Array(0);

/** out[0..headDim) = key of kv head `g` at position t, as attention sees it. */
export function readKey(out: Float32Array, kv: KvLayerView, t: number, g: number, headDim: number): void {
  if (t < kv.fpStart && kv.planes) {
    dequantKey(out, kv.planes, kv.bits, t, g * headDim, headDim);
    return;
  }
  const base = (t - kv.fpStart) * kv.kvDim + g * headDim;
  for (let d = 0; d < headDim; d++) out[d] = kv.fpKeys[base + d]!;
}

/** out[0..headDim) = value of kv head `g` at position t. */
export function readValue(out: Float32Array, kv: KvLayerView, t: number, g: number, headDim: number): void {
  if (t < kv.fpStart && kv.planes) {
    dequantValue(out, kv.planes, kv.bits, t, g * headDim, headDim);
    return;
  }
  const base = (t - kv.fpStart) * kv.kvDim + g * headDim;
  for (let d = 0; d < headDim; d++) out[d] = kv.fpValues[base + d]!;
}

function nibble(plane: Uint8Array, rowBytes: number, t: number, c: number): number {
  const byte = plane[t * rowBytes + (c >> 1)]!;
  return c & 1 ? byte >> 4 : byte & 15;
}

/** Keys: group = one channel over groupSizeK tokens; scale/min indexed [t / groupSizeK, channel]. */
export function dequantKey(out: Float32Array, p: KvPlanes, bits: 4 | 8, t: number, c0: number, n: number): void {
  const rowBytes = p.kvDim >> 1;
  const meta = Math.floor(t / p.groupSizeK) * p.kvDim;
  for (let d = 0; d < n; d++) {
    const c = c0 + d;
    const s = p.kScale[meta + c]!;
    const u = nibble(p.kUpper, rowBytes, t, c);
    let x = p.kMin[meta + c]! + u * s;
    if (bits === 8) x += (nibble(p.kLower, rowBytes, t, c) - 8) * (s / 16);
    out[d] = x;
  }
}

/** Values: group = groupSizeV consecutive channels of one token; scale/min indexed [t, channel / groupSizeV]. */
export function dequantValue(out: Float32Array, p: KvPlanes, bits: 4 | 8, t: number, c0: number, n: number): void {
  const rowBytes = p.kvDim >> 1;
  const groups = p.kvDim / p.groupSizeV;
  for (let d = 0; d < n; d++) {
    const c = c0 + d;
    const gi = t * groups + Math.floor(c / p.groupSizeV);
    const s = p.vScale[gi]!;
    const u = nibble(p.vUpper, rowBytes, t, c);
    let x = p.vMin[gi]! + u * s;
    if (bits === 8) x += (nibble(p.vLower, rowBytes, t, c) - 8) * (s / 16);
    out[d] = x;
  }
}

export function attention(
  out: Float32Array, q: Float32Array, nQueries: number, startPos: number,
  kv: KvLayerView, shape: AttentionShape, scratch: Float32Array,
): void {
  const { nHeads, nKvHeads, headDim, window } = shape;
  const nRep = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const { kvDim, fpStart, fpKeys, fpValues } = kv;
  if (headScratch.length < headDim) headScratch = new Float32Array(headDim);
  const row = headScratch;
  for (let i = 0; i < nQueries; i++) {
    const pos = startPos + i;
    const lo = window > 0 ? Math.max(0, pos - window + 1) : 0;
    const quantEnd = kv.planes ? Math.min(fpStart, pos + 1) : lo;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / nRep); // GQA: query head h reads kv head h / nRep
      const qo = (i * nHeads + h) * headDim;
      let max = -Infinity;
      for (let t = lo; t <= pos; t++) {
        let s = 0;
        if (t < quantEnd) {
          readKey(row, kv, t, g, headDim);
          for (let d = 0; d < headDim; d++) s += q[qo + d]! * row[d]!;
        } else {
          const ko = (t - fpStart) * kvDim + g * headDim;
          for (let d = 0; d < headDim; d++) s += q[qo + d]! * fpKeys[ko + d]!;
        }
        s *= scale;
        scratch[t] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let t = lo; t <= pos; t++) {
        const e = Math.exp(scratch[t]! - max);
        scratch[t] = e;
        sum += e;
      }
      for (let d = 0; d < headDim; d++) out[qo + d] = 0;
      for (let t = lo; t <= pos; t++) {
        const a = scratch[t]! / sum;
        if (t < quantEnd) {
          readValue(row, kv, t, g, headDim);
          for (let d = 0; d < headDim; d++) out[qo + d] += a * row[d]!;
        } else {
          const vo = (t - fpStart) * kvDim + g * headDim;
          for (let d = 0; d < headDim; d++) out[qo + d] += a * fpValues[vo + d]!;
        }
      }
    }
  }
}
