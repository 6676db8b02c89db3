#!/usr/bin/env node
// quantspec CLI launcher: runs the compiled TypeScript from dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('quantspec: not built yet; run `npm ci` (or `npm run build`) in the package directory.\n');
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
