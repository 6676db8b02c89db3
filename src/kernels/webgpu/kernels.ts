// The WGSL kernels (wgsl.ts) as calls: tensors live in GPU buffers, a GpuPass records dispatches and
// submits them as one command buffer, and nothing comes back to the CPU unless read.

import { BackendUnavailableError, ShapeMismatchError, UnsupportedDtypeError } from '../../core/errors.js';
import type { FpRows, KvPlanes } from '../../kv/layout.js';
import { colsOf, rowsOf, type WeightTensor } from '../../quant/format.js';
import { repackQ4Blocks32, repackQ8Blocks32 } from '../../quant/weights.js';
import type { AttentionShape, RopeLayout } from '../backend.js';
import type { GpuContext } from './device.js';
import { ARGMAX, ATTENTION, ATTENTION_MERGE, ELEMENTWISE, EMBED, KV_QUANTIZE, KV_WRITE, MATMUL, RMSNORM, ROPE } from './wgsl.js';

/**
 * A matrix on the GPU: F32/F16/BF16 rows as stored, 4-bit blocks of 32 with F16 scales then
 * minimums, or 8-bit blocks of 32 with F16 scales; in slices of consecutive rows where the whole matrix exceeds one storage binding
 * (a 1B-class model's embedding on an adapter that binds 128 MiB), each slice its own buffer.
 */
export type GpuWeight =
  | { readonly dtype: 'f32' | 'f16' | 'bf16'; readonly rows: number; readonly cols: number; readonly slices: readonly DenseSlice[] }
  | { readonly dtype: 'q4'; readonly rows: number; readonly cols: number; readonly slices: readonly QuantSlice[] }
  | { readonly dtype: 'q8'; readonly rows: number; readonly cols: number; readonly slices: readonly QuantSlice[] };

/** Rows [row0, row0 + rows) of a matrix. */
export interface DenseSlice {
  readonly row0: number;
  readonly rows: number;
  readonly data: GPUBuffer;
}

export interface QuantSlice {
  readonly row0: number;
  readonly rows: number;
  readonly codes: GPUBuffer; // q4: [rows, nb, 16] bytes; q8: [rows, nb, 32] signed bytes
  readonly meta: GPUBuffer; // F16 scales [rows, nb], then (q4) minimums [rows, nb]
}

/** One layer's cache on the GPU: full-precision rows from fpStart, and the planes when hierarchical. */
export interface GpuKvLayer {
  readonly kvDim: number;
  readonly fpDtype: 'f32' | 'f16';
  readonly fpStart: number;
  readonly keys: GPUBuffer; // [rows, kvDim] F32 or F16
  readonly values: GPUBuffer;
  /** 4 or 8 bits read from the planes; 0 reads only the rows. */
  readonly bits: 0 | 4 | 8;
  readonly keyGroupSize: number;
  readonly valueGroupSize: number;
  readonly planeTokens: number;
  readonly planes: GPUBuffer | null; // [kUpper | kLower | vUpper | vLower] bytes
  readonly meta: GPUBuffer | null; // [kScale | kMin | vScale | vMin] F16
}

const DTYPE_CODE = { f32: 0, f16: 1, bf16: 2, q4: 3, q8: 4 } as const;
/** Bytes of one dispatch's parameters in the uniform arena (the minimum uniform offset alignment). */
const PARAM_STRIDE = 256;
/** Positions per chunk of split attention: a chunk of one KV head is one workgroup's work. */
const ATTENTION_CHUNK = 256;
/** Free staging buffers kept at most. */
const MAX_STAGING = 8;
/** Bind groups kept at most (a forward pass of a 1B-class model uses about 500). */
const MAX_BIND_GROUPS = 8192;
/** Workgroups along x at most (WebGPU's default limit is 65535); larger counts spill into y. */
const MAX_GROUPS_X = 32768;

