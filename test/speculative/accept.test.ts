// The acceptance rule: greedy prefix matching, and the speculative sampler's output distribution
// equal to the target's (chi-square on a toy vocabulary).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Xoshiro128 } from '../../src/core/rng.js';
import { acceptGreedy, acceptSampled } from '../../src/speculative/accept.js';

test('greedy: longest matching prefix, then the target token', () => {
  assert.deepEqual(acceptGreedy([5, 6, 7], [5, 6, 7, 8], 3), { accepted: 3, next: 8 });
  assert.deepEqual(acceptGreedy([5, 6, 7], [5, 9, 7, 8], 3), { accepted: 1, next: 9 });
  assert.deepEqual(acceptGreedy([5, 6, 7], [1, 6, 7, 8], 3), { accepted: 0, next: 1 });
});

/** Chi-square statistic of observed counts against expected probabilities. */
function chiSquare(counts: number[], probs: number[], n: number): number {
  return counts.reduce((s, c, i) => s + (c - n * probs[i]!) ** 2 / (n * probs[i]!), 0);
}

function normalize(v: number[]): number[] {
  const s = v.reduce((a, b) => a + b, 0);
  return v.map((x) => x / s);
}

/**
 * Draw `n` first tokens of a speculative round with fixed draft p and target q (γ = 1) and return
 * the counts of the first emitted token; by the theorem they follow q exactly.
 */
function firstTokenCounts(p: number[], q: number[], n: number, seed: number): number[] {
  const V = p.length;
  const rng = new Xoshiro128(seed);
  const pBuf = Float32Array.from(p);
  const qBuf = Float32Array.from([...q, ...q]); // q_0 and q_1 (the bonus distribution)
  const residual = new Float32Array(V);
  const counts = new Array(V).fill(0);
  for (let i = 0; i < n; i++) {
    // The draft token is drawn from p.
    let u = rng.next();
    let d = 0;
    while (d < V - 1 && u >= p[d]!) u -= p[d++]!;
    const r = acceptSampled([d], pBuf, qBuf, 1, V, rng, residual);
    counts[r.accepted === 1 ? d : r.next]++;
  }
  return counts;
}

test('speculative sampling emits the target distribution (chi-square, 1% bias detectable)', () => {
  const q = normalize([0.30, 0.25, 0.20, 0.12, 0.08, 0.05]);
  const pGood = normalize([0.28, 0.27, 0.18, 0.14, 0.07, 0.06]); // a close draft
  const pBad = normalize([0.05, 0.05, 0.10, 0.20, 0.30, 0.30]); // a poor draft
  const n = 400000;
  const critical = 20.52; // chi-square, 5 dof, p = 0.001
  for (const [name, p] of [['close draft', pGood], ['poor draft', pBad]] as const) {
    const counts = firstTokenCounts(p, q, n, 11);
    const chi = chiSquare(counts, q, n);
    assert.ok(chi < critical, `${name}: chi-square ${chi.toFixed(2)} against the target`);
  }
  // Power check: the same test rejects a distribution biased by 1 percentage point.
  const biased = normalize([0.31, 0.24, 0.20, 0.12, 0.08, 0.05]);
  const counts = firstTokenCounts(pGood, q, n, 12);
  assert.ok(chiSquare(counts, biased, n) > critical, 'a 1-point bias would be detected');
});

test('speculative sampling over several positions: the second emitted token follows q given the first', () => {
  // γ = 2 with per-position distributions; check the marginal of the emitted pair's second token when
  // the first emitted token is the drafted one (accepted), against q_1.
  const V = 4;
  const p0 = normalize([0.4, 0.3, 0.2, 0.1]);
  const q0 = normalize([0.5, 0.2, 0.2, 0.1]);
  const p1 = normalize([0.1, 0.2, 0.3, 0.4]);
  const q1 = normalize([0.25, 0.25, 0.25, 0.25]);
  const q2 = normalize([0.7, 0.1, 0.1, 0.1]);
  const pBuf = Float32Array.from([...p0, ...p1]);
  const qBuf = Float32Array.from([...q0, ...q1, ...q2]);
  const rng = new Xoshiro128(5);
  const residual = new Float32Array(V);
  const draw = (p: number[]) => {
    let u = rng.next();
    let d = 0;
    while (d < V - 1 && u >= p[d]!) u -= p[d++]!;
    return d;
  };
  const first = new Array(V).fill(0);
  const second = new Array(V).fill(0);
  const bonus = new Array(V).fill(0); // the target's own token after both drafts were accepted
  let nSecond = 0;
  let nBonus = 0;
  const n = 300000;
  for (let i = 0; i < n; i++) {
    const d = [draw(p0), draw(p1)];
    const r = acceptSampled(d, pBuf, qBuf, 2, V, rng, residual);
    const emitted = [...d.slice(0, r.accepted), r.next];
    first[emitted[0]!]++;
    if (emitted.length > 1) {
      second[emitted[1]!]++;
      nSecond++;
    }
    if (r.accepted === 2) {
      bonus[r.next]++;
      nBonus++;
    }
  }
  assert.ok(chiSquare(first, q0, n) < 16.27, `first token chi-square ${chiSquare(first, q0, n)}`);
  // Given the model's positions are independent here, the second token follows q1.
  assert.ok(chiSquare(second, q1, nSecond) < 16.27, `second token chi-square ${chiSquare(second, q1, nSecond)}`);
  // The bonus token is drawn from q2, whatever the drafts were.
  assert.ok(nBonus > 20000, `${nBonus} rounds accepted both drafts`);
  assert.ok(chiSquare(bonus, q2, nBonus) < 16.27, `bonus token chi-square ${chiSquare(bonus, q2, nBonus)}`);
  // ... and not from q1, the last draft position's target (a plausible wiring mistake).
  assert.ok(chiSquare(bonus, q1, nBonus) > 16.27, 'the bonus test tells q2 from q1');
});
