// `quantspec serve`: the OpenAI-compatible server.

import * as path from 'node:path';
import { InvalidArgumentError } from '../core/errors.js';
import { defaultModelPath } from '../engine/model.js';
import { RemoteModel } from '../engine/remote.js';
import type { BackendName, PrefillActivations } from '../engine/api.js';
import { QuantspecServer } from '../server/http.js';
import { DECODING_FLAGS, int, MODEL_FLAGS, modelPathOf, parse, SAMPLING_FLAGS, str } from './args.js';
import { decodingOptions, draftOptions, generationOptions } from './generate.js';

export const SERVE_USAGE = `usage: quantspec serve [--model PATH | --synthetic NAME] [--host 127.0.0.1] [--port 8080] [--api-key KEY]
                       [--parallel N] [--max-queue N] [--ctx N] [--prefill-activations bf16|f32] [--prefill-chunk N] [--no-mmap]
                       [generation and decoding options]

OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions and /v1/responses
(SSE with "stream": true), GET /v1/models[/ID], /health (503 while loading), /metrics
(Prometheus text).
  --host H           bind address (default 127.0.0.1: loopback only)
  --port P           default 8080 (0 = any free port)
  --api-key KEY      require "Authorization: Bearer KEY" on every route but /health
  --alias NAME       the model id clients send (default: the model folder's name)
  --parallel N       concurrent generations (default 1)
  --max-queue N      requests waiting for a slot before 429 (default 16)
  --max-body BYTES   request body limit (default 1 MiB)
  --allowed-origins LIST  web origins (comma-separated, or *) whose pages may call the server;
                     by default only its own origin may (requests without Origin are not affected)
  --allowed-hosts LIST    Host names accepted beyond localhost/127.0.0.1/[::1] when bound to
                     loopback (default none: blocks DNS rebinding; * accepts any)
  --request-timeout MS    time a client has to send its whole request (default 60000; the
                     generation itself is not limited)
The generation options of \`generate\` (--temperature, --top-k, ..., --spec, --gamma, --kv) set
the defaults that requests may override.`;

export async function runServe(argv: string[]): Promise<number> {
  const { flags } = parse(argv, {
    ...MODEL_FLAGS, ...SAMPLING_FLAGS, ...DECODING_FLAGS,
    host: { type: 'string' }, port: { type: 'string' }, 'api-key': { type: 'string' }, alias: { type: 'string' },
    parallel: { type: 'string' }, 'max-queue': { type: 'string' }, 'max-body': { type: 'string' },
    'allowed-origins': { type: 'string' }, 'allowed-hosts': { type: 'string' }, 'request-timeout': { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (flags['help']) {
    process.stdout.write(`${SERVE_USAGE}\n`);
    return 0;
  }
  const parallel = int(flags, 'parallel') ?? 1;
  const maxQueue = int(flags, 'max-queue') ?? 16;
  const maxBody = int(flags, 'max-body') ?? 1 << 20;
  const port = int(flags, 'port') ?? 8080;
  if (parallel < 1 || parallel > 64) throw new InvalidArgumentError('--parallel must be in [1, 64].', 'parallel');
  if (maxQueue < 0) throw new InvalidArgumentError('--max-queue must be >= 0.', 'max-queue');
  if (maxBody < 1024) throw new InvalidArgumentError('--max-body must be at least 1024 bytes.', 'max-body');
  if (port < 0 || port > 65535) throw new InvalidArgumentError('--port must be in [0, 65535].', 'port');
  const requestTimeoutMs = int(flags, 'request-timeout') ?? 60_000;
  if (requestTimeoutMs < 100) throw new InvalidArgumentError('--request-timeout must be at least 100 ms.', 'request-timeout');
  const list = (name: string) => (str(flags, name) ?? '').split(',').map((x) => x.trim()).filter((x) => x.length > 0);
  const defaults = { ...generationOptions(flags), ...decodingOptions(flags) };
  const modelPath = modelPathOf(flags);
  const modelId = str(flags, 'alias') ?? path.basename(modelPath ?? defaultModelPath()).replace(/\.(bin|gguf)$/, '');
  const log = (line: string) => process.stderr.write(`quantspec serve: ${line}\n`);
  const server = new QuantspecServer({
    host: str(flags, 'host') ?? '127.0.0.1', port, apiKey: str(flags, 'api-key'), parallel, maxQueue, maxBodyBytes: maxBody,
    allowedOrigins: list('allowed-origins'), allowedHosts: list('allowed-hosts'), requestTimeoutMs,
    modelId, defaults: Object.fromEntries(Object.entries(defaults).filter(([, v]) => v !== undefined)), log,
  });
  const bound = await server.listen(() =>
    RemoteModel.load(modelPath, {
      ...decodingOptions(flags),
      draft: draftOptions(flags),
      tokenizer: str(flags, 'tokenizer'),
      backend: str(flags, 'backend') as BackendName | undefined,
      contextLength: int(flags, 'ctx'),
      prefillActivations: str(flags, 'prefill-activations') as PrefillActivations | undefined,
      prefillChunk: int(flags, 'prefill-chunk'),
      mmap: flags['no-mmap'] === true ? false : undefined,
      onWarning: (w) => log(`warning: ${w}`),
    }, parallel),
  );
  log(`listening on http://${str(flags, 'host') ?? '127.0.0.1'}:${bound} (model "${modelId}" loading)`);
  server.ready().then(() => log('model ready'), (e: Error) => log(`model failed to load: ${e.message}`));
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log(`${sig}: shutting down`);
      server.shutdown().then(resolve, resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  return 0;
}
