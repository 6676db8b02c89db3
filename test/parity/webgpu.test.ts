// Parity: every WGSL kernel against the TypeScript reference, on odd sizes, on whatever WebGPU
// adapter this machine has (in CI: Mesa lavapipe, a CPU Vulkan driver that .ci/run installs; on a
// CPU adapter these tests are for correctness, never for speed). Inputs go up once, the kernels
// run from one recorded pass, and only the results come back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShapeMismatchError } from '../../src/core/errors.js';
import { f32ToF16 } from '../../src/core/half.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import { decodeRow } from '../../src/kernels/reference/rows.js';
import { argmax } from '../../src/sampling/sampler.js';
import type { WeightTensor } from '../../src/quant/format.js';
import { openGpu, type GpuContext } from '../../src/kernels/webgpu/device.js';
import { GpuKernels } from '../../src/kernels/webgpu/kernels.js';
import { createReferenceBackend } from '../../src/kernels/reference/index.js';
import { quantizeQ4, quantizeQ8, repackQ4Blocks32, repackQ8Blocks32 } from '../../src/quant/weights.js';
import { inCi } from '../helpers/ci.js';
import { assertClose, attentionCases, dense, randn } from '../helpers/parity.js';
import { makePlanes } from '../helpers/planes.js';
import type { FpRows } from '../../src/kv/layout.js';

const ref = createReferenceBackend();

let ctx: GpuContext | null = null;
let skip: string | false = false;
try {
  ctx = await openGpu();
  process.stderr.write(`# WebGPU adapter: ${ctx.adapterName} (shader-f16: ${ctx.hasF16})\n`);
} catch (e) {
  // CI installs a Vulkan driver (.ci/run): there a missing adapter is a failure, never a skip.
  if (inCi()) throw e;
  skip = `no WebGPU adapter here (${(e as Error).message})`;
  process.stderr.write(`# SKIP: ${skip}\n`);
}
const kernels = (): GpuKernels => new GpuKernels(ctx!);

/** A matrix as F32 rows, through the reference's own decoding. */
function dequantized(w: WeightTensor, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) decodeRow(out.subarray(r * cols, (r + 1) * cols), w, r, cols);
  return out;
}

/** Σ|w||x| for every output of a matmul: the scale of its rounding error. */
function absScale(w: WeightTensor | Float32Array, x: Float32Array, rows: number, cols: number, n: number): Float32Array {
  const wf = w instanceof Float32Array ? w : dequantized(w, rows, cols);
  const s = new Float32Array(n * rows);
  for (let t = 0; t < n; t++) for (let r = 0; r < rows; r++) {
    let a = 0;
    for (let j = 0; j < cols; j++) a += Math.abs(wf[r * cols + j]! * x[t * cols + j]!);
    s[t * rows + r] = a;
  }
  return s;
}

test('webgpu: matmul of F32, F16, BF16, 4-bit and 8-bit weights matches the reference', { skip }, async () => {
  const k = kernels();
  const rng = new Xoshiro128(21);
  // odd sizes; 70000 rows spill the workgroups into a second dimension
  const shapes: [number, number, number][] = [[1, 1, 1], [7, 13, 1], [33, 67, 3], [130, 301, 9], [17, 8, 16], [5, 1000, 2], [70000, 8, 1]];
  for (const [rows, cols, n] of shapes) {
    for (const dtype of ['f32', 'f16', 'bf16', 'q4', 'q8'] as const) {
      if (dtype === 'q4' && cols < 32) continue;
      const base = dense(dtype === 'q4' || dtype === 'q8' ? 'f32' : dtype, rows, cols, rng);
      // 4- and 8-bit: the blocks of 32 the GPU reads (F16 scales, and minimums for 4 bits), as
      // the CPU backend prepares them; 8-bit also as the quantizer's groups of 64 (the upload repacks them)
      const w = dtype === 'q4' ? repackQ4Blocks32(quantizeQ4(base, 32, false))!
        : dtype === 'q8' ? (rows % 2 ? repackQ8Blocks32(quantizeQ8(base, 32))! : quantizeQ8(base, 64)) : base;
      const wr = w.dtype === 'q8' ? repackQ8Blocks32(w)! : w; // what the GPU holds: F16 scales
      const x = randn(rng, n * cols);
      const want = new Float32Array(n * rows);
      ref.matmul(want, x, wr, n);
      const out = k.empty(n * rows * 4);
      k.pass().matmul(out, k.upload(x), k.uploadWeight(w), n).submit();
      const got = await k.readFloats(out, n * rows);
      // F32 sums in another order: a few ulps of Σ|w||x| (4-bit weights: of the dequantized ones)
      const scale = absScale(dtype === 'q4' || dtype === 'q8' ? dequantized(wr, rows, cols) : base, x, rows, cols, n);
      assertClose(got, want, 2e-6, scale, `${dtype} [${rows}x${cols}] n=${n}`);
    }
  }
});

