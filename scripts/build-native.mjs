#!/usr/bin/env node
// Builds the native CPU backend (build/quantspec.node) with the machine's C compiler against
// Node's own headers: no node-gyp, no downloads. Runs on `npm ci` (the package's install script).
// If there is no compiler or the build fails, it prints a warning and exits 0: the engine then
// falls back to the TypeScript reference kernels with one clear warning at load.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src', 'kernels', 'cpu', 'native');
const out = path.join(root, 'build');
const target = path.join(out, 'quantspec.node');
const strict = process.argv.includes('--strict');

function headerDirs() {
  const candidates = [
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
    path.join(path.dirname(process.execPath), '..', 'include', 'node'),
  ].filter(Boolean);
  return candidates.filter((d) => fs.existsSync(path.join(d, 'node_api.h')));
}

function compiler() {
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    try {
      execFileSync(cc, ['--version'], { stdio: 'ignore' });
      return cc;
    } catch {
      // try the next one
    }
  }
  return null;
}

function fail(message) {
  process.stderr.write(`quantspec: native backend not built: ${message}\n` +
    'quantspec: the engine will use the (much slower) TypeScript reference kernels.\n');
  process.exit(strict ? 1 : 0);
}

const cc = compiler();
if (!cc) fail('no C compiler found (install gcc or clang, then run `npm run build:native`)');
const include = headerDirs();
if (include.length === 0) fail(`Node's headers (node_api.h) were not found next to ${process.execPath}`);

const x86 = os.arch() === 'x64';

/** Whether the compiler takes these flags (an empty translation unit compiled with them). */
function accepts(flags) {
  const probe = path.join(os.tmpdir(), `quantspec-probe-${process.pid}.c`);
  fs.writeFileSync(probe, 'int quantspec_probe;\n');
  try {
    execFileSync(cc, [...flags, '-c', probe, '-o', `${probe}.o`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
    fs.rmSync(`${probe}.o`, { force: true });
  }
}
// AMX tiles (the 'amx' kernel table) where the compiler knows them; chosen at run time only on a CPU that has them.
const amx = x86 && accepts(['-mamx-tile', '-mamx-int8', '-mamx-bf16']) ? ['-mamx-tile', '-mamx-int8', '-mamx-bf16', '-DQUANTSPEC_AMX'] : [];
// AVX-512 BF16 dot products (the avx512 table's prompt matmul where the CPU has them and no AMX).
const bf16dp = x86 && accepts(['-mavx512f', '-mavx512bf16']) ? ['-mavx512bf16', '-DQUANTSPEC_AVX512BF16'] : [];
const common = ['-O3', '-std=c11', '-fPIC', '-pthread', '-ffp-contract=off', '-fno-math-errno', '-Wall', '-D_GNU_SOURCE',
  `-I${include[0]}`, '-DNODE_GYP_MODULE_NAME=quantspec'];
const avx512 = ['-mavx2', '-mfma', '-mf16c', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512vnni'];
const units = [
  { file: 'kernels_common.c', flags: [] },
  { file: 'elementwise.c', flags: [] },
  { file: 'kernels_scalar.c', flags: [] },
  { file: 'pool.c', flags: [] },
  { file: 'isa.c', flags: [...amx, ...bf16dp].filter((f) => f.startsWith('-D')) },
  { file: 'jobs.c', flags: [] },
  { file: 'attention.c', flags: [] },
  { file: 'addon.c', flags: [] },
  ...(x86 ? [
    { file: 'kernels_avx2.c', flags: ['-mavx2', '-mfma', '-mf16c'] },
    { file: 'kvquant_avx2.c', flags: ['-mavx2', '-mfma', '-mf16c'] },
    { file: 'attention_avx.c', flags: ['-mavx2', '-mfma', '-mf16c'] },
    { file: 'kernels_avx512.c', flags: [...avx512, ...amx, ...bf16dp.filter((f) => f.startsWith('-D'))] },
    { file: 'attention_avx512.c', flags: avx512 },
    { file: 'amx.c', flags: amx },
    { file: 'gemm_amx.c', flags: [...avx512, ...amx] },
    { file: 'gemm_acts.c', flags: avx512 },
    { file: 'gemm_dp.c', flags: [...avx512, ...bf16dp] },
  ] : []),
];
fs.mkdirSync(out, { recursive: true });
fs.rmSync(target, { force: true }); // a failed build must not leave an older addon behind
const objects = [];
try {
  for (const u of units) {
    const obj = path.join(out, u.file.replace(/\.c$/, '.o'));
    execFileSync(cc, [...common, ...u.flags, '-c', path.join(src, u.file), '-o', obj], { stdio: 'inherit' });
    objects.push(obj);
  }
  const linkFlags = os.platform() === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared'];
  execFileSync(cc, [...linkFlags, '-pthread', ...objects, '-lm', '-o', target], { stdio: 'inherit' });
} catch (e) {
  fail(`the compiler failed (${e.message.split('\n')[0]})`);
}
for (const o of objects) fs.rmSync(o, { force: true });
process.stdout.write(`quantspec: built ${path.relative(root, target)} with ${cc}\n`);
