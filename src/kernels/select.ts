// Backend selection: the native CPU backend when it loads, else the reference kernels with one
// clear warning; `reference` and `cpu` force one (cpu fails with a named error when unavailable).

import { BackendUnavailableError, InvalidArgumentError } from '../core/errors.js';
import type { Backend } from './backend.js';
import { createCpuBackend } from './cpu/index.js';
import { createReferenceBackend } from './reference/index.js';

/** `webgpu` runs whole forward passes on a GPU (opened by loadModel; see model/gpu-forward.ts). */
export type BackendName = 'auto' | 'cpu' | 'reference' | 'webgpu';

export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'cpu', 'reference', 'webgpu'];

export function selectBackend(name: BackendName = 'auto', onWarning?: (message: string) => void): Backend {
  switch (name) {
    case 'reference':
      return createReferenceBackend();
    case 'cpu':
      return createCpuBackend();
    case 'auto':
      try {
        return createCpuBackend();
      } catch (e) {
        if (!(e instanceof BackendUnavailableError)) throw e;
        onWarning?.(`${e.message} Falling back to the TypeScript reference kernels (much slower).`);
        return createReferenceBackend();
      }
    case 'webgpu':
      throw new InvalidArgumentError('the WebGPU backend opens a device asynchronously: load the model with backend "webgpu" (loadModel).', 'backend');
    default:
      throw new InvalidArgumentError(`unknown backend "${name as string}"; choose one of ${BACKEND_NAMES.join(', ')}.`, 'backend');
  }
}
