// `quantspec convert --synthetic NAME` writes the random-weight model that `--synthetic NAME`
// runs, as a GGUF file llama.cpp loads: llama.cpp tokenizes held-out text into the same ids as
// quantspec's synthetic tokenizer and continues it greedily with the same tokens as quantspec
// on that file. The CLI marks synthetic runs in its JSON and refuses two models at once.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel } from '../../src/engine/model.js';
import { collect } from '../../src/engine/session.js';
import { readGguf } from '../../src/model/gguf.js';
import { tmpDir } from '../helpers/hfdir.js';
import { llamaCppGreedy, llamaCppTopGap, openLlamaCpp } from '../helpers/llamacpp.js';
import { REPO_ROOT, sharedPath } from '../helpers/shared.js';

const BIN = path.join(REPO_ROOT, 'bin', 'quantspec.js');
const corpus = sharedPath('corpus/eval-northanger.txt');
const N = 8;

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 240000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('convert --synthetic qwen2.5-0.5b: llama.cpp reads the same ids and continues them as quantspec does', { skip: corpus.skip }, async (t) => {
  const dir = tmpDir();
  try {
    const file = path.join(dir, 'qwen2.5-0.5b-q4_0.gguf');
    const r = cli(['convert', '--synthetic', 'qwen2.5-0.5b', '--out', file, '--dtype', 'q4_0']);
    assert.equal(r.code, 0, r.stderr);
    const g = readGguf(file);
    assert.equal(g.metadata.get('qwen2.block_count'), 24);
    assert.equal(g.metadata.get('qwen2.embedding_length'), 896);
    assert.equal((g.metadata.get('tokenizer.ggml.tokens') as string[]).length, 151936);

    const ours = await loadModel(file, { contextLength: 512, onWarning: () => {} });
    const text = fs.readFileSync(corpus.path, 'utf8');
    const prompts = [text.slice(1000, 1100), text.slice(50000, 50040)].map((s) => ours.tokenizer.encode(s));
    assert.deepEqual(prompts[0], [...new TextEncoder().encode(text.slice(1000, 1100))], 'the file keeps the byte-level vocabulary');
    const mine: number[][] = [];
    for (const ids of prompts) {
      const res = await collect(ours.createSession({ spec: 'none', kv: 'fp' }).generate({ ids }, { temperature: 0, maxTokens: N, ignoreEos: true }));
      mine.push([...res.generatedIds]);
    }
    const o = await openLlamaCpp();
    if ('skip' in o) return t.skip(o.skip);
    const lm = await o.llama.loadModel({ modelPath: file });
    try {
      assert.deepEqual(Array.from(lm.tokenize(text.slice(1000, 1100))), prompts[0], 'llama.cpp tokenizes the text into the same ids');
    } finally {
      await lm.dispose();
    }
    const theirs = await llamaCppGreedy(o.llama, file, prompts, N);
    let compared = 0;
    for (const [p, ids] of prompts.entries()) {
      for (let i = 0; i < N; i++) {
        if (mine[p]![i] === theirs[p]![i]) {
          compared++;
          continue;
        }
        // random weights give flat distributions: a parting is allowed only at a tie by llama.cpp's own logits
        const gap = await llamaCppTopGap(o.llama, file, [...ids, ...theirs[p]!.slice(0, i)]);
        assert.ok(gap < 0.02, `prompt ${p} parts at token ${i} (${mine[p]![i]} vs ${theirs[p]![i]}) where llama.cpp's top two differ by ${gap}`);
        break;
      }
    }
    assert.ok(compared >= N, `only ${compared} tokens agreed before a tie`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('generate --synthetic: one JSON line marked synthetic, with a warning; --model and --synthetic together are refused', () => {
  const r = cli(['generate', '--synthetic', 'qwen2.5-0.5b', '--prompt', 'It is a truth', '--temperature', '0', '--max-tokens', '3', '--spec', 'none', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const json = JSON.parse(r.stdout.trimEnd().split('\n').at(-1)!);
  assert.equal(json.synthetic, true);
  assert.deepEqual(json.prompt_ids, [...new TextEncoder().encode('It is a truth')]);
  assert.equal(json.generated_ids.length, 3);
  assert.match(r.stderr, /random weights with the shapes of Qwen\/Qwen2\.5-0\.5B/);
  const both = cli(['generate', '--synthetic', 'qwen2.5-0.5b', '--model', 'x', '--prompt', 'a']);
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /--model and --synthetic name two models/);
  const unknown = cli(['bench', '--synthetic', 'nope']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /unknown synthetic model "nope"/);
});
