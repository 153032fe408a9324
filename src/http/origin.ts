/**
 * Where a browser request comes from. A browser sends `Origin` with every cross-site `POST` and
 * every WebSocket upgrade, and sends the user's cookies with both: an endpoint that acts on
 * cookies must refuse a page of another site. Requests without `Origin` come from servers and
 * tools, not from a page, and are not a cross-site risk.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import { type CorsOptions, originAllowed } from './cors.js';
import { firstHeader } from './headers.js';

/**
 * Whether a request may act for a browser user: it has no `Origin` (a server, a tool), or its
 * `Origin` is this server's own (its host and port equal the `Host` header, or HTTP/2's
 * `:authority`), or `allowed` lets it in (a {@link CorsOptions.origin} rule: `'*'`, a list of
 * exact origins, or a predicate that answers `true`). `Origin: null` (a sandboxed frame, a
 * `file:` page) is never this server's own. Behind a proxy that rewrites `Host` (nginx sends its
 * upstream's name by default), same-site pages no longer match: forward the original `Host`
 * (`proxy_set_header Host $host`), or list your origins in `allowed`.
 *
 * @example
 * ```ts
 * new WsHandler({ broker, authorize: { upgrade: (req) => isAllowedOrigin(req) && contextOf(req) } });
 * ```
 */
export function isAllowedOrigin(req: IncomingMessage, allowed?: CorsOptions['origin']): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host ?? firstHeader(req.headers[':authority']); // HTTP/2 sends :authority, not Host
  if (isOwnOrigin(origin, host)) return true;
  return allowed !== undefined && originAllowed(allowed, origin);
}

/** Same scheme-relative host and port: `https://a.example` is the host `a.example` (port 443 implied). */
function isOwnOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined || host === '' || origin === 'null') return false;
  try {
    const o = new URL(origin);
    return o.host === new URL(`${o.protocol}//${host}`).host;
  } catch {
    return false;
  }
}