test('webgpu: RMSNorm, RoPE (both layouts), SiLU-gate, adds and embedding match the reference', { skip }, async () => {
  const k = kernels();
  const rng = new Xoshiro128(22);
  for (const [rows, dim] of [[1, 1], [3, 67], [41, 1001]] as const) {
    const x = randn(rng, rows * dim, 3);
    const w = randn(rng, dim);
    const want = new Float32Array(rows * dim);
    ref.rmsnorm(want, x, w, rows, dim, 1e-5);
    const buf = k.upload(x);
    k.pass().rmsnorm(buf, k.upload(w), rows, dim, 1e-5).submit();
    assertClose(await k.readFloats(buf, rows * dim), want, 1e-6, Float32Array.from(want, (v) => Math.abs(v) + 1e-3), `rmsnorm ${rows}x${dim}`);
  }
  for (const layout of [0, 1] as const) {
    const [n, heads, hd, start, positions] = [3, 5, 18, 7, 16];
    const x = randn(rng, n * heads * hd);
    const cos = Float32Array.from({ length: positions * (hd / 2) }, () => Math.cos(rng.next() * 6));
    const sin = Float32Array.from({ length: positions * (hd / 2) }, () => Math.sin(rng.next() * 6));
    const want = x.slice();
    ref.rope(want, n, heads, hd, start, cos, sin, layout);
    const buf = k.upload(x);
    k.pass().rope(buf, n, heads, hd, start, k.upload(cos), k.upload(sin), layout).submit();
    assertClose(await k.readFloats(buf, x.length), want, 1e-6, 1, `rope layout ${layout}`);
  }
  const n = 5000;
  const g = randn(rng, n, 4);
  const u = randn(rng, n);
  const silu = g.slice();
  ref.siluMul(silu, u, n);
  const sum = g.slice();
  ref.add(sum, u, n);
  const biased = g.slice();
  ref.addBias(biased, u.subarray(0, 40), n / 40, 40);
  const [gb, ub, sb, bb] = [k.upload(g), k.upload(u), k.upload(g), k.upload(g)];
  k.pass().siluMul(gb, ub, n).add(sb, ub, n).addBias(bb, k.upload(u.subarray(0, 40)), n / 40, 40).submit();
  assertClose(await k.readFloats(gb, n), silu, 1e-6, Float32Array.from(silu, (v) => Math.abs(v) + 1e-3), 'siluMul');
  assert.deepEqual(await k.readFloats(sb, n), sum, 'add is exact');
  assert.deepEqual(await k.readFloats(bb, n), biased, 'addBias is exact');
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    const table = dense(dtype, 37, 11, rng);
    const tokens = Int32Array.of(36, 0, 5, 5, 17);
    const want = new Float32Array(tokens.length * 11);
    ref.embed(want, table, tokens, tokens.length);
    const out = k.empty(want.byteLength);
    k.pass().embed(out, k.uploadWeight(table), k.upload(Uint32Array.from(tokens)), tokens.length).submit();
    assert.deepEqual(await k.readFloats(out, want.length), want, `embed ${dtype} is exact`);
  }
});

