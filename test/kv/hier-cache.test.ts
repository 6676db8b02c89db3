// Hierarchical cache invariants (DESIGN 2.3): flush boundaries, O(1) rollback at every point of a
// speculative round, and "incremental decoding == prefilling the same committed tokens".

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvCacheError } from '../../src/core/errors.js';
import { quantBoundary } from '../../src/kv/layout.js';
import { createReferenceBackend } from '../../src/kernels/reference/index.js';
import type { KvViewKind } from '../../src/kv/cache.js';
import { HierKvCache, hierLayout } from '../../src/kv/hier-cache.js';
import type { ModelConfig } from '../../src/model/config.js';
import { computeLogits, createScratch, forward, type ModelRuntime } from '../../src/model/forward.js';
import type { WeightSet } from '../../src/model/weights.js';
import { buildDraftWeights, DEFAULT_DRAFT } from '../../src/quant/draft.js';
import { maxAbsDiff, randomTokens, randomWeights, tinyConfig, tinyRuntime } from '../helpers/tiny.js';

const G = 4;
const config: ModelConfig = tinyConfig({ headDim: 8, nHeads: 4, nKvHeads: 2 });
const rt: ModelRuntime = tinyRuntime(config, 128);
const target: WeightSet = randomWeights(config, 21);
const draft: WeightSet = buildDraftWeights(target, DEFAULT_DRAFT).weights;
const backend = createReferenceBackend();

function newCache(capacity = 128, slack = 8): HierKvCache {
  return new HierKvCache({
    nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim, contextLength: capacity,
    keyGroupSize: G, valueGroupSize: 8, slack, storage: backend,
  });
}

const scratch = createScratch(config, 16, 16, 128);
const V = config.vocabSize;

/** Feed ids[from..to) in chunks no larger than the cache's room (flushing first); logits of every position. */
function feed(cache: HierKvCache, w: WeightSet, kind: KvViewKind, ids: number[], from: number, to: number, chunk: number): Float32Array[] {
  const rows: Float32Array[] = [];
  for (let pos = from; pos < to; ) {
    cache.flush();
    const n = Math.min(chunk, to - pos, cache.room);
    forward(rt, w, cache, kind, ids, pos, n, scratch);
    const logits = computeLogits(rt, w, scratch, 0, n);
    for (let r = 0; r < n; r++) rows.push(logits.slice(r * V, (r + 1) * V));
    pos += n;
  }
  cache.flush();
  return rows;
}

test('quantBoundary keeps between G and 2G - 1 positions in full precision from 2G on', () => {
  for (let p = 0; p < 40; p++) {
    const b = quantBoundary(p, G);
    assert.equal(b % G, 0);
    if (p < 2 * G) assert.equal(b, 0);
    else assert.ok(p - b >= G && p - b <= 2 * G - 1, `p ${p} boundary ${b}`);
  }
});

test('flush quantizes exactly at 2G committed positions, and only committed ones', () => {
  const cache = newCache();
  const ids = randomTokens(1, 20, V);
  for (let L = 1; L <= 20; L++) {
    feed(cache, target, 'int8', ids, L - 1, L, 1);
    assert.equal(cache.length, L);
    // The buffer keeps quantBoundary(L).. and nothing older; quantized groups never reach past L.
    assert.equal(cache.length - cache.bufferLength, quantBoundary(L, G), `buffer start at ${L}`);
    assert.ok(cache.quantized <= L - 1 || cache.quantized === 0);
    if (L === 2 * G - 1) assert.equal(cache.bufferLength, L, 'nothing leaves the buffer before 2G');
    if (L === 2 * G) assert.equal(cache.bufferLength, G, 'the oldest G leave the buffer at exactly 2G');
  }
});

test('incremental decoding equals prefilling the same tokens, for any chunking, both views', () => {
  const ids = randomTokens(2, 37, V);
  for (const kind of ['int8', 'int4'] as const) {
    const oneByOne = feed(newCache(), target, kind, ids, 0, ids.length, 1);
    for (const chunk of [G, 3, 16]) {
      const chunked = feed(newCache(), target, kind, ids, 0, ids.length, chunk);
      for (let p = 0; p < ids.length; p++) {
        assert.ok(maxAbsDiff(oneByOne[p]!, chunked[p]!) < 1e-5, `${kind} chunk ${chunk} position ${p}`);
      }
    }
  }
  // The views really differ (the lower plane matters) and the planes are in use.
  const i8 = feed(newCache(), target, 'int8', ids, 0, ids.length, 4);
  const i4 = feed(newCache(), target, 'int4', ids, 0, ids.length, 4);
  assert.ok(maxAbsDiff(i8[36]!, i4[36]!) > 1e-3);
});

/**
 * One speculative round by hand: γ draft steps (tentative K/V), truncate, verify γ + 1, commit
 * `accepted` drafts + 1. The committed cache must then behave exactly like a fresh prefill.
 */
function roundThenCompare(start: number, gamma: number, accepted: number): void {
  const ids = randomTokens(3, start + gamma + 2, V);
  const cache = newCache();
  feed(cache, target, 'int8', ids, 0, start, G);
  const pos = cache.length;
  for (let i = 0; i < gamma; i++) {
    forward(rt, draft, cache, 'int4', ids, pos + i, 1, scratch);
  }
  cache.truncate(pos);
  forward(rt, target, cache, 'int8', ids, pos, gamma + 1, scratch);
  cache.truncate(pos + accepted + 1);
  cache.flush();
  // The next token after the committed ones, through this cache and through a fresh prefill.
  const committed = pos + accepted + 1;
  forward(rt, target, cache, 'int8', ids, committed, 1, scratch);
  const viaRound = computeLogits(rt, target, scratch, 0, 1).slice(0, V);
  const fresh = feed(newCache(), target, 'int8', ids, 0, committed + 1, G).at(-1)!;
  assert.ok(maxAbsDiff(viaRound, fresh) < 1e-5, `start ${start} gamma ${gamma} accepted ${accepted}`);
}

