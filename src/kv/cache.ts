// The KV cache contract (DESIGN rule 6): length, append (the cache writes its own rows), truncate,
// flush, view, byteSize. The forward pass reserves positions with append(), hands each layer's new
// F32 K/V to write(), and attends through view(kind).

import type { KvLayerView, KvStorage } from './layout.js';

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
  readonly contextLength: number;
  /** Positions append() accepts right now (the hierarchical cache needs a flush() to make more room). */
  readonly room: number;
  /** The view kinds this cache can serve. */
  readonly kinds: readonly KvViewKind[];
  /** Reserve nTokens new positions at `length`; returns the first. write() fills them layer by layer. */
  append(nTokens: number): number;
  /** Store layer `layer`'s K/V rows k, v [nTokens, kvDim] (F32) at positions pos.. (reserved by append). */
  write(layer: number, pos: number, k: Float32Array, v: Float32Array, nTokens: number): void;
  /** Forget positions >= length (rollback after a rejected draft). O(1). */
  truncate(length: number): void;
  /** Move verified full-precision rows into quantized storage where the cache's policy says so. */
  flush(): void;
  /** The read view attention uses; the same object is returned every time. */
  view(kind: KvViewKind): KvView;
  /** Memory held, by part, at the current length (allocated capacity, not just the used part). */
  byteSize(): KvBytes;
  /** Smallest length truncate() accepts (quantized positions cannot be rolled back). */
  readonly floor: number;
  /**
   * Save the cache's state at its current length. restore() returns to it later, even after
   * positions were quantized past it, as long as nothing below its length was rewritten since.
   */
  checkpoint(): KvCheckpoint;
  /** Return to a checkpoint of this cache (KvCacheError when positions below it were rewritten since). */
  restore(checkpoint: KvCheckpoint): void;
}

/** A saved cache state (see KvCache.checkpoint); only the cache that made it reads the rest. */
export interface KvCheckpoint {
  readonly length: number;
}

/** Internal: the cache's own writable form of its layer views. */
export type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** A layer view without its handle (each member of the union, less `handle`). */
export type UnboundView = KvLayerView extends infer V ? (V extends KvLayerView ? Omit<V, 'handle'> : never) : never;

/** A layer view with `storage`'s handle on it (made once, with the cache; any handle `view` had is replaced). */
export function bind<V extends UnboundView>(storage: KvStorage, view: V): V & KvLayerView {
  const full = { ...view, handle: null } as unknown as Writable<KvLayerView>;
  full.handle = storage.bindKv(full);
  return full as V & KvLayerView;
}
