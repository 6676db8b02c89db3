// Reference attention over a KV layer view: quantized history read at 4 or 8 bits, full-precision
// rows (F32 or F16), optional sparse selection. It computes one exact softmax per query (no block
// merging), which makes it the oracle for the blocked log-sum-exp kernels of faster backends.

import { f16Lookup } from '../../core/half.js';
import { quantBoundary, type KvLayerView, type KvPlanes } from '../../kv/layout.js';
import type { AttentionShape } from '../backend.js';

const f16 = f16Lookup();
let headScratch = new Float32Array(0);
let posScratch = new Int32Array(0);

function nibble(plane: Uint8Array, rowBytes: number, t: number, c: number): number {
  const byte = plane[t * rowBytes + (c >> 1)]!;
  return c & 1 ? byte >> 4 : byte & 15;
}

/** Keys: group = one channel over keyGroupSize tokens; scale/min indexed [t / keyGroupSize, channel]. */
export function dequantKey(out: Float32Array, p: KvPlanes, bits: 4 | 8, t: number, c0: number, n: number): void {
  const rowBytes = p.kvDim >> 1;
  const meta = Math.floor(t / p.keyGroupSize) * p.kvDim;
  for (let d = 0; d < n; d++) {
    const c = c0 + d;
    const s = f16[p.kScale[meta + c]!]!;
    let x = f16[p.kMin[meta + c]!]! + nibble(p.kUpper, rowBytes, t, c) * s;
    if (bits === 8) x += (nibble(p.kLower, rowBytes, t, c) - 8) * (s / 16);
    out[d] = x;
  }
}

/** Values: group = valueGroupSize consecutive channels of one token; scale/min indexed [t, channel / valueGroupSize]. */
export function dequantValue(out: Float32Array, p: KvPlanes, bits: 4 | 8, t: number, c0: number, n: number): void {
  const rowBytes = p.kvDim >> 1;
  const groups = p.kvDim / p.valueGroupSize;
  for (let d = 0; d < n; d++) {
    const c = c0 + d;
    const gi = t * groups + Math.floor(c / p.valueGroupSize);
    const s = f16[p.vScale[gi]!]!;
    let x = f16[p.vMin[gi]!]! + nibble(p.vUpper, rowBytes, t, c) * s;
    if (bits === 8) x += (nibble(p.vLower, rowBytes, t, c) - 8) * (s / 16);
    out[d] = x;
  }
}

/**
 * out[0..headDim) = key (which = 0) or value (which = 1) of kv head g at position t, as a query
 * whose quantization boundary is `qEnd` sees it.
 */
export function readKv(out: Float32Array, kv: KvLayerView, which: 0 | 1, t: number, g: number, headDim: number, qEnd: number): void {
  if (t < qEnd && kv.kind === 'hier') {
    (which === 0 ? dequantKey : dequantValue)(out, kv.planes, kv.bits, t, g * headDim, headDim);
    return;
  }
  const base = (t - kv.fpStart) * kv.kvDim + g * headDim;
  const fp = kv.fp;
  if (fp.dtype === 'f32') {
    const rows = which === 0 ? fp.keys : fp.values;
    for (let d = 0; d < headDim; d++) out[d] = rows[base + d]!;
  } else {
    const rows = which === 0 ? fp.keys : fp.values;
    for (let d = 0; d < headDim; d++) out[d] = f16[rows[base + d]!]!;
  }
}

/** Positions query `pos` of kv head g may see, into posScratch; returns how many. */
function visible(kv: KvLayerView, pos: number, g: number, window: number): number {
  const lo = window > 0 ? Math.max(0, pos - window + 1) : 0;
  if (posScratch.length < pos + 1) posScratch = new Int32Array(Math.max(pos + 1, 2 * posScratch.length));
  let m = 0;
  let from = lo;
  if (kv.kind === 'sparse') {
    const sp = kv.selection;
    for (let j = 0; j < sp.count; j++) {
      const t = sp.positions[g * sp.stride + j]!;
      if (t >= lo && t <= pos) posScratch[m++] = t;
    }
    from = Math.max(lo, sp.denseFrom, sp.recent > 0 ? pos - sp.recent + 1 : 0);
  }
  for (let t = from; t <= pos; t++) posScratch[m++] = t;
  return m;
}

export function attention(
  out: Float32Array, q: Float32Array, nQueries: number, startPos: number,
  kv: KvLayerView, shape: AttentionShape, scratch: Float32Array,
): void {
  const { nHeads, nKvHeads, headDim, window } = shape;
  const nRep = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  if (headScratch.length < headDim) headScratch = new Float32Array(headDim);
  const row = headScratch;
  for (let i = 0; i < nQueries; i++) {
    const pos = startPos + i;
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / nRep); // GQA: query head h reads kv head h / nRep
      const qo = (i * nHeads + h) * headDim;
      const m = visible(kv, pos, g, window);
      const qEnd = kv.kind === 'hier' ? quantBoundary(pos, kv.planes.keyGroupSize) : 0;
      let max = -Infinity;
      for (let k = 0; k < m; k++) {
        readKv(row, kv, 0, posScratch[k]!, g, headDim, qEnd);
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qo + d]! * row[d]!;
        s *= scale;
        scratch[k] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let k = 0; k < m; k++) {
        const e = Math.exp(scratch[k]! - max);
        scratch[k] = e;
        sum += e;
      }
      for (let d = 0; d < headDim; d++) out[qo + d] = 0;
      for (let k = 0; k < m; k++) {
        readKv(row, kv, 1, posScratch[k]!, g, headDim, qEnd);
        const a = scratch[k]! / sum;
        for (let d = 0; d < headDim; d++) out[qo + d] += a * row[d]!;
      }
    }
  }
}