test('webgpu: attention over F32/F16 rows and INT8/INT4 planes, GQA and windows matches the reference', { skip }, async () => {
  const k = kernels();
  let cases = 0;
  for (const c of attentionCases(true)) {
    const v = c.view;
    if (v.kind === 'sparse') continue; // the sparse drafts' selections are a CPU-only view for now
    cases++;
    const kv = k.uploadKv(v.fp, v.fpStart, v.kvDim, v.kind === 'hier' ? v.planes : null, v.kind === 'hier' ? v.bits : 0);
    const want = new Float32Array(c.nq * c.shape.nHeads * c.shape.headDim);
    ref.attention(want, c.q, c.nq, c.startPos, v, c.shape, new Float32Array(c.total));
    const out = k.empty(want.byteLength);
    k.pass().attention(out, k.upload(c.q), c.nq, c.startPos, kv, c.shape).submit();
    // The same dequantized keys and values in F32; only the softmax's merging and the order of
    // sums differ from the reference's single pass.
    assertClose(await k.readFloats(out, want.length), want, 2e-5, 1, c.label);
  }
  assert.ok(cases >= 15, `${cases} attention cases ran`);
});

test('webgpu: attention is batch-invariant: each query of a pass equals that query alone, bit for bit', { skip }, async () => {
  // What keeps greedy QuantSpec equal to plain decoding on the GPU: a verify pass's query i must
  // get exactly the numbers of a plain step at its position, across chunk, tile and boundary splits.
  const k = kernels();
  let cases = 0;
  for (const c of attentionCases(true)) {
    const v = c.view;
    if (v.kind === 'sparse' || c.nq < 2) continue;
    cases++;
    const kv = k.uploadKv(v.fp, v.fpStart, v.kvDim, v.kind === 'hier' ? v.planes : null, v.kind === 'hier' ? v.bits : 0);
    const width = c.shape.nHeads * c.shape.headDim;
    const all = k.empty(c.nq * width * 4);
    const pass = k.pass().attention(all, k.upload(c.q), c.nq, c.startPos, kv, c.shape);
    const alone = Array.from({ length: c.nq }, (_, i) => {
      const out = k.empty(width * 4);
      pass.attention(out, k.upload(c.q.subarray(i * width, (i + 1) * width)), 1, c.startPos + i, kv, c.shape);
      return out;
    });
    pass.submit();
    const batched = await k.readFloats(all, c.nq * width);
    for (let i = 0; i < c.nq; i++) {
      assert.deepEqual(await k.readFloats(alone[i]!, width), batched.subarray(i * width, (i + 1) * width), `${c.label}: query ${i}`);
    }
  }
  assert.ok(cases >= 8, `${cases} cases ran`);
});

test('webgpu: one pass runs dependent kernels in order (norm, matmul, residual add)', { skip }, async () => {
  const k = kernels();
  const rng = new Xoshiro128(23);
  const [n, dim, rows] = [3, 40, 40];
  const x = randn(rng, n * dim);
  const w = randn(rng, dim);
  const m: DenseTensor = { dtype: 'f16', shape: [rows, dim], data: Uint16Array.from(randn(rng, rows * dim), f32ToF16) };
  const normed = new Float32Array(n * dim);
  ref.rmsnorm(normed, x, w, n, dim, 1e-5);
  const want = new Float32Array(n * rows);
  ref.matmul(want, normed, m, n);
  ref.add(want, x, n * dim);
  const xb = k.upload(x);
  const hb = k.upload(x);
  const out = k.empty(want.byteLength);
  k.pass().rmsnorm(hb, k.upload(w), n, dim, 1e-5).matmul(out, hb, k.uploadWeight(m), n).add(out, xb, n * dim).submit();
  assertClose(await k.readFloats(out, want.length), want, 1e-5, 1, 'norm -> matmul -> add');
});

test('webgpu: a buffer larger than one binding, or a matrix row that is, is refused by name', { skip }, () => {
  const small = new GpuKernels(ctx!, { maxBindingBytes: 64 });
  assert.throws(() => small.upload(new Float32Array(17)), (e: unknown) => e instanceof ShapeMismatchError && /68-byte tensor is larger than one binding of this adapter \(64 bytes\)/.test((e as Error).message));
  assert.ok(small.upload(new Float32Array(16)), 'a tensor that fits uploads');
  const wide: DenseTensor = { dtype: 'f32', shape: [2, 17], data: new Float32Array(34) };
  assert.throws(() => small.uploadWeight(wide), (e: unknown) => e instanceof ShapeMismatchError && /a matrix row of 68 bytes is larger than one binding/.test((e as Error).message));
});

