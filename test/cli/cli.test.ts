// The CLI end to end, as a user runs it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT, sharedPath } from '../helpers/shared.js';
import { tmpDir } from '../helpers/hfdir.js';
import { DECODING_FLAGS, parse } from '../../src/cli/args.js';
import { draftOptions } from '../../src/cli/generate.js';

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
  for (const k of ['load_ms', 'load_read_ms', 'load_draft_ms', 'load_repack_ms', 'prefill_tokens_per_s', 'decode_tokens_per_s']) assert.equal(typeof json.timings[k], 'number', k);
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

test('generate --spec/--gamma/--kv: QuantSpec is the default; --json adds stats and kv_bytes', () => {
  const run = (extra: string[]) => {
    const r = cli(['generate', '--prompt', 'It is a truth universally acknowledged', '--temperature', '0', '--max-tokens', '12', '--json', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trimEnd().split('\n').at(-1)!);
  };
  const auto = run([]);
  assert.equal(auto.decoding.spec, 'auto');
  assert.equal(auto.decoding.kv, 'int8');
  const qs = run(['--spec', 'quantspec', '--gamma', '3', '--stats']);
  const plain = run(['--spec', 'none', '--kv', 'int8']);
  assert.deepEqual(qs.generated_ids, plain.generated_ids);
  assert.deepEqual(auto.generated_ids, plain.generated_ids);
  for (const k of ['rounds', 'drafted', 'accepted', 'acceptance_rate', 'mean_accepted_length', 'per_position', 'draft_ms', 'verify_ms', 'gamma']) {
    assert.ok(k in qs.stats, k);
  }
  // The statistics account for the output: each round emits its accepted drafts and one target
  // token, each plain step one token; no drafts were made beyond γ = 3 a round.
  assert.equal(qs.generated_ids.length, 12);
  assert.equal(qs.stats.accepted + qs.stats.rounds + qs.stats.plain_steps, 12);
  assert.ok(qs.stats.rounds > 0 && qs.stats.drafted <= 3 * qs.stats.rounds && qs.stats.accepted <= qs.stats.drafted);
  assert.equal(qs.kv_bytes.total, qs.kv_bytes.buffer + qs.kv_bytes.upper + qs.kv_bytes.lower + qs.kv_bytes.meta);
  assert.ok(qs.draft_bytes > 0);
  assert.equal(plain.stats, null);
  assert.equal(plain.draft_bytes, 0, '--spec none builds no draft');
  const unmapped = run(['--spec', 'none', '--kv', 'int8', '--no-mmap']);
  assert.deepEqual(unmapped.generated_ids, plain.generated_ids, '--no-mmap reads the same weights');
  const fp = run(['--spec', 'none', '--kv', 'fp']);
  assert.equal(fp.kv_bytes.upper, 0);
});

test('--stats prints speculation statistics to stderr; bad decoding flags are named errors', () => {
  const r = cli(['generate', '--prompt', 'Call me', '--temperature', '0', '--max-tokens', '8', '--spec', 'quantspec', '--stats']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /speculation \(quantspec\): \d+ rounds, \d+\/\d+ drafts accepted/);
  assert.match(r.stderr, /kv cache .*upper .*lower/);
  const cases: [string[], RegExp][] = [
    [['--spec', 'magic'], /spec must be one of auto, none, quantspec, streaming, snapkv/],
    [['--spec', 'quantspec', '--kv', 'fp'], /quantspec verifies against the INT8 view/],
    [['--spec', 'snapkv', '--kv', 'int8'], /use --kv fp/],
    [['--gamma', '0'], /gamma must be an integer/],
    [['--kv-value-group', '48'], /value group size 48 must be an even divisor of head_dim 64/],
    [['--draft-bits', '3'], /--draft-bits supports 4 only/],
    [['--draft-layers', 'ffn'], /unknown draft layer "ffn"/],
    [['--draft-head', '6'], /--draft-head is 8, 4 or 0/],
    [['--draft-head', 'x'], /--draft-head takes 8, 4 or none, got "x"/],
    [['--draft-layers', 'all+head', '--draft-head', '8'], /lm_head make a 4-bit head, but --draft-head is 8/],
    [['--prefill-activations', 'f16'], /--prefill-activations must be 'bf16' or 'f32'/],
    [['--prefill-chunk', '0'], /--prefill-chunk must be a positive integer, got 0/],
    [['--prefill-chunk', '1.5'], /--prefill-chunk expects an integer, got 1.5/],
  ];
  for (const [args, pattern] of cases) {
    const e = cli(['generate', '--prompt', 'x', ...args]);
    assert.notEqual(e.code, 0, args.join(' '));
    assert.match(e.stderr, pattern, args.join(' '));
  }
});

test('--prefill-chunk changes how the prompt is batched, not the tokens', () => {
  const prompt = 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world. '.repeat(6);
  const run = (kv: string, chunk?: string) => {
    const r = cli(['generate', '--prompt', prompt, '--temperature', '0', '--max-tokens', '12', '--spec', 'none', '--kv', kv, '--json', ...(chunk ? ['--prefill-chunk', chunk] : [])]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { prompt_ids: number[]; generated_ids: number[] };
  };
  for (const kv of ['f16', 'int8']) {
    const base = run(kv);
    assert.ok(base.prompt_ids.length > 300, `${base.prompt_ids.length} prompt tokens: more than two chunks of 128`);
    assert.equal(base.generated_ids.length, 12);
    // 512: the whole prompt in one pass over the F16 cache (the attention takes its queries in runs of
    // 128); the hierarchical cache caps a chunk at its key group. 7: many small chunks.
    for (const chunk of ['512', '7']) assert.deepEqual(run(kv, chunk).generated_ids, base.generated_ids, `--kv ${kv} --prefill-chunk ${chunk}`);
  }
});

test('eval --kv int8 stays within 1% of fp; int4 is worse', () => {
  const dir = tmpDir();
  const text = path.join(dir, 'text.txt');
  fs.writeFileSync(text, 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world. '.repeat(3));
  const ppl = (kv: string) => {
    const r = cli(['eval', '--text', text, '--window', '160', '--kv', kv, '--kv-group', '16', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.equal(j.kv, kv);
    return j.perplexity as number;
  };
  const fp = ppl('fp');
  const int8 = ppl('int8');
  const int4 = ppl('int4');
  assert.ok(Math.abs(int8 - fp) / fp < 0.01, `fp ${fp} int8 ${int8}`);
  assert.ok(int4 > int8 && int4 !== fp, `int4 ${int4}`);
});

test('bench: every mode from one prefilled cache, medians of --runs runs, speedups against f16 and int8 run by run', { skip: sharedPath('corpus/eval-northanger.txt').skip }, () => {
  const json = path.join(tmpDir(), 'bench.json');
  const r = cli(['bench', '--contexts', '200,300', '--gen', '12', '--runs', '2', '--json', json, '--text', sharedPath('corpus/eval-northanger.txt').path]);
  assert.equal(r.code, 0, r.stderr);
  const rows = fs.readFileSync(json, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(rows.map((x) => `${x.context} ${x.mode}`), [200, 300].flatMap((c) =>
    ['fp', 'f16', 'int8', 'quantspec', 'quantspec-auto', 'streaming', 'snapkv'].map((m) => `${c} ${m}`)));
  for (const x of rows) {
    assert.equal(x.runs, 2);
    assert.equal(x.generated, 12);
    assert.ok(x.decode_min <= x.decode_tokens_per_s && x.decode_tokens_per_s <= x.decode_max, `${x.mode}: median within its range`);
    const f16 = rows.find((y) => y.context === x.context && y.mode === 'f16');
    const int8 = rows.find((y) => y.context === x.context && y.mode === 'int8');
    // Two runs: the median is their mean; a speedup is the mean of the two run-by-run ratios.
    assert.equal(x.decode_runs.length, 2);
    assert.ok(Math.abs(x.decode_tokens_per_s - (x.decode_runs[0] + x.decode_runs[1]) / 2) < 1e-9, `${x.mode}: median of its runs`);
    const pairedMean = (base: { decode_runs: number[] }) => (x.decode_runs[0] / base.decode_runs[0] + x.decode_runs[1] / base.decode_runs[1]) / 2;
    assert.ok(Math.abs(x.speedup_vs_f16 - pairedMean(f16)) < 1e-9, `${x.mode}: vs f16 run by run`);
    assert.ok(Math.abs(x.speedup_vs_int8 - pairedMean(int8)) < 1e-9, `${x.mode}: vs int8 run by run`);
    const plain = ['fp', 'f16', 'int8'].includes(x.mode);
    assert.equal(x.gamma, plain || x.mode === 'quantspec-auto' ? null : 4, `${x.mode}: γ`);
    assert.equal(x.bytes_per_step === null, !plain, `${x.mode}: bytes per step for plain modes only`);
    if (x.gamma === 4) assert.ok(x.acceptance_rate > 0, `${x.mode} drafted`);
  }
  // A plain step reads the weights and the KV: the F32 cache's K and V (6 layers, 300 positions,
  // kvDim 128) take 2 bytes a value more than the F16 cache's.
  const at = (mode: string) => rows.find((y) => y.context === 300 && y.mode === mode);
  assert.equal(at('fp').bytes_per_step - at('f16').bytes_per_step, 2 * 6 * 300 * 128 * 2);
  assert.match(r.stdout, /\| 300 \| snapkv \| 4 \|/);
});

test('serve takes the draft flags as generate does (one parser for both)', () => {
  const flags = parse(['--draft-head', 'none', '--draft-group', '64', '--draft-layers', 'mlp', '--draft-symmetric'], { ...DECODING_FLAGS }).flags;
  assert.deepEqual(draftOptions(flags), { bits: undefined, groupSize: 64, layers: 'mlp', headBits: 0, symmetric: true });
  assert.equal(draftOptions(parse(['--draft-head', '4'], { ...DECODING_FLAGS }).flags).headBits, 4);
});

test('serve loads its model with the draft flags: a bad --draft-head fails the load by name', async () => {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--draft-head', '6'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no load result in 60 s: ${stderr}`)), 60000);
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/model (failed to load|ready)/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  } finally {
    child.kill('SIGTERM');
  }
  assert.match(stderr, /model failed to load: .*headBits is 8, 4 or 0 \(the target's head\), got 6/);
});
