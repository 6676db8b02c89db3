// Kernel benchmark (a script, not a test): microseconds, effective GB/s and the ratio to this
// machine's read bandwidth, measured in the same run, for the matmul shapes of a 1B-class model
// and attention at 4K/16K/32K context; the prompt GEMM of those shapes in GFLOP/s against the FMA
// and BF16 peaks measured in the same run.
//
//   node dist/bench/kernels.js [--threads N] [--isa avx2|scalar] [--json FILE] [--quick] [--attention-only]

import * as fs from 'node:fs';
import { f32ToBf16, f32ToF16 } from '../src/core/half.js';
import { Xoshiro128 } from '../src/core/rng.js';
import type { DenseTensor } from '../src/core/tensor.js';
import type { AttentionShape } from '../src/kernels/backend.js';
import { bind } from '../src/kv/cache.js';
import { quantBoundary, type KvLayerView } from '../src/kv/layout.js';
import { createCpuBackend, type CpuBackend } from '../src/kernels/cpu/index.js';
import type { WeightTensor } from '../src/quant/format.js';
import { quantizeQ4, quantizeQ8 } from '../src/quant/weights.js';
import { machineSummary, measureReadBandwidth } from '../src/engine/machine.js';
import { benchArgs } from './args.js';

const args = benchArgs('node dist/bench/kernels.js [--threads N] [--isa avx2|scalar] [--json FILE] [--quick] [--attention-only]', { threads: { type: 'string' }, isa: { type: 'string' }, json: { type: 'string' }, quick: { type: 'boolean' }, 'attention-only': { type: 'boolean' } });
const cpu: CpuBackend = createCpuBackend({ threads: args.threads ? Number(args.threads) : undefined, isa: args.isa });
const quick = args.quick === true;
const rows: Record<string, unknown>[] = [];

/** Median time in microseconds of `fn`, after warm-up. Each call touches cold memory when the working set exceeds the cache. */
function timeUs(fn: () => void, minMs = quick ? 150 : 600): number {
  for (let i = 0; i < 3; i++) fn();
  const samples: number[] = [];
  const start = performance.now();
  while (performance.now() - start < minMs || samples.length < 7) {
    const t0 = performance.now();
    fn();
    samples.push((performance.now() - t0) * 1000);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1]!;
}

function randomF32(n: number, seed: number): Float32Array {
  const rng = new Xoshiro128(seed);
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
}

/** A buffer of `bytes` filled with a random pattern (random seed block, then doubled by copyWithin). */
function patterned(bytes: number, seed: number): Uint8Array {
  const buf = new Uint8Array(bytes);
  const block = Math.min(bytes, 1 << 20);
  const rng = new Xoshiro128(seed);
  for (let i = 0; i < block; i++) buf[i] = (rng.nextUint32() >>> 8) & 255;
  for (let filled = block; filled < bytes; filled *= 2) buf.copyWithin(filled, 0, Math.min(filled, bytes - filled));
  return buf;
}

/** Working sets larger than the last-level cache, so every call streams from memory as in decoding. */
const WORKING_SET = (quick ? 768 : 1536) << 20;

// ---- read bandwidth, measured now ----------------------------------------------------------------
// The one probe every script uses (src/engine/machine.ts), over this script's working set.
const measured = measureReadBandwidth(WORKING_SET);
if (measured === null) throw new Error('the native backend is not built: run `node scripts/build-native.mjs` first.');
const bandwidth = measured; // GB/s
process.stdout.write(`# ${machineSummary()}, kernels ${cpu.isa}, ${cpu.threads} threads\n`);
process.stdout.write(`# read bandwidth ${bandwidth.toFixed(1)} GB/s (${WORKING_SET >> 20} MiB streamed by ${cpu.threads} threads)\n\n`);