test('webgpu: matrices larger than one binding are split by rows: matmul (accumulating too) and embedding match the reference', { skip }, async () => {
  // A binding of 4 KiB here stands for an adapter's 128 MiB and a 1B-class model's 525 MB embedding
  // (the activations stay within it, as they do there).
  const k = new GpuKernels(ctx!, { maxBindingBytes: 4096 });
  const rng = new Xoshiro128(24);
  for (const [rows, cols, n] of [[301, 67, 3], [130, 96, 7], [1000, 8, 1]] as const) {
    for (const dtype of ['f32', 'f16', 'bf16', 'q4', 'q8'] as const) {
      if (dtype === 'q4' && cols < 32) continue;
      const base = dense(dtype === 'q4' || dtype === 'q8' ? 'f32' : dtype, rows, cols, rng);
      const w = dtype === 'q4' ? repackQ4Blocks32(quantizeQ4(base, 32, false))! : dtype === 'q8' ? repackQ8Blocks32(quantizeQ8(base, 32))! : base;
      const gw = k.uploadWeight(w);
      assert.ok(gw.slices.length >= 2, `${dtype} [${rows}x${cols}] is split (${gw.slices.length} slices)`);
      const x = randn(rng, n * cols);
      const residual = randn(rng, n * rows);
      const want = new Float32Array(n * rows);
      ref.matmul(want, x, w, n);
      ref.add(want, residual, n * rows);
      const out = k.upload(residual);
      k.pass().matmul(out, k.upload(x), gw, n, true).submit();
      const scale = absScale(dtype === 'q4' || dtype === 'q8' ? dequantized(w, rows, cols) : base, x, rows, cols, n).map((v, i) => v + Math.abs(residual[i]!));
      assertClose(await k.readFloats(out, n * rows), want, 2e-6, scale, `sliced ${dtype} [${rows}x${cols}] n=${n}`);
      // Tokens from every slice, the first and last rows included (quantized tables decoded as the reference's decodeRow).
      const tokens = Int32Array.from([0, rows - 1, 5, Math.floor(rows / 2), rows - 2]);
      const table = new Float32Array(tokens.length * cols);
      ref.embed(table, w, tokens, tokens.length);
      const emb = k.empty(table.byteLength);
      k.pass().embed(emb, gw, k.upload(Uint32Array.from(tokens)), tokens.length).submit();
      assert.deepEqual(await k.readFloats(emb, table.length), table, `sliced embedding ${dtype}`);
    }
  }
});

