/**
 * Typed errors. Every error patchbay throws or rejects with is a {@link PatchbayError} with a
 * stable string `code`; callers branch on `code` (or on the subclass), never on the message.
 * `docs/errors.md` lists every code with how to fix it, and a test keeps that page and
 * {@link ErrorCodes} equal.
 *
 * `instanceof` works across copies of the library (an ESM and a CJS copy loaded side by side):
 * each error carries a brand under a global symbol, and the classes check the brand.
 *
 * @module
 */

const kBrands = Symbol.for('patchbay.error.brands');

/**
 * Every error code patchbay uses, with the class that carries it.
 * The values are stable: they are part of the public API.
 */
export const ErrorCodes = {
  /** A method was called on an object after `close()` or `destroy()`. */
  CLOSED: 'PB_ERR_CLOSED',
  /** A wait ran out of time. */
  TIMEOUT: 'PB_ERR_TIMEOUT',
  /** An argument or option has the wrong type or an out-of-range value. */
  INVALID_ARGUMENT: 'PB_ERR_INVALID_ARGUMENT',
  /** A call does not fit the object's current state (for example, watching one operation twice). */
  INVALID_STATE: 'PB_ERR_INVALID_STATE',
  /** A cursor or message id is malformed, or was not issued by this log. */
  INVALID_CURSOR: 'PB_ERR_INVALID_CURSOR',
  /** An `authorize` hook refused the call. */
  FORBIDDEN: 'PB_ERR_FORBIDDEN',
  /** No such route, resource or topic. */
  NOT_FOUND: 'PB_ERR_NOT_FOUND',
  /** The HTTP method is not supported on this resource. */
  METHOD_NOT_ALLOWED: 'PB_ERR_METHOD_NOT_ALLOWED',
  /** A request body is larger than the limit. */
  BODY_TOO_LARGE: 'PB_ERR_BODY_TOO_LARGE',
  /** A request body's media type is not one the endpoint takes. */
  UNSUPPORTED_MEDIA_TYPE: 'PB_ERR_UNSUPPORTED_MEDIA_TYPE',
  /** A waiting operation was canceled before it could complete. */
  CANCELED: 'PB_ERR_CANCELED',
  /** A peer sent bytes or a request that break the protocol. */
  PROTOCOL: 'PB_ERR_PROTOCOL',
  /** A bounded buffer or queue is full and its policy refuses more. */
  OVERFLOW: 'PB_ERR_OVERFLOW',
  /** The peer is not reachable: it went away with the call in flight, or its supervisor gave up. */
  UNAVAILABLE: 'PB_ERR_UNAVAILABLE',
  /** The peer's handler failed; the peer's own code travels in `remoteCode`. */
  REMOTE: 'PB_ERR_REMOTE',
  /** A server answered a client with an HTTP status the client does not retry. */
  HTTP_STATUS: 'PB_ERR_HTTP_STATUS',
  /** A job polled by a client ended failed (or expired) on the server. */
  JOB_FAILED: 'PB_ERR_JOB_FAILED',
  /** A streamed answer stopped before its end record: it was cut, not finished. */
  INCOMPLETE: 'PB_ERR_INCOMPLETE',
  /** The resource existed but is gone for good: a finished job whose result expired. */
  GONE: 'PB_ERR_GONE',
  /** An `Idempotency-Key` was reused with a different request. */
  IDEMPOTENCY_CONFLICT: 'PB_ERR_IDEMPOTENCY_CONFLICT',
  /** The server holds as much as it may (live jobs, stored results); retry later. */
  CAPACITY: 'PB_ERR_CAPACITY',
  /** The client asked again sooner than it was told to (`Retry-After`). */
  RATE_LIMITED: 'PB_ERR_RATE_LIMITED',
  /** A failure of the server's own, not caused by the request (its details stay in the server's logs). */
  INTERNAL: 'PB_ERR_INTERNAL',
  /** The process that ran a job died before the job ended (a job shared through a store). */
  WORKER_LOST: 'PB_ERR_WORKER_LOST',
} as const;

/** One of the values of {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Options every patchbay error accepts. */
export interface PatchbayErrorOptions {
  /** The underlying error, kept as the standard `Error.cause`. */
  readonly cause?: unknown;
}

/**
 * The base class of every error patchbay throws or rejects with.
 *
 * @example
 * ```ts
 * try {
 *   await purgatory.wait('topic', { timeoutMs: 1000 });
 * } catch (err) {
 *   if (err instanceof PatchbayError && err.code === 'PB_ERR_CLOSED') return;
 *   throw err;
 * }
 * ```
 */
export class PatchbayError extends Error {
  /** The brand checked by `instanceof`; each subclass sets its own. @internal */
  static readonly brand: string = 'PatchbayError';

  /** A stable, machine-readable code, one of {@link ErrorCodes}. */
  readonly code: ErrorCode;

  /** @internal */
  declare readonly [kBrands]: readonly string[];

