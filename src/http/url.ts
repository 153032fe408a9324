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