test('webgpu: the fused forms: RMSNorm into another buffer, a matmul that adds into its output, RoPE of queries and keys at once', { skip }, async () => {
  const k = kernels();
  const rng = new Xoshiro128(23);
  // RMSNorm into `out`: the reference's values, and x left exactly as it was (the residual stream).
  const [rows, dim] = [5, 67];
  const x = randn(rng, rows * dim, 3);
  const w = randn(rng, dim);
  const want = new Float32Array(rows * dim);
  ref.rmsnorm(want, x, w, rows, dim, 1e-5);
  const xb = k.upload(x);
  const normed = k.empty(rows * dim * 4);
  k.pass().rmsnorm(xb, k.upload(w), rows, dim, 1e-5, normed).submit();
  assertClose(await k.readFloats(normed, rows * dim), want, 1e-6, Float32Array.from(want, (v) => Math.abs(v) + 1e-3), 'rmsnorm into out');
  assert.deepEqual(await k.readFloats(xb, rows * dim), x, 'rmsnorm into out leaves x unchanged');
  // out += x · Wᵀ: the residual plus the reference's product, for every weight format.
  for (const dtype of ['f32', 'f16', 'q4'] as const) {
    const [r, c, n] = [37, 96, 5];
    const base = dense(dtype === 'q4' ? 'f32' : dtype, r, c, rng);
    const m = dtype === 'q4' ? repackQ4Blocks32(quantizeQ4(base, 32, false))! : base;
    const h = randn(rng, n * c);
    const residual = randn(rng, n * r, 4);
    const sum = new Float32Array(n * r);
    ref.matmul(sum, h, m, n);
    ref.add(sum, residual, n * r);
    const out = k.upload(residual);
    k.pass().matmul(out, k.upload(h), k.uploadWeight(m), n, true).submit();
    const scale = absScale(dtype === 'q4' ? dequantized(m, r, c) : base, h, r, c, n).map((v, i) => v + Math.abs(residual[i]!));
    assertClose(await k.readFloats(out, n * r), sum, 2e-6, scale, `matmul accumulate ${dtype}`);
  }
  // RoPE of q and k in one dispatch: bit for bit the two single dispatches, for both layouts.
  for (const layout of [0, 1] as const) {
    const [n, qHeads, kHeads, hd, start, positions] = [3, 6, 2, 16, 5, 12];
    const q = randn(rng, n * qHeads * hd);
    const kk = randn(rng, n * kHeads * hd);
    const cos = k.upload(Float32Array.from({ length: positions * (hd / 2) }, () => Math.cos(rng.next() * 6)));
    const sin = k.upload(Float32Array.from({ length: positions * (hd / 2) }, () => Math.sin(rng.next() * 6)));
    const [q1, k1, q2, k2] = [k.upload(q), k.upload(kk), k.upload(q), k.upload(kk)];
    k.pass().ropePair(q1, qHeads, k1, kHeads, n, hd, start, cos, sin, layout)
      .rope(q2, n, qHeads, hd, start, cos, sin, layout).rope(k2, n, kHeads, hd, start, cos, sin, layout).submit();
    assert.deepEqual(await k.readFloats(q1, q.length), await k.readFloats(q2, q.length), `ropePair queries, layout ${layout}`);
    assert.deepEqual(await k.readFloats(k1, kk.length), await k.readFloats(k2, kk.length), `ropePair keys, layout ${layout}`);
    assert.notDeepEqual(await k.readFloats(k1, kk.length), kk, 'the keys were rotated');
  }
});

test('webgpu: argmax of logits rows is the sampler\'s (the first of equal maxima)', { skip }, async () => {
  const k = kernels();
  const rng = new Xoshiro128(25);
  for (const cols of [1, 7, 64, 1000, 32000]) {
    const rows = 9;
    const x = randn(rng, rows * cols);
    const row = (r: number) => x.subarray(r * cols, (r + 1) * cols);
    if (cols > 1) {
      row(1).fill(2.5); // all equal: the first
      row(2)[cols - 1] = 50; // the last
      row(3)[Math.floor(cols / 2)] = 9;
      row(3)[cols - 1] = 9; // a tie between two strides: the earlier
      row(4).fill(-3); // all equal and negative: the first
      row(5).fill(-1e30);
      row(5)[cols - 1] = -1e29; // the largest of very negative values
      row(6)[0] = 40; // the first
    }
    const want = Int32Array.from({ length: rows }, (_, r) => argmax(x, r * cols, cols));
    const out = k.empty(rows * 4);
    k.pass().argmax(out, k.upload(x), rows, cols).submit();
    assert.deepEqual(await k.readWords(out, rows), want, `${cols} columns`);
  }
});

/** The bytes of a GPU buffer (readFloats' words, reinterpreted). */
async function readBytes(k: GpuKernels, buf: GPUBuffer, bytes: number): Promise<Uint8Array> {
  const f = await k.readFloats(buf, Math.ceil(bytes / 4));
  return new Uint8Array(f.buffer, 0, bytes);
}