  constructor(code: ErrorCode, message: string, options?: PatchbayErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    const brands: string[] = [];
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c)) {
      if (Object.hasOwn(c, 'brand')) brands.push((c as typeof PatchbayError).brand);
    }
    Object.defineProperty(this, kBrands, { value: brands, enumerable: false });
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, configurable: true });
  }

  /** Brand check, so errors from another copy of the library still match. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const brands = (value as { [kBrands]?: unknown })[kBrands];
    if (Array.isArray(brands) && Object.hasOwn(this, 'brand')) return brands.includes(this.brand);
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

/** A method was called after `close()` or `destroy()`. Code `PB_ERR_CLOSED`. */
export class ClosedError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'ClosedError';
  constructor(message = 'The object is closed', options?: PatchbayErrorOptions) {
    super(ErrorCodes.CLOSED, message, options);
  }
}

/** A wait ran out of time. Code `PB_ERR_TIMEOUT`. */
export class TimeoutError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'TimeoutError';
  constructor(message = 'The operation timed out', options?: PatchbayErrorOptions) {
    super(ErrorCodes.TIMEOUT, message, options);
  }
}

/** An argument or option has the wrong type or value. Code `PB_ERR_INVALID_ARGUMENT`. */
export class InvalidArgumentError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'InvalidArgumentError';
  constructor(message: string, options?: PatchbayErrorOptions) {
    super(ErrorCodes.INVALID_ARGUMENT, message, options);
  }
}

/** A call does not fit the object's current state. Code `PB_ERR_INVALID_STATE`. */
export class InvalidStateError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'InvalidStateError';
  constructor(message: string, options?: PatchbayErrorOptions) {
    super(ErrorCodes.INVALID_STATE, message, options);
  }
}

/** A waiting operation was canceled before it completed. Code `PB_ERR_CANCELED`. */
export class CanceledError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'CanceledError';
  constructor(message = 'The operation was canceled', options?: PatchbayErrorOptions) {
    super(ErrorCodes.CANCELED, message, options);
  }
}

/** A cursor or id that is malformed, or that no log of this backend can have issued. Code `PB_ERR_INVALID_CURSOR`. */
export class InvalidCursorError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'InvalidCursorError';
  constructor(message: string, options?: PatchbayErrorOptions) {
    super(ErrorCodes.INVALID_CURSOR, message, options);
  }
}

/** A peer broke the protocol. Code `PB_ERR_PROTOCOL`. */
export class ProtocolError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'ProtocolError';
  constructor(message: string, options?: PatchbayErrorOptions) {
    super(ErrorCodes.PROTOCOL, message, options);
  }
}

/** A bounded buffer or queue is full and its policy refuses more. Code `PB_ERR_OVERFLOW`. */
export class OverflowError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'OverflowError';
  constructor(message: string, options?: PatchbayErrorOptions) {
    super(ErrorCodes.OVERFLOW, message, options);
  }
}

/** An `authorize` hook refused the call. Code `PB_ERR_FORBIDDEN`. */
export class ForbiddenError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'ForbiddenError';
  constructor(message = 'Not allowed', options?: PatchbayErrorOptions) {
    super(ErrorCodes.FORBIDDEN, message, options);
  }
}

/** No such route, resource or topic. Code `PB_ERR_NOT_FOUND`. */
export class NotFoundError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'NotFoundError';
  constructor(message = 'Not found', options?: PatchbayErrorOptions) {
    super(ErrorCodes.NOT_FOUND, message, options);
  }
}

/** The HTTP method is not supported here. Code `PB_ERR_METHOD_NOT_ALLOWED`. */
export class MethodNotAllowedError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'MethodNotAllowedError';
  /** The methods that are allowed, for the `Allow` header. */
  readonly allow: readonly string[];
  constructor(method: string, allow: readonly string[], options?: PatchbayErrorOptions) {
    super(ErrorCodes.METHOD_NOT_ALLOWED, `Method ${method} is not allowed here; use ${allow.join(', ')}`, options);
    this.allow = allow;
  }
}

/** A request body is larger than the limit. Code `PB_ERR_BODY_TOO_LARGE`. */
export class BodyTooLargeError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'BodyTooLargeError';
  constructor(limitBytes: number, options?: PatchbayErrorOptions) {
    super(ErrorCodes.BODY_TOO_LARGE, `The request body is larger than the limit of ${limitBytes} bytes`, options);
  }
}

/** A request body's media type is not one the endpoint takes. Code `PB_ERR_UNSUPPORTED_MEDIA_TYPE`. */
export class UnsupportedMediaTypeError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'UnsupportedMediaTypeError';
  constructor(message: string, options?: PatchbayErrorOptions) {
    super(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, message, options);
  }
}

/** Options of {@link HttpStatusError}. */
export interface HttpStatusErrorOptions extends PatchbayErrorOptions {
  /** The answer's `Retry-After`, in ms. */
  readonly retryAfterMs?: number;
}

/**
 * A server answered a patchbay client with an HTTP status the client does not retry (a 4xx other
 * than 408 and 429, or any status the protocol has no place for). Code `PB_ERR_HTTP_STATUS`.
 */