type Kernel = 'matmul' | 'rmsnorm' | 'rope' | 'elementwise' | 'embed' | 'attention' | 'attentionMerge' | 'kvWrite' | 'kvQuantize' | 'argmax';
const SOURCES: Readonly<Record<Kernel, string>> = {
  matmul: MATMUL, rmsnorm: RMSNORM, rope: ROPE, elementwise: ELEMENTWISE, embed: EMBED, attention: ATTENTION,
  attentionMerge: ATTENTION_MERGE, kvWrite: KV_WRITE, kvQuantize: KV_QUANTIZE, argmax: ARGMAX,
};

interface Dispatch {
  readonly kernel: Kernel;
  readonly buffers: readonly GPUBuffer[]; // bindings 1.. in order
  readonly params: ArrayBuffer; // binding 0
  readonly groups: readonly [number, number, number];
}

/** Parameters as 4-byte fields: integers as u32, `f` fields as f32. */
function params(fields: readonly (number | { f: number })[]): ArrayBuffer {
  const buf = new ArrayBuffer(PARAM_STRIDE);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  fields.forEach((v, i) => {
    if (typeof v === 'number') u[i] = v;
    else f[i] = v.f;
  });
  return buf;
}

/** Workgroups for `count` of them in one dimension, spilling into y past MAX_GROUPS_X. */
function spread(count: number, z = 1): [number, number, number] {
  const x = Math.max(1, Math.min(count, MAX_GROUPS_X));
  return [x, Math.ceil(count / x), z];
}

export class GpuKernels {
  readonly ctx: GpuContext;
  private readonly pipelines = new Map<Kernel, GPUComputePipeline>();
  /** Bound where a kernel's binding is unused by this call (WebGPU wants every binding bound). */
  readonly dummy: GPUBuffer;

  /** Validation and memory errors the device reported since the last read (WebGPU reports them asynchronously). */
  private readonly errors: string[] = [];

  /**
   * Every pass's parameters go to this one uniform buffer, slot i for dispatch i: a pass writes it
   * with queue.writeBuffer, which the queue orders after the passes submitted before it. Grown
   * (and the bind groups made anew) when a pass has more dispatches than slots.
   */
  private uniforms: GPUBuffer | null = null;
  private uniformSlots = 0;
  /**
   * Bind groups by kernel, slot and buffers: a forward pass binds the same buffers at the same
   * slots every time, so after the first pass of each kind none is made. Cleared when it grows past
   * MAX_BIND_GROUPS (passes over ever-new buffers, as tests make).
   */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  /** Split attention's partial results, grown on demand (every pass uses it between two of its own dispatches). */
  private partials: GPUBuffer | null = null;
  /** Staging buffers for reads, free for reuse (a read maps one; passes of several sessions may read at once). */
  private readonly staging: GPUBuffer[] = [];
  private nextBufferId = 1;

  /** A smaller binding limit than the adapter's (tests of sliced matrices), or undefined. */
  private readonly maxBinding: number | undefined;

  constructor(ctx: GpuContext, opts: { maxBindingBytes?: number } = {}) {
    this.ctx = ctx;
    this.maxBinding = opts.maxBindingBytes;
    this.dummy = this.empty(16);
    ctx.device.addEventListener('uncapturederror', (ev) => {
      this.errors.push((ev as GPUUncapturedErrorEvent).error.message);
    });
  }

  get device(): GPUDevice {
    return this.ctx.device;
  }

