// The browser build: one ES module, dist/browser/quantspec.js, from src/browser.ts (esbuild).
// Modules that also serve Node import node: built-ins for their file-system paths; the browser
// never runs those paths, so each built-in resolves to a stub whose every export throws a named
// error when called (as a package.json "browser" field mapping them to false would). The Dawn
// package `webgpu` stays an unresolved dynamic import: a browser has navigator.gpu instead.
// Prints the stubbed built-ins and the bundle's size.

import * as esbuild from 'esbuild';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stubbed = new Set();

const nodeStubs = {
  name: 'node-builtins-stubbed',
  setup(build) {
    build.onResolve({ filter: /^node:/ }, (args) => {
      stubbed.add(`${args.path} (from ${path.relative(root, args.importer)})`);
      return { path: args.path, namespace: 'node-stub' };
    });
    // The stub has the real module's export names (read from this Node), each a throwing function.
    build.onLoad({ filter: /.*/, namespace: 'node-stub' }, async (args) => ({
      contents: [
        `const unavailable = () => { throw new Error(${JSON.stringify(`${args.path} is not available in a browser`)}); };`,
        ...Object.keys(await import(args.path)).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n)).map((n) =>
          n === 'default' ? 'export default {};' : `export const ${n} = unavailable;`),
      ].join('\n'),
      loader: 'js',
    }));
  },
};

const result = await esbuild.build({
  entryPoints: [path.join(root, 'src', 'browser.ts')],
  outfile: path.join(root, 'dist', 'browser', 'quantspec.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  external: ['webgpu'],
  plugins: [nodeStubs],
  metafile: true,
  logLevel: 'warning',
});
const out = Object.entries(result.metafile.outputs)[0];
console.log(`browser bundle: ${path.relative(root, out[0])}, ${(out[1].bytes / 1024).toFixed(0)} KiB; node built-ins stubbed: ${[...stubbed].sort().join(', ') || 'none'}`);
