// Plain full-precision (F32) KV cache: every position stays in float rows. Used for `--kv fp`
// and as the baseline the hierarchical cache is measured against.

import { ContextOverflowError, InvalidArgumentError, KvCacheError } from '../core/errors.js';
import type { KvLayerView } from '../kernels/backend.js';
import type { KvBytes, KvCache, KvView, KvViewKind } from './cache.js';

export class FpKvCache implements KvCache {
  readonly capacity: number;
  readonly kinds: readonly KvViewKind[];
  readonly floor = 0;
  private len = 0;
  private readonly fpView: KvView;
  private readonly sparseView: KvView | null;

  /**
   * `sparseStride` > 0 adds a 'sparse' view over the same rows, with one selection per layer of up
   * to sparseStride positions per KV head (the StreamingLLM/SnapKV draft's cache).
   */
  constructor(nLayers: number, nKvHeads: number, headDim: number, capacity: number, sparseStride = 0) {
    if (!(capacity > 0)) throw new InvalidArgumentError(`KV cache capacity must be positive, got ${capacity}.`, 'ctx');
    this.capacity = capacity;
    const kvDim = nKvHeads * headDim;
    const layers: KvLayerView[] = [];
    const sparse: KvLayerView[] = [];
    for (let l = 0; l < nLayers; l++) {
      const fp = {
        dtype: 'f32' as const,
        keys: new Float32Array(capacity * kvDim), // [capacity, kvDim]
        values: new Float32Array(capacity * kvDim), // [capacity, kvDim]
      };
      layers.push({ kvDim, fp, fpStart: 0, planes: null, bits: 8, sparse: null });
      if (sparseStride > 0) {
        const selection = { count: 0, stride: sparseStride, positions: new Int32Array(nKvHeads * sparseStride), denseFrom: 0, recent: 0 };
        sparse.push({ kvDim, fp, fpStart: 0, planes: null, bits: 8, sparse: selection });
      }
    }
    this.fpView = { kind: 'fp', layers };
    this.sparseView = sparseStride > 0 ? { kind: 'sparse', layers: sparse } : null;
    this.kinds = sparseStride > 0 ? ['fp', 'sparse'] : ['fp'];
  }

  get length(): number {
    return this.len;
  }

  get room(): number {
    return this.capacity - this.len;
  }

  append(nTokens: number): number {
    if (this.len + nTokens > this.capacity) {
      throw new ContextOverflowError(
        `the KV cache holds ${this.capacity} positions; ${this.len} are used and ${nTokens} more were requested. ` +
          'Use a larger --ctx or a shorter prompt.',
        this.len + nTokens,
        this.capacity,
      );
    }
    const start = this.len;
    this.len += nTokens;
    return start;
  }

  truncate(length: number): void {
    if (length < 0 || length > this.len) {
      throw new KvCacheError(`truncate(${length}) is outside [0, ${this.len}].`);
    }
    this.len = length;
  }

  flush(): void {}

  view(kind: KvViewKind): KvView {
    if (kind === 'fp') return this.fpView;
    if (kind === 'sparse' && this.sparseView) return this.sparseView;
    throw new KvCacheError(`this full-precision cache has no "${kind}" view; use a hierarchical cache for int8/int4.`);
  }

  byteSize(): KvBytes {
    const fp = this.fpView.layers.reduce((s, l) => s + l.fp.keys.byteLength + l.fp.values.byteLength, 0);
    return { total: fp, fp, upper: 0, lower: 0, meta: 0 };
  }
}
