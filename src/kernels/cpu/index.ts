// The native CPU backend: Node-API addon (build/quantspec.node, built on `npm ci` by
// scripts/build-native.mjs) for every kernel: matmul, attention, KV quantization, RMSNorm, RoPE,
// SiLU-gate, residual adds and embedding lookup (formats the addon does not read, such as 4- and
// 8-bit groups that are not a multiple of 32 or quantized embedding tables, go through the
// reference kernels). Instruction set chosen at load (QUANTSPEC_CPU =
// scalar | avx2 | avx512 | amx overrides; the choice is process-wide); threads default to the physical
// cores (QUANTSPEC_THREADS overrides; fixed once the first backend starts its thread pool).

import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendUnavailableError, ShapeMismatchError } from '../../core/errors.js';
import type { DenseTensor } from '../../core/tensor.js';
import type { WeightTensor } from '../../quant/format.js';
import { repackQ4Blocks32, repackQ8Blocks32 } from '../../quant/weights.js';
import { restoreKv, saveKv, shiftKv } from '../reference/kvquant.js';
import type { KvHandle, KvLayerView } from '../../kv/layout.js';
import type { Backend } from '../backend.js';
import { createReferenceBackend } from '../reference/index.js';

interface NativeAddon {
  init(threads: number, isa: string): { isa: string; threads: number; gemmBf16: boolean };
  matmul(out: Float32Array, x: Float32Array, w: Float32Array | Uint16Array, dtype: number, rows: number, cols: number, n: number): void;
  matmulQ4(out: Float32Array, x: Float32Array, codes: Uint8Array, scales: Uint16Array, mins: Uint16Array, rows: number, cols: number, n: number): void;
  matmulQ8(out: Float32Array, x: Float32Array, codes: Int8Array, scales: Uint16Array, rows: number, cols: number, n: number): void;
  gemmBf16(out: Float32Array, x: Float32Array, w: Uint16Array, dtype: number, rows: number, cols: number, n: number): boolean;
  quantizeQ4(src: Float32Array | Uint16Array, dtype: number, rows: number, cols: number, group: number, symmetric: number, codes: Uint8Array, scales: Uint16Array, mins: Uint16Array): void;
  quantizeQ8(src: Float32Array | Uint16Array, dtype: number, rows: number, cols: number, group: number, codes: Int8Array, scales: Uint16Array): void;
  attention(out: Float32Array, q: Float32Array, nq: number, startPos: number, nHeads: number, nKvHeads: number, headDim: number, window: number, kv: NativeKvHandle): void;
  kvBind(
    fpDtype: number, fpKeys: Float32Array | Uint16Array, fpValues: Float32Array | Uint16Array, bits: number, kvDim: number, groupK: number, groupV: number,
    kUpper: Uint8Array | null, kLower: Uint8Array | null, kScale: Uint16Array | null, kMin: Uint16Array | null,
    vUpper: Uint8Array | null, vLower: Uint8Array | null, vScale: Uint16Array | null, vMin: Uint16Array | null,
    selPositions: Int32Array | null, selStride: number,
  ): NativeKvHandle;
  kvRefresh(kv: NativeKvHandle, fpStart: number, selCount: number, selDenseFrom: number, selRecent: number): void;
  quantBoundary(p: number, G: number): number;
  splitMinBytes(bytes: number): number;
  quantizeKv(
    kUpper: Uint8Array, kLower: Uint8Array, kScale: Uint16Array, kMin: Uint16Array, vUpper: Uint8Array, vLower: Uint8Array, vScale: Uint16Array, vMin: Uint16Array,
    kvDim: number, groupK: number, groupV: number, fpDtype: number, fpKeys: Float32Array | Uint16Array, fpValues: Float32Array | Uint16Array,
    srcRow: number, dstPos: number, nTokens: number,
  ): void;
  writeKv(fpDtype: number, fpKeys: Float32Array | Uint16Array, fpValues: Float32Array | Uint16Array, row: number, k: Float32Array, v: Float32Array, nTokens: number, kvDim: number): void;
  readSum(data: Float32Array): number;
  peakFlops(kind: number, iterations: number): number;
  mapFile?(fd: number, bytes: number): ArrayBuffer | null;
  allocLarge?(bytes: number): ArrayBuffer | null;
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, nRows: number, dim: number, eps: number): void;
  rope(x: Float32Array, nTokens: number, nHeads: number, headDim: number, startPos: number, cos: Float32Array, sin: Float32Array, layout: number): void;
  embed(out: Float32Array, table: Float32Array | Uint16Array, dtype: number, vocabSize: number, dim: number, tokens: Int32Array, nTokens: number): void;
  add(out: Float32Array, x: Float32Array | null, bias: Float32Array | null, nRows: number, dim: number): void;
  siluMul(gate: Float32Array, up: Float32Array, n: number): void;
}

