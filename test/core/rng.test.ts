import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Xoshiro128 } from '../../src/core/rng.js';

test('the same seed gives the same stream; different seeds differ', () => {
  const a = new Xoshiro128(42);
  const b = new Xoshiro128(42);
  const c = new Xoshiro128(43);
  const sa = Array.from({ length: 100 }, () => a.next());
  const sb = Array.from({ length: 100 }, () => b.next());
  const sc = Array.from({ length: 100 }, () => c.next());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
});

test('draws are in [0, 1) and roughly uniform (chi-square over 20 bins)', () => {
  const rng = new Xoshiro128(7);
  const bins = new Array(20).fill(0);
  const n = 200000;
  for (let i = 0; i < n; i++) {
    const u = rng.next();
    assert.ok(u >= 0 && u < 1);
    bins[Math.floor(u * 20)]++;
  }
  const e = n / 20;
  const chi2 = bins.reduce((s, o) => s + (o - e) ** 2 / e, 0);
  assert.ok(chi2 < 43.8, `chi2 ${chi2} (19 dof, p = 0.001 critical value 43.8)`);
});
