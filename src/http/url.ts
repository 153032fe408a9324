/**
 * The URL of a request, from its request target, without ever throwing a bare `TypeError`: a
 * target that is no URL (`GET //[`) is a client's mistake, answered `400`, not a `500`.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import { InvalidArgumentError } from '../core/errors.js';

/**
 * Parses a request's target (`req.url`) against a fixed origin: use `pathname` and
 * `searchParams`, never its host.
 *
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`, a `400`) when the target is not a URL.
 */
export function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch (cause) {
    throw new InvalidArgumentError('The request target is not a valid URL', { cause });
  }
}

/**
 * The query of a request (`req.url` after `?`). Never throws: what a request target holds, however
 * malformed, is only ever a query that may lack the parameters asked for.
 */
export function requestQuery(req: IncomingMessage): URLSearchParams {
  const url = req.url;
  const at = url === undefined ? -1 : url.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : url!.slice(at + 1));
}

/**
 * Decodes one percent-encoded path segment (a topic in `/lp/:topic`, say), or `undefined` when it
 * is not valid percent-encoding: `decodeURIComponent` throws then, and a throw in a request
 * listener is an uncaught exception that ends the process. Hand the result to a handler, which
 * answers a missing or invalid topic with `400`.
 *
 * @example
 * ```ts
 * const m = /^\/lp\/([^/?]+)/.exec(req.url ?? '');
 * if (m) void longPoll.handle(req, res, { topics: [decodePathSegment(m[1]!) ?? ''] });
 * ```
 */
export function decodePathSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
