// Empty KV planes for kernel tests.

import type { KvPlanes } from '../../src/kv/layout.js';

export function makePlanes(kvDim: number, tokens: number, G: number, Gv: number): KvPlanes {
  return {
    kvDim, keyGroupSize: G, valueGroupSize: Gv,
    kUpper: new Uint8Array((tokens * kvDim) / 2), kLower: new Uint8Array((tokens * kvDim) / 2),
    kScale: new Uint16Array((tokens / G) * kvDim), kMin: new Uint16Array((tokens / G) * kvDim),
    vUpper: new Uint8Array((tokens * kvDim) / 2), vLower: new Uint8Array((tokens * kvDim) / 2),
    vScale: new Uint16Array((tokens * kvDim) / Gv), vMin: new Uint16Array((tokens * kvDim) / Gv),
  };
}

