// Backend selection: the native CPU backend when it loads, else the reference kernels with one
// clear warning; `reference` and `cpu` force one (cpu fails with a named error when unavailable).

import { BackendUnavailableError, InvalidArgumentError } from '../core/errors.js';
import type { Backend } from './backend.js';
import { createCpuBackend } from './cpu/index.js';
import { createReferenceBackend } from './reference/index.js';

export type BackendName = 'auto' | 'cpu' | 'reference';

export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'cpu', 'reference'];

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
    default:
      throw new InvalidArgumentError(`unknown backend "${name as string}"; choose one of ${BACKEND_NAMES.join(', ')}.`, 'backend');
  }
}
