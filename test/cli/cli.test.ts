// The CLI end to end, as a user runs it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT, sharedPath } from '../helpers/shared.js';
import { tmpDir } from '../helpers/hfdir.js';

const BIN = path.join(REPO_ROOT, 'bin', 'quantspec.js');

function cli(args: string[], input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', input, timeout: 120000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('generate --json: text streams, then one JSON object as the last line', () => {
  const r = cli(['generate', '--prompt', 'Call me Ishmael.', '--temperature', '0', '--max-tokens', '8', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  const json = JSON.parse(lines.at(-1)!);
  assert.deepEqual(json.prompt_ids, [0, 70, 346, 412, 785, 107, 1297, 469, 49]);
  assert.equal(json.generated_ids.length, 8);
  assert.equal(typeof json.text, 'string');
  assert.ok(r.stdout.startsWith(json.text), 'the streamed text precedes the JSON');
  for (const k of ['load_ms', 'prefill_tokens_per_s', 'decode_tokens_per_s']) assert.equal(typeof json.timings[k], 'number', k);
  assert.equal(r.stderr, '', 'no progress bar when stderr is not a terminal');
});

test('generate reads the prompt from stdin and applies --chat', () => {
  const r = cli(['generate', '--chat', '--temperature', '0', '--max-tokens', '4', '--json'], 'Hello');
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout.trimEnd().split('\n').at(-1)!);
  assert.equal(json.prompt_ids[0], 0);
  assert.equal(json.prompt_ids[1], 1, 'starts with <|im_start|> after BOS');
});

test('llama2.c model with --tokenizer', { skip: sharedPath('models/stories260K').skip }, () => {
  const dir = sharedPath('models/stories260K').path;
  const r = cli(['generate', '--model', path.join(dir, 'stories260K.bin'), '--tokenizer', path.join(dir, 'tok512.bin'),
    '--prompt', 'Once upon a time', '--temperature', '0', '--max-tokens', '10']);
  assert.equal(r.code, 0, r.stderr);
  // llama2.c's reference continuation (see the stories260K golden test) begins with these 10 tokens.
  assert.equal(r.stdout, ', there was a little girl named Lily\n');
});

test('user errors exit non-zero with one message and no stack trace', () => {
  const cases: [string[], RegExp][] = [
    [['generate', '--model', '/does/not/exist', '--prompt', 'x'], /model path .* does not exist/],
    [['generate', '--prompt', 'x', '--temperature', '-1'], /temperature must be/],
    [['generate', '--prompt', 'x', '--top-p', 'abc'], /--top-p expects a number/],
    [['generate', '--prompt', 'x', '--bogus'], /Unknown option '--bogus'/],
    [['generate', '--prompt', 'word '.repeat(300), '--ctx', '64'], /has \d+ tokens but the context holds 64/],
    [['generate'], /--prompt is required/],
    [['frobnicate'], /unknown command/],
  ];
  for (const [args, pattern] of cases) {
    const r = cli(args, '');
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, pattern, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /, `no stack trace for ${args.join(' ')}`);
  }
});

test('a damaged model file is reported, not crashed on', () => {
  const dir = tmpDir();
  fs.cpSync(path.join(REPO_ROOT, 'models', 'pdlm-5.8m-bf16'), dir, { recursive: true });
  const file = path.join(dir, 'model.safetensors');
  fs.truncateSync(file, 1000);
  const r = cli(['generate', '--model', dir, '--prompt', 'x']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^quantspec: error: .*truncated/);
});

test('inspect prints architecture, parameters, dtypes and memory', () => {
  const r = cli(['inspect']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /architecture llama: 6 layers, dim 256/);
  assert.match(r.stdout, /parameters {3}5,770,496/);
  assert.match(r.stdout, /dtypes {7}BF16/);
  assert.match(r.stdout, /kv cache {5}1024 positions: f32 6\.0 MiB, f16 3\.0 MiB/);
  const j = JSON.parse(cli(['inspect', '--json', '--ctx', '2048']).stdout);
  assert.equal(j.parameters, 5770496);
  assert.equal(j.kv_bytes.f32, 2 * 6 * 2048 * 128 * 4);
});

test('eval --json prints perplexity as the last line', () => {
  const dir = tmpDir();
  const text = path.join(dir, 'text.txt');
  fs.writeFileSync(text, 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.');
  const r = cli(['eval', '--text', text, '--window', '16', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  assert.ok(j.perplexity > 1 && j.perplexity < 4096, `ppl ${j.perplexity}`);
  assert.equal(j.windows.length, Math.ceil(j.tokens / 15));
});
