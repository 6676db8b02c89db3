// A raw HTTP request for server tests (node:http, so that headers such as Host can be set), JSON by default.

import * as http from 'node:http';

export interface Reply { status: number; body: string; headers: http.IncomingHttpHeaders }

export function request(url: string, method: string, route: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${route}`, { method, headers: { 'content-type': 'application/json', ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
