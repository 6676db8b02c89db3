// Parity: every native kernel against the TypeScript reference, on odd sizes (not multiples of the
// SIMD width or the group size), for every kernel path this machine can run (forced one by one,
// as QUANTSPEC_CPU would).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { f32ToBf16, f32ToF16 } from '../../src/core/half.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import { bind } from '../../src/kv/cache.js';
import { quantBoundary, type FpRows } from '../../src/kv/layout.js';
import { createCpuBackend, NATIVE_ADDON_PATH } from '../../src/kernels/cpu/index.js';
import type { Backend } from '../../src/kernels/backend.js';
import { createReferenceBackend } from '../../src/kernels/reference/index.js';
import { quantizeQ4, quantizeQ8 } from '../../src/quant/weights.js';
import type { WeightTensor } from '../../src/quant/format.js';
import { assertClose, attentionCases, dense, randn, VERIFY_TOLERANCE } from '../helpers/parity.js';
import { makePlanes } from '../helpers/planes.js';
import { inCi } from '../helpers/ci.js';

const built = fs.existsSync(NATIVE_ADDON_PATH);
if (!built && inCi()) throw new Error(`${NATIVE_ADDON_PATH} is missing: .ci/run must build the native backend.`);
const skip = built ? false : 'native backend not built (npm run build:native)';
if (!built) process.stderr.write(`# SKIP: ${skip}\n`);