export interface CpuBackendOptions {
  /** Worker threads including the caller (default: physical cores, or QUANTSPEC_THREADS). */
  readonly threads?: number;
  /** Kernel path: '' = best available, 'amx' (AVX-512 with tile products), 'avx512', 'avx2', 'scalar' (default: QUANTSPEC_CPU). */
  readonly isa?: string;
}

export interface CpuBackend extends Backend {
  readonly isa: string;
  readonly threads: number;
  /** Sum of a buffer read by every thread (benchmarks use it to measure read bandwidth). */
  readSum(data: Float32Array): number;
  /**
   * Peak FLOP/s of this kernel path on all threads, from registers and tiles alone: 'fma' F32 FMAs
   * at its vector width, 'bf16' the BF16 products of its prompt matmul (AMX-BF16 tile products, or
   * AVX-512 vdpbf16ps dot products); 0 where the path has none.
   */
  peakFlops(kind: 'fma' | 'bf16', iterations: number): number;
  /** The addon's own quantization boundary (tested against kv/layout.ts quantBoundary). */
  quantBoundary(p: number, G: number): number;
  /**
   * The size in bytes of reads below which a kernel call runs on the calling thread alone (a hand-off
   * to the other threads costs more than it saves there); process-wide, default 192 KiB. 0 splits
   * every call over all threads (the tests compare both). Returns the bound before; without an
   * argument, only returns it.
   */
  splitMinBytes(bytes?: number): number;
}

/** The addon's binding of one layer view (an external), made once by kvBind. */
declare const nativeKvHandle: unique symbol;
type NativeKvHandle = { readonly [nativeKvHandle]: true };

/** A layer view's handle: the native binding and the refresh that keeps its scalars current. */
class CpuKvHandle implements KvHandle {
  constructor(private readonly native: NativeAddon, readonly bound: NativeKvHandle) {}

  refresh(view: KvLayerView): void {
    const sel = view.kind === 'sparse' ? view.selection : null;
    this.native.kvRefresh(this.bound, view.fpStart, sel ? sel.count : 0, sel ? sel.denseFrom : 0, sel ? sel.recent : 0);
  }
}

function bindView(native: NativeAddon, view: KvLayerView): CpuKvHandle {
  const fp = view.fp;
  const p = view.kind === 'hier' ? view.planes : null;
  const sel = view.kind === 'sparse' ? view.selection : null;
  const bound = native.kvBind(
    FP_DTYPE_CODE[fp.dtype], fp.keys, fp.values, view.kind === 'hier' ? view.bits : 8, view.kvDim,
    p ? p.keyGroupSize : 0, p ? p.valueGroupSize : 0,
    p ? p.kUpper : null, p ? p.kLower : null, p ? p.kScale : null, p ? p.kMin : null,
    p ? p.vUpper : null, p ? p.vLower : null, p ? p.vScale : null, p ? p.vMin : null,
    sel ? sel.positions : null, sel ? sel.stride : 0,
  );
  const handle = new CpuKvHandle(native, bound);
  handle.refresh(view);
  return handle;
}

/** dist/src/kernels/cpu -> package root; '' where there is no file system (the browser bundle). */
export const NATIVE_ADDON_PATH = addonPath();

function addonPath(): string {
  try {
    return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'build', 'quantspec.node');
  } catch {
    return '';
  }
}

let addon: NativeAddon | null = null;
let addonInfo: { isa: string; threads: number; gemmBf16: boolean } | null = null;

/** Physical cores: distinct (package, core) pairs in /proc/cpuinfo, else the logical count. */
export function physicalCores(): number {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const cores = new Set<string>();
    let phys = '0';
    for (const line of info.split('\n')) {
      const [k, v] = line.split(':').map((s) => s.trim());
      if (k === 'physical id') phys = v ?? '0';
      if (k === 'core id') cores.add(`${phys}/${v}`);
    }
    if (cores.size > 0) return cores.size;
  } catch {
    // not Linux
  }
  return os.availableParallelism();
}

/**
 * The first `bytes` of the open file `fd` as one ArrayBuffer mapped copy-on-write (writes stay in
 * this process), its pages read from the page cache when first touched and unmapped when the buffer
 * is collected; null where the addon is not built or cannot map the file (read it instead).
 */
