/**
 * CORS for the handlers: allowed origins, credentials, exposed headers (the cursor headers), and
 * preflight answers.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** CORS options, shared by the handlers. */
export interface CorsOptions {
  /**
   * Allowed origins: `'*'`, a list of exact origins, or a predicate.
   * @defaultValue `'*'`
   */
  readonly origin?: '*' | readonly string[] | ((origin: string) => boolean);
  /**
   * Send `Access-Control-Allow-Credentials: true` (never with a `'*'` origin: the request's origin is echoed instead).
   * @defaultValue `false`
   */
  readonly credentials?: boolean;
  /**
   * How long a browser may cache a preflight answer, in seconds.
   * @defaultValue 600
   */
  readonly maxAgeSeconds?: number;
}

/**
 * Adds CORS headers for an allowed origin. Answers a preflight (`OPTIONS` with
 * `Access-Control-Request-Method`) with 204 and returns `true` when it did.
 *
 * @param methods - Methods the endpoint takes.
 * @param allowHeaders - Request headers the endpoint reads (e.g. `Last-Event-ID`).
 * @param exposeHeaders - Response headers scripts may read (e.g. the cursor header).
 */
export function applyCors(
  req: IncomingMessage,
  res: ServerResponse,
  options: CorsOptions | undefined,
  methods: readonly string[],
  allowHeaders: readonly string[] = [],
  exposeHeaders: readonly string[] = [],
): boolean {
  if (options === undefined) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  const rule = options.origin ?? '*';
  if (!originAllowed(rule, origin)) return false;
  const echo = rule !== '*' || options.credentials === true;
  res.setHeader('access-control-allow-origin', echo ? origin : '*');
  if (echo) res.appendHeader('vary', 'Origin');
  if (options.credentials === true) res.setHeader('access-control-allow-credentials', 'true');
  if (exposeHeaders.length > 0) res.setHeader('access-control-expose-headers', exposeHeaders.join(', '));
  if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
    res.setHeader('access-control-allow-methods', methods.join(', '));
    if (allowHeaders.length > 0) res.setHeader('access-control-allow-headers', allowHeaders.join(', '));
    res.setHeader('access-control-max-age', String(options.maxAgeSeconds ?? 600));
    res.writeHead(204);
    res.end();
    return true;
  }
  return false;
}

/** Whether a {@link CorsOptions.origin} rule lets `origin` in (a predicate must answer `true`). @internal */
export function originAllowed(rule: NonNullable<CorsOptions['origin']>, origin: string): boolean {
  return rule === '*' || (typeof rule === 'function' ? rule(origin) === true : rule.includes(origin));
}
