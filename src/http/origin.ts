/**
 * Where a browser request comes from. A browser sends `Origin` with every cross-site `POST` and
 * every WebSocket upgrade, and sends the user's cookies with both: an endpoint that acts on
 * cookies must refuse a page of another site. Requests without `Origin` come from servers and
 * tools, not from a page, and are not a cross-site risk.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import type { CorsOptions } from './cors.js';

/**
 * Whether a request may act for a browser user: it has no `Origin` (a server, a tool), or its
 * `Origin` is this server's own (its host and port equal the `Host` header), or `allowed` lets
 * it in (a {@link CorsOptions.origin} rule: `'*'`, a list of exact origins, or a predicate).
 * `Origin: null` (a sandboxed frame, a `file:` page) is never this server's own.
 *
 * @example
 * ```ts
 * new WsHandler({ broker, authorize: { upgrade: (req) => isAllowedOrigin(req) && contextOf(req) } });
 * ```
 */
export function isAllowedOrigin(req: IncomingMessage, allowed?: CorsOptions['origin']): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  if (isOwnOrigin(origin, req.headers.host)) return true;
  if (allowed === undefined) return false;
  return allowed === '*' || (typeof allowed === 'function' ? allowed(origin) === true : allowed.includes(origin));
}

function isOwnOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined || origin === 'null') return false;
  try {
    return new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
}
