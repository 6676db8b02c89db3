// The hierarchical quantized KV cache of QuantSpec (DESIGN 2.1-2.3).
//
// Groups of G positions are quantized into nibble planes (upper = the draft's INT4, upper + lower
// = the target's INT8); the newest positions stay in a full-precision buffer. Which positions a
// query reads from the planes is quantBoundary(p, G) (kv/layout.ts): at least G and fewer
// than 2G of the newest positions stay full precision, as in the paper's double buffer.
//
// flush() (after a commit at length L) quantizes every complete group any query of the next batch
// of up to G tokens will read from the planes, all of them committed, target-verified positions,
// and drops buffer rows no future query needs. Rollback is O(1): truncate() sets the length.
// A batch (prefill chunk or verify pass) is at most G tokens, so its own groups never need quantizing.
//
// Departure from DESIGN ("F32 on CPU"): the buffer rows are F16, as in the paper's FP16 region,
// so that planes + metadata + buffer stay under 55% of an F16 cache at 8K context.

import { ContextOverflowError, InvalidArgumentError, KvCacheError } from '../core/errors.js';
import { bind, type KvBytes, type KvCache, type KvCheckpoint, type KvView, type KvViewKind, type Writable } from './cache.js';
import { quantBoundary, type FpRows, type HierLayer, type KvLayerView, type KvPlanes, type KvRowsCopy, type KvStorage } from './layout.js';

export interface HierKvOptions {
  readonly nLayers: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Most positions the cache holds. */
  readonly contextLength: number;
  /** Tokens per key group, G (default 128). */
  readonly keyGroupSize: number;
  /** Channels per value group (default min(128, headDim)); must divide headDim. */
  readonly valueGroupSize: number;
  /** Rows beyond 2G in the buffer: at least γ + 1 (a verify pass); more lets prefill chunks be larger. */
  readonly slack: number;
  /** The backend's row conversion, quantizer and view handles. */
  readonly storage: KvStorage;
}

export interface HierLayout {
  /** Positions the planes can hold: queries never read more than contextLength - G of them. */
  readonly planeTokens: number;
  readonly fpRows: number;
  /** Bytes per layer, by part. */
  readonly upper: number;
  readonly lower: number;
  readonly meta: number;
  readonly fp: number;
}

export const DEFAULT_KEY_GROUP = 128;

export function defaultValueGroup(headDim: number): number {
  return Math.min(128, headDim);
}

/** Validate group sizes against the head size (named errors, never wrong numbers). */
export function checkGroups(headDim: number, keyGroupSize: number, valueGroupSize: number): void {
  if (!Number.isInteger(keyGroupSize) || keyGroupSize < 1) {
    throw new InvalidArgumentError(`keyGroupSize must be a positive integer, got ${keyGroupSize}.`, 'keyGroupSize');
  }
  if (!Number.isInteger(valueGroupSize) || valueGroupSize < 2 || valueGroupSize % 2 !== 0 || headDim % valueGroupSize !== 0) {
    throw new InvalidArgumentError(
      `the value group size ${valueGroupSize} must be an even divisor of head_dim ${headDim} ` +
        `(value groups may not cross heads); use ${defaultValueGroup(headDim)}.`,
      'valueGroupSize',
    );
  }
}

/** Storage of one layer for a cache of `contextLength` positions (shared by the constructor and estimates). */
export function hierLayout(nKvHeads: number, headDim: number, contextLength: number, G: number, Gv: number, slack: number): HierLayout {
  const kvDim = nKvHeads * headDim;
  const planeTokens = quantBoundary(Math.max(0, contextLength - 1), G);
  const fpRows = Math.min(contextLength, 2 * G + slack);
  const plane = planeTokens * (kvDim / 2);
  const keyMeta = (planeTokens / G) * kvDim * 2 * 2; // scale + min, F16
  const valueMeta = planeTokens * (kvDim / Gv) * 2 * 2;
  return { planeTokens, fpRows, upper: 2 * plane, lower: 2 * plane, meta: keyMeta + valueMeta, fp: 2 * fpRows * kvDim * 2 };
}

/** A checkpoint of the hierarchical cache: its counters and a copy of the buffer's used rows. */
interface HierCheckpoint extends KvCheckpoint {
  readonly fpBase: number;
  readonly planesValid: number;
  readonly rows: readonly KvRowsCopy[]; // per layer: buffer rows [0, length - fpBase)
}

