import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GammaController } from '../../src/speculative/adaptive.js';

function feed(c: GammaController, draftMs: number, verify: (b: number) => number, accepted: (g: number) => number, rounds = 30): void {
  for (let i = 0; i < rounds; i++) {
    const g = c.choose();
    if (g === 0) {
      c.observeVerify(1, verify(1));
      continue;
    }
    c.observeDraftStep(draftMs);
    c.observeVerify(g + 1, verify(g + 1));
    c.observeRound(g, accepted(g));
  }
}

test('cheap drafts with high acceptance: speculate with a long draft', () => {
  const c = new GammaController(8, 4);
  feed(c, 1, (b) => 4 + 0.2 * b, (g) => g); // all accepted, draft 4x cheaper
  const g = c.choose();
  assert.ok(g >= 6, `gamma ${g}`);
  assert.ok(c.alpha > 0.95);
});

test('drafts as costly as the target: fall back to plain decoding, probing now and then', () => {
  const c = new GammaController(8, 4);
  feed(c, 5, (b) => 5 + 0.5 * b, (g) => Math.floor(g / 2));
  let plain = 0;
  let spec = 0;
  // Here not even full acceptance would pay, so the probes (which re-measure the costs) are rarer.
  for (let i = 0; i < 256; i++) {
    const g = c.choose();
    if (g === 0) { plain++; c.observeVerify(1, 5.5); } else { spec++; c.observeDraftStep(5); c.observeVerify(g + 1, 5 + 0.5 * (g + 1)); c.observeRound(g, Math.floor(g / 2)); }
  }
  assert.ok(plain > 240, `plain ${plain}`);
  assert.ok(spec >= 2, 'it keeps probing');
});

test('low acceptance shortens the draft', () => {
  const hi = new GammaController(8, 4);
  feed(hi, 1, (b) => 4 + 0.2 * b, (g) => g);
  const lo = new GammaController(8, 4);
  feed(lo, 1, (b) => 4 + 0.2 * b, (g) => Math.min(g, 1));
  assert.ok(lo.choose() < hi.choose());
});

// Seen at 16K context: the first plain step after prefill was several times slower than the rest,
// and with one or two plain samples that outlier made speculation look better for 32 rounds.
test('one slow plain step does not hold the controller in speculation when plain decoding is faster', () => {
  const c = new GammaController(8, 4);
  let plain = 0;
  let spec = 0;
  let firstPlain = true;
  for (let i = 0; i < 64; i++) {
    const g = c.choose();
    if (g === 0) {
      plain++;
      c.observeVerify(1, firstPlain ? 20 : 2); // the outlier, then the true cost of a plain step
      firstPlain = false;
      continue;
    }
    spec++;
    // drafts as costly as a plain step and a verify of g + 1 tokens costing g + 1 plain steps:
    // speculation never pays here, whatever is accepted
    c.observeDraftStep(2.1);
    c.observeVerify(g + 1, 2 * (g + 1));
    c.observeRound(g, g);
  }
  assert.ok(plain > 48, `plain ${plain}, spec ${spec}`);
});

// Seen on pdlm at 1K: the first round's draft steps took 3x the later ones (the draft's code and
// weights touched for the first time), and with that sample alone as the draft's cost the
// controller decoded plainly for 18 steps.
test('the first round is a warm-up: its slow timings do not turn speculation off', () => {
  const c = new GammaController(8, 4);
  let rounds = 0;
  const choices: number[] = [];
  for (let i = 0; i < 24; i++) {
    const g = c.choose();
    choices.push(g);
    if (g === 0) {
      c.observeVerify(1, 0.62);
      continue;
    }
    // steady costs: a round of 4 costs 4 · 0.42 + 1.25 = 2.93 ms for 5 tokens against 5 plain steps of 3.1 ms
    c.observeDraftStep(rounds === 0 ? 1.3 : 0.42);
    c.observeVerify(g + 1, rounds === 0 ? 1.5 : 0.25 + 0.2 * (g + 1));
    c.observeRound(g, g);
    rounds++;
  }
  // the warm-up round (the cheapest: γ = 1), a second measured round, the plain samples it needs, then speculation
  assert.deepEqual(choices.slice(0, 2), [1, 4]);
  const plain = choices.filter((g) => g === 0).length;
  assert.ok(plain <= 4, `plain steps ${plain}: ${choices.join(' ')}`);
  assert.ok(choices.slice(-8).every((g) => g > 0), choices.join(' '));
});

test('speculation that only low acceptance holds back is probed with gaps growing from probeEvery to 4 · probeEvery plain steps', () => {
  const c = new GammaController(8, 4);
  // cheap drafts, but every draft rejected: plain decoding wins now, full acceptance would win
  const probeAt: number[] = [];
  for (let i = 0; i < 1024; i++) {
    const g = c.choose();
    if (g === 0) { c.observeVerify(1, 4.2); } else { probeAt.push(i); c.observeDraftStep(1); c.observeVerify(g + 1, 4 + 0.2 * (g + 1)); c.observeRound(g, 0); }
  }
  const gaps = probeAt.slice(1).map((p, k) => p - probeAt[k]!);
  // probes keep coming (the acceptance estimate stays fresh), with gaps of probeEvery, 2 · and then
  // 4 · probeEvery plain steps (plus the probe itself and a forced plain re-measurement every 2 · probeEvery choices)
  const cap = 4 * c.probeEvery;
  assert.ok(gaps.some((x) => x <= 2 * c.probeEvery + 2), `the first gaps are short: ${gaps}`);
  assert.ok(gaps.slice(-5).every((x) => x > cap && x <= cap + 1 + Math.ceil(cap / (2 * c.probeEvery))), `late gaps ${gaps}`);
  assert.ok(probeAt.length >= 1024 / (cap + 4) - 1 && probeAt.length < 30, `${probeAt.length} probes`);
});

