// `quantspec serve` as a child process on a free loopback port, for the load test and the
// shutdown test: resolves once the server listens and its model is ready.

import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Everything the server wrote to stderr so far. */
  log(): string;
}

/** Start `quantspec serve --port 0 ...args`; rejects if it exits or is not ready within `timeoutMs`. */
export async function startServeProcess(args: string[], timeoutMs = 60_000): Promise<ServeProcess> {
  const child = spawn(process.execPath, [path.join(root, 'bin', 'quantspec.js'), 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
  });
  let timer: NodeJS.Timeout | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', () => {
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m && log.includes('model ready')) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`quantspec serve exited with ${code}: ${log}`)));
    timer = setTimeout(() => reject(new Error(`quantspec serve was not ready after ${timeoutMs} ms: ${log}`)), timeoutMs);
  }).finally(() => clearTimeout(timer));
  return { child, url: `http://127.0.0.1:${port}`, log: () => log };
}
