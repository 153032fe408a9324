/**
 * `patchbay/client`: fetch-based clients for patchbay's HTTP patterns. They import no Node
 * built-in, so they run in browsers, Deno, Bun and Node alike.
 *
 * - {@link LongPollClient}: long polling with cursors, retries and gap reports, as an async iterator.
 * - {@link PollClient}: short polling of long jobs, with `Prefer: wait`, progress and cancel.
 * - {@link readJsonLines} and {@link fetchJsonLines}: streamed NDJSON answers, resumed after a cut.
 * - {@link SseClient}: Server-Sent Events on fetch, with headers, `Last-Event-ID` resume, backoff
 *   and patchbay's gap and stop events, as an async iterator.
 *
 * Errors are the library's typed errors ({@link HttpStatusError}, {@link JobFailedError}, ...),
 * re-exported here so a browser bundle needs only this entry point.
 *
 * @module patchbay/client
 */
export {
  LongPollClient,
  type LongPollBatch,
  type LongPollClientOptions,
  type LongPollGap,
  type LongPollMessage,
  type LongPollRetry,
} from './long-poll-client.js';
export {
  isFinalState,
  PollClient,
  type JobProgress,
  type JobRead,
  type JobRef,
  type JobState,
  type JobStatus,
  type PollClientOptions,
  type StartOptions,
  type PollClientWaitOptions,
} from './poll-client.js';
export {
  fetchJsonLines,
  readJsonLines,
  type FetchJsonLinesOptions,
  type JsonLine,
  type JsonLinesEnd,
  type ReadJsonLinesOptions,
} from './json-lines.js';
export {
  SseClient,
  type SseClientOptions,
  type SseGap,
  type SseMessage,
  type SseRetry,
  type SseStopReason,
} from './sse-client.js';
export type { ClientTransportOptions, FetchLike, HeadersSource } from './transport.js';
export type { BackoffOptions } from '../core/backoff.js';
export {
  CanceledError,
  ClosedError,
  ErrorCodes,
  HttpStatusError,
  IncompleteStreamError,
  InvalidArgumentError,
  InvalidStateError,
  JobFailedError,
  OverflowError,
  PatchbayError,
  ProtocolError,
  RemoteError,
  TimeoutError,
  type ErrorCode,
  type HttpStatusErrorOptions,
  type PatchbayErrorOptions,
  type RemoteErrorOptions,
} from '../core/errors.js';
export type { PollJobState, PollProgress } from '../core/jobs.js';
export { ManualClock, realClock, type Clock, type ClockTimer, type ManualTimerInfo, type SetTimerOptions } from '../core/clock.js';