export function mapFile(fd: number, bytes: number): ArrayBuffer | null {
  if (!fs.existsSync(NATIVE_ADDON_PATH)) return null;
  try {
    addon ??= createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeAddon;
  } catch {
    return null;
  }
  return addon.mapFile?.(fd, bytes) ?? null; // absent from an addon built before it
}

function loadAddon(opts: CpuBackendOptions): NativeAddon {
  if (!fs.existsSync(NATIVE_ADDON_PATH)) {
    throw new BackendUnavailableError(
      `the native CPU backend is not built (${NATIVE_ADDON_PATH} is missing); run \`npm run build:native\` (needs a C compiler).`,
    );
  }
  const a = (addon ??= createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeAddon);
  const threads = opts.threads ?? (Number(process.env['QUANTSPEC_THREADS']) || physicalCores());
  const isa = opts.isa ?? process.env['QUANTSPEC_CPU'] ?? '';
  try {
    addonInfo = a.init(threads, isa);
  } catch (e) {
    throw new BackendUnavailableError(`kernel path "${isa}" is not available on this CPU (${(e as Error).message}); use scalar, avx2, avx512 or amx.`);
  }
  return a;
}

const DTYPE_CODE = { f32: 0, f16: 1, bf16: 2 } as const;
/** FP rows of the KV cache: 0 = f32, 1 = f16 (kv_view.fp_dtype). */
const FP_DTYPE_CODE = { f32: 0, f16: 1 } as const;

