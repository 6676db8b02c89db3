// Who may talk to the server and in what form, checked before a request reaches a route: the Host
// header (DNS rebinding), the Origin header (web pages in a local browser), the body's content type
// (browsers send text/plain and form bodies cross-origin without a preflight), and the route
// label metrics may use (a fixed set, whatever path a client sends).

import type * as http from 'node:http';
import { HttpError } from './protocol.js';

export interface AccessPolicy {
  /** Origins (`scheme://host[:port]`) whose pages may call the server; `*` allows any. */
  readonly allowedOrigins: readonly string[];
  /** Host names accepted in the Host header beyond the loopback names; `*` allows any. */
  readonly allowedHosts: readonly string[];
  /** The address the server binds. A loopback bind checks Host; another bind cannot know its names. */
  readonly bindHost: string;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host.toLowerCase()) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The host name of a Host header or an origin's authority, without the port. */
function hostName(authority: string): string {
  const a = authority.trim().toLowerCase();
  if (a.startsWith('[')) return a.slice(0, a.indexOf(']') + 1);
  const colon = a.lastIndexOf(':');
  return colon >= 0 ? a.slice(0, colon) : a;
}

/**
 * Check Host and Origin; returns the origin to echo in CORS headers (null when the request has no
 * Origin or comes from the server's own origin). Throws a 403 naming the flag that opens it.
 */
export function checkAccess(req: http.IncomingMessage, policy: AccessPolicy): string | null {
  const host = req.headers.host ?? '';
  if (isLoopback(policy.bindHost) && !policy.allowedHosts.includes('*')) {
    const name = hostName(host);
    if (!isLoopback(name) && !policy.allowedHosts.some((h) => h.toLowerCase() === name)) {
      throw new HttpError(403, `the Host header '${host}' is not a loopback name; this server listens on ${policy.bindHost}. ` +
        'If a proxy or a name of yours forwards to it, start it with --allowed-hosts NAME.', { code: 'host_not_allowed' });
    }
  }
  const origin = req.headers.origin;
  if (origin === undefined) return null;
  const normal = (o: string) => o.trim().toLowerCase().replace(/\/+$/, '');
  if (policy.allowedOrigins.includes('*') || policy.allowedOrigins.some((o) => normal(o) === normal(origin))) return origin;
  let sameOrigin = false;
  try {
    sameOrigin = new URL(origin).host.toLowerCase() === host.toLowerCase();
  } catch {
    // `null` or a malformed origin: not the server's own.
  }
  if (sameOrigin) return null;
  throw new HttpError(403, `requests from the web origin '${origin}' are not allowed. ` +
    'To let a page call this server, start it with --allowed-origins ORIGIN (or * for any).', { code: 'origin_not_allowed' });
}

/** CORS headers for an allowed cross-origin request (and its preflight). */
export function corsHeaders(origin: string, req: http.IncomingMessage, preflight: boolean): Record<string, string> {
  const h: Record<string, string> = { 'access-control-allow-origin': origin, vary: 'Origin' };
  if (preflight) {
    h['access-control-allow-methods'] = 'GET, POST, OPTIONS';
    h['access-control-allow-headers'] = String(req.headers['access-control-request-headers'] ?? 'authorization, content-type');
    h['access-control-max-age'] = '600';
  }
  return h;
}

/** Bodies are JSON only when they say so: `application/json` or a `+json` type. */
export function checkJsonContentType(req: http.IncomingMessage): void {
  const type = req.headers['content-type'];
  if (type !== undefined && /^\s*application\/([\w.-]+\+)?json\s*(;|$)/i.test(type)) return;
  throw new HttpError(415, `the request body must be JSON with 'Content-Type: application/json'` +
    `${type === undefined ? ' (the request has no Content-Type)' : `, not '${type}'`}.`, { code: 'unsupported_media_type' });
}

/** The routes metrics label requests with; anything else is counted as `unmatched`. */
const ROUTES = ['/health', '/metrics', '/v1/models', '/v1/chat/completions', '/v1/completions', '/v1/responses'];

export function routeLabel(route: string): string {
  if (ROUTES.includes(route)) return route;
  if (route.startsWith('/v1/models/')) return '/v1/models/{id}';
  return 'unmatched';
}
