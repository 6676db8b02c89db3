// The draft's weights (quant/draft.ts): 4-bit projections and, by default, an 8-bit output head;
// the options that choose the head, and 8-bit sources (GGUF Q8_0) read back before quantizing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { Xoshiro128 } from '../../src/core/rng.js';
import type { DenseTensor } from '../../src/core/tensor.js';
import { createReferenceBackend } from '../../src/kernels/reference/index.js';
import { buildDraftWeights, DEFAULT_DRAFT } from '../../src/quant/draft.js';
import { weightBytes, type WeightTensor } from '../../src/quant/format.js';
import { quantizeQ8 } from '../../src/quant/weights.js';
import { resolveDraftOptions } from '../../src/speculative/modes.js';
import { randomMatrix, randomWeights, tinyConfig } from '../helpers/tiny.js';

const config = tinyConfig({ dim: 64, hiddenDim: 96, vocabSize: 100, tiedEmbeddings: false });
const target = randomWeights(config, 5);
const ref = createReferenceBackend();

/** Largest |W·x - W'·x| over the outputs, for one random x. */
function outputGap(a: WeightTensor, b: WeightTensor, cols: number): number {
  const rows = a.shape[0]!;
  const rng = new Xoshiro128(9);
  const x = Float32Array.from({ length: cols }, () => rng.next() - 0.5);
  const ya = new Float32Array(rows);
  const yb = new Float32Array(rows);
  ref.matmul(ya, x, a, 1);
  ref.matmul(yb, x, b, 1);
  let worst = 0;
  for (let i = 0; i < rows; i++) worst = Math.max(worst, Math.abs(ya[i]! - yb[i]!));
  return worst;
}

test('the default draft has 4-bit projections and an 8-bit head (blocks of 32) that stays close to the target head', () => {
  const d = buildDraftWeights(target, DEFAULT_DRAFT);
  assert.equal(DEFAULT_DRAFT.headBits, 8);
  for (const l of d.weights.layers) for (const w of [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3]) assert.equal(w.dtype, 'q4');
  const head = d.weights.lmHead;
  assert.ok(head.dtype === 'q8' && head.groupSize === 32, `head is ${head.dtype}`);
  assert.deepEqual(head.shape, target.lmHead.shape);
  // extra bytes: the seven 4-bit projections per layer plus the 8-bit head
  const q4Bytes = d.weights.layers.reduce((s, l) => s + [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3].reduce((t, w) => t + weightBytes(w), 0), 0);
  assert.equal(d.extraBytes, q4Bytes + weightBytes(head));
  // 8 bits: each weight within half a step (amax / 254) of its group; over 64 columns the logits
  // move by far less than the 4-bit head's
  const q4Head = buildDraftWeights(target, resolveDraftOptions({ headBits: 4 })).weights.lmHead;
  const gap8 = outputGap(head, target.lmHead, config.dim);
  const gap4 = outputGap(q4Head, target.lmHead, config.dim);
  assert.ok(gap8 > 0 && gap8 * 8 < gap4, `8-bit head gap ${gap8}, 4-bit ${gap4}`);
});

test('draft.headBits 0 shares the target head; 4 (or lm_head among the layers) makes it 4-bit; bad values are named errors', () => {
  const shared = buildDraftWeights(target, resolveDraftOptions({ headBits: 0 }));
  assert.equal(shared.weights.lmHead, target.lmHead);
  const four = buildDraftWeights(target, resolveDraftOptions({ headBits: 4 })).weights.lmHead;
  assert.equal(four.dtype, 'q4');
  const viaLayers = resolveDraftOptions({ layers: 'all+head' });
  assert.equal(viaLayers.headBits, 4);
  assert.equal(buildDraftWeights(target, viaLayers).weights.lmHead.dtype, 'q4');
  assert.equal(resolveDraftOptions({}).headBits, 8);
  assert.throws(() => resolveDraftOptions({ headBits: 6 }), (e: unknown) => e instanceof InvalidArgumentError && /headBits is 8, 4 or 0/.test((e as Error).message));
  assert.throws(() => resolveDraftOptions({ layers: 'all+head', headBits: 8 }), (e: unknown) => e instanceof InvalidArgumentError && /lm_head make a 4-bit head/.test((e as Error).message));
});

test('8-bit sources (as GGUF Q8_0 loads) become 4-bit projections from their values; an 8-bit head is kept as it is', () => {
  const rng = new Xoshiro128(3);
  const dense = randomMatrix(rng, 48, 64, 0.1) as DenseTensor;
  const q8 = quantizeQ8(dense, 32);
  const l0 = target.layers[0]!;
  const src = { ...target, layers: [{ ...l0, w1: q8 }, ...target.layers.slice(1)], lmHead: q8 };
  const d = buildDraftWeights(src, DEFAULT_DRAFT).weights;
  const w1 = d.layers[0]!.w1;
  assert.equal(w1.dtype, 'q4');
  // the 4-bit draft of the 8-bit matrix is the 4-bit draft of its decoded values
  const decoded: DenseTensor = { dtype: 'f32', shape: [48, 64], data: new Float32Array(48 * 64) };
  const row = new Float32Array(64);
  for (let r = 0; r < 48; r++) {
    for (let j = 0; j < 64; j++) row[j] = q8.codes[r * 64 + j]! * q8.scales[r * 2 + (j >> 5)]!;
    decoded.data.set(row, r * 64);
  }
  const fromDecoded = buildDraftWeights({ ...target, layers: [{ ...l0, w1: decoded }, ...target.layers.slice(1)] }, DEFAULT_DRAFT).weights.layers[0]!.w1;
  assert.ok(w1.dtype === 'q4' && fromDecoded.dtype === 'q4');
  assert.deepEqual(w1.codes, fromDecoded.codes);
  assert.deepEqual(w1.scales, fromDecoded.scales);
  assert.equal(d.lmHead, q8, 'an 8-bit head is not quantized again');
});