const ref = createReferenceBackend();
/** The CPU's feature flags from /proc/cpuinfo (empty elsewhere). */
function cpuFlags(): Set<string> {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    return new Set((line ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return new Set();
  }
}
const cpuHasFlag = (flag: string): boolean => cpuFlags().has(flag);

/** Whether this CPU has the instructions of a kernel path, read from /proc/cpuinfo (false elsewhere). */
function cpuSupports(isa: string): boolean {
  const flags = cpuFlags();
  const avx2 = ['avx2', 'fma', 'f16c'].every((f) => flags.has(f));
  if (isa === 'avx2') return avx2;
  const avx512 = avx2 && ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni'].every((f) => flags.has(f));
  if (isa === 'avx512') return avx512;
  return avx512 && flags.has('amx_tile') && flags.has('amx_int8');
}

/** Every kernel path this CPU can run. */
function availableIsas(): string[] {
  if (!built) return ['scalar'];
  const isas = ['scalar'];
  for (const isa of process.arch === 'x64' ? ['avx2', 'avx512', 'amx'] : []) {
    try {
      createCpuBackend({ isa });
      isas.push(isa);
    } catch (e) {
      // A path this CPU supports must start: in CI its failure fails the run instead of dropping its tests.
      if (cpuSupports(isa) && inCi()) throw new Error(`this CPU supports ${isa} but the native backend cannot run it: ${(e as Error).message}`);
      process.stderr.write(`# kernel path ${isa} is not available here (${(e as Error).message}); its parity tests do not apply\n`);
    }
  }
  return isas;
}
const ISAS = availableIsas();

/** out = x · Wᵀ for n tokens, asserting it is batch invariant: each token alone gives its row of the batch bit for bit. */
function batchInvariantMatmul(cpu: Backend, x: Float32Array, w: WeightTensor, n: number, label: string): Float32Array {
  const rows = w.shape[0]!;
  const cols = x.length / n;
  const got = new Float32Array(n * rows);
  cpu.matmul(got, x, w, n);
  for (let t = 0; t < n; t++) {
    const one = new Float32Array(rows);
    cpu.matmul(one, x.subarray(t * cols, (t + 1) * cols), w, 1);
    assert.deepEqual(one, got.subarray(t * rows, (t + 1) * rows), `${label} token ${t} of ${n}`);
  }
  return got;
}

/** Activations as the 4- and 8-bit kernels take them: int8 per 32-block, x ≈ q·d with d = amax/127. */
function int8Acts(x: Float32Array, n: number, cols: number): Float32Array {
  const xq = new Float32Array(n * cols);
  for (let t = 0; t < n; t++) {
    for (let b = 0; b * 32 < cols; b++) {
      let amax = 0;
      for (let j = b * 32; j < Math.min(cols, b * 32 + 32); j++) amax = Math.max(amax, Math.abs(x[t * cols + j]!));
      const d = Math.fround(amax / 127);
      const inv = d > 0 ? Math.fround(1 / d) : 0;
      for (let j = b * 32; j < Math.min(cols, b * 32 + 32); j++) xq[t * cols + j] = Math.round(Math.fround(x[t * cols + j]! * inv)) * d;
    }
  }
  return xq;
}


/** Two key groups of rows from srcRow, quantized to position G by the backend and by the reference (as F32 or F16 rows): the same planes. */
function quantizeLikeReference(
  cpu: Backend, kvDim: number, G: number, Gv: number, dtype: 'f32' | 'f16', keys: Float32Array, values: Float32Array, srcRow: number, tokens: number,
): void {
  const fp: FpRows = dtype === 'f32'
    ? { dtype, keys, values }
    : { dtype, keys: Uint16Array.from(keys, f32ToF16), values: Uint16Array.from(values, f32ToF16) };
  const a = makePlanes(kvDim, tokens, G, Gv);
  const b = makePlanes(kvDim, tokens, G, Gv);
  cpu.quantizeKv(a, fp, srcRow, G, 2 * G);
  ref.quantizeKv(b, fp, srcRow, G, 2 * G);
  assert.deepEqual(a, b, `kvDim ${kvDim} G ${G} Gv ${Gv} ${dtype}`);
}

const SHAPES: [number, number, number][] = [[1, 1, 1], [7, 13, 1], [33, 67, 3], [64, 256, 5], [130, 301, 9], [17, 8, 16], [5, 1000, 2]];

for (const isa of ISAS) {
  test(`${isa}: matmul f32/f16/bf16 matches the reference and is batch invariant`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    assert.equal(cpu.isa, isa);
    const rng = new Xoshiro128(1);
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      for (const [rows, cols, n] of SHAPES) {
        const w = dense(dtype, rows, cols, rng);
        const x = randn(rng, n * cols);
        const a = new Float32Array(n * rows);
        const b = new Float32Array(n * rows);
        cpu.matmul(a, x, w, n);
        ref.matmul(b, x, w, n);
        // Scale: sum |w||x| per output (the bound on rounding error of a dot product).
        const absW = new Float32Array(rows * cols);
        const row = new Float32Array(cols);
        const scale = new Float32Array(n * rows);
        const absX = Float32Array.from(x, Math.abs);
        ref.matmul(scale, absX, { dtype: 'f32', shape: [rows, cols], data: absW.map((_, i) => { ref.embed(row, w, Int32Array.of(Math.floor(i / cols)), 1); return Math.abs(row[i % cols]!); }) }, n);
        assertClose(a, b, 1e-5, scale, `${dtype} [${rows}x${cols}] n=${n}`);
        // Each token alone gives bit-identical results.
        for (let t = 0; t < n; t++) {
          const one = new Float32Array(rows);
          cpu.matmul(one, x.subarray(t * cols, (t + 1) * cols), w, 1);
          assert.deepEqual(one, a.subarray(t * rows, (t + 1) * rows), `${dtype} token ${t} of ${n}`);
        }
      }
    }
  });

  // The prompt matmul: BF16 activations, exact BF16/F16 weights, F32 sums (Backend.matmulPrompt).
  // Shapes: partial panels of 32 rows and 32-column slices, whole ones (BF16 tiles read in place),
  // token counts across blocks of 16. The last two take the columns in blocks on AMX (the
  // activations of a block stay within 512 KiB: 2 blocks of 56 and 8 slices at 131 tokens, 3 of
  // 26, 26 and 13 at 300), their partial sums carried between blocks; one token alone takes one
  // block, so the batch-invariance check below compares the two.
  test(`${isa}: prompt matmul (BF16 activations) matches its reference, is batch invariant, and is only where the path has BF16 products`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    // AMX tiles, or AVX-512 vdpbf16ps where the CPU has AVX512_BF16 (the avx512 path there).
    if (!(isa === 'amx' || (isa === 'avx512' && cpuHasFlag('avx512_bf16')))) {
      assert.equal(cpu.matmulPrompt, undefined, `${isa} has no BF16 GEMM: prompts must take the exact matmul`);
      assert.equal(cpu.peakFlops('bf16', 1000), 0, `${isa} has no BF16 products to probe`);
      if (isa !== 'scalar') assert.ok(cpu.peakFlops('fma', 100000) > 0);
      return;
    }
    const prompt = cpu.matmulPrompt!;
    const rng = new Xoshiro128(5);
    const shapes: [number, number, number][] = [[1, 1, 1], [37, 131, 17], [64, 256, 37], [96, 512, 40], [130, 301, 9], [33, 64, 33], [32, 2048, 16], [40, 2048, 131], [45, 2080, 300]];
    for (const dtype of ['bf16', 'f16'] as const) {
      for (const [rows, cols, n] of shapes) {
        const w = dense(dtype, rows, cols, rng);
        const x = randn(rng, n * cols);
        const a = new Float32Array(n * rows).fill(7);
        const b = new Float32Array(n * rows);
        if (isa !== 'amx' && dtype === 'f16') { // vdpbf16ps would need two products per F16 weight: the exact matmul takes them
          assert.equal(prompt(a, x, w, n), false, `${isa} leaves F16 weights to the exact matmul`);
          continue;
        }
        assert.equal(prompt(a, x, w, n), true);
        assert.equal(ref.matmulPrompt!(b, x, w, n), true);
        const absW = new Float32Array(rows * cols);
        const row = new Float32Array(cols);
        const scale = new Float32Array(n * rows);
        ref.matmul(scale, Float32Array.from(x, Math.abs), { dtype: 'f32', shape: [rows, cols], data: absW.map((_, i) => { ref.embed(row, w, Int32Array.of(Math.floor(i / cols)), 1); return Math.abs(row[i % cols]!); }) }, n);
        assertClose(a, b, 1e-5, scale, `${dtype} [${rows}x${cols}] n=${n}`);
        // The activations were rounded: some output differs from the exact matmul's by more than F32 sums would.
        const exact = new Float32Array(n * rows);
        ref.matmul(exact, x, w, n);
        let moved = 0;
        for (let i = 0; i < a.length; i++) moved = Math.max(moved, Math.abs(a[i]! - exact[i]!) / scale[i]!);
        if (cols >= 64) assert.ok(moved > 1e-4, `${dtype} [${rows}x${cols}]: within ${moved} of the exact matmul, activations not rounded`);
        for (const t of [0, n - 1, n >> 1]) {
          const one = new Float32Array(rows);
          prompt(one, x.subarray(t * cols, (t + 1) * cols), w, 1);
          assert.deepEqual(one, a.subarray(t * rows, (t + 1) * rows), `${dtype} [${rows}x${cols}] token ${t} of ${n}`);
        }
      }
    }
    // A NaN activation poisons its own token's outputs only.
    const w = dense('bf16', 40, 96, rng);
    const x = randn(rng, 20 * 96);
    x[3 * 96 + 50] = NaN;
    const out = new Float32Array(20 * 40);
    prompt(out, x, w, 20);
    for (let t = 0; t < 20; t++) for (let r = 0; r < 40; r++) assert.equal(Number.isNaN(out[t * 40 + r]!), t === 3, `token ${t} row ${r}`);
    // The benchmark's peak probes: FMAs on every vector path, BF16 products only here.
    assert.ok(cpu.peakFlops('bf16', 20000) > 0);
    // Other dtypes are not its to take.
    assert.equal(prompt(out, x, dense('f32', 40, 96, rng), 20), false);
    assert.throws(() => prompt(new Float32Array(10), x, w, 20), /matmulPrompt/);
  });

  test(`${isa}: 4-bit matmul (int8 activations) matches its exact reference`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    const rng = new Xoshiro128(2);
    for (const [group, symmetric] of [[32, false], [32, true], [64, false], [128, true]] as const) {
      // Rows of 1100 and 2048 columns reach the kernels' 16-block main loops (with a remainder).
      // 731 columns: 23 blocks, one 16-block step, one step of 4, a pair and an odd last block.
      // 11 tokens: a block of 8 and a partial one.
      for (const [rows, cols, n] of [[9, 70, 1], [33, 100, 3], [64, 256, 5], [3, 31, 2], [7, 1100, 2], [5, 2048, 3], [6, 731, 2], [10, 300, 11]] as const) {
        const w = quantizeQ4(dense('f32', rows, cols, rng) as DenseTensor, group, symmetric);
        const prepared = cpu.prepareWeight(w);
        assert.equal(prepared.dtype === 'q4' && prepared.packing, 'blocks32');
        const x = randn(rng, n * cols);
        const got = batchInvariantMatmul(cpu, x, prepared, n, `q4 [${rows}x${cols}]`);
        // Exact reference: the repacked weights (F16 scales and minimums) times the quantized activations.
        const want = new Float32Array(n * rows);
        ref.matmul(want, int8Acts(x, n, cols), prepared, n);
        assertClose(got, want, 2e-4, Math.sqrt(cols), `q4 g${group} ${symmetric ? 'sym' : 'asym'} [${rows}x${cols}] n=${n}`);
        // Repacking only rounds scales and minimums to F16: each weight moves by at most 2^-11 of
        // (15·scale + |min|), a few 1e-3 here, so a dot of `cols` random terms moves by ~1e-3·sqrt(cols).
        const repacked = new Float32Array(n * rows);
        const original = new Float32Array(n * rows);
        ref.matmul(repacked, x, prepared, n);
        ref.matmul(original, x, w, n);
        assertClose(repacked, original, 1e-2, Math.sqrt(cols), 'repacked weights');
      }
    }
  });

  test(`${isa}: 8-bit matmul (int8 activations) matches its exact reference, batch invariant`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    const rng = new Xoshiro128(12);
    for (const group of [32, 64, 96]) {
      // 70 columns: 3 blocks (a pair and an odd last block, the last row's read stopping at its
      // end); 1100: 35 blocks (two 16-block steps, a pair, an odd block); 2048: 64; 731: 23.
      for (const [rows, cols, n] of [[9, 70, 1], [33, 100, 3], [64, 256, 5], [3, 31, 2], [7, 1100, 2], [5, 2048, 3], [6, 731, 2], [10, 300, 11]] as const) {
        const w = quantizeQ8(dense('f32', rows, cols, rng) as DenseTensor, group);
        const prepared = cpu.prepareWeight(w);
        assert.equal(prepared.dtype === 'q8' && prepared.packing, 'blocks32');
        const x = randn(rng, n * cols);
        const got = batchInvariantMatmul(cpu, x, prepared, n, `q8 [${rows}x${cols}]`);
        const want = new Float32Array(n * rows);
        ref.matmul(want, int8Acts(x, n, cols), prepared, n);
        assertClose(got, want, 2e-4, Math.sqrt(cols), `q8 g${group} [${rows}x${cols}] n=${n}`);
        // Repacking only rounds the scales to F16: each weight moves by at most 2^-11 of its group's largest.
        const repacked = new Float32Array(n * rows);
        const original = new Float32Array(n * rows);
        ref.matmul(repacked, x, prepared, n);
        ref.matmul(original, x, w, n);
        assertClose(repacked, original, 1e-2, Math.sqrt(cols), 'repacked weights');
      }
    }
    // The extreme codes: -128 (which GGUF Q8_0 may hold) and 127 against activations of ±127,
    // where an int16 pair sum of the AVX2 path is closest to saturating. Every block's dot is
    // 32 · (-128) · 127 (or its negation), so each output is ±128 · cols within F32 rounding.
    for (const cols of [64, 96, 1100]) {
      const nb = Math.ceil(cols / 32);
      const codes = new Int8Array(2 * nb * 32);
      for (let j = 0; j < cols; j++) {
        codes[j] = -128;
        codes[nb * 32 + j] = 127;
      }
      const w = { dtype: 'q8', packing: 'blocks32', shape: [2, cols], groupSize: 32, codes, scales: new Uint16Array(2 * nb).fill(0x3c00) } as const;
      const x = new Float32Array(2 * cols).fill(1, 0, cols).fill(-1, cols);
      const out = new Float32Array(4);
      cpu.matmul(out, x, w, 2);
      const want = [-128 * cols, 127 * cols, 128 * cols, -127 * cols];
      for (let i = 0; i < 4; i++) assert.ok(Math.abs(out[i]! - want[i]!) <= 1e-5 * Math.abs(want[i]!), `q8 extremes [2x${cols}] out ${i}: ${out[i]} vs ${want[i]}`);
    }
  });

  test(`${isa}: a row's matmul result does not depend on the rows computed beside it, bit for bit`, { skip }, () => {
    // The SIMD kernels take rows in blocks (4 on AVX-512, pairs on AVX2, then single rows) and a
    // block of four sums its rows together (vw_hsum4); each row must still get exactly the sum
    // it gets alone. 7 rows: a block of four, a pair, one single row; 256 columns (whole vectors
    // and blocks), 300 (a scalar tail, an odd last 4-bit block), 1100.
    const cpu = createCpuBackend({ isa });
    const rng = new Xoshiro128(21);
    const rows = 7;
    for (const cols of [256, 300, 1100]) {
      for (const kind of ['f32', 'f16', 'bf16', 'q4', 'q8'] as const) {
        const full = dense(kind === 'f16' || kind === 'bf16' ? kind : 'f32', rows, cols, rng);
        const rowOf = (r: number): DenseTensor => ({ dtype: full.dtype, shape: [1, cols], data: full.data.subarray(r * cols, (r + 1) * cols) } as DenseTensor);
        const prepare = (t: DenseTensor): WeightTensor => cpu.prepareWeight(kind === 'q4' ? quantizeQ4(t, 32, false) : kind === 'q8' ? quantizeQ8(t, 32) : t);
        const w = prepare(full);
        for (const n of [1, 5]) {
          const x = randn(rng, n * cols);
          const got = new Float32Array(n * rows);
          cpu.matmul(got, x, w, n);
          for (let r = 0; r < rows; r++) {
            const alone = new Float32Array(n);
            cpu.matmul(alone, x, prepare(rowOf(r)), n);
            for (let t = 0; t < n; t++) assert.equal(got[t * rows + r], alone[t], `${kind} [${rows}x${cols}] row ${r} token ${t} of ${n}`);
          }
        }
      }
    }
  });

  // The elementwise kernels do what the reference does in the same precision (doubles where it
  // uses JavaScript numbers), so they must match it exactly; SiLU's exp is vectorised in float.
  // Sizes: odd ones, and ones above the addon's threshold for splitting across threads.
  test(`${isa}: RMSNorm, RoPE, embedding and adds match the reference bit for bit; SiLU-gate within 1e-6`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    const rng = new Xoshiro128(11);
    for (const [rows, dim] of [[1, 1], [3, 67], [5, 256], [41, 1001]] as const) {
      const x = randn(rng, rows * dim, 3);
      const w = randn(rng, dim);
      const a = new Float32Array(rows * dim);
      const b = new Float32Array(rows * dim);
      cpu.rmsnorm(a, x, w, rows, dim, 1e-5);
      ref.rmsnorm(b, x, w, rows, dim, 1e-5);
      assert.deepEqual(a, b, `rmsnorm [${rows}x${dim}]`);
      const inPlace = x.slice();
      cpu.rmsnorm(inPlace, inPlace, w, rows, dim, 1e-6);
      ref.rmsnorm(b, x, w, rows, dim, 1e-6);
      assert.deepEqual(inPlace, b, `rmsnorm in place [${rows}x${dim}]`);

      const bias = randn(rng, dim);
      const s1 = x.slice();
      const s2 = x.slice();
      cpu.addBias(s1, bias, rows, dim);
      ref.addBias(s2, bias, rows, dim);
      assert.deepEqual(s1, s2, `addBias [${rows}x${dim}]`);
      const y = randn(rng, rows * dim);
      cpu.add(s1, y, rows * dim);
      ref.add(s2, y, rows * dim);
      assert.deepEqual(s1, s2, `add [${rows}x${dim}]`);
    }
    for (const [n, nHeads, headDim, startPos] of [[1, 1, 2, 0], [3, 5, 6, 7], [2, 4, 64, 100], [20, 17, 128, 3]] as const) {
      const half = headDim / 2;
      const positions = startPos + n + 2;
      const cos = new Float32Array(positions * half);
      const sin = new Float32Array(positions * half);
      for (let p = 0; p < positions; p++) {
        for (let j = 0; j < half; j++) {
          const angle = p * 10000 ** (-j / half);
          cos[p * half + j] = Math.cos(angle);
          sin[p * half + j] = Math.sin(angle);
        }
      }
      for (const layout of [0, 1] as const) {
        const x = randn(rng, n * nHeads * headDim);
        const a = x.slice();
        cpu.rope(a, n, nHeads, headDim, startPos, cos, sin, layout);
        ref.rope(x, n, nHeads, headDim, startPos, cos, sin, layout);
        assert.deepEqual(a, x, `rope layout ${layout} n=${n} heads=${nHeads} d=${headDim} at ${startPos}`);
      }
    }
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      for (const [vocab, dim, n] of [[1, 1, 1], [50, 37, 4], [300, 4096, 9]] as const) {
        const table = dense(dtype, vocab, dim, rng);
        const tokens = Int32Array.from({ length: n }, (_, i) => (i * 97 + vocab - 1) % vocab);
        const a = new Float32Array(n * dim);
        const b = new Float32Array(n * dim);
        cpu.embed(a, table, tokens, n);
        ref.embed(b, table, tokens, n);
        assert.deepEqual(a, b, `embed ${dtype} [${vocab}x${dim}] n=${n}`);
      }
    }
    for (const n of [1, 7, 8, 1003, 70001]) {
      const gate = randn(rng, n, 4);
      gate[0] = -100; // far tails: sigmoid underflows to zero on one side, one on the other
      if (n > 1) gate[1] = 100;
      const up = randn(rng, n);
      const a = gate.slice();
      const b = gate.slice();
      cpu.siluMul(a, up, n);
      ref.siluMul(b, up, n);
      const scale = Float32Array.from(up, (u, i) => Math.abs(u) * Math.max(1, Math.abs(gate[i]!)));
      assertClose(a, b, 1e-6, scale, `siluMul n=${n}`);
    }
  });

  test(`${isa}: KV quantization writes exactly the reference's codes and metadata`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    const rng = new Xoshiro128(3);
    for (const [kvDim, G, Gv, dtype] of [[16, 4, 8, 'f32'], [128, 8, 64, 'f16'], [24, 3, 12, 'f16']] as const) {
      const rows = 3 * G + 1;
      const keys = randn(rng, rows * kvDim, 3);
      const values = randn(rng, rows * kvDim);
      keys.fill(1.25, 0, kvDim); // a constant key channel group start
      quantizeLikeReference(cpu, kvDim, G, Gv, dtype, keys, values, 1, 4 * G);
    }
  });

  test(`${isa}: KV quantization of a real shape with signed zeros, NaN, infinities and values beyond F16 equals the reference's`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    const rng = new Xoshiro128(33);
    for (const [kvDim, G, Gv, dtype] of [[128, 128, 64, 'f16'], [128, 16, 64, 'f32'], [40, 8, 8, 'f32']] as const) {
      const rows = 2 * G;
      const keys = randn(rng, rows * kvDim, 2);
      const values = randn(rng, rows * kvDim);
      // Key channel 3: only signed zeros and positives, -0 first (the minimum's sign depends on order);
      // channel 5: +0 first. Key channel 9 of the first group: a NaN among ordinary values.
      for (let t = 0; t < rows; t++) {
        keys[t * kvDim + 3] = t === 0 ? -0 : t % 3 === 0 ? 0 : Math.abs(keys[t * kvDim + 3]!);
        keys[t * kvDim + 5] = t === 0 ? 0 : t % 4 === 0 ? -0 : Math.abs(keys[t * kvDim + 5]!);
      }
      keys[2 * kvDim + 9] = NaN;
      keys[4 * kvDim + 11] = 1e6; // infinite in F16 rows, clamped to F16's range in F32 rows
      keys[5 * kvDim + 12] = -1e6;
      // Value groups of token 1: a zero minimum whose sign is that of its first zero in channel
      // order (-0 at channel 2, +0 at channel 9: a reduction across 8 lanes meets the +0 first),
      // then a zero maximum the same way.
      for (let c = 0; c < Gv; c++) {
        values[kvDim + c] = c === 2 ? -0 : c === 9 ? 0 : Math.abs(values[kvDim + c]!) + 0.01;
        if (2 * Gv <= kvDim) values[kvDim + Gv + c] = c === 2 ? 0 : c === 9 ? -0 : -Math.abs(values[kvDim + Gv + c]!) - 0.01;
      }
      values[3 * kvDim + 1] = NaN;
      values[4 * kvDim + 2] = 7e4;
      values.fill(0.5, 6 * kvDim, 6 * kvDim + Gv); // a constant group: scale 0
      quantizeLikeReference(cpu, kvDim, G, Gv, dtype, keys, values, 0, 3 * G);
    }
  });

  test(`${isa}: attention over FP rows, INT8 and INT4 planes, GQA, windows and sparse selections`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    for (const c of attentionCases(true)) {
      const a = new Float32Array(c.nq * c.shape.nHeads * c.shape.headDim);
      const b = new Float32Array(a.length);
      cpu.attention(a, c.q, c.nq, c.startPos, bind(cpu, c.view), c.shape, new Float32Array(c.total));
      ref.attention(b, c.q, c.nq, c.startPos, c.view, c.shape, new Float32Array(c.total));
      // Quantized keys are dotted with an int16-quantized folded query (relative error ~1e-5), and
      // value weights are rounded to int16 units of 1/32767 of the largest in each 256-position
      // block; both stay within 2e-4 of the exact result on these unit-scale values, and within
      // VERIFY_TOLERANCE on the verify-sized cases.
      assertClose(a, b, c.verify ? VERIFY_TOLERANCE : 2e-4, 1, c.label);
    }
  });

  // A verify pass must give bit for bit what decoding the same tokens one by one gives, or
  // speculative decoding could break a near-tie differently from plain decoding.
  test(`${isa}: attention of a batch equals each query alone, bit for bit`, { skip }, () => {
    const cpu = createCpuBackend({ isa });
    let batches = 0;
    for (const c of attentionCases(true)) {
      if (c.nq < 2) continue;
      batches++;
      const width = c.shape.nHeads * c.shape.headDim;
      const batch = new Float32Array(c.nq * width);
      cpu.attention(batch, c.q, c.nq, c.startPos, bind(cpu, c.view), c.shape, new Float32Array(c.total));
      for (let i = 0; i < c.nq; i++) {
        const one = new Float32Array(width);
        cpu.attention(one, c.q.subarray(i * width, (i + 1) * width), 1, c.startPos + i, bind(cpu, c.view), c.shape, new Float32Array(c.total));
        assert.deepEqual(one, batch.subarray(i * width, (i + 1) * width), `${c.label}, query ${i}`);
      }
    }
    assert.ok(batches >= 5, 'the cases include batches');
  });

  // Calls below a size run on the calling thread alone (splitMinBytes); split over the threads or
  // whole, a call must give the same bits, or a verify (split) could differ from decoding (whole).
  test(`${isa}: matmuls, 4-bit matmuls and attention give the same bits split over the threads or whole`, { skip: skip || (createCpuBackend({ isa }).threads < 2 && 'one thread: nothing is split') }, () => {
    const cpu = createCpuBackend({ isa });
    const rng = new Xoshiro128(21);
    const before = cpu.splitMinBytes();
    // whole first: a whole call that skipped work could otherwise find the split call's results
    // still in the addon's scratch
    const both = (run: () => Float32Array): [Float32Array, Float32Array] => {
      try {
        cpu.splitMinBytes(2 ** 50);
        const whole = run();
        cpu.splitMinBytes(0);
        return [run(), whole];
      } finally {
        cpu.splitMinBytes(before);
      }
    };
    let checked = 0;
    for (const [rows, cols, n] of [[64, 256, 1], [130, 301, 5], [768, 256, 1], [33, 1100, 3]] as const) {
      for (const dtype of ['f32', 'f16', 'bf16'] as const) {
        const w = cpu.prepareWeight(dense(dtype, rows, cols, rng));
        const x = randn(rng, n * cols);
        const [split, whole] = both(() => { const out = new Float32Array(n * rows); cpu.matmul(out, x, w, n); return out; });
        assert.deepEqual(split, whole, `${dtype} [${rows}x${cols}] n=${n}`);
        checked++;
      }
      const q4 = cpu.prepareWeight(quantizeQ4(dense('f32', rows, cols, rng) as DenseTensor, 32, false));
      const x = randn(rng, n * cols);
      const [split, whole] = both(() => { const out = new Float32Array(n * rows); cpu.matmul(out, x, q4, n); return out; });
      assert.deepEqual(split, whole, `q4 [${rows}x${cols}] n=${n}`);
      const q8 = cpu.prepareWeight(quantizeQ8(dense('f32', rows, cols, rng) as DenseTensor, 32));
      const [split8, whole8] = both(() => { const out = new Float32Array(n * rows); cpu.matmul(out, x, q8, n); return out; });
      assert.deepEqual(split8, whole8, `q8 [${rows}x${cols}] n=${n}`);
      checked += 2;
    }
    for (const c of attentionCases(true)) {
      const [split, whole] = both(() => {
        const out = new Float32Array(c.nq * c.shape.nHeads * c.shape.headDim);
        cpu.attention(out, c.q, c.nq, c.startPos, bind(cpu, c.view), c.shape, new Float32Array(c.total));
        return out;
      });
      assert.deepEqual(split, whole, c.label);
      checked++;
    }
    assert.ok(checked >= 20, 'every kind of call was compared');
    assert.equal(cpu.splitMinBytes(), before, 'the bound is restored');
  });
}

