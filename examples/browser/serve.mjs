// Serve the demo page on 127.0.0.1 (WebGPU needs a secure context; loopback is one):
//   npm run build && node examples/browser/serve.mjs [--port 8080] [--models DIR]
// then open the printed URL. The repository root is served (the page and dist/browser), and
// /models/ from DIR (default ../shared/models), so stories260K is at /models/stories260K/. Byte
// ranges are honoured, as the loader reads model files by ranges.
// serveDemo() is also what the browser end-to-end test runs.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.json': 'application/json' };

/** A static server: /models/... from `models`, everything else from the repository. Resolves once listening. */
export function serveDemo({ port = 0, models = path.resolve(REPO, '..', 'shared', 'models') } = {}) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    const [root, sub] = rel.startsWith('/models/') ? [models, rel.slice('/models/'.length)] : [REPO, rel.slice(1)];
    const file = path.resolve(root, sub);
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`${rel} not found`);
      return;
    }
    const size = fs.statSync(file).size;
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    // One byte range (the loader reads a model's header, then each tensor, this way)
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]), end = Math.min(range[2] ? Number(range[2]) : size - 1, size - 1);
      if (start > end) {
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, { 'content-type': type, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, 'accept-ranges': 'bytes' });
      fs.createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { 'content-type': type, 'content-length': size, 'accept-ranges': 'bytes' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const server = await serveDemo({ port: Number(arg('--port') ?? 8080), models: arg('--models') && path.resolve(arg('--models')) });
  const { port } = server.address();
  const q = 'model=/models/stories260K/stories260K.bin&tokenizer=/models/stories260K/tok512.bin';
  console.log(`demo: http://127.0.0.1:${port}/examples/browser/index.html?${q}  (Chromium needs --enable-unsafe-webgpu on Linux)`);
}
