// Shared by the parity tests of every backend (cpu, webgpu): random inputs, the closeness check
// and the attention cases (FP rows, INT8 and INT4 planes, GQA, windows, sparse selections).

import assert from 'node:assert/strict';
import { f32ToBf16, f32ToF16 } from '../../src/core/half.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import type { AttentionShape } from '../../src/kernels/backend.js';
import { createReferenceBackend } from '../../src/kernels/reference/index.js';
import { bind } from '../../src/kv/cache.js';
import type { FpRows, KvLayerView, KvPlanes } from '../../src/kv/layout.js';
import { makePlanes } from './planes.js';
import { gaussian } from './tiny.js';

const ref = createReferenceBackend();

export function randn(rng: Xoshiro128, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => gaussian(rng) * scale);
}

export function dense(dtype: 'f32' | 'f16' | 'bf16', rows: number, cols: number, rng: Xoshiro128): DenseTensor {
  const v = randn(rng, rows * cols);
  if (dtype === 'f32') return { dtype, shape: [rows, cols], data: v };
  return { dtype, shape: [rows, cols], data: Uint16Array.from(v, dtype === 'f16' ? f32ToF16 : f32ToBf16) };
}

/** |a - b| <= tol · scale[i] for every element. */
export function assertClose(a: Float32Array, b: Float32Array, tol: number, scale: Float32Array | number, what: string): void {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const s = typeof scale === 'number' ? scale : scale[i]!;
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (s || 1));
  }
  assert.ok(worst <= tol, `${what}: worst relative error ${worst} > ${tol}`);
}

export interface AttentionCase {
  label: string;
  /** One of VERIFY_CASES (verify-sized batches). */
  verify: boolean;
  q: Float32Array;
  nq: number;
  startPos: number;
  view: KvLayerView; // bound by the reference: rebind it for the backend under test
  shape: AttentionShape;
  total: number;
}

/**
 * Verify-sized batches (8 or more pairs per KV head, one value group per head), where the AMX
 * path takes the key and value sums as tile products. They are checked bit for bit against the
 * AVX2 path and for batch invariance, and against the float reference within VERIFY_TOLERANCE.
 */
/**
 * Measured on 2026-12-02, the same on avx2, avx512 and amx (the paths agree bit for bit): the worst
 * error against the float reference is 3.80e-4 (INT8 view, 333 positions, d 64), 3.05e-4 (INT4,
 * the same case) and 2.85e-4 (INT8, d 128, 700 positions). All of it is the int16 rounding of the
 * value weights: each weight is off by at most 0.5/32767 of its 256-position block's largest
 * (w_max), so the output is off by at most (0.5/32767) · w_max · Σ|v| / Σw, summed over the
 * blocks. The tolerance is the measured worst with a margin of about 30%.
 */
export const VERIFY_TOLERANCE = 5e-4;

export const VERIFY_CASES = [
  { nHeads: 8, nKv: 2, d: 64, G: 16, Gv: 64, len: 333, nq: 5, fp16: true },
  { nHeads: 8, nKv: 2, d: 96, G: 32, Gv: 96, len: 421, nq: 4 },
  { nHeads: 16, nKv: 2, d: 128, G: 64, Gv: 128, len: 700, nq: 3, fp16: true },
  // 9 pairs per KV head: groups of 4, 4 and 1 pairs over a value block's decoded codes
  { nHeads: 6, nKv: 2, d: 64, G: 16, Gv: 64, len: 257, nq: 3 },
];

