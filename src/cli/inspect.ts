// `quantspec inspect`: what a model is and what it will cost to run.

import { defaultModelPath } from '../engine/model.js';
import { inspectModel } from '../engine/inspect.js';
import { describeConfig } from '../model/config.js';
import { int, parse, str } from './args.js';
import { formatBytes } from './progress.js';

export const INSPECT_USAGE = `usage: quantspec inspect [--model PATH] [--ctx N] [--json]

Prints architecture, tensor shapes and dtypes, parameter count, context length, and the memory
the weights and a KV cache of N positions (default: the model's context) take.`;

export function runInspect(argv: string[]): number {
  const { flags } = parse(argv, {
    model: { type: 'string', short: 'm' }, ctx: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  });
  if (flags['help']) {
    process.stdout.write(`${INSPECT_USAGE}\n`);
    return 0;
  }
  const s = inspectModel(str(flags, 'model') ?? defaultModelPath(), int(flags, 'ctx'));
  if (flags['json']) {
    process.stdout.write(`${JSON.stringify({
      path: s.path, format: s.format, config: s.config, parameters: s.parameters, weight_bytes: s.weightBytes,
      dtypes: s.dtypes, kv_bytes: { context: s.kv.contextLength, f32: s.kv.f32, f16: s.kv.f16 },
      tensors: s.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
    })}\n`);
    return 0;
  }
  const c = s.config;
  const lines = [
    `model        ${s.path} (${s.format})`,
    `architecture ${describeConfig(c)}`,
    `rope         ${c.ropeStyle}, theta ${c.ropeTheta}, scaling ${c.ropeScaling.type}` + (c.slidingWindow ? `, sliding window ${c.slidingWindow}` : ''),
    `features     ${[c.qkvBias && 'qkv bias', c.qkNorm && 'q/k norm', c.tiedEmbeddings ? 'tied embeddings' : 'separate lm_head'].filter(Boolean).join(', ')}`,
    `parameters   ${s.parameters.toLocaleString('en-US')} (${(s.parameters / 1e6).toFixed(2)}M)`,
    `dtypes       ${s.dtypes.join(', ')}`,
    `context      ${c.maxSeqLen} positions (trained)`,
    `weights      ${formatBytes(s.weightBytes)}`,
    `kv cache     ${s.kv.contextLength} positions: f32 ${formatBytes(s.kv.f32)}, f16 ${formatBytes(s.kv.f16)}`,
    '',
    'tensors:',
  ];
  const shown = s.tensors.filter((t) => !t.role.startsWith('layers.') || t.role.startsWith('layers.0.'));
  for (const t of shown) lines.push(`  ${t.name.padEnd(48)} ${t.dtype.padEnd(5)} [${t.shape.join(', ')}]`);
  if (c.nLayers > 1) lines.push(`  (layers 1..${c.nLayers - 1} have the same tensors as layer 0)`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
