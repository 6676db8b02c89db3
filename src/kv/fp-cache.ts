// Plain full-precision KV cache: every position stays in float rows, F32 (`kv: 'fp'`, the
// reference) or F16 (`kv: 'f16'`, the cache of llama.cpp and of the paper's baseline). The
// baselines the hierarchical cache is measured against. With a sparse stride it also serves the
// StreamingLLM / SnapKV drafts a 'sparse' view over the same rows.

import { ContextOverflowError, InvalidArgumentError, KvCacheError } from '../core/errors.js';
import { bind, type KvBytes, type KvCache, type KvCheckpoint, type KvView, type KvViewKind, type Writable } from './cache.js';
import type { FpRows, KvLayerView, KvStorage, SparseSelection } from './layout.js';

export class FpKvCache implements KvCache {
  readonly contextLength: number;
  readonly kinds: readonly KvViewKind[];
  readonly floor = 0;
  private len = 0;
  /** Lowest position written since the last checkpoint (rows below it are as they were then). */
  private lowestWrite = Infinity;
  private lastCheckpoint: KvCheckpoint | null = null;
  private readonly kvDim: number;
  private readonly nKvHeads: number;
  private readonly storage: KvStorage;
  private readonly rows: FpRows[] = [];
  private readonly fpView: KvView;
  private readonly sparseView: KvView | null;
  private readonly selections: Writable<SparseSelection>[] = [];

  /**
   * `sparseStride` > 0 adds a 'sparse' view over the same rows, with one selection per layer of up
   * to sparseStride positions per KV head (the StreamingLLM/SnapKV draft's cache).
   */
  constructor(
    nLayers: number, nKvHeads: number, headDim: number, contextLength: number, storage: KvStorage, sparseStride = 0,
    readonly dtype: FpRows['dtype'] = 'f32',
  ) {
    if (!(contextLength > 0)) throw new InvalidArgumentError(`the KV cache's context length must be positive, got ${contextLength}.`, 'contextLength');
    this.contextLength = contextLength;
    this.storage = storage;
    this.nKvHeads = nKvHeads;
    const kvDim = (this.kvDim = nKvHeads * headDim);
    const layers: KvLayerView[] = [];
    const sparse: KvLayerView[] = [];
    for (let l = 0; l < nLayers; l++) {
      const fp: FpRows = dtype === 'f32'
        ? { dtype, keys: new Float32Array(contextLength * kvDim), values: new Float32Array(contextLength * kvDim) } // [contextLength, kvDim]
        : { dtype, keys: new Uint16Array(contextLength * kvDim), values: new Uint16Array(contextLength * kvDim) }; // [contextLength, kvDim] F16 bits
      this.rows.push(fp);
      layers.push(bind(storage, { kind: 'fp', kvDim, fp, fpStart: 0 }));
      if (sparseStride > 0) {
        const selection = { count: 0, stride: sparseStride, positions: new Int32Array(nKvHeads * sparseStride), denseFrom: 0, recent: 0 };
        this.selections.push(selection);
        sparse.push(bind(storage, { kind: 'sparse', kvDim, fp, fpStart: 0, selection }));
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
    return this.contextLength - this.len;
  }

  append(nTokens: number): number {
    if (this.len + nTokens > this.contextLength) {
      throw new ContextOverflowError(
        `the KV cache holds ${this.contextLength} positions; ${this.len} are used and ${nTokens} more were requested. ` +
          'Use a larger contextLength or a shorter prompt.',
        this.len + nTokens,
        this.contextLength,
      );
    }
    const start = this.len;
    this.len += nTokens;
    return start;
  }

  write(layer: number, pos: number, k: Float32Array, v: Float32Array, nTokens: number): void {
    if (pos < 0 || pos + nTokens > this.len) throw new KvCacheError(`write at ${pos}..${pos + nTokens} is outside the reserved positions [0, ${this.len}).`);
    if (pos < this.lowestWrite) this.lowestWrite = pos;
    this.storage.writeKv(this.rows[layer]!, pos, k, v, nTokens, this.kvDim);
  }

  checkpoint(): KvCheckpoint {
    this.lowestWrite = Infinity;
    return (this.lastCheckpoint = { length: this.len });
  }

  restore(checkpoint: KvCheckpoint): void {
    if (checkpoint !== this.lastCheckpoint) throw new KvCacheError('restore() takes this cache\'s latest checkpoint.');
    if (this.lowestWrite < checkpoint.length) {
      throw new KvCacheError(`position ${this.lowestWrite} was rewritten since the checkpoint at ${checkpoint.length}; it cannot be restored.`);
    }
    this.len = checkpoint.length;
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
    const fp = this.rows.reduce((s, r) => s + r.keys.byteLength + r.values.byteLength, 0);
    return { total: fp, fp, upper: 0, lower: 0, meta: 0 };
  }

  /** Most positions a sparse selection keeps per KV head (0 without a sparse view). */
  get sparseStride(): number {
    return this.selections[0]?.stride ?? 0;
  }

  /**
   * Set layer `layer`'s sparse selection: KV head g sees positions perHead[g] (ascending, each below
   * denseFrom), then every position from denseFrom on, of which only the newest `recent` when
   * recent > 0.
   */
  select(layer: number, perHead: readonly ArrayLike<number>[], denseFrom: number, recent: number): void {
    const sel = this.selections[layer];
    if (!sel) throw new KvCacheError(`layer ${layer} has no sparse selection (the cache was made without a sparse stride).`);
    if (perHead.length !== this.nKvHeads) throw new KvCacheError(`a selection needs ${this.nKvHeads} KV heads' positions, got ${perHead.length}.`);
    const count = perHead[0]!.length;
    if (count > sel.stride) throw new KvCacheError(`a selection of ${count} positions exceeds the sparse stride ${sel.stride}.`);
    for (let g = 0; g < perHead.length; g++) {
      const list = perHead[g]!;
      if (list.length !== count) throw new KvCacheError('every KV head of a selection keeps the same number of positions.');
      for (let j = 0; j < count; j++) {
        const t = list[j]!;
        if (!Number.isInteger(t) || t < 0 || t >= denseFrom || (j > 0 && t <= list[j - 1]!)) {
          throw new KvCacheError(`selected positions must ascend and lie in [0, ${denseFrom}); got ${t} at ${j}.`);
        }
        sel.positions[g * sel.stride + j] = t;
      }
    }
    sel.count = count;
    sel.denseFrom = denseFrom;
    sel.recent = recent;
    const view = this.sparseView!.layers[layer]!;
    view.handle.refresh(view);
  }
}
