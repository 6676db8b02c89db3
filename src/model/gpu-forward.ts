// The forward pass on the GPU (DeviceForward): the same layer sequence as forward.ts, recorded as
// WGSL dispatches and submitted as one command buffer per pass. Weights (target and draft, each
// tensor uploaded once), activations and the KV cache (kernels/webgpu/storage.ts) stay on the
// GPU; only the logits rows come back.

import { BackendUnavailableError, InvalidArgumentError, ShapeMismatchError } from '../core/errors.js';
import type { AttentionShape, RopeLayout } from '../kernels/backend.js';
import type { GpuKernels, GpuPass, GpuWeight } from '../kernels/webgpu/kernels.js';
import { GpuKvHandle } from '../kernels/webgpu/storage.js';
import type { KvCache, KvViewKind } from '../kv/cache.js';
import type { WeightTensor } from '../quant/format.js';
import { kvDimOf, qDimOf, type ModelConfig } from './config.js';
import type { DeviceForward } from './forward.js';
import type { RopeTables } from './rope.js';
import { hostless, type WeightSet } from './weights.js';

interface GpuLayer {
  readonly attnNorm: GPUBuffer;
  readonly wq: GpuWeight;
  readonly wk: GpuWeight;
  readonly wv: GpuWeight;
  readonly wo: GpuWeight;
  readonly bq: GPUBuffer | null;
  readonly bk: GPUBuffer | null;
  readonly bv: GPUBuffer | null;
  readonly qNorm: GPUBuffer | null;
  readonly kNorm: GPUBuffer | null;
  readonly ffnNorm: GPUBuffer;
  readonly w1: GpuWeight;
  readonly w2: GpuWeight;
  readonly w3: GpuWeight;
}

interface GpuWeightSet {
  readonly tokEmbed: GpuWeight;
  readonly layers: readonly GpuLayer[];
  readonly finalNorm: GPUBuffer;
  readonly lmHead: GpuWeight;
}

/** Activation buffers for passes of up to `rows` tokens (grown on demand, never per token). */
interface Activations {
  readonly rows: number;
  readonly tokens: GPUBuffer; // [rows] u32
  readonly x: GPUBuffer; // [rows, dim]
  readonly xb: GPUBuffer; // [rows, max(dim, qDim)]
  readonly q: GPUBuffer; // [rows, qDim]
  readonly k: GPUBuffer; // [rows, kvDim]
  readonly v: GPUBuffer; // [rows, kvDim]
  readonly hb: GPUBuffer; // [rows, hiddenDim]
  readonly hb2: GPUBuffer; // [rows, hiddenDim]
  readonly logits: GPUBuffer; // [rows, vocabSize]
  readonly ids: GPUBuffer; // [rows] u32 greedy ids
  readonly tokenIds: Uint32Array; // [rows] the pass's tokens, staged on the CPU
}

export class GpuForward implements DeviceForward {
  readonly name: string;
  private readonly k: GpuKernels;
  private readonly config: ModelConfig;
  private readonly attn: AttentionShape;
  private readonly ropeLayout: RopeLayout;
  private readonly contextLength: number;
  private readonly cos: GPUBuffer;
  private readonly sin: GPUBuffer;
  /** Every uploaded tensor by its CPU object: the draft shares norms, embeddings and unquantized matrices with the target. */
  private readonly uploaded = new Map<object, GpuWeight | GPUBuffer>();
  private readonly sets = new Map<WeightSet, GpuWeightSet>();
  private act: Activations | null = null;
  /** Passes run by what they returned: the logits rows, greedy ids, or nothing (prompt chunks). */
  readonly counts = { logits: 0, argmax: 0, prompt: 0 };

  constructor(k: GpuKernels, config: ModelConfig, rope: RopeTables, attn: AttentionShape, ropeLayout: RopeLayout, maxRows: number) {
    this.k = k;
    this.name = `webgpu: ${k.ctx.adapterName}`;
    this.config = config;
    this.attn = attn;
    this.ropeLayout = ropeLayout;
    this.contextLength = rope.contextLength;
    this.cos = k.upload(rope.cos);
    this.sin = k.upload(rope.sin);
    this.activations(Math.max(1, maxRows));
  }

  /** Upload a weight set (once; later calls find it). Done at load so that the first token pays nothing. */
  upload(w: WeightSet): void {
    if (this.sets.has(w)) return;
    const mat = (t: WeightTensor): GpuWeight => this.once(t, () => this.k.uploadWeight(t)) as GpuWeight;
    const vec = (t: Float32Array): GPUBuffer => this.once(t, () => this.k.upload(t)) as GPUBuffer;
    const opt = (t: Float32Array | null): GPUBuffer | null => (t ? vec(t) : null);
    this.sets.set(w, {
      tokEmbed: mat(w.tokEmbed),
      finalNorm: vec(w.finalNorm),
      lmHead: mat(w.lmHead),
      layers: w.layers.map((l) => ({
        attnNorm: vec(l.attnNorm), wq: mat(l.wq), wk: mat(l.wk), wv: mat(l.wv), wo: mat(l.wo),
        bq: opt(l.bq), bk: opt(l.bk), bv: opt(l.bv), qNorm: opt(l.qNorm), kNorm: opt(l.kNorm),
        ffnNorm: vec(l.ffnNorm), w1: mat(l.w1), w2: mat(l.w2), w3: mat(l.w3),
      })),
    });
  }

  /**
   * After the uploads: the weight sets with their CPU data let go (hostless(), same order), each
   * bound to its uploaded tensors, and the upload table that kept the CPU tensors cleared, so the
   * host memory of the weights (a browser's fetched tensors, the draft's codes) can be freed.
   */
  releaseHost(sets: readonly WeightSet[]): WeightSet[] {
    for (const w of sets) this.upload(w);
    const out = hostless(sets);
    sets.forEach((w, i) => {
      this.sets.set(out[i]!, this.sets.get(w)!);
      this.sets.delete(w);
    });
    this.uploaded.clear();
    return out;
  }

