/**
 * Answers shared by every handler: JSON bodies, and errors as JSON with their code, mapped to an
 * HTTP status by one table.
 *
 * @module
 */
import type { ServerResponse } from 'node:http';
import { CapacityError, ErrorCodes, MethodNotAllowedError, PatchbayError, RateLimitedError, UnavailableError, type ErrorCode } from '../core/errors.js';

/** HTTP status for each error code. An error without a code (a bug) answers 500. */
export const errorStatus: Readonly<Record<ErrorCode, number>> = Object.freeze({
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.INVALID_CURSOR]: 400,
  [ErrorCodes.PROTOCOL]: 400,
  [ErrorCodes.FORBIDDEN]: 403,
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.METHOD_NOT_ALLOWED]: 405,
  [ErrorCodes.INVALID_STATE]: 409,
  [ErrorCodes.BODY_TOO_LARGE]: 413,
  [ErrorCodes.UNSUPPORTED_MEDIA_TYPE]: 415,
  [ErrorCodes.OVERFLOW]: 429,
  [ErrorCodes.CANCELED]: 499,
  [ErrorCodes.CLOSED]: 503,
  [ErrorCodes.TIMEOUT]: 504,
  [ErrorCodes.GONE]: 410,
  [ErrorCodes.IDEMPOTENCY_CONFLICT]: 422,
  [ErrorCodes.CAPACITY]: 503,
  [ErrorCodes.RATE_LIMITED]: 429,
  [ErrorCodes.HTTP_STATUS]: 502,
  [ErrorCodes.JOB_FAILED]: 500,
  [ErrorCodes.INCOMPLETE]: 502,
  [ErrorCodes.UNAVAILABLE]: 503,
  [ErrorCodes.REMOTE]: 502,
  [ErrorCodes.INTERNAL]: 500,
  [ErrorCodes.WORKER_LOST]: 500,
});

/** The one code a status stands for, where it has one (the reverse of {@link errorStatus}). */
const CODE_FOR_STATUS: Readonly<Record<number, ErrorCode>> = Object.freeze({
  403: ErrorCodes.FORBIDDEN,
  404: ErrorCodes.NOT_FOUND,
  405: ErrorCodes.METHOD_NOT_ALLOWED,
  410: ErrorCodes.GONE,
  413: ErrorCodes.BODY_TOO_LARGE,
  415: ErrorCodes.UNSUPPORTED_MEDIA_TYPE,
  429: ErrorCodes.RATE_LIMITED,
  503: ErrorCodes.UNAVAILABLE,
});

/**
 * The code of an error answer that something other than patchbay made (a framework, tus): the
 * status's own code where it has one, `PB_ERR_INTERNAL` for a 5xx other than 503, and `fallback`
 * for the rest (a 400, a 409, a 412).
 * @internal
 */
export function codeForStatus(status: number, fallback: ErrorCode = ErrorCodes.PROTOCOL): ErrorCode {
  if (status >= 500 && status !== 503) return ErrorCodes.INTERNAL;
  return CODE_FOR_STATUS[status] ?? fallback;
}

/** The JSON body of an error answer. */
export interface ErrorBody {
  /** The error. */
  readonly error: {
    /** A stable code from `docs/errors.md`, or `PB_ERR_INTERNAL` for an unexpected failure. */
    readonly code: string;
    /** What went wrong, for a person. */
    readonly message: string;
  };
}

/** Headers every answer from a poll-style endpoint carries. @internal */
export const noStore = { 'cache-control': 'no-store' } as const;

/**
 * Sends `body` as JSON with `status`. Does nothing if the response has already ended or its
 * socket is gone.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string | number>): void {
  if (res.writableEnded || res.destroyed) return;
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { ...noStore, ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': payload.length });
  res.end(payload);
}

/**
 * Answers an error as JSON: a {@link PatchbayError} with its code and the status from
 * {@link errorStatus}; anything else as 500 `PB_ERR_INTERNAL` without its message (which may
 * hold internals). Headers already sent: the response is destroyed instead.
 */
export function sendError(res: ServerResponse, error: unknown, headers?: Record<string, string | number>): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.destroy(error instanceof Error ? error : undefined);
    return;
  }
  const known = error instanceof PatchbayError;
  const status = known ? (errorStatus[error.code] ?? 500) : 500;
  const extra: Record<string, string | number> = { ...headers };
  if (error instanceof MethodNotAllowedError) extra['allow'] = error.allow.join(', ');
  if ((error instanceof CapacityError || error instanceof RateLimitedError || error instanceof UnavailableError) && error.retryAfterSeconds !== undefined) {
    extra['retry-after'] = String(error.retryAfterSeconds);
  }
  const body: ErrorBody = {
    error: known ? { code: error.code, message: error.message } : { code: ErrorCodes.INTERNAL, message: 'Internal server error' },
  };
  sendJson(res, status, body, extra);
}