export class HttpStatusError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'HttpStatusError';
  /** The HTTP status the server answered. */
  readonly status: number;
  /** The `code` of the server's JSON error body (`{ "error": { "code", "message" } }`), if it had one. */
  readonly serverCode: string | undefined;
  /** The answer's `Retry-After`, in ms, if it had a valid one. */
  readonly retryAfterMs: number | undefined;
  constructor(status: number, message: string, serverCode?: string, options?: HttpStatusErrorOptions) {
    super(ErrorCodes.HTTP_STATUS, message, options);
    this.status = status;
    this.serverCode = serverCode;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * A job that a client polled ended `failed` or `expired` on the server. Code `PB_ERR_JOB_FAILED`.
 */
export class JobFailedError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'JobFailedError';
  /** The job's id. */
  readonly jobId: string;
  /** The job's final state: `failed`, or `expired` when its result was gone before it was read. */
  readonly state: 'failed' | 'expired';
  /** The error the server reported for the job (its JSON, as sent), if any. */
  readonly jobError: unknown;
  constructor(jobId: string, state: 'failed' | 'expired', message: string, jobError?: unknown, options?: PatchbayErrorOptions) {
    super(ErrorCodes.JOB_FAILED, message, options);
    this.jobId = jobId;
    this.state = state;
    this.jobError = jobError;
  }
}

/**
 * The peer is not reachable: the connection was lost with a request in flight, a supervisor
 * gave up restarting its sidecar, or Redis (the Redis backend) is unreachable. Code
 * `PB_ERR_UNAVAILABLE`; HTTP 503, with `Retry-After` when `retryAfterSeconds` is set.
 */
export class UnavailableError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'UnavailableError';
  /** When to try again, in whole seconds, if known. */
  readonly retryAfterSeconds: number | undefined;
  constructor(message = 'The peer is unavailable', options?: RetryAfterErrorOptions) {
    super(ErrorCodes.UNAVAILABLE, message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** Options of {@link RemoteError}. */
export interface RemoteErrorOptions extends PatchbayErrorOptions {
  /** The code the peer's error carried (any string), for example `PB_ERR_INVALID_ARGUMENT`. */
  readonly remoteCode?: string;
}

/**
 * The peer's handler threw or rejected while answering a request. The peer's message is this
 * error's message; its code is {@link RemoteError.remoteCode}. Code `PB_ERR_REMOTE`.
 */
export class RemoteError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'RemoteError';
  /** The code the peer's error carried, or `PB_ERR_REMOTE` when it carried none. */
  readonly remoteCode: string;
  constructor(message: string, options?: RemoteErrorOptions) {
    super(ErrorCodes.REMOTE, message, options);
    this.remoteCode = typeof options?.remoteCode === 'string' ? options.remoteCode : ErrorCodes.REMOTE;
  }
}
/** The resource existed but is gone for good (HTTP 410), such as a job whose result expired. Code `PB_ERR_GONE`. */
export class GoneError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'GoneError';
  constructor(message = 'Gone', options?: PatchbayErrorOptions) {
    super(ErrorCodes.GONE, message, options);
  }
}

/**
 * An `Idempotency-Key` was sent again with a different request (another body), so it cannot be a
 * retry of the first (HTTP 422). Code `PB_ERR_IDEMPOTENCY_CONFLICT`.
 */
export class IdempotencyConflictError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'IdempotencyConflictError';
  constructor(message = 'The Idempotency-Key was already used with a different request', options?: PatchbayErrorOptions) {
    super(ErrorCodes.IDEMPOTENCY_CONFLICT, message, options);
  }
}

/** Options of {@link CapacityError} and {@link RateLimitedError}. */
export interface RetryAfterErrorOptions extends PatchbayErrorOptions {
  /** When to try again, in whole seconds: sent as `Retry-After` by `sendError`. */
  readonly retryAfterSeconds?: number;
}

/**
 * The server holds as much as it may (live jobs, stored results) and takes nothing more for now
 * (HTTP 503 with `Retry-After`). Code `PB_ERR_CAPACITY`.
 */
export class CapacityError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'CapacityError';
  /** When to try again, in whole seconds, if known. */
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, options?: RetryAfterErrorOptions) {
    super(ErrorCodes.CAPACITY, message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/**
 * The client asked again sooner than the `Retry-After` it was given (HTTP 429 with
 * `Retry-After`). Code `PB_ERR_RATE_LIMITED`.
 */
export class RateLimitedError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'RateLimitedError';
  /** When to try again, in whole seconds, if known. */
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, options?: RetryAfterErrorOptions) {
    super(ErrorCodes.RATE_LIMITED, message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/**
 * A streamed answer (NDJSON) stopped before its end record: the connection was cut, so what
 * arrived is not the whole answer. Code `PB_ERR_INCOMPLETE`.
 */
export class IncompleteStreamError extends PatchbayError {
  /** @internal */
  static override readonly brand: string = 'IncompleteStreamError';
  /** The `seq` to resume from (the last record's `seq` + 1, or where the stream started). */
  readonly next: number;
  constructor(next: number, message = `The stream was cut before its end record; resume from ${next}`, options?: PatchbayErrorOptions) {
    super(ErrorCodes.INCOMPLETE, message, options);
    this.next = next;
  }
}