  private once(key: object, make: () => GpuWeight | GPUBuffer): GpuWeight | GPUBuffer {
    let g = this.uploaded.get(key);
    if (!g) {
      g = make();
      this.uploaded.set(key, g);
    }
    return g;
  }

  private activations(rows: number): Activations {
    if (this.act && this.act.rows >= rows) return this.act;
    const c = this.config;
    const qDim = qDimOf(c);
    const kvDim = kvDimOf(c);
    const f = (n: number) => this.k.empty(4 * rows * n);
    this.act = {
      rows, tokens: f(1), x: f(c.dim), xb: f(Math.max(c.dim, qDim)), q: f(qDim), k: f(kvDim), v: f(kvDim),
      hb: f(c.hiddenDim), hb2: f(c.hiddenDim), logits: f(c.vocabSize), ids: f(1), tokenIds: new Uint32Array(rows),
    };
    return this.act;
  }

  run(w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number, logits: boolean): Promise<Float32Array | null> {
    const { p, a, g } = this.record(w, cache, kind, tokens, first, n);
    const { dim, normEps, vocabSize } = this.config;
    if (!logits) {
      p.submit();
      this.counts.prompt++;
      return this.k.done().then(() => null);
    }
    p.rmsnorm(a.x, g.finalNorm, n, dim, normEps, a.xb).matmul(a.logits, a.xb, g.lmHead, n);
    p.submit();
    this.counts.logits++;
    return this.k.readFloats(a.logits, n * vocabSize);
  }

  runArgmax(w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number): Promise<Int32Array> {
    const { p, a, g } = this.record(w, cache, kind, tokens, first, n);
    const { dim, normEps, vocabSize } = this.config;
    p.rmsnorm(a.x, g.finalNorm, n, dim, normEps, a.xb).matmul(a.logits, a.xb, g.lmHead, n).argmax(a.ids, a.logits, n, vocabSize);
    p.submit();
    this.counts.argmax++;
    return this.k.readWords(a.ids, n);
  }

  /** Record the layers of a pass (the residual stream left in a.x), not yet submitted. */
  private record(w: WeightSet, cache: KvCache, kind: KvViewKind, tokens: ArrayLike<number>, first: number, n: number): { p: GpuPass; a: Activations; g: GpuWeightSet } {
    const c = this.config;
    if (!Number.isInteger(n) || n < 1) throw new ShapeMismatchError(`forward: a pass of ${n} tokens; it needs at least 1.`);
    // Grown (rarely) for a pass longer than any before: a verify of γ + 1 may exceed the prefill chunk.
    const a = this.activations(n);
    for (let i = 0; i < n; i++) {
      const t = tokens[first + i]!;
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) {
        throw new InvalidArgumentError(`token id ${t} is outside the vocabulary [0, ${c.vocabSize}).`, 'tokens');
      }
      a.tokenIds[i] = t;
    }
    if (cache.length + n > this.contextLength) {
      throw new ShapeMismatchError(`position ${cache.length + n} is beyond the RoPE table (${this.contextLength}).`);
    }
    this.upload(w);
    const g = this.sets.get(w)!;
    const layers = cache.view(kind).layers;
    for (const view of layers) {
      if (!(view.handle instanceof GpuKvHandle)) {
        throw new BackendUnavailableError('this KV cache was made by a CPU backend; make the session\'s cache with the WebGPU storage.');
      }
    }
    const pos = cache.append(n);
    const { dim, hiddenDim, nHeads, nKvHeads, headDim, normEps } = c;
    const qDim = qDimOf(c);
    const kvDim = kvDimOf(c);
    this.k.write(a.tokens, a.tokenIds.subarray(0, n));
    const p = this.k.pass();
    p.embed(a.x, g.tokEmbed, a.tokens, n);
    for (let l = 0; l < c.nLayers; l++) {
      const lw = g.layers[l]!;
      const kv = (layers[l]!.handle as GpuKvHandle).layer;
      p.rmsnorm(a.x, lw.attnNorm, n, dim, normEps, a.xb);
      p.matmul(a.q, a.xb, lw.wq, n).matmul(a.k, a.xb, lw.wk, n).matmul(a.v, a.xb, lw.wv, n);
      if (lw.bq) p.addBias(a.q, lw.bq, n, qDim);
      if (lw.bk) p.addBias(a.k, lw.bk, n, kvDim);
      if (lw.bv) p.addBias(a.v, lw.bv, n, kvDim);
      if (lw.qNorm && lw.kNorm) {
        p.rmsnorm(a.q, lw.qNorm, n * nHeads, headDim, normEps).rmsnorm(a.k, lw.kNorm, n * nKvHeads, headDim, normEps);
      }
      p.ropePair(a.q, nHeads, a.k, nKvHeads, n, headDim, pos, this.cos, this.sin, this.ropeLayout);
      p.kvWrite(kv, pos - kv.fpStart, a.k, a.v, n);
      p.attention(a.xb, a.q, n, pos, kv, this.attn);
      p.matmul(a.x, a.xb, lw.wo, n, true); // x += wo · attention
      p.rmsnorm(a.x, lw.ffnNorm, n, dim, normEps, a.xb);
      p.matmul(a.hb, a.xb, lw.w1, n).matmul(a.hb2, a.xb, lw.w3, n).siluMul(a.hb, a.hb2, n * hiddenDim);
      p.matmul(a.x, a.hb, lw.w2, n, true); // x += w2 · (silu(w1 · x) * (w3 · x))
    }
    return { p, a, g };
  }
}