  pipeline(kernel: Kernel): GPUComputePipeline {
    let p = this.pipelines.get(kernel);
    if (!p) {
      const module = this.device.createShaderModule({ code: SOURCES[kernel], label: kernel });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: kernel });
      this.pipelines.set(kernel, p);
    }
    return p;
  }

  /** A storage buffer of at least `bytes` (rounded up to 4), zeroed. */
  empty(bytes: number): GPUBuffer {
    return this.device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 4) * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  /** A storage buffer holding `data` (padded with zeros to 4 bytes). */
  upload(data: ArrayBufferView): GPUBuffer {
    const limit = this.bindingLimit;
    if (data.byteLength > limit) {
      throw new ShapeMismatchError(
        `WebGPU: a ${data.byteLength}-byte tensor is larger than one binding of this adapter (${limit} bytes); weight matrices are split into slices of rows, other buffers are not.`,
      );
    }
    const buf = this.device.createBuffer({
      size: Math.max(16, Math.ceil(data.byteLength / 4) * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: true,
    });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buf.unmap();
    return buf;
  }

  /** Overwrite the start of `buf` with `data` (queued before the next submission). */
  write(buf: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buf, byteOffset, bytes);
      return;
    }
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    this.device.queue.writeBuffer(buf, byteOffset, padded);
  }

  /** The first `floats` floats of `buf`, after everything submitted so far. */
  async readFloats(buf: GPUBuffer, floats: number): Promise<Float32Array> {
    return new Float32Array(await this.read(buf, floats * 4));
  }

  /** The first `words` u32 words of `buf` (as Int32Array: token ids), after everything submitted so far. */
  async readWords(buf: GPUBuffer, words: number): Promise<Int32Array> {
    return new Int32Array(await this.read(buf, words * 4));
  }

  private async read(buf: GPUBuffer, byteCount: number): Promise<ArrayBuffer> {
    const bytes = Math.max(4, byteCount);
    // A free staging buffer large enough, else a new one (returned to the pool once read).
    const i = this.staging.findIndex((b) => b.size >= bytes);
    const staging = i >= 0 ? this.staging.splice(i, 1)[0]! : this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, 0, staging, 0, byteCount);
    this.device.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, bytes);
      const out = staging.getMappedRange(0, bytes).slice(0, byteCount);
      staging.unmap();
      if (this.staging.length < MAX_STAGING) this.staging.push(staging);
      else staging.destroy();
      this.throwReported();
      return out;
    } catch (e) {
      staging.destroy();
      throw e;
    }
  }

  /** Resolves once everything submitted so far has run (rejects with what the device reported). */
  async done(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    this.throwReported();
  }

  private throwReported(): void {
    if (this.errors.length > 0) {
      const all = this.errors.splice(0).join('\n');
      throw new BackendUnavailableError(`the WebGPU device rejected the work: ${all}`);
    }
  }

  /** Bytes one storage binding may hold (the adapter's limit, or less to test slicing). */
  get bindingLimit(): number {
    return this.maxBinding ?? this.ctx.limits.maxStorageBufferBindingSize;
  }

  /**
   * A weight matrix uploaded in a layout the matmul reads (4-bit pairs repacked to blocks of 32),
   * split by rows into slices of at most one binding each.
   */
  uploadWeight(w: WeightTensor): GpuWeight {
    const rows = rowsOf(w);
    const cols = colsOf(w);
    // The matrix by rows, as many a slice as one binding holds; make(r0, n) uploads rows [r0, r0 + n).
    const sliced = <S>(rowBytes: number, make: (r0: number, n: number) => S): S[] => {
      const step = Math.floor(this.bindingLimit / rowBytes);
      if (step < 1) {
        throw new ShapeMismatchError(`WebGPU: a matrix row of ${rowBytes} bytes is larger than one binding of this adapter (${this.bindingLimit} bytes).`);
      }
      const slices: S[] = [];
      for (let r0 = 0; r0 < rows; r0 += step) slices.push(make(r0, Math.min(step, rows - r0)));
      return slices;
    };
    switch (w.dtype) {
      case 'f32':
      case 'f16':
      case 'bf16': {
        const slices = sliced<DenseSlice>(cols * w.data.BYTES_PER_ELEMENT, (r0, n) => ({
          row0: r0, rows: n, data: this.upload(w.data.subarray(r0 * cols, (r0 + n) * cols)),
        }));
        return { dtype: w.dtype, rows, cols, slices };
      }
      case 'q4': {
        const b = w.packing === 'blocks32' ? w : repackQ4Blocks32(w);
        if (!b || b.dtype !== 'q4' || b.packing !== 'blocks32') {
          throw new UnsupportedDtypeError(`WebGPU: a 4-bit matrix with groups of ${w.groupSize} has no layout on the GPU; use groups of 32.`);
        }
        const nb = Math.ceil(cols / 32);
        const slices = sliced<QuantSlice>(nb * 16, (r0, n) => {
          const meta = new Uint16Array(2 * n * nb);
          meta.set(b.scales.subarray(r0 * nb, (r0 + n) * nb), 0);
          meta.set(b.mins.subarray(r0 * nb, (r0 + n) * nb), n * nb);
          return { row0: r0, rows: n, codes: this.upload(b.codes.subarray(r0 * nb * 16, (r0 + n) * nb * 16)), meta: this.upload(meta) };
        });
        return { dtype: 'q4', rows, cols, slices };
      }
      case 'q8': {
        const b = repackQ8Blocks32(w);
        if (!b || b.packing !== 'blocks32') {
          throw new UnsupportedDtypeError(`WebGPU: an 8-bit matrix with groups of ${w.groupSize} has no layout on the GPU; use groups of 32.`);
        }
        const nb = Math.ceil(cols / 32);
        const slices = sliced<QuantSlice>(nb * 32, (r0, n) => ({
          row0: r0, rows: n,
          codes: this.upload(b.codes.subarray(r0 * nb * 32, (r0 + n) * nb * 32)), meta: this.upload(b.scales.subarray(r0 * nb, (r0 + n) * nb)),
        }));
        return { dtype: 'q8', rows, cols, slices };
      }
    }
  }

  /** A layer's cache uploaded from its CPU arrays (rows [fpStart, ..) and, for a hierarchical view, its planes). */
  uploadKv(fp: FpRows, fpStart: number, kvDim: number, planes: KvPlanes | null, bits: 0 | 4 | 8): GpuKvLayer {
    let planeBuf: GPUBuffer | null = null;
    let metaBuf: GPUBuffer | null = null;
    let planeTokens = 0;
    if (planes && bits > 0) {
      planeTokens = planes.kUpper.length / (kvDim / 2);
      const bytes = new Uint8Array(4 * planes.kUpper.length);
      [planes.kUpper, planes.kLower, planes.vUpper, planes.vLower].forEach((pl, i) => bytes.set(pl, i * pl.length));
      const meta = new Uint16Array(2 * planes.kScale.length + 2 * planes.vScale.length);
      let o = 0;
      for (const m of [planes.kScale, planes.kMin, planes.vScale, planes.vMin]) {
        meta.set(m, o);
        o += m.length;
      }
      planeBuf = this.upload(bytes);
      metaBuf = this.upload(meta);
    }
    return {
      kvDim, fpDtype: fp.dtype, fpStart, keys: this.upload(fp.keys), values: this.upload(fp.values), bits: planeBuf ? bits : 0,
      keyGroupSize: planes?.keyGroupSize ?? 1, valueGroupSize: planes?.valueGroupSize ?? 1, planeTokens, planes: planeBuf, meta: metaBuf,
    };
  }

  /** The partials buffer with room for at least `floats` floats. */
  partialsBuffer(floats: number): GPUBuffer {
    if (!this.partials || this.partials.size < floats * 4) {
      this.partials?.destroy();
      this.partials = this.empty(Math.max(floats * 4, 2 * (this.partials?.size ?? 0)));
    }
    return this.partials;
  }

  /** The uniform buffer with at least `slots` slots of PARAM_STRIDE bytes. */
  uniformBuffer(slots: number): GPUBuffer {
    if (!this.uniforms || this.uniformSlots < slots) {
      this.uniforms?.destroy();
      this.uniformSlots = Math.max(slots, 2 * this.uniformSlots, 256);
      this.uniforms = this.device.createBuffer({ size: this.uniformSlots * PARAM_STRIDE, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      this.bindGroups.clear();
    }
    return this.uniforms;
  }

  private idOf(buf: GPUBuffer): number {
    let id = this.bufferIds.get(buf);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(buf, id);
    }
    return id;
  }

  /** The bind group of `kernel` at uniform slot `slot` with `buffers` at bindings 1.. (made once). */
  bindGroup(kernel: Kernel, slot: number, buffers: readonly GPUBuffer[]): GPUBindGroup {
    let key = `${kernel}:${slot}`;
    for (const b of buffers) key += `:${this.idOf(b)}`;
    let g = this.bindGroups.get(key);
    if (!g) {
      if (this.bindGroups.size >= MAX_BIND_GROUPS) this.bindGroups.clear();
      const pipeline = this.pipeline(kernel);
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.uniforms!, offset: slot * PARAM_STRIDE, size: PARAM_STRIDE } }];
      buffers.forEach((buffer, j) => entries.push({ binding: j + 1, resource: { buffer } }));
      g = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      this.bindGroups.set(key, g);
    }
    return g;
  }

  /** A new recording of dispatches. */
  pass(): GpuPass {
    return new GpuPass(this);
  }
}