test('native elementwise kernels reject buffers too small and token ids outside the table instead of reading past them', { skip }, () => {
  const cpu = createCpuBackend();
  const w = new Float32Array(8);
  assert.throws(() => cpu.rmsnorm(new Float32Array(8), new Float32Array(8), w, 2, 8, 1e-5), /rmsnorm out is too small/);
  assert.throws(() => cpu.siluMul(new Float32Array(4), new Float32Array(3), 4), /siluMul up is too small/);
  assert.throws(() => cpu.rope(new Float32Array(16), 1, 2, 8, 5, new Float32Array(8), new Float32Array(8), 0), /rope cos table is too small/);
  const table: DenseTensor = { dtype: 'f32', shape: [4, 2], data: new Float32Array(8) };
  assert.throws(() => cpu.embed(new Float32Array(2), table, Int32Array.of(4), 1), /token id 4 is outside the vocabulary \[0, 4\)/);
  assert.throws(() => cpu.embed(new Float32Array(2), table, Int32Array.of(-1), 1), /token id -1/);
});

// The AVX-512 plane blocks (integer dots across positions, 16 value channels per register) and
// the AMX tile products take the same exact integer sums and the AVX2 blocks' per-lane float
// order, so the paths must agree bit for bit, not just within a tolerance.
for (const isa of ['avx512', 'amx'] as const) {
test(`${isa} attention equals avx2 attention exactly`, { skip: skip || (!ISAS.includes(isa) && `this CPU has no ${isa}`) }, () => {
  const outputs = (isa: string): Float32Array[] => {
    const cpu = createCpuBackend({ isa });
    return [...attentionCases(true)].map((c) => {
      const out = new Float32Array(c.nq * c.shape.nHeads * c.shape.headDim);
      cpu.attention(out, c.q, c.nq, c.startPos, bind(cpu, c.view), c.shape, new Float32Array(c.total));
      return out;
    });
  };
  const a = outputs('avx2');
  const b = outputs(isa);
  const labels = [...attentionCases(true)].map((c) => c.label);
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.deepEqual(b[i], a[i], labels[i]);
});
}

