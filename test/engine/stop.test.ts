import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StopMatcher } from '../../src/engine/stop.js';

function run(stops: string[], pieces: string[]): { out: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  let out = '';
  for (const p of pieces) {
    const r = m.push(p);
    out += r.emit;
    if (r.stopped) return { out, stopped: true };
  }
  return { out: out + m.flush(), stopped: false };
}

test('a stop string split across pieces is never emitted, text before it is', () => {
  assert.deepEqual(run(['END'], ['hello E', 'N', 'D more']), { out: 'hello ', stopped: true });
  assert.deepEqual(run(['\n\n'], ['a\n', '\nb']), { out: 'a', stopped: true });
});

test('held-back text is released when it does not complete a stop string', () => {
  const m = new StopMatcher(['END']);
  assert.deepEqual(m.push('abcE'), { emit: 'abc', stopped: false });
  assert.deepEqual(m.push('x'), { emit: 'Ex', stopped: false });
  assert.deepEqual(run(['END'], ['the EN']), { out: 'the EN', stopped: false });
});

test('the earliest of several stop strings wins; no stops passes text through', () => {
  assert.deepEqual(run(['b', 'a'], ['xxab']), { out: 'xx', stopped: true });
  assert.deepEqual(run([], ['a', 'b']), { out: 'ab', stopped: false });
});
