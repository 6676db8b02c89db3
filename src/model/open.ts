// Opening a model file for reading, with the error a user can act on.

import * as fs from 'node:fs';
import { ModelNotFoundError } from '../core/errors.js';

/** A read-only file descriptor for `file`; ModelNotFoundError when it cannot be opened. */
export function openModelFile(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    throw new ModelNotFoundError(`cannot open ${file}: ${(e as Error).message}. Check the model path.`);
  }
}