test('rollback after rejecting the first draft, in the middle, and after accepting all', () => {
  for (const accepted of [0, 1, 3]) roundThenCompare(9, 3, accepted);
});

test('rollback across the flush boundary at 2G', () => {
  // Rounds that start just before 2G = 8 and end past it.
  for (const start of [6, 7, 8]) for (const accepted of [0, 1, 3]) roundThenCompare(start, 3, accepted);
});

test('truncate refuses lengths whose next query would need rows already dropped from the buffer', () => {
  const cache = newCache();
  const ids = randomTokens(6, 60, V);
  feed(cache, target, 'int8', ids, 0, 40, G);
  // At length 40 the buffer starts at quantBoundary(40) = 32: the next query at L reads full
  // precision rows from quantBoundary(L), so L must be at least 32 + G.
  assert.equal(cache.floor, quantBoundary(40, G) + G);
  assert.throws(() => cache.truncate(cache.floor - 1), KvCacheError);
  cache.truncate(cache.floor);
  // From the shortest allowed length, decoding matches a fresh prefill of the same tokens.
  const L = cache.length;
  forward(rt, target, cache, 'int8', ids, L, 1, scratch);
  const viaTruncate = computeLogits(rt, target, scratch, 0, 1).slice(0, V);
  const fresh = feed(newCache(), target, 'int8', ids, 0, L + 1, G).at(-1)!;
  assert.ok(maxAbsDiff(viaTruncate, fresh) < 1e-5);
});

test('truncate below the buffer and append without flush are named errors; truncate(0) clears', () => {
  const cache = newCache();
  const ids = randomTokens(4, 20, V);
  feed(cache, target, 'int8', ids, 0, 20, G);
  assert.ok(cache.floor > 0);
  assert.throws(() => cache.truncate(cache.floor - 1), KvCacheError);
  assert.throws(() => cache.append(G + 1), KvCacheError);
  cache.truncate(0);
  assert.equal(cache.length, 0);
  assert.equal(cache.floor, 0);
  // Usable again from scratch, with the same results as a new cache.
  const again = feed(cache, target, 'int8', ids, 0, 12, G);
  const fresh = feed(newCache(), target, 'int8', ids, 0, 12, G);
  assert.ok(maxAbsDiff(again[11]!, fresh[11]!) < 1e-6);
});

test('byteSize reports the parts; at 8K the cache is at most 55% of F16 for pdlm-sized heads', () => {
  const cache = newCache(64, 5);
  const b = cache.byteSize();
  assert.equal(b.total, b.fp + b.upper + b.lower + b.meta);
  assert.equal(b.upper, b.lower);
  // pdlm-5.8m: 6 layers, 2 KV heads of 64; G = 128, value group 64, buffer slack 16.
  const lay = hierLayout(2, 64, 8192, 128, 64, 16);
  const total = 6 * (lay.upper + lay.lower + lay.meta + lay.fp);
  const f16 = 2 * 6 * 8192 * 128 * 2;
  assert.ok(total / f16 <= 0.55, `hierarchical / f16 = ${total / f16}`);
  assert.ok(6 * lay.upper / f16 < 0.26, 'the draft streams about a quarter of the F16 bytes');
});

test('checkpoint and restore: decoding past several flushes and back gives the same logits again', () => {
  const ids = randomTokens(60, V, 41);
  const cache = newCache();
  feed(cache, target, 'int8', ids, 0, 23, 5);
  cache.flush();
  const cp = cache.checkpoint();
  assert.equal(cp.length, 23);
  // 20 more positions quantize four more groups and drop their rows from the buffer.
  const first = feed(cache, target, 'int8', ids, 23, 43, 3);
  assert.ok(cache.floor > 23, 'decoding moved the floor past the checkpoint');
  assert.throws(() => cache.truncate(23), KvCacheError);
  cache.restore(cp);
  assert.equal(cache.length, 23);
  assert.ok(cache.quantized <= 23);
  const again = feed(cache, target, 'int8', ids, 23, 43, 3);
  for (let i = 0; i < first.length; i++) assert.deepEqual(again[i], first[i], `position ${23 + i}`);
  // The same checkpoint restores any number of times, from different tokens too.
  cache.restore(cp);
  feed(cache, target, 'int8', randomTokens(60, V, 42), 23, 35, 4);
  cache.restore(cp);
  const third = feed(cache, target, 'int8', ids, 23, 43, 3);
  for (let i = 0; i < first.length; i++) assert.deepEqual(third[i], first[i], `position ${23 + i} after other tokens`);
});

test('restore refuses a checkpoint whose quantized positions were rewritten, and another checkpoint than the latest', () => {
  const ids = randomTokens(40, V, 43);
  const cache = newCache();
  feed(cache, target, 'int8', ids, 0, 20, 4);
  cache.flush();
  const old = cache.checkpoint();
  const cp = cache.checkpoint();
  assert.throws(() => cache.restore(old), /latest checkpoint/);
  // Truncating to the floor keeps the quantized groups (restore still works); clearing does not.
  cache.truncate(cache.floor);
  feed(cache, target, 'int8', ids, cache.length, 24, 4);
  cache.restore(cp);
  cache.truncate(0);
  feed(cache, target, 'int8', randomTokens(40, V, 44), 0, 24, 4);
  assert.throws(() => cache.restore(cp), /rewritten since the checkpoint/);
});
