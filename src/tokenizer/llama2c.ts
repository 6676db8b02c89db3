// llama2.c tokenizer.bin: SentencePiece-style BPE driven by merge scores, with byte fallback
// (<0x00>..<0xFF> at ids 3..258). Encoding follows run.c: a dummy-prefix space, code points looked
// up whole (else their bytes), then repeatedly merge the adjacent pair with the best score.

import * as fs from 'node:fs';
import { TokenizerError } from '../core/errors.js';
import type { EncodeOptions, Tokenizer } from './tokenizer.js';

/** How a score-merge vocabulary marks spaces, special tokens and BOS/EOS. */
export interface ScoreBpeOptions {
  readonly bosId: number;
  readonly eosIds: readonly number[];
  readonly addsBos: boolean;
  /** ' ' in llama2.c vocabularies, '▁' in SentencePiece ones (GGUF "llama" tokenizers). */
  readonly space: ' ' | '▁';
  /** Control tokens, skipped when decoding. */
  readonly specialIds: readonly number[];
  readonly chatTemplate: string | null;
  readonly bosText: string;
  readonly eosText: string;
}

const LLAMA2C_OPTIONS: ScoreBpeOptions = {
  bosId: 1, eosIds: [2, 1], addsBos: true, space: ' ', specialIds: [0, 1, 2], chatTemplate: null, bosText: '<s>', eosText: '</s>',
};

const SPM_SPACE = new TextEncoder().encode('▁');

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosIds: readonly number[];
  readonly addsBos: boolean;
  readonly chatTemplate: string | null;
  readonly templateTokens: Readonly<Record<string, string>>;
  private readonly opts: ScoreBpeOptions;
  private readonly special: Set<number>;
  private readonly pieces: Uint8Array[];
  private readonly scores: Float32Array;
  private readonly lookup = new Map<string, number>();
  private readonly pieceStrings: string[]; // pieces as latin1 strings (one char per byte)
  private readonly byteToken: Int32Array = new Int32Array(256).fill(-1);
  private readonly isByteToken: Uint8Array;

  constructor(pieces: Uint8Array[], scores: Float32Array, opts: ScoreBpeOptions = LLAMA2C_OPTIONS) {
    this.vocabSize = pieces.length;
    this.pieces = pieces;
    this.scores = scores;
    this.opts = opts;
    this.bosId = opts.bosId;
    this.eosIds = opts.eosIds;
    this.addsBos = opts.addsBos;
    this.chatTemplate = opts.chatTemplate;
    this.templateTokens = { bos_token: opts.bosText, eos_token: opts.eosText };
    this.special = new Set(opts.specialIds);
    const dec = new TextDecoder('latin1');
    // Keys are the raw bytes as latin1 strings, so multi-byte pieces and byte strings compare exactly.
    this.pieceStrings = pieces.map((p) => dec.decode(p));
    for (let i = pieces.length - 1; i >= 0; i--) this.lookup.set(this.pieceStrings[i]!, i);
    // Byte-fallback tokens <0x00>..<0xFF>, wherever the vocabulary puts them.
    this.isByteToken = new Uint8Array(pieces.length);
    for (let i = 0; i < pieces.length; i++) {
      const m = /^<0x([0-9A-F]{2})>$/.exec(this.pieceStrings[i]!);
      if (m) {
        const b = parseInt(m[1]!, 16);
        if (this.byteToken[b] === -1) this.byteToken[b] = i;
        this.isByteToken[i] = 1;
      }
    }
  }

  static fromFile(file: string, vocabSize: number): Llama2cTokenizer {
    let buf: Uint8Array;
    try {
      buf = fs.readFileSync(file);
    } catch (e) {
      throw new TokenizerError(`cannot read tokenizer ${file}: ${(e as Error).message}. Pass the tokenizer option with its path.`);
    }
    return Llama2cTokenizer.fromBytes(buf, vocabSize, file);
  }

  /** A tokenizer.bin held in memory (a browser's fetched file); `name` names it in errors. */
  static fromBytes(buf: Uint8Array, vocabSize: number, name = 'tokenizer.bin'): Llama2cTokenizer {
    const bad = (why: string): never => {
      throw new TokenizerError(`${name} is not a llama2.c tokenizer.bin (${why}).`);
    };
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    if (buf.length < 4) bad('too short');
    let off = 4; // int32 max_token_length
    const pieces: Uint8Array[] = [];
    const scores = new Float32Array(vocabSize);
    for (let i = 0; i < vocabSize; i++) {
      if (off + 8 > buf.length) bad(`ends after ${i} of ${vocabSize} tokens`);
      scores[i] = view.getFloat32(off, true);
      const len = view.getInt32(off + 4, true);
      off += 8;
      if (len < 0 || off + len > buf.length) bad(`token ${i} has length ${len}`);
      pieces.push(buf.slice(off, off + len));
      off += len;
    }
    return new Llama2cTokenizer(pieces, scores);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    const addBos = options.addSpecial !== false && this.addsBos;
    if (addBos) ids.push(this.bosId);
    if (text.length === 0) return ids;
    const spaceChar = this.opts.space;
    const space = this.lookup.get(new TextDecoder('latin1').decode(new TextEncoder().encode(spaceChar)));
    if (space !== undefined) ids.push(space); // SentencePiece's dummy prefix
    const bytes = new TextEncoder().encode(spaceChar === ' ' ? text : text.replaceAll(' ', '▁'));
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
    this.mergePairs(ids, addBos ? 1 : 0);
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
    if (this.isByteToken[id]) return Uint8Array.of(parseInt(this.pieceStrings[id]!.slice(3, 5), 16));
    let piece = this.pieces[id]!;
    if (this.opts.space === '▁') piece = replaceSpm(piece);
    if (prev === this.bosId && piece[0] === 0x20) return piece.subarray(1);
    return piece;
  }

  decode(ids: readonly number[], options: { readonly keepSpecial?: boolean } = {}): string {
    const parts: Uint8Array[] = [];
    let prev = -1;
    for (const id of ids) {
      if (!this.special.has(id) || options.keepSpecial) parts.push(this.tokenBytes(id, prev));
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

/** SentencePiece's "▁" (E2 96 81) back to spaces. */
function replaceSpm(piece: Uint8Array): Uint8Array {
  let n = 0;
  for (let i = 0; i + 2 < piece.length; i++) if (piece[i] === SPM_SPACE[0] && piece[i + 1] === SPM_SPACE[1] && piece[i + 2] === SPM_SPACE[2]) n++;
  if (n === 0) return piece;
  const out = new Uint8Array(piece.length - 2 * n);
  let o = 0;
  for (let i = 0; i < piece.length; ) {
    if (i + 2 < piece.length && piece[i] === SPM_SPACE[0] && piece[i + 1] === SPM_SPACE[1] && piece[i + 2] === SPM_SPACE[2]) {
      out[o++] = 0x20;
      i += 3;
    } else out[o++] = piece[i++]!;
  }
  return out;
}
