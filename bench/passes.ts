// What a QuantSpec round costs (a script, not a test): after a short prompt, the median time of a
// target pass of 1 token (a plain step), of γ + 1 tokens (a verify) and of a draft step, each as a
// multiple of the plain step. The passes take turns (a draft step, a verify, a plain step, ...),
// so a slow spell of a shared machine falls on all three alike; the raw times are printed too.
// With --hot each kind instead runs all its passes in a row at the same position (the cache
// rolled back after each), so its code and weights stay in the caches: what a pass costs apart
// from what the other passes of a round evict.
//
// --draft-head 8|4|none picks the draft's output head (default 8, as generate's flag).
//
//   node dist/bench/passes.js --model FILE [--gamma 4] [--passes 12] [--prompt 256] [--kv int8] [--hot] [--draft-head 8] [--json FILE]

import * as fs from 'node:fs';
import { loadModel } from '../src/engine/model.js';
import { machineSummary } from '../src/engine/machine.js';
import { createScratch, forward, passLogits, PROMPT_PASS } from '../src/model/forward.js';
import { createCache } from '../src/speculative/modes.js';
import { benchArgs } from './args.js';

const args = benchArgs('node dist/bench/passes.js --model FILE [--gamma 4] [--passes 12] [--prompt 256] [--kv int8] [--hot] [--draft-head 8] [--json FILE]', {
  model: { type: 'string' }, gamma: { type: 'string' }, passes: { type: 'string' }, prompt: { type: 'string' },
  kv: { type: 'string' }, json: { type: 'string' }, hot: { type: 'boolean' }, 'draft-head': { type: 'string' },
});
const GAMMA = Number(args.gamma ?? 4);
const PASSES = Number(args.passes ?? 12);
const PROMPT = Number(args.prompt ?? 256);
const KV = (args.kv ?? 'int8') as 'int8' | 'int4';
const WARMUP = 2;

const context = PROMPT + PASSES * (GAMMA + 2) + 16;
const headBits = args['draft-head'] === 'none' ? 0 : Number(args['draft-head'] ?? 8);
const model = await loadModel(args.model, { contextLength: context, onWarning: () => {}, draft: { headBits } });
if (!model.draft) throw new Error('the model was loaded without its draft');
const rt = model.runtime;
const cache = createCache(model.plan({ spec: 'quantspec', kv: KV }), model.config, model.kvStorage, context, model.prefillChunk);
const scratch = createScratch(model.config, Math.max(model.prefillChunk, GAMMA + 1), GAMMA + 1, context);
// Token ids spread over the vocabulary (what the tokens are does not change a pass's cost).
const ids = Array.from({ length: context }, (_, i) => (i * 7919 + 13) % model.config.vocabSize);
for (let pos = 0; pos < PROMPT; ) {
  cache.flush();
  const n = Math.min(model.prefillChunk, PROMPT - pos, cache.room);
  forward(rt, model.target, cache, KV, ids, pos, n, scratch, PROMPT_PASS);
  pos += n;
}

const times = { plain: [] as number[], verify: [] as number[], draft: [] as number[] };
let pos = PROMPT;
async function timed(list: number[], fn: () => unknown): Promise<void> {
  cache.flush();
  const t0 = performance.now();
  await fn();
  list.push(performance.now() - t0);
}
const HOT = args.hot === true;
if (HOT) {
  const kinds: [number[], () => unknown][] = [
    [times.draft, () => passLogits(rt, model.draft!, cache, 'int4', ids, pos, 1, scratch)],
    [times.verify, () => passLogits(rt, model.target, cache, KV, ids, pos, GAMMA + 1, scratch)],
    [times.plain, () => passLogits(rt, model.target, cache, KV, ids, pos, 1, scratch)],
  ];
  for (const [list, pass] of kinds) {
    for (let i = 0; i < PASSES + WARMUP; i++) {
      await timed(list, pass);
      cache.truncate(pos);
    }
  }
} else {
  for (let i = 0; i < PASSES + WARMUP; i++) {
    await timed(times.draft, () => passLogits(rt, model.draft!, cache, 'int4', ids, pos, 1, scratch));
    cache.truncate(pos); // the verify overwrites the draft's row, as in a round
    await timed(times.verify, () => passLogits(rt, model.target, cache, KV, ids, pos, GAMMA + 1, scratch));
    pos += GAMMA + 1;
    await timed(times.plain, () => passLogits(rt, model.target, cache, KV, ids, pos, 1, scratch));
    pos += 1;
  }
}
const median = (xs: number[]): number => {
  const s = xs.slice(WARMUP).sort((a, b) => a - b);
  return s[(s.length - 1) >> 1]!;
};
const plain = median(times.plain), verify = median(times.verify), draft = median(times.draft);
process.stdout.write(`# ${machineSummary()}, backend ${model.backendName}\n`);
process.stdout.write(`# ${model.path}: ${PROMPT}-token prompt, ${PASSES} passes of each kind after ${WARMUP} warm-up${HOT ? ', each kind in a row' : ''}, kv ${KV}, gamma ${GAMMA}\n`);
process.stdout.write(`plain step ${plain.toFixed(2)} ms; verify of ${GAMMA + 1} ${verify.toFixed(2)} ms = ${(verify / plain).toFixed(2)} plain steps; ` +
  `draft step ${draft.toFixed(2)} ms = ${(draft / plain).toFixed(2)} plain steps\n`);
for (const [k, v] of Object.entries(times)) process.stdout.write(`# ${k} ms: ${v.map((x) => x.toFixed(1)).join(' ')}\n`);
if (args.json) {
  fs.writeFileSync(args.json, JSON.stringify({
    model: model.path, backend: model.backendName, prompt: PROMPT, gamma: GAMMA, kv: KV, passes: PASSES, hot: HOT,
    plain_ms: plain, verify_ms: verify, draft_ms: draft, verify_ratio: verify / plain, draft_ratio: draft / plain, runs_ms: times,
  }) + '\n');
}
