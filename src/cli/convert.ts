// `quantspec convert`: a Hugging Face model directory to a GGUF file llama.cpp can load.

import { InvalidArgumentError } from '../core/errors.js';
import { convertHfToGguf, SYNTHETIC_MODELS, syntheticGgufInput, writeModelGguf, type GgufDtype } from '../engine/api.js';
import { parse, str } from './args.js';
import { formatBytes } from './progress.js';

export const CONVERT_USAGE = `usage: quantspec convert (--model HF_DIR | --synthetic NAME) --out FILE.gguf [--dtype f32|f16|q4_0|q8_0]

Writes a GGUF v3 file with the metadata llama.cpp needs (architecture keys, RoPE, norm epsilon,
context length, tokenizer, chat template). Matrices in --dtype (default f16; q4_0 and q8_0 are
llama.cpp's 4- and 8-bit types with an F16 scale per 32 values; quantspec runs both without
dequantizing), vectors in F32;
Llama-architecture q/k rows are permuted for llama.cpp's RoPE, and llama3 rope scaling becomes
a rope_freqs tensor. --synthetic NAME (${SYNTHETIC_MODELS.join(', ')}) writes the random-weight
model that \`--synthetic NAME\` runs (its weights in --dtype, its byte-level vocabulary), so llama.cpp
runs the same model. Tensors are converted and written one at a time.`;

export function runConvert(argv: string[]): number {
  const { flags } = parse(argv, {
    model: { type: 'string', short: 'm' }, synthetic: { type: 'string' }, out: { type: 'string', short: 'o' }, dtype: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (flags['help']) {
    process.stdout.write(`${CONVERT_USAGE}\n`);
    return 0;
  }
  const model = str(flags, 'model');
  const synthetic = str(flags, 'synthetic');
  const out = str(flags, 'out');
  if ((!model && !synthetic) || !out) throw new InvalidArgumentError('--model HF_DIR (or --synthetic NAME) and --out FILE.gguf are required. Run with --help for usage.');
  if (model && synthetic) throw new InvalidArgumentError('--model and --synthetic name two models; pass one of them.', 'synthetic');
  const dtype = (str(flags, 'dtype') ?? 'f16') as GgufDtype;
  const r = synthetic ? writeModelGguf(syntheticGgufInput(synthetic), out, dtype) : convertHfToGguf(model!, out, dtype);
  process.stdout.write(`wrote ${out}: ${r.tensors} tensors, ${formatBytes(r.bytes)}\n`);
  return 0;
}