function report(kind: string, shape: string, us: number, bytes: number, extra: Record<string, unknown> = {}): void {
  const gbs = bytes / (us * 1e3);
  rows.push({ kind, shape, us, bytes, gb_per_s: gbs, bandwidth_ratio: gbs / bandwidth, ...extra });
  process.stdout.write(`| ${kind.padEnd(24)} | ${shape.padEnd(22)} | ${us.toFixed(0).padStart(8)} | ${gbs.toFixed(1).padStart(6)} | ${((gbs / bandwidth) * 100).toFixed(0).padStart(4)}% |\n`);
}

// ---- matmul -----------------------------------------------------------------------------------------
process.stdout.write('| kernel | shape | µs | GB/s | of BW |\n|---|---|---|---|---|\n');
const SHAPES: [number, number][] = [[2048, 2048], [8192, 2048], [2048, 8192]];
const summary: Record<string, number> = {};
/** WORKING_SET bytes of 16-bit values in (-1, 1): a random block converted once, then tiled. */
function tiled16(convert: (x: number) => number, seed: number): Uint16Array {
  const out = new Uint16Array(WORKING_SET / 2);
  const block = 1 << 19;
  const src = randomF32(block, seed);
  for (let i = 0; i < block; i++) out[i] = convert(src[i]!);
  for (let filled = block; filled < out.length; filled *= 2) out.copyWithin(filled, 0, Math.min(filled, out.length - filled));
  return out;
}
const wide = tiled16(f32ToF16, 2);
const wideBf16 = tiled16(f32ToBf16, 3);
for (const [r, c] of args['attention-only'] ? [] : SHAPES) {
  const n16 = r * c;
  const copies = Math.floor(wide.length / n16);
  const view16 = (dtype: 'f16' | 'bf16', k: number): DenseTensor =>
    ({ dtype, shape: [r, c], data: (dtype === 'f16' ? wide : wideBf16).subarray((k % copies) * n16, (k % copies + 1) * n16) });
  // 4-bit: one quantized matrix, its codes and scales tiled over a large buffer the same way.
  const q0 = cpu.prepareWeight(quantizeQ4({ dtype: 'f32', shape: [r, c], data: randomF32(n16, r + c) }, 32, false)) as Extract<WeightTensor, { dtype: 'q4'; packing: 'blocks32' }>;
  const q4Bytes = q0.codes.byteLength + q0.scales.byteLength + q0.mins!.byteLength;
  const qCopies = Math.max(1, Math.floor(WORKING_SET / 2 / q4Bytes));
  const codes = new Uint8Array(qCopies * q0.codes.length);
  const scales = new Uint16Array(qCopies * q0.scales.length);
  const mins = new Uint16Array(qCopies * q0.mins!.length);
  for (let k = 0; k < qCopies; k++) {
    codes.set(q0.codes, k * q0.codes.length);
    scales.set(q0.scales, k * q0.scales.length);
    mins.set(q0.mins!, k * q0.mins!.length);
  }
  const q4 = (k: number): WeightTensor => {
    const i = k % qCopies;
    return { ...q0, codes: codes.subarray(i * q0.codes.length, (i + 1) * q0.codes.length),
      scales: scales.subarray(i * q0.scales.length, (i + 1) * q0.scales.length), mins: mins.subarray(i * q0.mins!.length, (i + 1) * q0.mins!.length) };
  };
  // 8-bit (Q8 blocks of 32, the draft's head and GGUF Q8_0): tiled the same way.
  const p0 = cpu.prepareWeight(quantizeQ8({ dtype: 'f32', shape: [r, c], data: randomF32(n16, r + c + 1) }, 32)) as Extract<WeightTensor, { dtype: 'q8'; packing: 'blocks32' }>;
  const q8Bytes = p0.codes.byteLength + p0.scales.byteLength;
  const pCopies = Math.max(1, Math.floor(WORKING_SET / 2 / q8Bytes));
  const codes8 = new Int8Array(pCopies * p0.codes.length);
  const scales8 = new Uint16Array(pCopies * p0.scales.length);
  for (let k = 0; k < pCopies; k++) {
    codes8.set(p0.codes, k * p0.codes.length);
    scales8.set(p0.scales, k * p0.scales.length);
  }
  const q8 = (k: number): WeightTensor => {
    const i = k % pCopies;
    return { ...p0, codes: codes8.subarray(i * p0.codes.length, (i + 1) * p0.codes.length), scales: scales8.subarray(i * p0.scales.length, (i + 1) * p0.scales.length) };
  };
  const x1 = randomF32(c, 7);
  const x5 = randomF32(5 * c, 8);
  const out = new Float32Array(5 * r);
  const shape = `${r}x${c}`;
  let k = 0;
  const tF16 = timeUs(() => cpu.matmul(out, x1, view16('f16', k++), 1));
  report('matvec f16', shape, tF16, n16 * 2);
  const tBf16 = timeUs(() => cpu.matmul(out, x1, view16('bf16', k++), 1));
  report('matvec bf16', shape, tBf16, n16 * 2);
  const tQ4 = timeUs(() => cpu.matmul(out, x1, q4(k++), 1));
  report('matvec q4 (x int8)', shape, tQ4, q4Bytes, { speedup_vs_bf16: tBf16 / tQ4 });
  const tQ8 = timeUs(() => cpu.matmul(out, x1, q8(k++), 1));
  report('matvec q8 (x int8)', shape, tQ8, q8Bytes, { speedup_vs_bf16: tBf16 / tQ8 });
  const tGemm = timeUs(() => cpu.matmul(out, x5, view16('f16', k++), 5));
  report('gemm f16, 5 tokens', shape, tGemm, n16 * 2, { ratio_to_best_matvec: tGemm / Math.min(tF16, tBf16) });
  const tGemmQ4 = timeUs(() => cpu.matmul(out, x5, q4(k++), 5));
  report('gemm q4, 5 tokens', shape, tGemmQ4, q4Bytes, { ratio_to_q4_matvec: tGemmQ4 / tQ4 });
  const tGemmQ8 = timeUs(() => cpu.matmul(out, x5, q8(k++), 5));
  report('gemm q8, 5 tokens', shape, tGemmQ8, q8Bytes, { ratio_to_q8_matvec: tGemmQ8 / tQ8 });
  summary[`q8_speedup_${shape}`] = tBf16 / tQ8;
  summary[`q8_bw_${shape}`] = q8Bytes / (tQ8 * 1e3) / bandwidth;
  summary[`q4_speedup_${shape}`] = tBf16 / tQ4;
  summary[`gemm5_ratio_${shape}`] = tGemm / Math.min(tF16, tBf16);
  summary[`f16_bw_${shape}`] = (n16 * 2) / (tF16 * 1e3) / bandwidth;
  summary[`bf16_bw_${shape}`] = (n16 * 2) / (tBf16 * 1e3) / bandwidth;
}