export class HierKvCache implements KvCache {
  readonly contextLength: number;
  readonly kinds: readonly KvViewKind[] = ['int8', 'int4'];
  readonly keyGroupSize: number;
  readonly valueGroupSize: number;
  private readonly opts: HierKvOptions;
  private readonly kvDim: number;
  private readonly fpCapacity: number;
  private readonly planeTokens: number;
  private readonly planes: KvPlanes[] = [];
  private readonly fp: FpRows[] = [];
  private readonly int8: KvView;
  private readonly int4: KvView;
  private readonly allLayers: Writable<HierLayer>[] = [];
  private len = 0;
  /** Positions [0, planesValid) are quantized in the planes. */
  private planesValid = 0;
  /** Buffer row 0 holds position fpBase; rows hold [fpBase, len). */
  private fpBase = 0;
  /** Lowest planesValid since the last checkpoint: plane groups below it are as they were then. */
  private lowestPlanes = 0;
  private lastCheckpoint: HierCheckpoint | null = null;

  constructor(opts: HierKvOptions) {
    checkGroups(opts.headDim, opts.keyGroupSize, opts.valueGroupSize);
    if (opts.slack < 1) throw new InvalidArgumentError(`the buffer slack must be at least 1, got ${opts.slack}.`);
    this.opts = opts;
    this.contextLength = opts.contextLength;
    this.keyGroupSize = opts.keyGroupSize;
    this.valueGroupSize = opts.valueGroupSize;
    this.kvDim = opts.nKvHeads * opts.headDim;
    const G = opts.keyGroupSize;
    const Gv = opts.valueGroupSize;
    const lay = hierLayout(opts.nKvHeads, opts.headDim, opts.contextLength, G, Gv, opts.slack);
    this.fpCapacity = lay.fpRows;
    this.planeTokens = lay.planeTokens;
    const kvDim = this.kvDim;
    const T = lay.planeTokens;
    const int8: KvLayerView[] = [];
    const int4: KvLayerView[] = [];
    for (let l = 0; l < opts.nLayers; l++) {
      const planes: KvPlanes = {
        kvDim,
        keyGroupSize: G,
        valueGroupSize: Gv,
        kUpper: new Uint8Array(T * (kvDim / 2)), // [T, kvDim / 2]
        kLower: new Uint8Array(T * (kvDim / 2)), // [T, kvDim / 2]
        kScale: new Uint16Array((T / G) * kvDim), // [T / G, kvDim]
        kMin: new Uint16Array((T / G) * kvDim), // [T / G, kvDim]
        vUpper: new Uint8Array(T * (kvDim / 2)), // [T, kvDim / 2]
        vLower: new Uint8Array(T * (kvDim / 2)), // [T, kvDim / 2]
        vScale: new Uint16Array(T * (kvDim / Gv)), // [T, kvDim / Gv]
        vMin: new Uint16Array(T * (kvDim / Gv)), // [T, kvDim / Gv]
      };
      const fp: FpRows = {
        dtype: 'f16',
        keys: new Uint16Array(lay.fpRows * kvDim), // [fpRows, kvDim]
        values: new Uint16Array(lay.fpRows * kvDim), // [fpRows, kvDim]
      };
      this.planes.push(planes);
      this.fp.push(fp);
      for (const bits of [8, 4] as const) {
        const view = bind(opts.storage, { kind: 'hier', kvDim, fp, fpStart: 0, planes, bits });
        (bits === 8 ? int8 : int4).push(view);
        this.allLayers.push(view);
      }
    }
    this.int8 = { kind: 'int8', layers: int8 };
    this.int4 = { kind: 'int4', layers: int4 };
  }

  get length(): number {
    return this.len;
  }

  /**
   * Positions append() accepts now: within the buffer and the quantized boundary, at most G, and
   * ending at a group boundary so that chunked prefills stay aligned to groups.
   */
  get room(): number {
    const G = this.keyGroupSize;
    return Math.min(
      this.contextLength - this.len,
      this.fpCapacity - (this.len - this.fpBase),
      this.planesValid + 2 * G - this.len,
      G - (this.len % G),
    );
  }

  /**
   * Smallest length truncate() accepts: the next query (at position L) must find every position
   * from quantBoundary(L) on in the buffer, whose first row holds fpBase.
   */
  get floor(): number {
    return this.fpBase === 0 ? 0 : this.fpBase + this.keyGroupSize;
  }

  /** Positions quantized so far. */
  get quantized(): number {
    return this.planesValid;
  }

  /** Positions held in the full-precision buffer. */
  get bufferLength(): number {
    return this.len - this.fpBase;
  }

  append(nTokens: number): number {
    const start = this.len;
    const G = this.keyGroupSize;
    if (start + nTokens > this.contextLength) {
      throw new ContextOverflowError(
        `the KV cache holds ${this.contextLength} positions; ${start} are used and ${nTokens} more were requested. ` +
          'Use a larger contextLength or a shorter prompt.',
        start + nTokens,
        this.contextLength,
      );
    }
    if (nTokens > G) throw new KvCacheError(`a batch of ${nTokens} tokens exceeds the key group size ${G}; split it.`);
    if (start + nTokens - this.fpBase > this.fpCapacity || quantBoundary(start + nTokens - 1, G) > this.planesValid) {
      throw new KvCacheError(`appending ${nTokens} tokens at ${start} needs a flush() first (the buffer holds ${this.fpCapacity} rows).`);
    }
    this.len += nTokens;
    return start;
  }

