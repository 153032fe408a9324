/**
 * What every primitive shares: the clock, typed errors, the lifecycle and AbortSignal helpers.
 *
 * @module
 */
export { abortReason, onAbort, throwIfAborted } from './abort.js';
export { ManualClock, realClock, type Clock, type ClockTimer, type ManualTimerInfo, type SetTimerOptions } from './clock.js';
export {
  BodyTooLargeError,
  CancelledError,
  CapacityError,
  ClosedError,
  ErrorCodes,
  ForbiddenError,
  GoneError,
  HttpStatusError,
  IdempotencyConflictError,
  IncompleteStreamError,
  InvalidArgumentError,
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
export { Resource, type LifecycleState } from './lifecycle.js';