test('the addon\'s quantization boundary (C) equals kv/layout.ts quantBoundary', { skip }, () => {
  const cpu = createCpuBackend({ isa: 'scalar' });
  for (const G of [1, 2, 3, 4, 16, 100, 128]) {
    for (let p = 0; p < 6 * G + 700; p++) {
      assert.equal(cpu.quantBoundary(p, G), quantBoundary(p, G), `p ${p}, G ${G}`);
    }
  }
});

for (const isa of ISAS) test(`${isa}: the native backend writes F32 rows into F32 and F16 cache rows as the reference does`, { skip }, () => {
  const cpu = createCpuBackend({ isa });
  const rng = new Xoshiro128(12);
  const kvDim = 28; // 3 rows of 28: whole vectors and a tail
  const k = randn(rng, 3 * kvDim, 70000); // beyond F16's range too: infinities must round alike
  const v = randn(rng, 3 * kvDim, 1e-6); // subnormal halves
  k[1] = NaN;
  k[9] = -NaN;
  v[2] = new Float32Array(new Uint32Array([0x7f812345]).buffer)[0]!; // a NaN with a payload
  v[4] = Infinity;
  v[5] = -0;
  for (const dtype of ['f32', 'f16'] as const) {
    const make = (): FpRows => dtype === 'f32'
      ? { dtype, keys: new Float32Array(8 * kvDim), values: new Float32Array(8 * kvDim) }
      : { dtype, keys: new Uint16Array(8 * kvDim), values: new Uint16Array(8 * kvDim) };
    const a = make();
    const b = make();
    cpu.writeKv(a, 5, k, v, 3, kvDim);
    ref.writeKv(b, 5, k, v, 3, kvDim);
    assert.deepEqual(a, b, dtype);
    assert.ok(a.keys.slice(0, 5 * kvDim).every((x) => x === 0), 'rows before the destination untouched');
  }
});

