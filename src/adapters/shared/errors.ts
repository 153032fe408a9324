/**
 * Errors the frameworks raise before a handler runs (a malformed path parameter, a content type
 * they refuse), turned into patchbay's JSON error shape, so every adapter answers bad input the
 * way the handlers do.
 *
 * @module
 */
import type { IncomingMessage } from 'node:http';
import { ErrorCodes, PatchbayError } from '../../core/index.js';
import { codeForStatus } from '../../http/internal.js';

/**
 * A {@link PatchbayError} as is; a framework's client error (a `status` or `statusCode` from 400
 * to 499, as `http-errors` and Fastify give them) as the PatchbayError of that status (another 4xx
 * as `PB_ERR_PROTOCOL`, a 400), with its message (frameworks write those for clients); anything else as is (a 500 whose message stays
 * hidden). @internal
 */
export function toPatchbayError(error: unknown): unknown {
  if (error instanceof PatchbayError || typeof error !== 'object' || error === null) return error;
  const e = error as { status?: unknown; statusCode?: unknown; message?: unknown };
  const status = typeof e.status === 'number' ? e.status : e.statusCode;
  if (typeof status !== 'number' || status < 400 || status > 499) return error;
  const code = status === 400 ? ErrorCodes.INVALID_ARGUMENT : codeForStatus(status);
  const message = typeof e.message === 'string' && e.message !== '' ? e.message : `HTTP ${status}`;
  return new PatchbayError(code, message, { cause: error });
}

/**
 * True when something (a body parser) has already read the request body that a handler needs:
 * reading it again would wait forever. @internal
 */
export function bodyAlreadyRead(req: IncomingMessage): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return false;
  return req.readableEnded || (req as { readableDidRead?: boolean }).readableDidRead === true;
}

/** The error for {@link bodyAlreadyRead}: a setup mistake, for the framework's error handling. @internal */
export function bodyReadError(): Error {
  return new Error(
    'patchbay: the request body was already read, most likely by a body-parsing middleware or validator. Mount patchbay routes before it, or exclude them from it: the handlers read the body themselves.',
  );
}