// ---- prompt GEMM -----------------------------------------------------------------------------------
// A prefill chunk of 128 tokens through each matmul path, in GFLOP/s against the peaks this run
// measures: F32 FMAs at the path's width (the exact matmul's arithmetic) and the BF16 products
// of the prompt matmul of BF16 and F16 weights (AMX-BF16 tiles, or AVX-512 vdpbf16ps). The weights are one matrix (a chunk's
// matmul reads each weight once, so these run from cache after the first pass).
const GEMM_TOKENS = 128;
const fmaPeak = cpu.peakFlops('fma', 20_000_000) / 1e9;
const bf16Peak = cpu.peakFlops('bf16', 2_000_000) / 1e9;
process.stdout.write(`\n# peaks on ${cpu.threads} threads: F32 FMA ${fmaPeak.toFixed(0)} GFLOP/s, BF16 products of the prompt matmul (AMX tiles or vdpbf16ps) ${bf16Peak > 0 ? `${bf16Peak.toFixed(0)} GFLOP/s` : 'none on this path'}\n`);
process.stdout.write(`| prompt gemm, ${GEMM_TOKENS} tokens | shape | µs | GFLOP/s | of its peak |\n|---|---|---|---|---|\n`);
function reportGemm(kind: string, shape: string, us: number, flops: number, peak: number): void {
  const gflops = flops / (us * 1e3);
  rows.push({ kind, shape, us, gflops, peak_gflops: peak, peak_ratio: gflops / peak, tokens: GEMM_TOKENS });
  process.stdout.write(`| ${kind.padEnd(30)} | ${shape.padEnd(10)} | ${us.toFixed(0).padStart(8)} | ${gflops.toFixed(0).padStart(6)} | ${((gflops / peak) * 100).toFixed(0).padStart(4)}% |\n`);
}
summary['fma_peak_gflops'] = fmaPeak;
summary['bf16_peak_gflops'] = bf16Peak;
for (const [r, c] of args['attention-only'] ? [] : SHAPES) {
  const x = randomF32(GEMM_TOKENS * c, 11);
  const out = new Float32Array(GEMM_TOKENS * r);
  const shape = `${r}x${c}`;
  const flops = 2 * r * c * GEMM_TOKENS;
  for (const dtype of ['bf16', 'f16'] as const) {
    const w: DenseTensor = { dtype, shape: [r, c], data: (dtype === 'f16' ? wide : wideBf16).subarray(0, r * c) };
    const tExact = timeUs(() => cpu.matmul(out, x, w, GEMM_TOKENS));
    reportGemm(`${dtype} weights, F32 activations`, shape, tExact, flops, fmaPeak);
    summary[`gemm_${dtype}_exact_gflops_${shape}`] = flops / (tExact * 1e3);
    // Paths without the prompt matmul, or that leave this weight dtype to the exact one, have no row.
    if (!cpu.matmulPrompt?.(out, x, w, GEMM_TOKENS)) continue;
    const tPrompt = timeUs(() => cpu.matmulPrompt!(out, x, w, GEMM_TOKENS));
    reportGemm(`${dtype} weights, BF16 activations`, shape, tPrompt, flops, bf16Peak);
    summary[`gemm_${dtype}_prompt_gflops_${shape}`] = flops / (tPrompt * 1e3);
    summary[`gemm_${dtype}_prompt_speedup_${shape}`] = tExact / tPrompt;
  }
}

