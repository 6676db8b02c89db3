import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { TokenizerError } from '../../src/core/errors.js';
import { encodeChat, renderChat } from '../../src/tokenizer/chat.js';
import { ggufTokenizer } from '../../src/tokenizer/gguf.js';
import { HfTokenizer } from '../../src/tokenizer/hf.js';
import { Llama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import { StreamDetokenizer } from '../../src/tokenizer/stream.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { REPO_ROOT, sharedPath } from '../helpers/shared.js';

const embedded = path.join(REPO_ROOT, 'models', 'pdlm-5.8m-bf16');
const tok512 = sharedPath('models/stories260K/tok512.bin');

test('tokenizer.json: BOS added like the reference, round trip, special tokens skipped in decode', () => {
  const t = HfTokenizer.fromPath(embedded, [0]);
  assert.deepEqual(t.encode('Call me Ishmael.'), [0, 70, 346, 412, 785, 107, 1297, 469, 49]);
  assert.deepEqual(t.encode('Call me Ishmael.', { addSpecial: false }), [70, 346, 412, 785, 107, 1297, 469, 49]);
  const text = 'Naïve café — “quotes” and 日本語 😀';
  assert.equal(t.decode(t.encode(text)), text);
  assert.equal(t.bosId, 0);
  assert.ok(t.eosIds.includes(0) && t.eosIds.includes(2), 'EOS and <|im_end|> end generation');
});

test('llama2.c tokenizer.bin: run.c encoding (dummy prefix, merges, byte fallback) and decoding', { skip: tok512.skip }, () => {
  const t = Llama2cTokenizer.fromFile(tok512.path, 512);
  assert.deepEqual(t.encode('Once upon a time'), [1, 403, 407, 261, 378]);
  // Characters outside the vocabulary fall back to their UTF-8 bytes (<0xNN> = 3 + byte).
  const ids = t.encode('日', { addSpecial: false });
  assert.deepEqual(ids.slice(-3), [3 + 0xe6, 3 + 0x97, 3 + 0xa5]);
  // A code point that is a vocabulary piece is used whole.
  assert.equal(t.encode('é', { addSpecial: false }).length, 2);
  assert.equal(t.decode(t.encode('Hello wörld 😀!')), 'Hello wörld 😀!');
  assert.throws(() => Llama2cTokenizer.fromFile(tok512.path, 100000), TokenizerError);
});

/** Push ids one at a time and concatenate what the stream emits. */
function streamAll(t: Tokenizer, ids: number[], context: number[] = []): { text: string; pieces: string[] } {
  const s = new StreamDetokenizer(t, context);
  const pieces = ids.map((id) => s.push(id));
  pieces.push(s.flush());
  return { text: pieces.join(''), pieces };
}

test('stream detokenizer never emits broken UTF-8 and reproduces decode()', () => {
  const t = HfTokenizer.fromPath(embedded, [0]);
  const text = 'Emoji 😀 and accents éàü, CJK 日本語 — end.';
  const ids = t.encode(text, { addSpecial: false });
  // The byte-level BPE splits multi-byte characters across tokens: some pushes must emit nothing.
  const { text: out, pieces } = streamAll(t, ids);
  assert.equal(out, text);
  assert.ok(pieces.some((p) => p === ''), 'some tokens complete no character');
  for (const p of pieces) assert.ok(!p.includes('\uFFFD'), `piece ${JSON.stringify(p)} has a replacement character`);
});

test('stream detokenizer with llama2.c byte fallback and the BOS leading-space rule', { skip: tok512.skip }, () => {
  const t = Llama2cTokenizer.fromFile(tok512.path, 512);
  const ids = t.encode('Hi 😀 there');
  const { text, pieces } = streamAll(t, ids.slice(1), [1]);
  assert.equal(text, 'Hi 😀 there');
  for (const p of pieces) assert.ok(!p.includes('\uFFFD'));
});

test('chat template renders through @huggingface/jinja and adds BOS once', () => {
  const t = HfTokenizer.fromPath(embedded, [0]);
  const text = renderChat(t, [{ role: 'user', content: 'Hello' }]);
  assert.equal(text, '<|im_start|>system\nYou are a helpful AI assistant named PDLM.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
  const ids = encodeChat(t, [{ role: 'user', content: 'Hello' }]);
  assert.equal(ids[0], 0);
  assert.equal(ids[1], 1, '<|im_start|> is one special token');
  assert.equal(ids.filter((i) => i === 0).length, 1);
});

test('a model without a chat template gets a clear error', { skip: tok512.skip }, () => {
  const t = Llama2cTokenizer.fromFile(tok512.path, 512);
  assert.throws(() => renderChat(t, [{ role: 'user', content: 'hi' }]), /no chat template/);
});

/** run.c's merge loop as written there (O(n²)): an independent check of the fast merge. */
function naiveMerge(t: Llama2cTokenizer, ids: number[]): number[] {
  const out = [...ids];
  const piece = (id: number) => new TextDecoder('latin1').decode(t.tokenBytes(id, -1));
  const vocab = new Map<string, number>();
  for (let id = 0; id < t.vocabSize; id++) if (!vocab.has(piece(id))) vocab.set(piece(id), id);
  const scores = (t as unknown as { scores: Float32Array }).scores;
  for (;;) {
    let best = -1e10, bestId = -1, bestIdx = -1;
    for (let i = 1; i + 1 < out.length; i++) {
      const id = vocab.get(piece(out[i]!) + piece(out[i + 1]!));
      if (id !== undefined && scores[id]! > best) { best = scores[id]!; bestId = id; bestIdx = i; }
    }
    if (bestIdx < 0) return out;
    out.splice(bestIdx, 2, bestId);
  }
}

test('llama2.c fast merge equals run.c\'s quadratic loop on real text', { skip: tok512.skip || sharedPath('corpus/eval-moby-tail.txt').skip }, async () => {
  const fs = await import('node:fs');
  const t = Llama2cTokenizer.fromFile(tok512.path, 512);
  const text = fs.readFileSync(sharedPath('corpus/eval-moby-tail.txt').path, 'utf8').slice(0, 3000) + ' naïve 😀 日本';
  // The unmerged symbols of run.c: BOS, the dummy-prefix space, then each code point as one
  // vocabulary piece or as its UTF-8 bytes (<0xNN> = 3 + byte).
  const lookup = (t as unknown as { lookup: Map<string, number> }).lookup;
  const latin = new TextDecoder('latin1');
  const symbols: number[] = [1, lookup.get(' ')!];
  for (const ch of text) {
    const bytes = new TextEncoder().encode(ch);
    const whole = lookup.get(latin.decode(bytes));
    if (whole !== undefined) symbols.push(whole);
    else for (const b of bytes) symbols.push(3 + b);
  }
  assert.deepEqual(t.encode(text), naiveMerge(t, symbols));
});

test('GGUF byte-level vocabulary: every token keeps its id, "__proto__" and "constructor" included, and added tokens stay whole', () => {
  // GPT-2 byte-level symbols: the printable ASCII used here stands for itself.
  const tokens = ['_', 'p', 'r', 'o', 't', 'c', 'n', 's', 'u', '__', 'pr', 'pro', 'to', 'proto', '__proto__', 'constructor', '<|end|>'];
  const types = tokens.map((t) => (t === '<|end|>' ? 3 : 1));
  const merges = ['_ _', 'p r', 'pr o', 't o', 'pro to'];
  const t = ggufTokenizer({
    path: 'vocab.gguf',
    metadata: new Map<string, unknown>([
      ['tokenizer.ggml.model', 'gpt2'], ['tokenizer.ggml.pre', 'default'], ['tokenizer.ggml.tokens', tokens],
      ['tokenizer.ggml.token_type', types], ['tokenizer.ggml.merges', merges], ['tokenizer.ggml.eos_token_id', 16],
    ]),
  }, []);
  for (let id = 0; id < tokens.length - 1; id++) assert.equal(t.decode([id]), tokens[id], `token ${id}`);
  // "__proto__" splits into "__", "proto", "__" before the merges (punctuation, then letters)
  assert.deepEqual(t.encode('__proto__', { addSpecial: false }), [9, 13, 9]);
  assert.deepEqual(t.encode('proto<|end|>', { addSpecial: false }), [13, 16]);
});