for (const isa of ISAS) test(`${isa}: the native draft quantizer gives prepareWeight(quantizeQ4(w)) bit for bit (F32, F16, BF16; asymmetric and symmetric; ragged shapes)`, { skip }, () => {
  const cpu = createCpuBackend({ isa });
  const rng = new Xoshiro128(77);
  for (const [rows, cols, group] of [[7, 64, 32], [5, 100, 32], [9, 256, 64], [3, 200, 128], [4, 96, 96], [3, 1100, 32]] as const) {
    const f = Float32Array.from({ length: rows * cols }, () => (rng.next() - 0.5) * 0.2);
    f.fill(0.25, 0, 40); // a constant group: scale 0
    f[50] = 0.1 + 1e-9; // values at rounding edges: halves of the step
    // signed zeros at a group's extremes (Math.min gives -0, Math.max +0) and a NaN in one group
    for (let j = 64; j < 96 && j < rows * cols; j++) f[j] = Math.abs(f[j]!);
    f[70] = 0, f[71] = -0, f[72] = 0;
    for (let j = cols; j < cols + 32; j++) f[j] = -Math.abs(f[j]!);
    f[cols + 3] = -0, f[cols + 4] = 0;
    f[rows * cols - 5] = NaN;
    f[2 * cols + 40] = Infinity; // a group whose scale is infinite: its codes come from NaN products
    const tensors: DenseTensor[] = [
      { dtype: 'f32', shape: [rows, cols], data: f },
      { dtype: 'f16', shape: [rows, cols], data: Uint16Array.from(f, (x) => f32ToF16(x)) },
      { dtype: 'bf16', shape: [rows, cols], data: Uint16Array.from(f, (x) => f32ToBf16(x)) },
    ];
    for (const t of tensors) {
      for (const symmetric of [false, true]) {
        const want = cpu.prepareWeight(quantizeQ4(t, group, symmetric));
        const got = cpu.quantizeQ4!(t, group, symmetric);
        assert.ok(got && got.dtype === 'q4' && want.dtype === 'q4');
        const label = `${rows}x${cols} g${group} ${t.dtype} ${symmetric ? 'sym' : 'asym'}`;
        assert.deepEqual(got.shape, want.shape, label);
        assert.equal(got.packing, want.packing, label);
        assert.equal(got.groupSize, want.groupSize, label);
        assert.deepEqual(got.codes, want.codes, `${label}: codes`);
        // a NaN weight makes its block's scale and minimum NaN on both sides (the NaN's sign bit is the platform's)
        const nanless = (a: ArrayLike<number> | null) => Array.from(a ?? [], (h) => ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 ? 'NaN' : h));
        assert.deepEqual(nanless(got.scales), nanless(want.scales), `${label}: scales`);
        assert.deepEqual(nanless(got.mins), nanless(want.mins), `${label}: mins`);
      }
    }
  }
  assert.equal(cpu.quantizeQ4!({ dtype: 'f32', shape: [2, 32], data: new Float32Array(64) }, 16, false), null, 'groups of 16 stay with the reference');
});

