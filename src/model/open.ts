// Opening a model file for reading, with the error a user can act on, and reading its byte ranges:
// from a mapping of the whole file where the native addon can make one (tensors are then views of
// the page cache, with no copy), else with read calls into fresh buffers; in a browser, from the
// whole file in memory or from the byte ranges fetched one by one (model/ranged.ts).

import * as fs from 'node:fs';
import { ModelFormatError, ModelNotFoundError } from '../core/errors.js';
import { mapFile } from '../kernels/cpu/index.js';

/** A read-only file descriptor for `file`; ModelNotFoundError when it cannot be opened. */
export function openModelFile(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    throw new ModelNotFoundError(`cannot open ${file}: ${(e as Error).message}. Check the model path.`);
  }
}

/** How model files are read: mapped (the default, as llama.cpp) or copied tensor by tensor. */
export interface ReadOptions {
  /** Map each file into memory (copy-on-write) where the native addon can; false reads every tensor into its own buffer. */
  readonly mmap?: boolean;
}

/** Bytes [offset, offset + length) of a file. */
export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

/** Bytes [offset, offset + data.byteLength) of a file, held in memory. */
export interface FileSegment {
  readonly offset: number;
  readonly data: ArrayBuffer;
}

/**
 * A read of a file held as segments fell outside them: the reader of a header asked for bytes not
 * fetched yet (model/ranged.ts then fetches up to `end` and parses again).
 */
export class RangeNotLoadedError extends Error {
  constructor(readonly file: string, readonly offset: number, readonly end: number) {
    super(`${file}: bytes [${offset}, ${end}) were not fetched.`);
    this.name = 'RangeNotLoadedError';
  }
}

/** An open model file whose byte ranges become tensors. */
export class ModelFile {
  readonly path: string;
  readonly size: number;
  private fd: number | null;
  /** The whole file, mapped; null when it is read instead. */
  private readonly mapped: ArrayBuffer | null;
  /** Parts of the file in memory (a browser's ranged reads); null for a whole file. Dropped on close. */
  private segments: readonly FileSegment[] | null;

  private constructor(file: string, fd: number | null, size: number, mapped: ArrayBuffer | null, segments: readonly FileSegment[] | null = null) {
    this.path = file;
    this.fd = fd;
    this.size = size;
    this.mapped = mapped;
    this.segments = segments;
  }

  static open(file: string, opts: ReadOptions = {}): ModelFile {
    const fd = openModelFile(file);
    try {
      const size = fs.fstatSync(fd).size;
      const mapped = opts.mmap === false || size === 0 ? null : mapFile(fd, size);
      return new ModelFile(file, fd, size, mapped);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /**
   * A file already in memory (a browser's fetched or picked file): ranges are views of `data`
   * where the offset suits the dtype. `name` names it in errors.
   */
  static fromBuffer(name: string, data: ArrayBuffer): ModelFile {
    return new ModelFile(name, null, data.byteLength, data);
  }

  /**
   * A file of `size` bytes of which only `segments` are in memory (a browser's ranged reads: the
   * header, then each tensor in its own buffer). A range inside one segment is a view of it where
   * the offset suits the dtype; a range outside every segment throws RangeNotLoadedError.
   */
  static fromSegments(name: string, size: number, segments: readonly FileSegment[]): ModelFile {
    return new ModelFile(name, null, size, null, [...segments]);
  }

  /** The segment that holds [offset, offset + length) whole; RangeNotLoadedError when none does. */
  private segmentOf(offset: number, length: number): FileSegment {
    for (const s of this.segments ?? []) {
      if (offset >= s.offset && offset + length <= s.offset + s.data.byteLength) return s;
    }
    throw new RangeNotLoadedError(this.path, offset, offset + length);
  }

  /** Whether byte ranges are views of a mapping rather than copies. */
  get isMapped(): boolean {
    return this.mapped !== null;
  }

  /**
   * Bytes [offset, offset + length) with their first byte at a multiple of `align` in their
   * ArrayBuffer (so that a typed array of that element size can view them): a view of the mapping
   * when the offset allows, else a fresh copy. `what` names the range in the error for a file that
   * ends before it.
   */
  bytes(offset: number, length: number, align: number, what: string): Uint8Array {
    if (offset < 0 || offset + length > this.size) {
      throw new ModelFormatError(`${this.path}: ${what} ends at byte ${offset + length} but the file has ${this.size}; it is truncated.`);
    }
    if (this.mapped && offset % align === 0) return new Uint8Array(this.mapped, offset, length);
    if (this.segments) {
      const s = this.segmentOf(offset, length);
      const rel = offset - s.offset;
      if (rel % align === 0) return new Uint8Array(s.data, rel, length);
      return new Uint8Array(s.data, rel, length).slice();
    }
    const out = new Uint8Array(length);
    if (this.mapped) out.set(new Uint8Array(this.mapped, offset, length));
    else this.readInto(out, offset, what);
    return out;
  }

  /** Fill `into` from byte `position` (with read calls where the file is not in memory). */
  readInto(into: Uint8Array, position: number, what: string): void {
    if (this.mapped) {
      if (position + into.length > this.size) {
        throw new ModelFormatError(`${this.path}: unexpected end of file in ${what} at byte ${this.size}; the file is truncated.`);
      }
      into.set(new Uint8Array(this.mapped, position, into.length));
      return;
    }
    if (this.segments) {
      if (position + into.length > this.size) {
        throw new ModelFormatError(`${this.path}: unexpected end of file in ${what} at byte ${this.size}; the file is truncated.`);
      }
      const s = this.segmentOf(position, into.length);
      into.set(new Uint8Array(s.data, position - s.offset, into.length));
      return;
    }
    if (this.fd === null) throw new ModelFormatError(`${this.path}: file already closed.`);
    let done = 0;
    while (done < into.length) {
      const n = fs.readSync(this.fd, into, done, into.length - done, position + done);
      if (n === 0) throw new ModelFormatError(`${this.path}: unexpected end of file in ${what} at byte ${position + done}; the file is truncated.`);
      done += n;
    }
  }

  /**
   * Close the descriptor; a mapping stays valid for as long as the tensors viewing it live. Held
   * segments are let go (the tensors viewing them keep theirs), so that a tensor dropped after
   * its upload to a GPU frees its memory.
   */
  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    this.segments = this.segments && [];
  }
}
