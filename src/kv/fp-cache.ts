// Plain full-precision (F32) KV cache: every position stays in float rows. Used for `--kv fp`
// and as the baseline the hierarchical cache is measured against.

import { ContextOverflowError, InvalidArgumentError, KvCacheError } from '../core/errors.js';
import type { KvLayerView } from '../kernels/backend.js';
import type { KvBytes, KvCache, KvView, KvViewKind } from './cache.js';

export class FpKvCache implements KvCache {
  readonly capacity: number;
  readonly kinds: readonly KvViewKind[] = ['fp'];
  readonly floor = 0;
  private len = 0;
  private readonly fpView: KvView;

  constructor(nLayers: number, kvDim: number, capacity: number) {
    if (!(capacity > 0)) throw new InvalidArgumentError(`KV cache capacity must be positive, got ${capacity}.`, 'ctx');
    this.capacity = capacity;
    const layers: KvLayerView[] = [];
    for (let l = 0; l < nLayers; l++) {
      layers.push({
        kvDim,
        fpKeys: new Float32Array(capacity * kvDim), // [capacity, kvDim]
        fpValues: new Float32Array(capacity * kvDim), // [capacity, kvDim]
        fpStart: 0,
        planes: null,
        bits: 8,
      });
    }
    this.fpView = { kind: 'fp', layers };
  }

  get length(): number {
    return this.len;
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
    if (kind !== 'fp') throw new KvCacheError(`a full-precision cache has no "${kind}" view; create a hierarchical cache for it.`);
    return this.fpView;
  }

  byteSize(): KvBytes {
    const fp = this.fpView.layers.reduce((s, l) => s + l.fpKeys.byteLength + l.fpValues.byteLength, 0);
    return { total: fp, fp, upper: 0, lower: 0, meta: 0 };
  }
}