test('webgpu: K/V rows written as F32 and F16 equal the reference writeKv', { skip }, async () => {
  const k = kernels();
  const rng = new Xoshiro128(5);
  for (const dtype of ['f32', 'f16'] as const) {
    const kvDim = 24;
    const rows = 9;
    const n = 3;
    const at = 4;
    const kf = randn(rng, n * kvDim, 3);
    const vf = randn(rng, n * kvDim, 3);
    kf[0] = 1e-7; // an F16 subnormal
    kf[1] = 70000; // beyond F16: infinity
    kf[2] = 1 + 2 ** -11; // a tie, rounded to even
    const fp: FpRows = dtype === 'f32'
      ? { dtype, keys: new Float32Array(rows * kvDim), values: new Float32Array(rows * kvDim) }
      : { dtype, keys: new Uint16Array(rows * kvDim), values: new Uint16Array(rows * kvDim) };
    const layer = k.uploadKv(fp, 0, kvDim, null, 0);
    ref.writeKv(fp, at, kf, vf, n, kvDim);
    k.pass().kvWrite(layer, at, k.upload(kf), k.upload(vf), n).submit();
    const bytes = fp.keys.byteLength;
    assert.deepEqual(await readBytes(k, layer.keys, bytes), new Uint8Array(fp.keys.buffer), `${dtype} keys`);
    assert.deepEqual(await readBytes(k, layer.values, bytes), new Uint8Array(fp.values.buffer), `${dtype} values`);
  }
});

test('webgpu: the hierarchical quantizer writes the reference quantizer\'s planes and metadata', { skip }, async () => {
  const k = kernels();
  const rng = new Xoshiro128(9);
  // [kvDim, G, Gv, plane positions, rows, srcRow, dstPos, n, dtype]: odd group counts, a quantization
  // into the middle of the planes (neighbouring words keep their bits), F32 and F16 rows.
  const cases: [number, number, number, number, number, number, number, number, 'f32' | 'f16'][] = [
    [16, 4, 8, 12, 10, 1, 4, 8, 'f16'],
    [6, 3, 2, 9, 9, 0, 0, 9, 'f32'],
    [64, 32, 32, 96, 40, 5, 32, 32, 'f16'],
    [10, 5, 10, 15, 12, 2, 10, 5, 'f32'],
  ];
  for (const [kvDim, G, Gv, T, rows, srcRow, dstPos, n, dtype] of cases) {
    const label = `kvDim ${kvDim}, G ${G}, Gv ${Gv}, ${dtype}, ${n} at ${dstPos}`;
    const kf = randn(rng, rows * kvDim, 2);
    const vf = randn(rng, rows * kvDim, 2);
    for (let c = 0; c < kvDim; c++) kf[(srcRow + 1) * kvDim + c] = 0.25; // one row constant per value group
    vf.fill(-1.5, srcRow * kvDim, srcRow * kvDim + Gv); // a constant value group: scale 0
    const fp: FpRows = dtype === 'f32'
      ? { dtype, keys: kf, values: vf }
      : { dtype, keys: Uint16Array.from(kf, f32ToF16), values: Uint16Array.from(vf, f32ToF16) };
    const planes = makePlanes(kvDim, T, G, Gv);
    // Planes that already hold other positions: the quantizer must leave them as they were.
    for (const a of [planes.kUpper, planes.kLower, planes.vUpper, planes.vLower]) for (let i = 0; i < a.length; i++) a[i] = (i * 37) & 255;
    for (const a of [planes.kScale, planes.kMin, planes.vScale, planes.vMin]) for (let i = 0; i < a.length; i++) a[i] = 0x3c00 + i;
    const layer = k.uploadKv(fp, 0, kvDim, planes, 8);
    ref.quantizeKv(planes, fp, srcRow, dstPos, n);
    k.pass().quantizeKv(layer, srcRow, dstPos, n).submit();
    const pl = await readBytes(k, layer.planes!, 4 * planes.kUpper.length);
    const meta = new Uint16Array((await readBytes(k, layer.meta!, 2 * (2 * planes.kScale.length + 2 * planes.vScale.length))).buffer.slice(0));
    const P = planes.kUpper.length;
    [planes.kUpper, planes.kLower, planes.vUpper, planes.vLower].forEach((want, i) => {
      assert.deepEqual(pl.subarray(i * P, (i + 1) * P), want, `${label}: plane ${i}`);
    });
    let o = 0;
    for (const [name, want] of [['kScale', planes.kScale], ['kMin', planes.kMin], ['vScale', planes.vScale], ['vMin', planes.vMin]] as const) {
      assert.deepEqual(meta.subarray(o, o + want.length), want, `${label}: ${name}`);
      o += want.length;
    }
  }
});
