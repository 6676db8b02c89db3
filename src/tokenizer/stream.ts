// Incremental detokenization that never emits broken UTF-8. Text is produced by decoding a short
// window of ids and emitting only what the newest ids added; a window whose text ends in U+FFFD
// (an incomplete multi-byte character) waits for more tokens. Works with any Tokenizer.decode,
// including decoders that drop a leading space depending on the previous token.

import type { Tokenizer } from './tokenizer.js';

export class StreamDetokenizer {
  private readonly tokenizer: Tokenizer;
  private ids: number[] = [];
  private prefixOffset = 0; // ids[prefixOffset..readOffset) is context already emitted
  private readOffset = 0;

  /** `context`: ids that precede the stream (e.g. the prompt), used only for decoding context. */
  constructor(tokenizer: Tokenizer, context: readonly number[] = []) {
    this.tokenizer = tokenizer;
    this.ids = context.slice(-4);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  /** Add one token; returns the text it completes ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      const text = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.compact();
      return text;
    }
    return '';
  }

  /** Everything not yet emitted, replacement characters included (call when generation ends). */
  flush(): string {
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    this.compact();
    return full.slice(prefix.length);
  }

  private compact(): void {
    // Keep the window short so each push decodes O(1) ids.
    if (this.prefixOffset > 64) {
      this.ids = this.ids.slice(this.prefixOffset);
      this.readOffset -= this.prefixOffset;
      this.prefixOffset = 0;
    }
  }
}