/** Create the native backend; throws BackendUnavailableError when it cannot run here. */
export function createCpuBackend(opts: CpuBackendOptions = {}): CpuBackend {
  const native = loadAddon(opts);
  const ref = createReferenceBackend();
  const info = addonInfo!;
  return {
    name: `cpu-${info.isa}`,
    isa: info.isa,
    threads: info.threads,
    readSum: (data) => native.readSum(data),
    peakFlops: (kind, iterations) => native.peakFlops(kind === 'fma' ? 0 : 1, iterations),
    quantBoundary: (p, G) => native.quantBoundary(p, G),
    splitMinBytes: (bytes) => native.splitMinBytes(bytes ?? -1),
    prepareWeight(w: WeightTensor): WeightTensor {
      if (w.dtype === 'q4') return repackQ4Blocks32(w) ?? w;
      if (w.dtype === 'q8') return repackQ8Blocks32(w) ?? w;
      return w;
    },
    quantizeQ4(w: DenseTensor, groupSize: number, symmetric: boolean): WeightTensor | null {
      // Groups of a multiple of 32 columns go straight to blocks of 32, on all threads.
      if (w.shape.length !== 2 || groupSize % 32 !== 0 || groupSize < 32) return null;
      const [rows, cols] = w.shape as [number, number];
      const nb = Math.ceil(cols / 32);
      // codes [rows, nb, 16] then scales and mins [rows, nb] in one buffer (huge pages where it can)
      const nCodes = rows * nb * 16;
      const buf = native.allocLarge?.(nCodes + 4 * rows * nb) ?? new ArrayBuffer(nCodes + 4 * rows * nb);
      const codes = new Uint8Array(buf, 0, nCodes);
      const scales = new Uint16Array(buf, nCodes, rows * nb);
      const mins = new Uint16Array(buf, nCodes + 2 * rows * nb, rows * nb);
      native.quantizeQ4(w.data, DTYPE_CODE[w.dtype], rows, cols, groupSize, symmetric ? 1 : 0, codes, scales, mins);
      return { dtype: 'q4', packing: 'blocks32', shape: [rows, cols], groupSize: 32, codes, scales, mins };
    },
    quantizeQ8(w: DenseTensor, groupSize: number): WeightTensor | null {
      if (w.shape.length !== 2 || groupSize % 32 !== 0 || groupSize < 32) return null;
      const [rows, cols] = w.shape as [number, number];
      const nb = Math.ceil(cols / 32);
      // codes [rows, nb, 32] then scales [rows, nb] in one buffer (huge pages where it can)
      const nCodes = rows * nb * 32;
      const buf = native.allocLarge?.(nCodes + 2 * rows * nb) ?? new ArrayBuffer(nCodes + 2 * rows * nb);
      const codes = new Int8Array(buf, 0, nCodes);
      const scales = new Uint16Array(buf, nCodes, rows * nb);
      native.quantizeQ8(w.data, DTYPE_CODE[w.dtype], rows, cols, groupSize, codes, scales);
      return { dtype: 'q8', packing: 'blocks32', shape: [rows, cols], groupSize: 32, codes, scales };
    },
    matmul(out, x, w, nTokens) {
      switch (w.dtype) {
        case 'f32':
        case 'f16':
        case 'bf16':
          native.matmul(out, x, w.data, DTYPE_CODE[w.dtype], w.shape[0]!, w.shape[1]!, nTokens);
          return;
        case 'q4':
          if (w.packing === 'blocks32') {
            native.matmulQ4(out, x, w.codes, w.scales, w.mins, w.shape[0], w.shape[1], nTokens);
            return;
          }
          ref.matmul(out, x, w, nTokens); // group sizes the native kernel does not take
          return;
        case 'q8': {
          if (w.packing !== 'blocks32') {
            ref.matmul(out, x, w, nTokens);
            return;
          }
          const [rows, cols] = w.shape;
          const nb = Math.ceil(cols / 32);
          if (x.length < nTokens * cols || out.length < nTokens * rows || w.codes.length < rows * nb * 32 || w.scales.length < rows * nb) {
            throw new ShapeMismatchError(
              `matmul: x needs ${nTokens * cols} floats, out ${nTokens * rows}, and 8-bit W [${rows}, ${cols}] ${rows * nb * 32} codes and ${rows * nb} scales`,
            );
          }
          native.matmulQ8(out, x, w.codes, w.scales, rows, cols, nTokens);
          return;
        }
        default:
          ref.matmul(out, x, w, nTokens);
      }
    },
    ...(info.gemmBf16 ? {
      matmulPrompt(out: Float32Array, x: Float32Array, w: WeightTensor, nTokens: number): boolean {
        if (w.dtype !== 'bf16' && w.dtype !== 'f16') return false;
        const rows = w.shape[0]!, cols = w.shape[1]!;
        if (x.length < nTokens * cols || out.length < nTokens * rows) {
          throw new ShapeMismatchError(`matmulPrompt: x needs ${nTokens * cols} floats and out ${nTokens * rows} for W [${rows}, ${cols}]`);
        }
        return native.gemmBf16(out, x, w.data, DTYPE_CODE[w.dtype], rows, cols, nTokens);
      },
    } : {}),
    addBias(x, bias, nRows, dim) {
      native.add(x, null, bias, nRows, dim);
    },
    rmsnorm(out, x, weight, nRows, dim, eps) {
      native.rmsnorm(out, x, weight, nRows, dim, eps);
    },
    rope(x, nTokens, nHeads, headDim, startPos, cos, sin, layout) {
      native.rope(x, nTokens, nHeads, headDim, startPos, cos, sin, layout);
    },
    siluMul(gate, up, n) {
      native.siluMul(gate, up, n);
    },
    add(out, x, n) {
      native.add(out, x, null, 1, n);
    },
    embed(out, table, tokens, nTokens) {
      if (table.dtype === 'f32' || table.dtype === 'f16' || table.dtype === 'bf16') {
        native.embed(out, table.data, DTYPE_CODE[table.dtype], table.shape[0]!, table.shape[1]!, tokens, nTokens);
        return;
      }
      ref.embed(out, table, tokens, nTokens); // 4- and 8-bit tables: the reference decodes them
    },
    attention(out, q, nQueries, startPos, kv, shape) {
      if (!(kv.handle instanceof CpuKvHandle)) {
        throw new BackendUnavailableError('this KV view was bound by another backend; make the cache with the backend that runs attention.');
      }
      native.attention(out, q, nQueries, startPos, shape.nHeads, shape.nKvHeads, shape.headDim, shape.window, kv.handle.bound);
    },
    bindKv: (view) => bindView(native, view),
    writeKv(fp, row, k, v, nTokens, kvDim) {
      native.writeKv(FP_DTYPE_CODE[fp.dtype], fp.keys, fp.values, row, k, v, nTokens, kvDim);
    },
    quantizeKv(planes, fp, srcRow, dstPos, nTokens) {
      native.quantizeKv(
        planes.kUpper, planes.kLower, planes.kScale, planes.kMin, planes.vUpper, planes.vLower, planes.vScale, planes.vMin,
        planes.kvDim, planes.keyGroupSize, planes.valueGroupSize, FP_DTYPE_CODE[fp.dtype], fp.keys, fp.values, srcRow, dstPos, nTokens,
      );
    },
    // Row moves and checkpoint copies are memcpy-bound: the typed arrays' own copies serve.
    shiftKv,
    saveKv,
    restoreKv,
  };
}
