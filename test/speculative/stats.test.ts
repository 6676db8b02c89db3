// Speculation statistics against a hand-worked example (the paper's definitions): nothing here is
// computed by the code under test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acceptanceRate, emptyStats, meanAcceptedLength, perPosition, recordRound } from '../../src/speculative/stats.js';

test('rounds of γ 4, 4, 2 accepting 4, 1, 0 drafts, and 2 plain steps', () => {
  const s = emptyStats();
  recordRound(s, 4, 4, 3, 5); // all four drafts accepted: 5 tokens
  recordRound(s, 4, 1, 2, 4); // the second draft rejected: 2 tokens
  s.plainSteps += 2;
  recordRound(s, 2, 0, 1, 3); // the first draft rejected: 1 token
  assert.equal(s.rounds, 3);
  assert.equal(s.drafted, 10); // 4 + 4 + 2
  assert.equal(s.accepted, 5); // 4 + 1 + 0
  assert.equal(s.plainSteps, 2);
  assert.equal(s.gamma, 2); // the last round's
  assert.equal(s.draftMs, 6);
  assert.equal(s.verifyMs, 12);
  assert.equal(acceptanceRate(s), 0.5); // 5 / 10
  assert.equal(meanAcceptedLength(s), 8 / 3); // (5 + 2 + 1) tokens over 3 rounds
  // Position 0 was drafted in 3 rounds and accepted in 2; position 1 in 3 and 1; positions 2 and 3
  // in 2 rounds each and accepted in 1.
  assert.deepEqual(perPosition(s), [2 / 3, 1 / 3, 1 / 2, 1 / 2]);
  // lengths[n] = rounds that accepted exactly n drafts: n = 0, 1 and 4 once each.
  assert.deepEqual(s.lengths, [1, 1, 0, 0, 1]);
});

test('no rounds: rates are zero, not NaN', () => {
  const s = emptyStats();
  s.plainSteps = 7;
  assert.equal(acceptanceRate(s), 0);
  assert.equal(meanAcceptedLength(s), 0);
  assert.deepEqual(perPosition(s), []);
});
