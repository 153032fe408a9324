/**
 * What every primitive shares: the clock, typed errors, the lifecycle and AbortSignal helpers.
 *
 * @module
 */
export { abortReason, onAbort, throwIfAborted } from './abort.js';
export { ManualClock, realClock, type Clock, type ClockTimer, type ManualTimerInfo, type SetTimerOptions } from './clock.js';
export {
  CancelledError,
  ClosedError,
  ErrorCodes,
  ForbiddenError,
  InvalidArgumentError,
  InvalidStateError,
  OverflowError,
  PatchbayError,
  ProtocolError,
  TimeoutError,
  type ErrorCode,
  type PatchbayErrorOptions,
} from './errors.js';
export { Resource, type LifecycleState } from './lifecycle.js';