/** Dispatches recorded in order and submitted together (one command buffer, one uniform arena). */
export class GpuPass {
  private readonly k: GpuKernels;
  private readonly dispatches: Dispatch[] = [];

  constructor(k: GpuKernels) {
    this.k = k;
  }

  /** out[n, rows] = x[n, cols] · Wᵀ; with accumulate, out += x · Wᵀ (a residual add in the same dispatch). One dispatch per slice of W. */
  matmul(out: GPUBuffer, x: GPUBuffer, w: GpuWeight, n: number, accumulate = false): this {
    const d = this.k.dummy;
    for (const sl of w.slices) {
      const rowGroups = Math.min(sl.rows, MAX_GROUPS_X);
      const bufs = 'codes' in sl ? [x, out, d, sl.codes, sl.meta] : w.dtype === 'f32' ? [x, out, sl.data, d, d] : [x, out, d, sl.data, d];
      this.dispatches.push({
        kernel: 'matmul', buffers: bufs,
        params: params([sl.rows, w.cols, n, DTYPE_CODE[w.dtype], rowGroups, accumulate ? 1 : 0, w.rows, sl.row0]),
        groups: [rowGroups, Math.ceil(sl.rows / rowGroups), Math.ceil(n / 4)],
      });
    }
    return this;
  }

