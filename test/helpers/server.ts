// Start a quantspec server on a free loopback port for tests.

import { RemoteModel } from '../../src/engine/remote.js';
import type { LoadOptions } from '../../src/engine/model.js';
import { QuantspecServer, type ServerOptions } from '../../src/server/http.js';

export interface TestServer {
  readonly server: QuantspecServer;
  readonly url: string;
  close(): Promise<void>;
}

/** `modelPath`: a model folder (default: the embedded pdlm). */
export async function startServer(opts: Partial<ServerOptions> = {}, load: LoadOptions = {}, modelPath?: string): Promise<TestServer> {
  const parallel = opts.parallel ?? 2;
  const server = new QuantspecServer({
    host: '127.0.0.1', port: 0, parallel, maxQueue: 8, maxBodyBytes: 1 << 20, modelId: 'pdlm', defaults: {}, ...opts,
  });
  const port = await server.listen(() => RemoteModel.load(modelPath, { contextLength: 512, ...load }, parallel));
  await server.ready();
  return { server, url: `http://127.0.0.1:${port}`, close: () => server.shutdown() };
}