/** Attention cases: FP rows, INT8 and INT4 planes, GQA ratios, windows, sparse selections, odd head sizes. */
export function* attentionCases(withVerify = false): Generator<AttentionCase> {
  const rng = new Xoshiro128(4);
  const cases: { nHeads: number; nKv: number; d: number; G: number; Gv: number; len: number; nq: number; window?: number; sparse?: boolean; fp16?: boolean; plain?: 'f32' | 'f16'; negative?: boolean }[] = [
    { nHeads: 4, nKv: 4, d: 8, G: 4, Gv: 8, len: 19, nq: 1 },
    { nHeads: 4, nKv: 2, d: 64, G: 16, Gv: 64, len: 97, nq: 3, fp16: true },
    { nHeads: 8, nKv: 2, d: 32, G: 8, Gv: 16, len: 700, nq: 5, fp16: true },
    { nHeads: 2, nKv: 1, d: 128, G: 128, Gv: 128, len: 1300, nq: 2, fp16: true },
    { nHeads: 4, nKv: 2, d: 96, G: 32, Gv: 32, len: 301, nq: 1, window: 40 },
    { nHeads: 4, nKv: 2, d: 64, G: 64, Gv: 64, len: 620, nq: 4, sparse: true },
    { nHeads: 6, nKv: 3, d: 24, G: 8, Gv: 12, len: 50, nq: 2, fp16: true },
    // Past 16 chunks the CPU scheduler's items are up to 4 chunks wide: from 4096 here, and with key
    // groups of 96 (chunks of 288) from 4608, with a window that starts among the narrow items.
    { nHeads: 4, nKv: 2, d: 64, G: 128, Gv: 64, len: 4500, nq: 3, fp16: true },
    { nHeads: 4, nKv: 2, d: 32, G: 96, Gv: 32, len: 4700, nq: 2, window: 600 },
    // 16 query heads: items 2 chunks wide (the scores of a 128-query prefill chunk are capped)
    { nHeads: 16, nKv: 4, d: 32, G: 64, Gv: 32, len: 4400, nq: 2 },
    // Prompt chunks over the planes with 32 pairs or more per KV head (36 here): AMX takes their
    // keys 64 positions a call in blocks of 16 over several tiles of pairs; key groups of 40 end
    // in a block of 8, and heads of 128 take two chunks of channels.
    { nHeads: 8, nKv: 2, d: 64, G: 64, Gv: 64, len: 300, nq: 9 },
    { nHeads: 4, nKv: 1, d: 128, G: 40, Gv: 128, len: 230, nq: 9, fp16: true },
    // The first of those two with every score negative (keys positive, queries negative): the AMX
    // wide calls keep each pair's largest plane score for the softmax, which must start from -inf,
    // not 0.
    { nHeads: 8, nKv: 2, d: 64, G: 64, Gv: 64, len: 300, nq: 9, negative: true },
    // 120 plane positions, a multiple of the key group but not of 16: the softmax's last 16
    // positions over the planes end in the value metadata's zero tail.
    { nHeads: 4, nKv: 2, d: 64, G: 40, Gv: 64, len: 170, nq: 3 },
    // Plain caches (kv 'f16' and 'fp'): every position in full-precision rows, eight at a time and a tail.
    { nHeads: 8, nKv: 2, d: 64, G: 16, Gv: 64, len: 1029, nq: 5, plain: 'f16' },
    { nHeads: 4, nKv: 2, d: 96, G: 16, Gv: 32, len: 211, nq: 3, plain: 'f32', window: 70 },
    { nHeads: 2, nKv: 1, d: 128, G: 16, Gv: 128, len: 77, nq: 2, plain: 'f16' },
    // Prompt chunks over plain caches: whole blocks of eight positions past the early queries'
    // causal ends (their dots are skipped) and, with a window, blocks before its start.
    { nHeads: 4, nKv: 2, d: 64, G: 16, Gv: 64, len: 30, nq: 40, plain: 'f16' },
    { nHeads: 8, nKv: 2, d: 128, G: 16, Gv: 128, len: 5, nq: 33, plain: 'f16', window: 20 },
    { nHeads: 4, nKv: 1, d: 32, G: 16, Gv: 32, len: 70, nq: 19, plain: 'f32' },
    // More queries than the native driver takes in one run (128): a long prompt chunk over a
    // plain cache (--prefill-chunk above 128) in runs.
    { nHeads: 2, nKv: 1, d: 64, G: 16, Gv: 64, len: 21, nq: 150, plain: 'f16' },
    { nHeads: 8, nKv: 2, d: 32, G: 16, Gv: 32, len: 300, nq: 129, plain: 'f32', window: 100 },
    ...(withVerify ? VERIFY_CASES : []),
  ];
  for (const c of cases) {
    const kvDim = c.nKv * c.d;
    const shape: AttentionShape = { nHeads: c.nHeads, nKvHeads: c.nKv, headDim: c.d, window: c.window ?? 0 };
    const total = c.len + c.nq;
    const r = c.negative ? new Xoshiro128(44) : rng; // its own stream: the other cases' data stay as they were
    const keys = randn(r, total * kvDim, 2);
    const values = randn(r, total * kvDim);
    const q = randn(r, c.nq * c.nHeads * c.d);
    if (c.negative) {
      for (let i = 0; i < keys.length; i++) keys[i] = 0.5 + 0.5 * Math.abs(keys[i]!);
      for (let i = 0; i < q.length; i++) q[i] = -0.05 - 0.3 * Math.abs(q[i]!);
    }
    const startPos = c.len;
    for (const bits of (c.sparse || c.plain ? [8] : [8, 4]) as (4 | 8)[]) {
      // Hierarchical: the planes hold what any query reads quantized; the FP rows start at the
      // smallest boundary (like HierKvCache); the sparse case uses a plain F32 cache instead.
      const qb = (p: number) => (p >= 2 * c.G ? c.G * Math.floor((p - c.G) / c.G) : 0);
      let view: KvLayerView;
      if (c.plain) {
        const fp: FpRows = c.plain === 'f16'
          ? { dtype: 'f16', keys: Uint16Array.from(keys, f32ToF16), values: Uint16Array.from(values, f32ToF16) }
          : { dtype: 'f32', keys: keys.slice(), values: values.slice() };
        view = bind(ref, { kind: 'fp', kvDim, fp, fpStart: 0 });
      } else if (c.sparse) {
        const stride = 16;
        const positions = new Int32Array(c.nKv * stride);
        for (let g = 0; g < c.nKv; g++) for (let j = 0; j < 10; j++) positions[g * stride + j] = j * 7 + g;
        view = bind(ref, { kind: 'sparse', kvDim, fp: { dtype: 'f32', keys, values }, fpStart: 0,
          selection: { count: 10, stride, positions, denseFrom: 100, recent: 50 } });
      } else {
        const planeTokens = qb(total - 1);
        const planes: KvPlanes = makePlanes(kvDim, Math.max(planeTokens, c.G), c.G, c.Gv);
        const fpStart = qb(startPos);
        const rows = total - fpStart;
        const fpKeys = keys.subarray(fpStart * kvDim);
        const fpValues = values.subarray(fpStart * kvDim);
        const fp: FpRows = c.fp16
          ? { dtype: 'f16', keys: Uint16Array.from(fpKeys, f32ToF16), values: Uint16Array.from(fpValues, f32ToF16) }
          : { dtype: 'f32', keys: fpKeys.slice(), values: fpValues.slice() };
        if (planeTokens > 0) ref.quantizeKv(planes, { dtype: 'f32', keys, values }, 0, 0, planeTokens);
        assert.ok(rows > 0);
        view = bind(ref, { kind: 'hier', kvDim, fp, fpStart, planes, bits });
      }
      yield { label: `${JSON.stringify(c)} bits ${bits}`, verify: (VERIFY_CASES as readonly object[]).includes(c), q, nq: c.nq, startPos, view, shape, total };
    }
  }
}
