// The benchmark scripts' command lines (bench/args.ts): --help prints the usage, an unknown option
// is a one-line error with the usage and exit code 2, never a stack trace.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../helpers/shared.js';

const BENCH = path.join(REPO_ROOT, 'dist', 'bench');
// serve-process is a module the load bench imports, args the helper itself
const SCRIPTS = fs.readdirSync(BENCH).filter((f) => f.endsWith('.js') && f !== 'serve-process.js' && f !== 'args.js').sort();

function run(script: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(BENCH, script), ...args], { encoding: 'utf8', timeout: 60000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('every benchmark script prints its usage for --help and names an unknown option without a stack trace', () => {
  assert.ok(SCRIPTS.length >= 8, `the scripts: ${SCRIPTS.join(', ')}`);
  for (const script of SCRIPTS) {
    const help = run(script, ['--help']);
    assert.equal(help.code, 0, `${script} --help: ${help.stderr}`);
    assert.match(help.stdout, new RegExp(`^usage: node .*dist/bench/${script.replace('.', '\\.')}`), script);
    const bad = run(script, ['--no-such-option']);
    assert.equal(bad.code, 2, `${script} --no-such-option exits 2`);
    assert.match(bad.stderr, /Unknown option '--no-such-option'/, script);
    assert.match(bad.stderr, /\nusage: node /, script);
    assert.doesNotMatch(bad.stderr, /node:internal|\n\s+at /, `${script}: no stack trace`);
  }
});

test('the llama.cpp comparison refuses a mode it does not have, naming the ones it has, before it writes any file', () => {
  for (const [option, value, known] of [
    ['--modes', 'f16,int9', /unknown mode int9; choose from fp, f16, int8, quantspec, auto\./],
    ['--llama-modes', 'q5_0', /unknown mode q5_0; choose from f16, q8_0, q4_0, draft\./],
    ['--modes', ',', /no mode named; choose from fp, f16, int8, quantspec, auto\./],
  ] as const) {
    // --keep names a folder that must stay absent: the check comes before the model files are written
    const keep = path.join(fs.mkdtempSync(path.join(REPO_ROOT, 'dist', 'peer-args-')), 'work');
    const r = run('peer-llamacpp.js', ['--synthetic', 'llama-3.2-1b', option, value, '--keep', keep]);
    assert.equal(r.code, 2, `${option} ${value}: ${r.stderr}`);
    assert.match(r.stderr, known);
    assert.doesNotMatch(r.stderr, /node:internal|\n\s+at /, 'no stack trace');
    assert.equal(fs.existsSync(keep), false, 'no work folder made');
    fs.rmSync(path.dirname(keep), { recursive: true, force: true });
  }
});