  write(layer: number, pos: number, k: Float32Array, v: Float32Array, nTokens: number): void {
    if (pos < this.fpBase || pos + nTokens > this.len) {
      throw new KvCacheError(`write at ${pos}..${pos + nTokens} is outside the buffered positions [${this.fpBase}, ${this.len}).`);
    }
    this.opts.storage.writeKv(this.fp[layer]!, pos - this.fpBase, k, v, nTokens, this.kvDim);
  }

  truncate(length: number): void {
    if (length === 0) {
      this.len = 0;
      this.planesValid = 0;
      this.lowestPlanes = 0;
      this.fpBase = 0;
      this.setFpStart(0);
      return;
    }
    if (length < this.floor || length > this.len) {
      throw new KvCacheError(
        `truncate(${length}) is outside [${this.floor}, ${this.len}]: positions below ${this.fpBase} are only in quantized ` +
          'form, and the next query would need some of them in full precision (truncate(0) clears the cache).',
      );
    }
    this.len = length;
    // Groups reaching past the new length held positions that no longer exist.
    const G = this.keyGroupSize;
    this.planesValid = Math.min(this.planesValid, G * Math.floor(length / G));
    this.lowestPlanes = Math.min(this.lowestPlanes, this.planesValid);
  }

  flush(): void {
    const G = this.keyGroupSize;
    const L = this.len;
    const kvDim = this.kvDim;
    // Every group a query of the next batch (positions L .. L + G - 1) reads from the planes; all
    // of them end at or before L - 1, i.e. hold committed positions.
    const target = Math.min(quantBoundary(L + G - 1, G), this.planeTokens);
    while (this.planesValid < target) {
      for (let l = 0; l < this.planes.length; l++) {
        this.opts.storage.quantizeKv(this.planes[l]!, this.fp[l]!, this.planesValid - this.fpBase, this.planesValid, G);
      }
      this.planesValid += G;
    }
    // Rows below quantBoundary(L) are never read in full precision again: shift them out.
    const base = quantBoundary(L, G);
    if (base > this.fpBase) {
      const drop = base - this.fpBase;
      for (const fp of this.fp) this.opts.storage.shiftKv(fp, drop, L - base, kvDim);
      this.fpBase = base;
      this.setFpStart(base);
    }
  }

  checkpoint(): KvCheckpoint {
    const rows = this.len - this.fpBase;
    const cp: HierCheckpoint = {
      length: this.len, fpBase: this.fpBase, planesValid: this.planesValid,
      rows: this.fp.map((fp) => this.opts.storage.saveKv(fp, rows, this.kvDim)),
    };
    this.lowestPlanes = this.planesValid;
    return (this.lastCheckpoint = cp);
  }

  restore(checkpoint: KvCheckpoint): void {
    const cp = checkpoint as HierCheckpoint;
    if (checkpoint !== this.lastCheckpoint) throw new KvCacheError('restore() takes this cache\'s latest checkpoint.');
    // Plane groups below the checkpoint's must be the ones it saw; later groups are quantized again.
    if (this.lowestPlanes < cp.planesValid) {
      throw new KvCacheError(`quantized positions from ${this.lowestPlanes} were rewritten since the checkpoint at ${cp.length}; it cannot be restored.`);
    }
    for (let l = 0; l < this.fp.length; l++) this.opts.storage.restoreKv(this.fp[l]!, cp.rows[l]!);
    this.len = cp.length;
    this.planesValid = cp.planesValid;
    this.fpBase = cp.fpBase;
    this.setFpStart(cp.fpBase);
  }

  view(kind: KvViewKind): KvView {
    if (kind === 'int8') return this.int8;
    if (kind === 'int4') return this.int4;
    throw new KvCacheError(`the hierarchical cache has no "${kind}" view (it serves int8 and int4).`);
  }

  byteSize(): KvBytes {
    let upper = 0;
    let lower = 0;
    let meta = 0;
    let fp = 0;
    for (let l = 0; l < this.planes.length; l++) {
      const p = this.planes[l]!;
      upper += p.kUpper.byteLength + p.vUpper.byteLength;
      lower += p.kLower.byteLength + p.vLower.byteLength;
      meta += p.kScale.byteLength + p.kMin.byteLength + p.vScale.byteLength + p.vMin.byteLength;
      fp += this.fp[l]!.keys.byteLength + this.fp[l]!.values.byteLength;
    }
    return { total: upper + lower + meta + fp, fp, upper, lower, meta };
  }

  private setFpStart(pos: number): void {
    for (const v of this.allLayers) {
      v.fpStart = pos;
      v.handle.refresh(v);
    }
  }
}
