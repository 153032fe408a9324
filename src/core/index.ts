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
  ClosedError,
  ErrorCodes,
  ForbiddenError,
  HttpStatusError,
  InvalidArgumentError,
  InvalidStateError,
  JobFailedError,
  MethodNotAllowedError,
  NotFoundError,
  OverflowError,
  PatchbayError,
  ProtocolError,
  TimeoutError,
  UnsupportedMediaTypeError,
  type ErrorCode,
  type PatchbayErrorOptions,
} from './errors.js';
export { Resource, type LifecycleState } from './lifecycle.js';
