// Writes safetensors files for tests (the engine itself never writes them).

import * as fs from 'node:fs';

export interface TensorToWrite {
  readonly name: string;
  readonly dtype: 'F32' | 'F16' | 'BF16' | string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** Serialize tensors; `mutateHeader` may edit the header object before it is written. */
export function safetensorsBytes(tensors: readonly TensorToWrite[], mutateHeader?: (h: Record<string, any>) => void): Uint8Array {
  const header: Record<string, any> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  mutateHeader?.(header);
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let o = 8 + headerBytes.length;
  for (const t of tensors) {
    out.set(t.bytes, o);
    o += t.bytes.length;
  }
  return out;
}

export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

export function writeFile(file: string, bytes: Uint8Array): void {
  fs.writeFileSync(file, bytes);
}
