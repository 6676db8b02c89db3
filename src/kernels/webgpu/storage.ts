// The KV cache's storage on the GPU (KvStorage, kv/layout.ts): each layer's full-precision rows
// and nibble planes live in GPU buffers, made when the cache binds its views. The cache keeps its
// bookkeeping (lengths, the quantization boundary) on the CPU and calls these for the data, so
// rollback, flush and checkpoints never copy the cache to the CPU. The CPU arrays the cache also
// allocates are never written (zeroed pages that are never touched cost no memory).

import { f32ToF16 } from '../../core/half.js';
import { InvalidArgumentError, KvCacheError } from '../../core/errors.js';
import type { FpRows, KvHandle, KvLayerView, KvPlanes, KvRowsCopy, KvStorage } from '../../kv/layout.js';
import type { GpuKernels, GpuKvLayer } from './kernels.js';

interface RowBuffers {
  readonly keys: GPUBuffer; // [rows, kvDim] F32 or F16
  readonly values: GPUBuffer;
  readonly elemBytes: number;
}

interface PlaneBuffers {
  readonly planes: GPUBuffer; // [kUpper | kLower | vUpper | vLower] bytes
  readonly meta: GPUBuffer; // [kScale | kMin | vScale | vMin] F16
  readonly planeTokens: number;
}

/** A layer view's binding: the GPU buffers attention reads, with the view's current fpStart. */
export class GpuKvHandle implements KvHandle {
  layer: GpuKvLayer;

  constructor(layer: GpuKvLayer) {
    this.layer = layer;
  }

  refresh(view: KvLayerView): void {
    if (view.fpStart !== this.layer.fpStart) this.layer = { ...this.layer, fpStart: view.fpStart };
  }
}

interface GpuRowsCopy extends KvRowsCopy {
  readonly keys: GPUBuffer;
  readonly values: GPUBuffer;
  readonly bytes: number;
}

export class GpuKvStorage implements KvStorage {
  readonly kernels: GpuKernels;
  private readonly rowBuffers = new WeakMap<FpRows, RowBuffers>();
  private readonly planeBuffers = new WeakMap<KvPlanes, PlaneBuffers>();

  constructor(kernels: GpuKernels) {
    this.kernels = kernels;
  }

  private rows(fp: FpRows): RowBuffers {
    let r = this.rowBuffers.get(fp);
    if (!r) {
      const elemBytes = fp.keys.BYTES_PER_ELEMENT;
      r = { keys: this.kernels.empty(fp.keys.byteLength), values: this.kernels.empty(fp.values.byteLength), elemBytes };
      this.rowBuffers.set(fp, r);
    }
    return r;
  }

  private planesOf(p: KvPlanes): PlaneBuffers {
    let b = this.planeBuffers.get(p);
    if (!b) {
      const metaBytes = p.kScale.byteLength + p.kMin.byteLength + p.vScale.byteLength + p.vMin.byteLength;
      b = { planes: this.kernels.empty(4 * p.kUpper.byteLength), meta: this.kernels.empty(metaBytes), planeTokens: p.kUpper.length / (p.kvDim / 2) };
      this.planeBuffers.set(p, b);
    }
    return b;
  }

  /** The GPU layer behind rows (and planes, read at `bits`). */
  private layerOf(fp: FpRows, kvDim: number, fpStart: number, planes: KvPlanes | null, bits: 0 | 4 | 8): GpuKvLayer {
    const r = this.rows(fp);
    const p = planes ? this.planesOf(planes) : null;
    return {
      kvDim, fpDtype: fp.dtype, fpStart, keys: r.keys, values: r.values, bits: p ? bits : 0,
      keyGroupSize: planes?.keyGroupSize ?? 1, valueGroupSize: planes?.valueGroupSize ?? 1, planeTokens: p?.planeTokens ?? 0,
      planes: p?.planes ?? null, meta: p?.meta ?? null,
    };
  }

  bindKv(view: KvLayerView): GpuKvHandle {
    if (view.kind === 'sparse') {
      throw new InvalidArgumentError('the WebGPU backend has no sparse KV views (the StreamingLLM and SnapKV drafts); use spec quantspec or none, or --backend cpu.', 'spec');
    }
    const planes = view.kind === 'hier' ? view.planes : null;
    return new GpuKvHandle(this.layerOf(view.fp, view.kvDim, view.fpStart, planes, view.kind === 'hier' ? view.bits : 0));
  }

  /** Rows from the CPU (the GPU forward pass writes its own rows with GpuPass.kvWrite). */
  writeKv(fp: FpRows, row: number, k: Float32Array, v: Float32Array, nTokens: number, kvDim: number): void {
    const r = this.rows(fp);
    const len = nTokens * kvDim;
    const conv = (x: Float32Array): ArrayBufferView => (fp.dtype === 'f32' ? x.subarray(0, len) : Uint16Array.from(x.subarray(0, len), f32ToF16));
    this.kernels.write(r.keys, conv(k), row * kvDim * r.elemBytes);
    this.kernels.write(r.values, conv(v), row * kvDim * r.elemBytes);
  }

  quantizeKv(planes: KvPlanes, fp: FpRows, srcRow: number, dstPos: number, nTokens: number): void {
    this.kernels.pass().quantizeKv(this.layerOf(fp, planes.kvDim, 0, planes, 8), srcRow, dstPos, nTokens).submit();
  }

  shiftKv(fp: FpRows, from: number, nRows: number, kvDim: number): void {
    if (nRows <= 0 || from === 0) return;
    const r = this.rows(fp);
    const bytes = nRows * kvDim * r.elemBytes;
    // A buffer cannot be copied onto itself: through a temporary, in one submission.
    const tmp = this.kernels.empty(bytes);
    const enc = this.kernels.device.createCommandEncoder();
    for (const buf of [r.keys, r.values]) {
      enc.copyBufferToBuffer(buf, from * kvDim * r.elemBytes, tmp, 0, bytes);
      enc.copyBufferToBuffer(tmp, 0, buf, 0, bytes);
    }
    this.kernels.device.queue.submit([enc.finish()]);
    tmp.destroy();
  }

  saveKv(fp: FpRows, nRows: number, kvDim: number): KvRowsCopy {
    const r = this.rows(fp);
    const bytes = nRows * kvDim * r.elemBytes;
    const copy: GpuRowsCopy = { rows: nRows, keys: this.kernels.empty(bytes), values: this.kernels.empty(bytes), bytes };
    if (bytes > 0) {
      const enc = this.kernels.device.createCommandEncoder();
      enc.copyBufferToBuffer(r.keys, 0, copy.keys, 0, bytes);
      enc.copyBufferToBuffer(r.values, 0, copy.values, 0, bytes);
      this.kernels.device.queue.submit([enc.finish()]);
    }
    return copy;
  }

  restoreKv(fp: FpRows, copy: KvRowsCopy): void {
    const c = copy as GpuRowsCopy;
    if (!(c.keys && c.values)) throw new KvCacheError('this checkpoint was saved by another backend\'s KV storage.');
    if (c.bytes === 0) return;
    const r = this.rows(fp);
    const enc = this.kernels.device.createCommandEncoder();
    enc.copyBufferToBuffer(c.keys, 0, r.keys, 0, c.bytes);
    enc.copyBufferToBuffer(c.values, 0, r.values, 0, c.bytes);
    this.kernels.device.queue.submit([enc.finish()]);
  }
}
