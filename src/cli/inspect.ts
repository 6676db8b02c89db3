// `quantspec inspect`: what a model is and what it will cost to run.

import { defaultModelPath } from '../engine/model.js';
import { inspectModel } from '../engine/inspect.js';
import { describeConfig } from '../engine/api.js';
import { int, parse, str } from './args.js';
import { formatBytes } from './progress.js';

export const INSPECT_USAGE = `usage: quantspec inspect [--model PATH] [--ctx N] [--json]

Prints architecture, tensor shapes and dtypes, parameter count, context length, and the memory
the weights and a KV cache of N positions (default: the model's context) take.`;

function pct(a: number, b: number): string {
  return `${((a / b) * 100).toFixed(1)}%`;
}

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
      dtypes: s.dtypes,
      kv_bytes: {
        context: s.kv.contextLength, f32: s.kv.f32, f16: s.kv.f16, hierarchical: s.kv.hier,
        read_per_step: { int8: s.kv.readInt8, int4: s.kv.readInt4, f16: s.kv.f16 },
        group_size_k: s.kv.keyGroupSize, group_size_v: s.kv.valueGroupSize,
      },
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
    `context      ${c.trainedContextLength} positions (trained)`,
    `weights      ${formatBytes(s.weightBytes)}`,
    `kv cache     ${s.kv.contextLength} positions: f32 ${formatBytes(s.kv.f32)}, f16 ${formatBytes(s.kv.f16)}`,
    `             hierarchical int8/int4 (G=${s.kv.keyGroupSize}, value group ${s.kv.valueGroupSize}): ${formatBytes(s.kv.hier.total)} ` +
      `= ${pct(s.kv.hier.total, s.kv.f16)} of f16 (upper ${formatBytes(s.kv.hier.upper)}, lower ${formatBytes(s.kv.hier.lower)}, ` +
      `scales ${formatBytes(s.kv.hier.meta)}, buffer ${formatBytes(s.kv.hier.buffer)})`,
    `             read per decode step: int8 view ${formatBytes(s.kv.readInt8)} (${pct(s.kv.readInt8, s.kv.f16)}), ` +
      `int4 view ${formatBytes(s.kv.readInt4)} (${pct(s.kv.readInt4, s.kv.f16)}), f16 ${formatBytes(s.kv.f16)}`,
    '',
    'tensors:',
  ];
  const shown = s.tensors.filter((t) => !t.role.startsWith('layers.') || t.role.startsWith('layers.0.'));
  for (const t of shown) lines.push(`  ${t.name.padEnd(48)} ${t.dtype.padEnd(5)} [${t.shape.join(', ')}]`);
  if (c.nLayers > 1) lines.push(`  (layers 1..${c.nLayers - 1} have the same tensors as layer 0)`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
