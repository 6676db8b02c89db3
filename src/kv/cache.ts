// The KV cache contract (DESIGN rule 6): length, append, truncate, flush, view, byteSize.
// The forward pass reserves rows with append(), writes each layer's new K/V into the view's
// full-precision rows, and attends through the same view.

import type { KvLayerView } from '../kernels/backend.js';

/**
 * How attention reads the history: full precision, the hierarchical cache at 8 or 4 bits, or a
 * sparse subset of the full-precision rows (the sparse-KV self-speculation baselines).
 */
export type KvViewKind = 'fp' | 'int8' | 'int4' | 'sparse';

export interface KvView {
  readonly kind: KvViewKind;
  readonly layers: readonly KvLayerView[];
}

/** Bytes by part; `total` is what the cache holds in memory. */
export interface KvBytes {
  readonly total: number;
  /** Full-precision rows (the whole cache for 'fp'; the recent-token buffer otherwise). */
  readonly fp: number;
  readonly upper: number;
  readonly lower: number;
  /** Per-group scales and minimums. */
  readonly meta: number;
}

export interface KvCache {
  /** Positions held (committed, plus any appended but not yet truncated away). */
  readonly length: number;
  /** Most positions this cache can hold. */
  readonly capacity: number;
  /** Positions append() accepts right now (the hierarchical cache needs a flush() to make more room). */
  readonly room: number;
  /** The view kinds this cache can serve. */
  readonly kinds: readonly KvViewKind[];
  /** Reserve rows for nTokens new positions at `length`; returns the first position. */
  append(nTokens: number): number;
  /** Forget positions >= length (rollback after a rejected draft). O(1). */
  truncate(length: number): void;
  /** Move verified full-precision rows into quantized storage where the cache's policy says so. */
  flush(): void;
  /** The read/write view attention uses; the same object is returned every time. */
  view(kind: KvViewKind): KvView;
  /** Memory held, by part, at the current length (allocated capacity, not just the used part). */
  byteSize(): KvBytes;
  /** Smallest length truncate() accepts (quantized positions cannot be rolled back). */
  readonly floor: number;
}