  /**
   * RMSNorm of `rows` rows of `dim`: x[r] / sqrt(mean(x[r]²) + eps) · weight, in place, or into
   * `out` leaving x as it was.
   */
  rmsnorm(x: GPUBuffer, weight: GPUBuffer, rows: number, dim: number, eps: number, out?: GPUBuffer): this {
    this.dispatches.push({
      kernel: 'rmsnorm', buffers: [x, weight, out ?? this.k.dummy], params: params([rows, dim, { f: eps }, out ? 1 : 0]), groups: [rows, 1, 1],
    });
    return this;
  }

  /** RoPE in place on x[n, heads, headDim]; cos/sin [positions, headDim / 2]. */
  rope(x: GPUBuffer, n: number, heads: number, headDim: number, start: number, cos: GPUBuffer, sin: GPUBuffer, layout: RopeLayout): this {
    return this.ropePair(x, heads, this.k.dummy, 0, n, headDim, start, cos, sin, layout);
  }

  /** RoPE of the queries q[n, qHeads, headDim] and keys k[n, kHeads, headDim] in one dispatch. */
  ropePair(
    q: GPUBuffer, qHeads: number, k: GPUBuffer, kHeads: number, n: number, headDim: number, start: number,
    cos: GPUBuffer, sin: GPUBuffer, layout: RopeLayout,
  ): this {
    this.dispatches.push({
      kernel: 'rope', buffers: [q, cos, sin, k], params: params([n, qHeads, headDim, start, layout, kHeads]),
      groups: spread(Math.ceil((n * (qHeads + kHeads) * (headDim / 2)) / 64)),
    });
    return this;
  }

  /** gate = silu(gate) · up over n elements. */
  siluMul(gate: GPUBuffer, up: GPUBuffer, n: number): this {
    return this.elementwise(0, gate, up, n, 1);
  }