for (const isa of ISAS) test(`${isa}: the native 8-bit quantizer gives prepareWeight(quantizeQ8(w)) bit for bit (F32, F16, BF16; ragged shapes; NaN, infinities, halves)`, { skip }, () => {
  const cpu = createCpuBackend({ isa });
  const rng = new Xoshiro128(78);
  for (const [rows, cols, group] of [[7, 64, 32], [5, 100, 32], [9, 256, 64], [3, 200, 128], [4, 96, 96], [3, 1100, 32]] as const) {
    const f = Float32Array.from({ length: rows * cols }, () => (rng.next() - 0.5) * 0.2);
    f.fill(0.25, 0, 40); // a constant group: every code 127
    f.fill(0, 64, 96); // an all-zero group: scale 0
    f[cols] = 127, f[cols + 1] = 0.5, f[cols + 2] = -1.5, f[cols + 3] = 2.5; // codes at halves (rounded to even)
    f[rows * cols - 5] = NaN;
    f[2 * cols + 40] = Infinity; // a group whose scale is infinite
    const tensors: DenseTensor[] = [
      { dtype: 'f32', shape: [rows, cols], data: f },
      { dtype: 'f16', shape: [rows, cols], data: Uint16Array.from(f, (x) => f32ToF16(x)) },
      { dtype: 'bf16', shape: [rows, cols], data: Uint16Array.from(f, (x) => f32ToBf16(x)) },
    ];
    for (const t of tensors) {
      const want = cpu.prepareWeight(quantizeQ8(t, group));
      const got = cpu.quantizeQ8!(t, group);
      assert.ok(got && got.dtype === 'q8' && want.dtype === 'q8');
      const label = `${rows}x${cols} g${group} ${t.dtype}`;
      assert.deepEqual(got.shape, want.shape, label);
      assert.equal(got.packing, 'blocks32', label);
      assert.equal(want.packing, 'blocks32', label);
      assert.deepEqual(got.codes, want.codes, `${label}: codes`);
      const nanless = (a: ArrayLike<number>) => Array.from(a, (h) => ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 ? 'NaN' : h));
      assert.deepEqual(nanless(got.scales), nanless(want.scales), `${label}: scales`);
    }
  }
  // The reference's own codes at the edges: 127 is the largest magnitude, so its scale is 1 and
  // the halves round to even.
  const q = quantizeQ8({ dtype: 'f32', shape: [1, 4], data: Float32Array.of(127, 0.5, -1.5, 2.5) }, 32);
  assert.deepEqual(Array.from(q.codes.subarray(0, 4)), [127, 0, -2, 2]);
  assert.equal(q.scales[0], 1);
  assert.equal(cpu.quantizeQ8!({ dtype: 'f32', shape: [2, 32], data: new Float32Array(64) }, 16), null, 'groups of 16 stay with the reference');
});
