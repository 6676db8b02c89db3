// The reference backend: scalar TypeScript, the numerical oracle and the no-compiler fallback.

import type { Backend } from '../backend.js';
import { attention } from './attention.js';
import { NO_HANDLE, quantizeKv, restoreKv, saveKv, shiftKv, writeKv } from './kvquant.js';
import { add, addBias, embed, matmul, matmulPrompt, rmsnorm, rope, siluMul } from './ops.js';

export function createReferenceBackend(): Backend {
  return {
    name: 'reference',
    prepareWeight: (w) => w,
    matmul,
    matmulPrompt,
    addBias,
    rmsnorm,
    rope,
    siluMul,
    add,
    embed,
    attention,
    quantizeKv,
    writeKv,
    bindKv: () => NO_HANDLE,
    shiftKv,
    saveKv,
    restoreKv,
  };
}