  /** a += b over n elements. */
  add(a: GPUBuffer, b: GPUBuffer, n: number): this {
    return this.elementwise(1, a, b, n, 1);
  }

  /** x[rows, dim] += bias[dim]. */
  addBias(x: GPUBuffer, bias: GPUBuffer, rows: number, dim: number): this {
    return this.elementwise(2, x, bias, rows * dim, dim);
  }

  private elementwise(op: number, a: GPUBuffer, b: GPUBuffer, n: number, dim: number): this {
    this.dispatches.push({ kernel: 'elementwise', buffers: [a, b], params: params([n, op, dim]), groups: spread(Math.ceil(n / 64)) });
    return this;
  }

  /** out[t, :] = row tokens[t] of table (tokens: u32 [n]); one dispatch per slice of the table. */
  embed(out: GPUBuffer, table: GpuWeight, tokens: GPUBuffer, n: number): this {
    const d = this.k.dummy;
    for (const sl of table.slices) {
      this.dispatches.push({
        kernel: 'embed', buffers: 'codes' in sl ? [tokens, out, d, sl.codes, sl.meta] : table.dtype === 'f32' ? [tokens, out, sl.data, d, d] : [tokens, out, d, sl.data, d],
        params: params([n, table.cols, DTYPE_CODE[table.dtype], sl.row0, sl.rows]), groups: spread(Math.ceil((n * table.cols) / 64)),
      });
    }
    return this;
  }

  /**
   * Causal attention of n queries (query i at position start + i) over a layer's cache: out, q
   * [n, heads·headDim]. Two dispatches: the partial softmax of every chunk of ATTENTION_CHUNK
   * positions of every KV head (each KV row decoded once for all the queries and heads that share
   * it), then their merge.
   */
  attention(out: GPUBuffer, q: GPUBuffer, n: number, start: number, kv: GpuKvLayer, shape: AttentionShape): this {
    const { nHeads, nKvHeads, headDim: d, window } = shape;
    if (d > 256 || nHeads % nKvHeads !== 0 || kv.kvDim !== nKvHeads * d) {
      throw new ShapeMismatchError(`WebGPU attention: ${nHeads}/${nKvHeads} heads of ${d} over rows of ${kv.kvDim} (head_dim at most 256).`);
    }
    const units = Math.ceil(d / 64);
    const perKv = n * (nHeads / nKvHeads);
    // Workgroup memory: queries qg·d <= 2048 floats, a tile of rows tile·d <= 1024, scores qg·tile <= 512;
    // accumulators qg·units <= 32 per thread.
    // The tile depends on the head size only, never on the pass's size: a query's sums must group
    // the same way in a verify pass as in a plain step (batch invariance).
    const qgMax = Math.min(Math.floor(32 / units), Math.floor(2048 / d));
    const qg = Math.min(perKv, qgMax);
    const tile = Math.max(1, Math.min(64, Math.floor(1024 / d), Math.floor(512 / qgMax)));
    const chunks = Math.ceil((start + n) / ATTENTION_CHUNK);
    const partials = this.k.partialsBuffer(chunks * n * nHeads * (d + 2));
    const dm = this.k.dummy;
    this.dispatches.push({
      kernel: 'attention',
      buffers: [q, partials, kv.keys, kv.values, kv.planes ?? dm, kv.meta ?? dm],
      params: params([
        n, start, nHeads, nKvHeads, d, window, kv.fpStart, kv.kvDim, kv.fpDtype === 'f32' ? 0 : 1, kv.bits > 0 ? 1 : 0,
        kv.bits, kv.keyGroupSize, kv.valueGroupSize, { f: 1 / Math.sqrt(d) }, kv.planeTokens, ATTENTION_CHUNK, qg, tile,
      ]),
      groups: [chunks, nKvHeads, Math.ceil(perKv / qg)],
    });
    this.dispatches.push({ kernel: 'attentionMerge', buffers: [partials, out], params: params([n, nHeads, d, chunks]), groups: [n, nHeads, 1] });
    return this;
  }

