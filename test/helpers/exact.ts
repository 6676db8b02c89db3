// The target's exact next-token logits after a sequence, from a fresh INT8 cache (chunked prefill of
// 8, as the sessions in these tests run), for tests that compare sampled output with distributions.

import type { ModelConfig } from '../../src/model/config.js';
import { computeLogits, createScratch, forward, type ModelRuntime } from '../../src/model/forward.js';
import type { WeightSet } from '../../src/model/weights.js';
import { createCache, type DecodingPlan } from '../../src/speculative/modes.js';

export function targetLogitsAfter(rt: ModelRuntime, target: WeightSet, plan: DecodingPlan, config: ModelConfig, ids: readonly number[]): Float32Array {
  const cache = createCache(plan, config, rt.backend, 64, 8);
  const s = createScratch(config, 8, 8, 64);
  let last = 0;
  for (let pos = 0; pos < ids.length; ) {
    cache.flush();
    const n = Math.min(8, ids.length - pos, cache.room);
    forward(rt, target, cache, 'int8', ids, pos, n, s);
    pos += n;
    last = n - 1;
  }
  return computeLogits(rt, target, s, last, 1);
}
