// The hierarchical quantizer (DESIGN 2.1): exact codes and metadata on fixed inputs, the constant
// group, and reconstruction error against plain asymmetric INT8.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f16ToF32, f32ToF16 } from '../../src/core/half.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import type { FpRows } from '../../src/kv/layout.js';
import { dequantKey, dequantValue } from '../../src/kernels/reference/attention.js';
import { quantizeKv, rint } from '../../src/kernels/reference/kvquant.js';
import { gaussian } from '../helpers/tiny.js';
import { makePlanes } from '../helpers/planes.js';

function nib(plane: Uint8Array, kvDim: number, t: number, c: number): number {
  const b = plane[(t * kvDim) / 2 + (c >> 1)]!;
  return c & 1 ? b >> 4 : b & 15;
}

// Rows are token-major [4 tokens, 4 channels]. Expected codes and F16 metadata below come from an
// independent numpy float32 implementation of DESIGN 2.1 (half-to-even, codes against F16 metadata).
const K = [[0.0, -1.0, 2.0, 5.0], [1.5, -0.5, 2.0, 5.0], [3.0, 0.25, 2.0, 5.0], [0.7, 1.0, 2.0, 5.000001]];
const V = [[0.1, 0.2, -0.3, 0.9], [1.0, 1.0, 1.0, 1.0], [-2.0, 0.0, 0.5, 7.25], [0.33, 0.66, 0.99, -0.01]];

function fpRows(keys: number[][], values: number[][], dtype: 'f32' | 'f16'): FpRows {
  const flat = (m: number[][]) => m.flat();
  if (dtype === 'f32') return { dtype, keys: Float32Array.from(flat(keys)), values: Float32Array.from(flat(values)) };
  return { dtype, keys: Uint16Array.from(flat(keys), f32ToF16), values: Uint16Array.from(flat(values), f32ToF16) };
}

test('keys: per-channel groups over G tokens, exact codes and F16 metadata', () => {
  const p = makePlanes(4, 4, 4, 2);
  quantizeKv(p, fpRows(K, V, 'f32'), 0, 0, 4);
  const want = [
    { mn: 0x0000, s: 0x3266, codes: [[0, 8], [8, 0], [15, 8], [4, 0]] },
    { mn: 0xbc00, s: 0x3044, codes: [[0, 8], [4, 4], [9, 14], [15, 8]] },
    { mn: 0x4000, s: 0x0000, codes: [[0, 8], [0, 8], [0, 8], [0, 8]] }, // constant channel: s = 0
    { mn: 0x4500, s: 0x0001, codes: [[0, 8], [0, 8], [0, 8], [15, 8]] }, // range 1e-6: subnormal scale
  ];
  for (let c = 0; c < 4; c++) {
    assert.equal(p.kMin[c], want[c]!.mn, `min of channel ${c}`);
    assert.equal(p.kScale[c], want[c]!.s, `scale of channel ${c}`);
    for (let t = 0; t < 4; t++) {
      assert.deepEqual([nib(p.kUpper, 4, t, c), nib(p.kLower, 4, t, c)], want[c]!.codes[t], `codes of token ${t} channel ${c}`);
    }
  }
  // Reconstructions (numpy reference): draft x4 and target x8 of channel 0.
  const out = new Float32Array(4);
  const x4 = [0.0, 1.599609375, 2.999267578125, 0.7998046875];
  const x8 = [0.0, 1.4996337890625, 2.999267578125, 0.6998291015625];
  for (let t = 0; t < 4; t++) {
    dequantKey(out, p, 4, t, 0, 1);
    assert.ok(Math.abs(out[0]! - x4[t]!) < 1e-6);
    dequantKey(out, p, 8, t, 0, 1);
    assert.ok(Math.abs(out[0]! - x8[t]!) < 1e-6);
  }
});

test('values: per-token groups of Gv channels, exact codes and F16 metadata', () => {
  const p = makePlanes(4, 4, 4, 2);
  quantizeKv(p, fpRows(K, V, 'f32'), 0, 0, 4);
  const want: [number, number, number[][]][] = [
    [0x2e66, 0x1ed4, [[0, 8], [15, 8]]], [0xb4cd, 0x2d1f, [[0, 8], [15, 8]]],
    [0x3c00, 0x0000, [[0, 8], [0, 8]]], [0x3c00, 0x0000, [[0, 8], [0, 8]]],
    [0xc000, 0x3044, [[0, 8], [15, 8]]], [0x3800, 0x3733, [[0, 8], [15, 8]]],
    [0x3548, 0x25a1, [[0, 8], [15, 8]]], [0xa11f, 0x2c44, [[15, 8], [0, 8]]],
  ];
  for (let t = 0; t < 4; t++) {
    for (let g = 0; g < 2; g++) {
      const [mn, s, codes] = want[t * 2 + g]!;
      assert.equal(p.vMin[t * 2 + g], mn, `min of token ${t} group ${g}`);
      assert.equal(p.vScale[t * 2 + g], s, `scale of token ${t} group ${g}`);
      for (let j = 0; j < 2; j++) {
        const c = g * 2 + j;
        assert.deepEqual([nib(p.vUpper, 4, t, c), nib(p.vLower, 4, t, c)], codes[j]);
      }
    }
  }
  // A constant group decodes to exactly its value in both views.
  const out = new Float32Array(4);
  for (const bits of [4, 8] as const) {
    dequantValue(out, p, bits, 1, 0, 4);
    assert.deepEqual(Array.from(out), [1, 1, 1, 1]);
  }
});

