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
  private readonly byteToken: Int32Array = new Int32Array(256).fill(-1);

  constructor(pieces: Uint8Array[], scores: Float32Array) {
    this.vocabSize = pieces.length;
    this.pieces = pieces;
    this.scores = scores;
    const dec = new TextDecoder('latin1');
    // Keys are the raw bytes as latin1 strings, so multi-byte pieces and byte strings compare exactly.
    for (let i = pieces.length - 1; i >= 0; i--) this.lookup.set(dec.decode(pieces[i]), i);
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

  private mergePairs(ids: number[], start: number): void {
    const latin = new TextDecoder('latin1');
    for (;;) {
      let best = -Infinity;
      let bestId = -1;
      let bestIdx = -1;
      for (let i = start; i + 1 < ids.length; i++) {
        const merged = latin.decode(this.pieces[ids[i]!]) + latin.decode(this.pieces[ids[i + 1]!]);
        const id = this.lookup.get(merged);
        if (id !== undefined && this.scores[id]! > best) {
          best = this.scores[id]!;
          bestId = id;
          bestIdx = i;
        }
      }
      if (bestIdx < 0) return;
      ids.splice(bestIdx, 2, bestId);
    }
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
