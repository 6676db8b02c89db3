// quantspec command-line entry: dispatch to subcommands; user errors print one line, no stack.

import { QuantspecError } from '../core/errors.js';
import { inFlagTerms } from './args.js';
import { CHAT_USAGE, GENERATE_USAGE, runChat, runGenerate } from './generate.js';
import { EVAL_USAGE, runEval } from './eval.js';
import { INSPECT_USAGE, runInspect } from './inspect.js';
import { runServe, SERVE_USAGE } from './serve.js';
import { BENCH_USAGE, runBenchCommand } from './bench.js';
import { CONVERT_USAGE, runConvert } from './convert.js';

const USAGE = `usage: quantspec <command> [options]

commands:
  generate   stream a completion for a prompt
  chat       interactive chat with the model's chat template
  inspect    describe a model: architecture, tensors, memory
  eval       perplexity on a text file
  serve      OpenAI-compatible HTTP server
  bench      decode speed, acceptance and memory versus context for each decoding mode
  convert    write a Hugging Face model as a GGUF file

Run \`quantspec <command> --help\` for a command's options.`;

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<number> | number; usage: string }> = {
  generate: { run: runGenerate, usage: GENERATE_USAGE },
  chat: { run: runChat, usage: CHAT_USAGE },
  inspect: { run: runInspect, usage: INSPECT_USAGE },
  eval: { run: runEval, usage: EVAL_USAGE },
  serve: { run: runServe, usage: SERVE_USAGE },
  bench: { run: runBenchCommand, usage: BENCH_USAGE },
  convert: { run: runConvert, usage: CONVERT_USAGE },
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  const entry = COMMANDS[command];
  if (!entry) {
    process.stderr.write(`quantspec: unknown command "${command}".\n\n${USAGE}\n`);
    return 2;
  }
  try {
    return await entry.run(rest);
  } catch (e) {
    if (e instanceof QuantspecError) {
      process.stderr.write(`quantspec: error: ${e.code === 'invalid_argument' || e.code === 'context_length_exceeded' ? inFlagTerms(e.message) : e.message}\n`);
      return e.code === 'invalid_argument' ? 2 : 1;
    }
    const err = e as Error;
    process.stderr.write(`quantspec: internal error: ${err?.message ?? String(e)}\n`);
    if (process.env['QUANTSPEC_DEBUG']) process.stderr.write(`${err?.stack ?? ''}\n`);
    else process.stderr.write('(set QUANTSPEC_DEBUG=1 for a stack trace, and please report this)\n');
    return 70;
  }
}