test('the quantizer writes at the destination position and reads F16 rows', () => {
  const a = makePlanes(4, 8, 4, 2);
  const b = makePlanes(4, 8, 4, 2);
  // Source rows 2..5 of an F16 buffer into positions 4..7.
  const keys = [[9, 9, 9, 9], [9, 9, 9, 9], ...K, [9, 9, 9, 9]];
  const values = [[9, 9, 9, 9], [9, 9, 9, 9], ...V, [9, 9, 9, 9]];
  quantizeKv(a, fpRows(keys, values, 'f16'), 2, 4, 4);
  quantizeKv(b, fpRows(K.map((r) => r.map((x) => f16ToF32(f32ToF16(x)))), V.map((r) => r.map((x) => f16ToF32(f32ToF16(x)))), 'f32'), 0, 4, 4);
  assert.deepEqual(a, b);
  assert.ok(a.kScale.slice(4, 8).some((s) => s !== 0), 'metadata row 1 (positions 4..7) written');
  assert.ok(a.kScale.slice(0, 4).every((s) => s === 0), 'metadata row 0 untouched');
});

test('rint rounds half to even', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001].map(rint), [0, 2, 2, -0, -2, -2, 2, 3]);
});

test('INT8 view error is within 1.3x of plain asymmetric INT8; INT4 view is about 10%', () => {
  const rng = new Xoshiro128(17);
  const G = 128;
  const kvDim = 128;
  const tokens = 512;
  const keys = new Float32Array(tokens * kvDim);
  const values = new Float32Array(tokens * kvDim);
  for (let i = 0; i < keys.length; i++) {
    const c = i % kvDim;
    keys[i] = gaussian(rng) * (c === 7 ? 8 : 1) + (c % 5); // an outlier channel and channel offsets, like real keys
    values[i] = gaussian(rng);
  }
  const p = makePlanes(kvDim, tokens, G, 128);
  quantizeKv(p, { dtype: 'f32', keys, values }, 0, 0, tokens);

  let e8 = 0, e4 = 0, eInt8 = 0, norm = 0;
  const row = new Float32Array(kvDim);
  for (const [which, src] of [['k', keys], ['v', values]] as const) {
    // Plain asymmetric INT8 over the same groups, F32 metadata: step (max - min) / 255.
    const plain = new Float32Array(src.length);
    const groups: number[][] = [];
    for (let t = 0; t < tokens; t++) {
      if (which === 'k') { if (t % G === 0) for (let c = 0; c < kvDim; c++) groups.push(Array.from({ length: G }, (_, j) => (t + j) * kvDim + c)); }
      else groups.push(Array.from({ length: kvDim }, (_, c) => t * kvDim + c));
    }
    for (const idx of groups) {
      let mn = Infinity, mx = -Infinity;
      for (const i of idx) { mn = Math.min(mn, src[i]!); mx = Math.max(mx, src[i]!); }
      const step = (mx - mn) / 255;
      for (const i of idx) plain[i] = mn + Math.round((src[i]! - mn) / step) * step;
    }
    for (let t = 0; t < tokens; t++) {
      for (const bits of [8, 4] as const) {
        (which === 'k' ? dequantKey : dequantValue)(row, p, bits, t, 0, kvDim);
        for (let c = 0; c < kvDim; c++) {
          const d = (row[c]! - src[t * kvDim + c]!) ** 2;
          if (bits === 8) e8 += d; else e4 += d;
        }
      }
      for (let c = 0; c < kvDim; c++) {
        eInt8 += (plain[t * kvDim + c]! - src[t * kvDim + c]!) ** 2;
        norm += src[t * kvDim + c]! ** 2;
      }
    }
  }
  const rel8 = Math.sqrt(e8 / norm);
  const rel4 = Math.sqrt(e4 / norm);
  const relPlain = Math.sqrt(eInt8 / norm);
  assert.ok(rel8 / relPlain < 1.3, `hierarchical INT8 ${rel8} vs plain INT8 ${relPlain}: ratio ${rel8 / relPlain}`);
  assert.ok(rel4 > 0.03 && rel4 < 0.15, `INT4 view relative RMSE ${rel4}`);
  assert.ok(rel8 < rel4 / 8, 'the lower plane adds about 4 bits of precision');
});
