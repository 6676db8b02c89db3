// A SentencePiece-style GGUF vocabulary built from known values: "▁" pieces with scores, <0xNN>
// byte tokens, control and unused tokens, on pdlm's weights (4,096 rows). quantspec's GGUF
// tokenizer encodes hand-worked cases as derived below, decodes them back, and tokenizes real text
// exactly as llama.cpp does on the same file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel } from '../../src/engine/model.js';
import { GgufValueType, readGguf } from '../../src/model/gguf.js';
import { convertHfToGguf, writeGguf, type GgufEntry, type GgufTensorOut } from '../../src/model/gguf-writer.js';
import { tmpDir } from '../helpers/hfdir.js';
import { openLlamaCpp } from '../helpers/llamacpp.js';
import { sharedPath } from '../helpers/shared.js';

const pdlm = sharedPath('models/pdlm-5.8m');
const corpus = sharedPath('corpus/eval-northanger.txt');

const BYTE0 = 3; // <0x00> .. <0xFF> are ids 3 .. 258
const PIECES: [string, number][] = [
  ['▁', -1], ['▁t', -3], ['he', -2], ['▁the', -5], ['▁a', -4], ['nd', -6], ['▁and', -7], ['in', -8], ['▁in', -9], ['er', -10],
  ['▁w', -11], ['or', -12], ['ld', -13], ['▁wor', -14], ['▁world', -15], ['ll', -16], ['▁he', -17], ['▁hell', -18], ['▁hello', -19], ['ing', -20],
];
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?\'"-()';

/** tokens, scores and types (1 normal, 2 unknown, 3 control, 5 unused, 6 byte) for a vocabulary of `size`. */
function vocabulary(size: number): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>'];
  const scores = [0, 0, 0];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    scores.push(0);
    types.push(6);
  }
  for (const [p, s] of PIECES) {
    tokens.push(p);
    scores.push(s);
    types.push(1);
  }
  for (const ch of LETTERS) {
    tokens.push(ch);
    scores.push(-100);
    types.push(1);
  }
  while (tokens.length < size) {
    tokens.push(`<unused${tokens.length}>`);
    scores.push(-1000);
    types.push(5);
  }
  return { tokens, scores, types };
}

/** pdlm's GGUF with its vocabulary replaced by the SentencePiece one (same 4,096 rows). */
function spmGguf(dir: string): { file: string; tokens: string[] } {
  const f32 = path.join(dir, 'pdlm-f32.gguf');
  convertHfToGguf(pdlm.path, f32, 'f32');
  const g = readGguf(f32);
  const bytes = fs.readFileSync(f32);
  const tensors: GgufTensorOut[] = [...g.tensors.values()].map((t) => ({
    name: t.name, shape: [...t.dims].reverse(), type: t.type, bytes: new Uint8Array(bytes.buffer, bytes.byteOffset + t.offset, t.byteLength),
  }));
  const rows = g.tensors.get('token_embd.weight')!.dims[1]!;
  const { tokens, scores, types } = vocabulary(rows);
  const num = (key: string, type: GgufValueType.UINT32 | GgufValueType.FLOAT32): GgufEntry => [key, type, Number(g.metadata.get(key))];
  const meta: GgufEntry[] = [
    ['general.architecture', GgufValueType.STRING, 'llama'],
    num('llama.context_length', GgufValueType.UINT32), num('llama.embedding_length', GgufValueType.UINT32),
    num('llama.block_count', GgufValueType.UINT32), num('llama.feed_forward_length', GgufValueType.UINT32),
    num('llama.attention.head_count', GgufValueType.UINT32), num('llama.attention.head_count_kv', GgufValueType.UINT32),
    num('llama.attention.layer_norm_rms_epsilon', GgufValueType.FLOAT32), num('llama.rope.freq_base', GgufValueType.FLOAT32),
    num('llama.rope.dimension_count', GgufValueType.UINT32), ['general.file_type', GgufValueType.UINT32, 0],
    ['tokenizer.ggml.model', GgufValueType.STRING, 'llama'],
    ['tokenizer.ggml.tokens', GgufValueType.ARRAY, { type: GgufValueType.STRING, values: tokens }],
    ['tokenizer.ggml.scores', GgufValueType.ARRAY, { type: GgufValueType.FLOAT32, values: scores }],
    ['tokenizer.ggml.token_type', GgufValueType.ARRAY, { type: GgufValueType.INT32, values: types }],
    ['tokenizer.ggml.bos_token_id', GgufValueType.UINT32, 1], ['tokenizer.ggml.eos_token_id', GgufValueType.UINT32, 2],
    ['tokenizer.ggml.unknown_token_id', GgufValueType.UINT32, 0], ['tokenizer.ggml.add_bos_token', GgufValueType.BOOL, true],
  ];
  const file = path.join(dir, 'pdlm-spm.gguf');
  writeGguf(file, meta, tensors);
  return { file, tokens };
}