test('speculation within 10% of plain decoding keeps being probed every probeEvery plain steps (no backoff)', () => {
  const c = new GammaController(8, 4);
  // draft 1.4 ms, verify 4 + 0.2·b ms, plain 4.2 ms; rounds accept 0 and 1 drafts in turn (α about
  // 0.33): the best round, γ = 1, gives about 0.96 of plain decoding's rate, so plain wins narrowly
  let n = 0;
  let probes = 0;
  for (let i = 0; i < 640; i++) {
    const g = c.choose();
    if (g === 0) { c.observeVerify(1, 4.2); continue; }
    if (i > 128) probes++;
    c.observeDraftStep(1.4);
    c.observeVerify(g + 1, 4 + 0.2 * (g + 1));
    c.observeRound(g, Math.min(g, n++ % 2));
  }
  assert.ok(probes >= 512 / (c.probeEvery + 2) - 2, `${probes} probes in 512 steps`);
});

test('a probe whose acceptance makes speculation pay again ends the backoff', () => {
  const c = new GammaController(8, 4);
  feed(c, 1, (b) => 4 + 0.2 * b, () => 0, 200); // backed off to 4 · probeEvery
  const choices: number[] = [];
  for (let i = 0; i < 200; i++) {
    const g = c.choose();
    choices.push(g);
    if (g === 0) { c.observeVerify(1, 4.2); continue; }
    // from the first probe on, every draft is accepted
    c.observeDraftStep(1);
    c.observeVerify(g + 1, 4 + 0.2 * (g + 1));
    c.observeRound(g, g);
  }
  const firstProbe = choices.findIndex((g) => g > 0);
  assert.ok(firstProbe >= 0 && firstProbe <= 4 * c.probeEvery + 4, `first probe at ${firstProbe}`);
  // full acceptance from then on: speculation takes over within a few rounds
  const after = choices.slice(firstProbe + 8);
  assert.ok(after.filter((g) => g > 0).length > 0.8 * after.length, choices.join(' '));
});

test('while speculation cannot pay even at full acceptance, probes back off to one per 16 · probeEvery plain steps', () => {
  const c = new GammaController(8, 4);
  const probeAt: number[] = [];
  const probeGamma: number[] = [];
  for (let i = 0; i < 6000; i++) {
    const g = c.choose();
    // drafts as costly as a plain step: hopeless at any acceptance
    if (g === 0) c.observeVerify(1, 2);
    else { probeAt.push(i); probeGamma.push(g); c.observeDraftStep(2); c.observeVerify(g + 1, 2 * (g + 1)); c.observeRound(g, g); }
  }
  // after the warm-up (γ = 1) and the measured round (γ = 4), each probe only re-measures the costs: the cheapest round
  assert.deepEqual(probeGamma.slice(0, 2), [1, 4]);
  assert.ok(probeGamma.slice(2).every((g) => g === 1), `probe γ ${probeGamma}`);
  const gaps = probeAt.slice(1).map((p, k) => p - probeAt[k]!);
  const late = gaps.slice(-5);
  // after the measurement phase the gaps grow, then stay at 16 · probeEvery plain steps (plus the
  // probe itself and the forced plain re-measurement every 2 · probeEvery choices)
  const cap = 16 * c.probeEvery;
  assert.ok(late.every((x) => x > cap && x <= cap + 1 + Math.ceil(cap / (2 * c.probeEvery))), `late gaps ${late}`);
  assert.ok(gaps.some((x) => x > c.probeEvery + 1 && x < 16 * c.probeEvery), `the gaps grow: ${gaps}`);
  assert.ok(probeAt.length < 40, `${probeAt.length} probes in 6000 steps`);
});

test('beyond the measured verify sizes, costs extend along the measured line: longer rounds are not chosen where they lose', () => {
  // pdlm at 16K (bench/passes): a draft step about 0.72 of a plain step, a verify 0.3 more per token
  const c = new GammaController(8, 4);
  const verify = (b: number) => 1 + 0.3 * (b - 1);
  assert.equal(c.choose(), 1); // the warm-up round, whose timings are not kept
  c.observeDraftStep(0.72);
  c.observeVerify(2, verify(2));
  c.observeRound(1, 1);
  for (let i = 0; i < 3; i++) {
    c.observeDraftStep(0.72);
    c.observeVerify(5, verify(5));
    c.observeRound(4, 4);
  }
  for (let i = 0; i < 3; i++) c.observeVerify(1, verify(1));
  // (γ + 1) / (0.72 γ + 1 + 0.3 γ) < 1 for every γ: plain decoding, though every draft was accepted
  // (10% more per token beyond the 5-token verify made γ = 8 look 2% faster than plain decoding)
  assert.equal(c.choose(), 0);
});
