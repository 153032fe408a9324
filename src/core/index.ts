/**
 * What every primitive shares: the clock, typed errors, the lifecycle and AbortSignal helpers.
 *
 * @module
 */
export { abortReason, onAbort, throwIfAborted } from './abort.js';
export { ManualClock, realClock, type Clock, type ClockTimer, type ManualTimerInfo, type SetTimerOptions } from './clock.js';
export {
  BodyTooLargeError,
  CanceledError,
  CapacityError,
  ClosedError,
  ErrorCodes,
  ForbiddenError,
  GoneError,
  HttpStatusError,
  IdempotencyConflictError,
  IncompleteStreamError,
  InvalidArgumentError,
  InvalidCursorError,
  InvalidStateError,
  JobFailedError,
  MethodNotAllowedError,
  NotFoundError,
  OverflowError,
  PatchbayError,
  ProtocolError,
  RateLimitedError,
  RemoteError,
  TimeoutError,
  UnavailableError,
  UnsupportedMediaTypeError,
  type ErrorCode,
  type HttpStatusErrorOptions,
  type PatchbayErrorOptions,
  type RetryAfterErrorOptions,
  type RemoteErrorOptions,
} from './errors.js';
export { assertJsonValue, DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH_LIMIT, parseJson, type JsonLimits } from './json.js';
export { Resource, type LifecycleState } from './lifecycle.js';
export type { BackoffOptions } from './backoff.js';