test('SentencePiece GGUF vocabulary: hand-worked encodings, byte fallback, round trips, and llama.cpp\'s tokens on real text', { skip: pdlm.skip || corpus.skip }, async (t) => {
  const dir = tmpDir();
  try {
    const { file, tokens } = spmGguf(dir);
    const id = (piece: string) => tokens.indexOf(piece);
    const model = await loadModel(file, { contextLength: 256, draft: false });
    const tok = model.tokenizer;
    // "the": symbols ▁ t h e; the best-scored bigram in the vocabulary is "he" (-2), then "▁t"
    // (-3), then "▁the" (-5).
    assert.deepEqual(tok.encode('the', { addSpecial: false }), [id('▁the')]);
    // "hello world" (▁ h e l l o ▁ w o r l d): "he" (-2), "▁w" (-11), "or" (-12), "ld" (-13), "▁wor"
    // (-14), "▁world" (-15), "ll" (-16), "▁he" (-17), "▁hell" (-18), "▁hello" (-19).
    assert.deepEqual(tok.encode('hello world', { addSpecial: false }), [id('▁hello'), id('▁world')]);
    // A character outside the vocabulary falls back to its UTF-8 bytes: é = C3 A9.
    assert.deepEqual(tok.encode('é', { addSpecial: false }), [id('▁'), BYTE0 + 0xc3, BYTE0 + 0xa9]);
    assert.deepEqual(tok.encode('the', { addSpecial: true }), [1, id('▁the')], 'BOS from add_bos_token');
    // Decoding drops the dummy-prefix space after BOS (as run.c and llama.cpp do).
    for (const s of ['hello world', 'Café, naïve — 日本', 'the and in\nworld']) assert.equal(tok.decode(tok.encode(s, { addSpecial: true })), s);
    // Generation runs on the vocabulary (the embedding rows are pdlm's, so the text is noise).
    const r = await model.complete('the world', { temperature: 0, maxTokens: 4, ignoreEos: true, spec: 'none' });
    assert.equal(r.generatedIds.length, 4);

    const o = await openLlamaCpp();
    if ('skip' in o) return t.skip(o.skip);
    const theirModel = await o.llama.loadModel({ modelPath: file });
    try {
      const text = fs.readFileSync(corpus.path, 'utf8').slice(20_000, 26_000);
      const lines = text.split('\n').filter((l) => l.trim().length > 0).slice(0, 40);
      let compared = 0;
      for (const line of [...lines, 'hello world', 'é and the', 'Café, naïve — 日本']) {
        const theirs = [...theirModel.tokenize(line)];
        assert.deepEqual(tok.encode(line, { addSpecial: false }), theirs, `tokens of ${JSON.stringify(line)}`);
        compared++;
      }
      assert.ok(compared >= 30, `lines compared: ${compared}`);
    } finally {
      await theirModel.dispose();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
