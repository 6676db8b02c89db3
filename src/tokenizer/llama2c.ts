// llama2.c tokenizer.bin: SentencePiece-style BPE driven by merge scores, with byte fallback
// (<0x00>..<0xFF> at ids 3..258). Encoding follows run.c: a dummy-prefix space, code points looked
// up whole (else their bytes), then repeatedly merge the adjacent pair with the best score.

import * as fs from 'node:fs';
import { TokenizerError } from '../core/errors.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';

const BYTE_FALLBACK_BASE = 3;

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = 1;
  readonly eosIds: readonly number[] = [2, 1];
  readonly addsBos = true;
  readonly chatTemplate = null;
  readonly templateTokens = { bos_token: '<s>', eos_token: '</s>' };
  private readonly pieces: Uint8Array[];
  private readonly scores: Float32Array;
  private readonly lookup = new Map<string, number>();
  private readonly pieceStrings: string[]; // pieces as latin1 strings (one char per byte)
  private readonly byteToken: Int32Array = new Int32Array(256).fill(-1);

  constructor(pieces: Uint8Array[], scores: Float32Array) {
    this.vocabSize = pieces.length;
    this.pieces = pieces;
    this.scores = scores;
    const dec = new TextDecoder('latin1');
    // Keys are the raw bytes as latin1 strings, so multi-byte pieces and byte strings compare exactly.
    this.pieceStrings = pieces.map((p) => dec.decode(p));
    for (let i = pieces.length - 1; i >= 0; i--) this.lookup.set(this.pieceStrings[i]!, i);
    for (let b = 0; b < 256; b++) {
      const id = BYTE_FALLBACK_BASE + b;
      if (id < pieces.length && dec.decode(pieces[id]) === `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) {
        this.byteToken[b] = id;
      }
    }
  }

  static fromFile(file: string, vocabSize: number): Llama2cTokenizer {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (e) {
      throw new TokenizerError(`cannot read tokenizer ${file}: ${(e as Error).message}. Pass --tokenizer PATH.`);
    }
    const bad = (why: string): never => {
      throw new TokenizerError(`${file} is not a llama2.c tokenizer.bin (${why}).`);
    };
    if (buf.length < 4) bad('too short');
    let off = 4; // int32 max_token_length
    const pieces: Uint8Array[] = [];
    const scores = new Float32Array(vocabSize);
    for (let i = 0; i < vocabSize; i++) {
      if (off + 8 > buf.length) bad(`ends after ${i} of ${vocabSize} tokens`);
      scores[i] = buf.readFloatLE(off);
      const len = buf.readInt32LE(off + 4);
      off += 8;
      if (len < 0 || off + len > buf.length) bad(`token ${i} has length ${len}`);
      pieces.push(new Uint8Array(buf.subarray(off, off + len)));
      off += len;
    }
    return new Llama2cTokenizer(pieces, scores);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (options.addSpecial !== false) ids.push(this.bosId);
    if (text.length === 0) return ids;
    const space = this.lookup.get(' ');
    if (space !== undefined) ids.push(space); // SentencePiece's dummy prefix
    const bytes = new TextEncoder().encode(text);
    const latin = new TextDecoder('latin1');
    for (let i = 0; i < bytes.length; ) {
      let len = 1;
      const b = bytes[i]!;
      if (b >= 0xf0) len = 4;
      else if (b >= 0xe0) len = 3;
      else if (b >= 0xc0) len = 2;
      len = Math.min(len, bytes.length - i);
      const id = this.lookup.get(latin.decode(bytes.subarray(i, i + len)));
      if (id !== undefined) ids.push(id);
      else for (let k = i; k < i + len; k++) ids.push(this.byteFallback(bytes[k]!));
      i += len;
    }
    this.mergePairs(ids, options.addSpecial !== false ? 1 : 0);
    return ids;
  }

  private byteFallback(b: number): number {
    const id = this.byteToken[b]!;
    if (id < 0) throw new TokenizerError(`byte 0x${b.toString(16)} has no token and no byte fallback in this vocabulary.`);
    return id;
  }

  /**
   * run.c's merge rule (repeatedly merge the adjacent pair whose merged piece has the best score,
   * leftmost on ties) in O(n log n): symbols in a linked list, candidate pairs in a heap ordered by
   * (score, position), stale entries skipped when popped.
   */
  private mergePairs(ids: number[], start: number): void {
    const n = ids.length;
    if (n - start < 2) return;
    const tok = Int32Array.from(ids);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Heap of candidate merges: [score, left index, left token, right token, merged id].
    const heap: [number, number, number, number, number][] = [];
    const less = (a: (typeof heap)[number], b: (typeof heap)[number]) => a[0] > b[0] || (a[0] === b[0] && a[1] < b[1]);
    const push = (e: (typeof heap)[number]) => {
      heap.push(e);
      for (let i = heap.length - 1; i > 0; ) {
        const p = (i - 1) >> 1;
        if (!less(heap[i]!, heap[p]!)) break;
        [heap[i], heap[p]] = [heap[p]!, heap[i]!];
        i = p;
      }
    };
    const pop = () => {
      const top = heap[0]!;
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        for (let i = 0; ; ) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
          if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
          if (m === i) break;
          [heap[i], heap[m]] = [heap[m]!, heap[i]!];
          i = m;
        }
      }
      return top;
    };
    const consider = (i: number) => {
      const j = next[i]!;
      if (i < start || j < 0) return;
      const id = this.lookup.get(this.pieceStrings[tok[i]!]! + this.pieceStrings[tok[j]!]!);
      if (id !== undefined) push([this.scores[id]!, i, tok[i]!, tok[j]!, id]);
    };
    for (let i = start; i + 1 < n; i++) consider(i);
    while (heap.length > 0) {
      const [, i, left, right, id] = pop();
      const j = next[i]!;
      if (!alive[i] || j < 0 || tok[i] !== left || tok[j] !== right) continue; // stale
      tok[i] = id;
      alive[j] = 0;
      next[i] = next[j]!;
      if (next[j]! >= 0) prev[next[j]!] = i;
      if (prev[i]! >= start) consider(prev[i]!);
      consider(i);
    }
    ids.length = 0;
    for (let i = 0; i < n; i++) if (alive[i]) ids.push(tok[i]!);
  }

  /** The bytes a token contributes to text (after BOS the leading space is dropped, as run.c does). */
  tokenBytes(id: number, prev: number): Uint8Array {
    if (id < 0 || id >= this.vocabSize) throw new TokenizerError(`token id ${id} is outside the vocabulary.`);
    if (id >= BYTE_FALLBACK_BASE && id < BYTE_FALLBACK_BASE + 256 && this.byteToken[id - BYTE_FALLBACK_BASE] === id) {
      return Uint8Array.of(id - BYTE_FALLBACK_BASE);
    }
    const piece = this.pieces[id]!;
    if (prev === this.bosId && piece[0] === 0x20) return piece.subarray(1);
    return piece;
  }

  decode(ids: readonly number[], options: { readonly keepSpecial?: boolean } = {}): string {
    const parts: Uint8Array[] = [];
    let prev = -1;
    for (const id of ids) {
      const special = id === 0 || id === 1 || id === 2;
      if (!special || options.keepSpecial) parts.push(this.tokenBytes(id, prev));
      prev = id;
    }
    const total = parts.reduce((s, p) => s + p.length, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return new TextDecoder('utf-8').decode(out);
  }
}
