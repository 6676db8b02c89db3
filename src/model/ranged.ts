// Ranged reads of a model file that is not on this machine's disk (a browser's URL or picked File):
// the header first, grown until it parses, then each tensor's bytes into a buffer of its own. No
// buffer ever holds the whole file, so a file larger than the largest ArrayBuffer loads as long
// as each tensor fits one, and a tensor's memory can be let go on its own (after a GPU upload).

import { ModelFormatError } from '../core/errors.js';
import { readGgufFile } from './gguf.js';
import { Llama2cSource } from './llama2c.js';
import { ModelFile, RangeNotLoadedError, type ByteRange, type FileSegment } from './open.js';
import { SafetensorsFile } from './safetensors.js';

/** Random access to a file's bytes (an HTTP server that honours Range, a Blob). */
export interface RangeReader {
  readonly name: string;
  readonly size: number;
  /** Bytes [offset, offset + length): exactly `length` of them. */
  read(offset: number, length: number): Promise<ArrayBuffer>;
}

/** A file format whose header says where each tensor's bytes are. */
export type RangedFormat = 'gguf' | 'safetensors' | 'llama2c';

/** The first header read; doubled (or grown to what the parser asked for) until the header parses. */
export const FIRST_HEADER_BYTES = 1 << 20;
/** The most a header may take: a GGUF header with a 256K-token vocabulary is tens of MiB. */
export const MAX_HEADER_BYTES = 512 << 20;
/** Tensor reads in flight at once. */
export const RANGE_CONCURRENCY = 4;

/** The tensors' byte ranges of a file whose header is in `file` (RangeNotLoadedError when more of it is needed). */
function headerRanges(format: RangedFormat, file: ModelFile): ByteRange[] {
  switch (format) {
    case 'gguf': // tensors of types it cannot read have offset -1: not fetched
      return [...readGgufFile(file).tensors.values()].filter((t) => t.offset >= 0).map((t) => ({ offset: t.offset, length: t.byteLength }));
    case 'safetensors':
      return SafetensorsFile.fromFile(file).byteRanges();
    case 'llama2c':
      return Llama2cSource.fromFile(file).byteRanges();
  }
}

/** The non-empty tensor ranges, in file order. */
function tensorRanges(format: RangedFormat, file: ModelFile): ByteRange[] {
  return headerRanges(format, file).filter((t) => t.length > 0).sort((a, b) => a.offset - b.offset);
}

async function readExactly(r: RangeReader, offset: number, length: number): Promise<ArrayBuffer> {
  const data = await r.read(offset, length);
  if (data.byteLength !== length) {
    throw new ModelFormatError(`${r.name}: asked for ${length} bytes at ${offset} and got ${data.byteLength}; the file changed or the server ignored the range.`);
  }
  return data;
}

/**
 * The header and the tensors of a model file, read by ranges: a ModelFile whose tensors are views
 * of one buffer each. Bytes the header does not name (alignment padding, a llama2.c file's legacy
 * RoPE tables) are never read.
 */
export async function readRanged(
  r: RangeReader, format: RangedFormat, { firstBytes = FIRST_HEADER_BYTES, maxHeaderBytes = MAX_HEADER_BYTES } = {},
): Promise<ModelFile> {
  let head = new Uint8Array(await readExactly(r, 0, Math.min(r.size, Math.max(1, firstBytes))));
  let ranges: ByteRange[];
  for (;;) {
    try {
      ranges = tensorRanges(format, ModelFile.fromSegments(r.name, r.size, [{ offset: 0, data: head.buffer as ArrayBuffer }]));
      break;
    } catch (e) {
      if (!(e instanceof RangeNotLoadedError) || head.length >= r.size) throw e;
      const want = Math.min(r.size, Math.max(2 * head.length, e.end));
      if (want > maxHeaderBytes) {
        throw new ModelFormatError(`${r.name}: its header would take more than ${maxHeaderBytes} bytes (it asks for byte ${e.end}); the file is damaged or not a ${format} model.`);
      }
      const grown = new Uint8Array(want);
      grown.set(head);
      grown.set(new Uint8Array(await readExactly(r, head.length, want - head.length)), head.length);
      head = grown;
    }
  }
  const segments: FileSegment[] = [{ offset: 0, data: head.buffer as ArrayBuffer }];
  const todo = ranges.filter((t) => t.offset + t.length > head.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length) {
      const t = todo[next++]!;
      segments.push({ offset: t.offset, data: await readExactly(r, t.offset, t.length) });
    }
  };
  await Promise.all(Array.from({ length: Math.min(RANGE_CONCURRENCY, todo.length) }, worker));
  return ModelFile.fromSegments(r.name, r.size, segments);
}
