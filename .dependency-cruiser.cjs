// The layering of DESIGN.md section 3, checked in CI (.ci/run): a module imports only from the
// modules above it in ORDER (types included); the tokenizer reads only core; the server and the
// command line reach the layers below through the engine (and core's errors); src never imports bench/.
const ORDER = ['core', 'quant', 'sampling', 'kv', 'kernels', 'model', 'speculative', 'tokenizer', 'engine', 'server', 'cli'];
const BELOW_ENGINE = ['quant', 'sampling', 'kv', 'kernels', 'model', 'speculative', 'tokenizer'];

const forbidden = ORDER.slice(0, -1).map((mod, i) => ({
  name: `${mod}-imports-only-upward`,
  comment: `src/${mod} may import only ${ORDER.slice(0, i).join(', ') || 'nothing in src'} (DESIGN.md section 3)`,
  severity: 'error',
  from: { path: `^src/${mod}/` },
  to: { path: `^src/(${ORDER.slice(i + 1).join('|')})/` },
}));

forbidden.push(
  {
    name: 'tokenizer-imports-only-core',
    comment: 'the tokenizer may import only core',
    severity: 'error',
    from: { path: '^src/tokenizer/' },
    to: { path: '^src/(quant|sampling|kv|kernels|model|speculative)/' },
  },
  {
    name: 'server-and-cli-through-engine',
    comment: 'server/ and cli/ reach the layers below through engine/ (and core errors)',
    severity: 'error',
    from: { path: '^src/(server|cli)/' },
    to: { path: `^src/(${BELOW_ENGINE.join('|')})/` },
  },
  {
    name: 'src-never-imports-bench',
    comment: 'benchmark drivers sit outside src/; nothing in src imports them',
    severity: 'error',
    from: { path: '^src/' },
    to: { path: '^bench/' },
  },
  {
    name: 'imports-resolve',
    comment: 'every import resolves (so that the rules above see every edge)',
    severity: 'error',
    from: {},
    to: { couldNotResolve: true },
  },
);

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.cjs', '.json', '.node'] },
  },
};