  /** out[r] (u32) = the first index of the largest value of row r of x [rows, cols] (greedy decoding's choice). */
  argmax(out: GPUBuffer, x: GPUBuffer, rows: number, cols: number): this {
    this.dispatches.push({ kernel: 'argmax', buffers: [x, out], params: params([rows, cols]), groups: [rows, 1, 1] });
    return this;
  }

  /** Rows k, v [n, kvDim] (F32) into a layer's full-precision rows at `row`, in its row dtype. */
  kvWrite(kv: GpuKvLayer, row: number, k: GPUBuffer, v: GPUBuffer, n: number): this {
    const count = kv.fpDtype === 'f32' ? n * kv.kvDim : (n * kv.kvDim) / 2;
    this.dispatches.push({
      kernel: 'kvWrite', buffers: [k, v, kv.keys, kv.values],
      params: params([n, kv.kvDim, row, kv.fpDtype === 'f32' ? 0 : 1]), groups: spread(Math.ceil(count / 64)),
    });
    return this;
  }

  /**
   * Quantize positions [dstPos, dstPos + n) (n a multiple of the key group) from the layer's rows
   * srcRow.. into its planes and metadata: the metadata first, then the codes that read it.
   */
  quantizeKv(kv: GpuKvLayer, srcRow: number, dstPos: number, n: number): this {
    if (!kv.planes || !kv.meta) throw new ShapeMismatchError('WebGPU: this cache layer has no planes to quantize into.');
    const { kvDim, keyGroupSize: G, valueGroupSize: Gv, planeTokens: T } = kv;
    const keyMeta = (T / G) * kvDim;
    const valueMeta = T * (kvDim / Gv);
    const metaRanges: [number, number][] = [
      [(dstPos / G) * kvDim, (n / G) * kvDim], // key scales
      [keyMeta + (dstPos / G) * kvDim, (n / G) * kvDim], // key minimums
      [2 * keyMeta + dstPos * (kvDim / Gv), n * (kvDim / Gv)], // value scales
      [2 * keyMeta + valueMeta + dstPos * (kvDim / Gv), n * (kvDim / Gv)], // value minimums
    ];
    const planeBytes = T * (kvDim / 2);
    const codeRanges: [number, number][] = [0, 1, 2, 3].map((plane) => [2 * (plane * planeBytes + dstPos * (kvDim / 2)), 2 * n * (kvDim / 2)]);
    const fields = [kvDim, G, Gv, kv.fpDtype === 'f32' ? 0 : 1, srcRow, dstPos, n, T];
    for (const [phase, ranges, perWord] of [[0, metaRanges, 2], [1, codeRanges, 8]] as const) {
      for (const [first, count] of ranges) {
        const w0 = Math.floor(first / perWord);
        const words = Math.ceil((first + count) / perWord) - w0;
        this.dispatches.push({
          kernel: 'kvQuantize', buffers: [kv.keys, kv.values, kv.planes, kv.meta],
          params: params([...fields, phase, w0, words]), groups: spread(Math.ceil(words / 64)),
        });
      }
    }
    return this;
  }

  /** Queue the recorded dispatches, in order, as one command buffer. */
  submit(): void {
    const { device } = this.k;
    const n = this.dispatches.length;
    if (n === 0) return;
    const uniforms = this.k.uniformBuffer(n);
    const all = new Uint8Array(n * PARAM_STRIDE);
    this.dispatches.forEach((dp, i) => all.set(new Uint8Array(dp.params), i * PARAM_STRIDE));
    device.queue.writeBuffer(uniforms, 0, all);
    const enc = device.createCommandEncoder();
    const cp = enc.beginComputePass();
    this.dispatches.forEach((dp, i) => {
      cp.setPipeline(this.k.pipeline(dp.kernel));
      cp.setBindGroup(0, this.k.bindGroup(dp.kernel, i, dp.buffers));
      cp.dispatchWorkgroups(...dp.groups);
    });
    cp.end();
    device.queue.submit([enc.finish()]);
    this.dispatches.length = 0;
  }
}