// ---- attention -------------------------------------------------------------------------------------
// One query (a decode step) and 5 queries (a verify pass of γ = 4) of one layer; the layers of a
// 16-layer model are cycled so the cache streams from memory. 8 KV heads with 16 or 32 query heads
// (GQA 2 and 4), head_dim 64 and 128.
process.stdout.write('\n| attention | context, heads, head_dim | µs | GB/s | of BW |\n|---|---|---|---|---|\n');
const CONTEXTS = quick ? [4096, 32768] : [4096, 16384, 32768];
const LAYERS = 16;
const VERIFY = 5;
for (const [nHeads, d] of [[32, 64], [32, 128], [16, 64], [16, 128]] as const) {
  const nKv = 8;
  const kvDim = nKv * d;
  const shape: AttentionShape = { nHeads, nKvHeads: nKv, headDim: d, window: 0 };
  for (const ctx of CONTEXTS) {
    const G = 128;
    const q = randomF32(VERIFY * nHeads * d, 3);
    const out = new Float32Array(VERIFY * nHeads * d);
    const pos = ctx - 1;
    const layers = Math.max(1, Math.min(LAYERS, Math.floor(WORKING_SET / (2 * ctx * kvDim * 2))));
    // F16 cache: every position in F16 rows, one buffer per layer.
    const f16Layers: KvLayerView[] = [];
    const f16Base = wide.subarray(0, 2 * ctx * kvDim * layers);
    for (let l = 0; l < layers; l++) {
      const o = l * 2 * ctx * kvDim;
      f16Layers.push(bind(cpu, { kind: 'fp', kvDim, fp: { dtype: 'f16', keys: f16Base.subarray(o, o + ctx * kvDim), values: f16Base.subarray(o + ctx * kvDim, o + 2 * ctx * kvDim) },
        fpStart: 0 }));
    }
    let li = 0;
    const tF16 = timeUs(() => cpu.attention(out, q, 1, pos, f16Layers[li++ % layers]!, shape, new Float32Array(0)));
    const label = `${ctx}, ${nHeads}/${nKv}, d ${d}`;
    const key = `${ctx}_h${nHeads}_d${d}`;
    report('attention f16 cache', label, tF16, 2 * ctx * kvDim * 2, { layers });
    // Hierarchical: planes below the boundary, F16 rows above it; one set of planes per layer.
    const qEnd = quantBoundary(pos, G);
    const planeBytes = (qEnd * kvDim) / 2;
    const metaK = (qEnd / G) * kvDim;
    const metaV = (qEnd * kvDim) / d;
    const codes = patterned(4 * planeBytes * layers, 9);
    const scale = new Uint16Array((2 * metaK + 2 * metaV) * layers);
    for (let i = 0; i < scale.length; i += 2) {
      scale[i] = f32ToF16(0.01);
      scale[i + 1] = f32ToF16(-0.1);
    }
    const fpRows = ctx - qEnd;
    const views: Record<4 | 8, KvLayerView[]> = { 4: [], 8: [] };
    for (let l = 0; l < layers; l++) {
      const c0 = 4 * planeBytes * l;
      const m0 = (2 * metaK + 2 * metaV) * l;
      const planes = {
        kvDim, keyGroupSize: G, valueGroupSize: d,
        kUpper: codes.subarray(c0, c0 + planeBytes), kLower: codes.subarray(c0 + planeBytes, c0 + 2 * planeBytes),
        vUpper: codes.subarray(c0 + 2 * planeBytes, c0 + 3 * planeBytes), vLower: codes.subarray(c0 + 3 * planeBytes, c0 + 4 * planeBytes),
        kScale: scale.subarray(m0, m0 + metaK), kMin: scale.subarray(m0 + metaK, m0 + 2 * metaK),
        vScale: scale.subarray(m0 + 2 * metaK, m0 + 2 * metaK + metaV), vMin: scale.subarray(m0 + 2 * metaK + metaV, m0 + 2 * metaK + 2 * metaV),
      };
      const fp = { dtype: 'f16' as const, keys: f16Base.subarray(0, fpRows * kvDim), values: f16Base.subarray(fpRows * kvDim, 2 * fpRows * kvDim) };
      for (const bits of [8, 4] as const) views[bits].push(bind(cpu, { kind: 'hier', kvDim, fp, fpStart: qEnd, planes, bits }));
    }
    const metaBytes = (2 * metaK + 2 * metaV) * 2;
    const one: Record<number, number> = {};
    for (const bits of [8, 4] as const) {
      const t = timeUs(() => cpu.attention(out, q, 1, pos, views[bits][li++ % layers]!, shape, new Float32Array(0)));
      const bytes = (bits === 8 ? 4 : 2) * planeBytes + metaBytes + fpRows * kvDim * 4;
      report(`attention int${bits} view`, label, t, bytes, { speedup_vs_f16: tF16 / t, layers });
      summary[`attn_int${bits}_speedup_${key}`] = tF16 / t;
      one[bits] = t;
    }
    summary[`attn_int4_vs_int8_${key}`] = one[8]! / one[4]!;
    // A verify pass: queries at pos - 4 .. pos share the quantization boundary of pos here.
    const t5 = timeUs(() => cpu.attention(out, q, VERIFY, pos - VERIFY + 1, views[8][li++ % layers]!, shape, new Float32Array(0)));
    report(`attention int8 view, ${VERIFY} queries`, label, t5, 4 * planeBytes + metaBytes + fpRows * kvDim * 4, { ratio_to_one_query: t5 / one[8]!, layers });
    summary[`attn_int8_verify5_ratio_${key}`] = t5 / one[8]!;
  }
}

process.stdout.write(`\nsummary: ${JSON.stringify(Object.fromEntries(Object.entries(summary).map(([k, v]) => [k, Number(v.toFixed(3))])))}\n`);
if (args.json) {
  fs.writeFileSync(args.json, rows.map((r) => JSON.stringify({ ...r, isa: cpu.isa, threads: cpu.threads, read_bandwidth_gb_per_s: bandwidth })).join('\n') + '\n');
}
