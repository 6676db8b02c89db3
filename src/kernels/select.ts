// Backend selection by name.

import { InvalidArgumentError } from '../core/errors.js';
import type { Backend } from './backend.js';
import { createReferenceBackend } from './reference/index.js';

export type BackendName = 'auto' | 'reference';

export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'reference'];

export function selectBackend(name: BackendName = 'auto'): Backend {
  switch (name) {
    case 'auto':
    case 'reference':
      return createReferenceBackend();
    default:
      throw new InvalidArgumentError(`unknown backend "${name as string}"; choose one of ${BACKEND_NAMES.join(', ')}.`, 'backend');
  }
}
