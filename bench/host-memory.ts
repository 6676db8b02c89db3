// Host memory a loaded model keeps (a script, not a test): RSS and ArrayBuffer bytes after
// loadModel and a few full garbage collections, then after a short generation. With --backend
// webgpu the weights live on the GPU and the CPU copies should be gone (on a CPU adapter such as
// lavapipe the "GPU" buffers are host memory too, and count in the RSS).
//
//   node --expose-gc dist/bench/host-memory.js [--model PATH | synthetic:NAME] [--backend webgpu] [--json FILE]

import * as fs from 'node:fs';
import { loadModel } from '../src/engine/model.js';
import type { BackendName } from '../src/kernels/select.js';
import { benchArgs } from './args.js';

const args = benchArgs('node --expose-gc dist/bench/host-memory.js [--model PATH | synthetic:NAME] [--backend webgpu] [--json FILE]', { model: { type: 'string' }, backend: { type: 'string' }, json: { type: 'string' } });
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc, so that what is measured is what is still referenced.');

async function settle(): Promise<{ rss_mib: number; array_buffers_mib: number }> {
  for (let i = 0; i < 3; i++) {
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const m = process.memoryUsage();
  return { rss_mib: m.rss / 2 ** 20, array_buffers_mib: m.arrayBuffers / 2 ** 20 };
}

const model = await loadModel(args.model, { backend: args.backend as BackendName | undefined, onWarning: () => {} });
const loaded = await settle();
await model.complete('Hello', { temperature: 0, maxTokens: 4, ignoreEos: true });
const generated = await settle();
const row = { model: model.path, backend: model.backendName, weight_mib: model.weightBytes / 2 ** 20, draft_mib: model.draftBytes / 2 ** 20, loaded, generated };
process.stdout.write(`${model.path} on ${model.backendName}: weights ${row.weight_mib.toFixed(0)} MiB + draft ${row.draft_mib.toFixed(0)} MiB; ` +
  `after load RSS ${loaded.rss_mib.toFixed(0)} MiB, ArrayBuffers ${loaded.array_buffers_mib.toFixed(0)} MiB; ` +
  `after 4 tokens RSS ${generated.rss_mib.toFixed(0)} MiB, ArrayBuffers ${generated.array_buffers_mib.toFixed(0)} MiB\n`);
if (args.json) fs.writeFileSync(args.json, JSON.stringify(row) + '\n');
