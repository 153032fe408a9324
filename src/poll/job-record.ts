/**
 * The state of one job as a registry holds it: {@link JobRecord}, the snapshot built from it
 * ({@link PollSnapshot}), and the timer that ends its timeout or its TTL ({@link JobTimer}).
 *
 * A record is the one mutable place a job's state lives in; everything else reads it: the
 * {@link PollJob} view (one per record, cached on it, so a read allocates nothing), the HTTP
 * handler (through that view), and the waiters held on the record's purgatory key. It is its
 * own piece because both registries (in this process, and shared through a `JobStore`) keep
 * exactly the same records: they differ in who decides a change, not in what a job is.
 *
 * @module
 * @internal
 */
import { parseJson } from '../core/json.js';
import type { PollJobError, PollJobState, PollProgress, JobUpdate } from '../core/jobs.js';
import { DelayedOperation } from '../purgatory/index.js';
import type { PollJob, PollJobFunction } from './poll-job.js';

/**
 * One atomic view of a job: the body of its HTTP status resource, `{ id, state, progress,
 * result?, error? }`, plus the version its `ETag` names.
 */
export interface PollSnapshot<R = unknown> {
  /** The job's id: 16 URL-safe characters, unguessable. */
  readonly id: string;
  /** Its state. */
  readonly state: PollJobState;
  /** The last progress the job reported, or `null`. */
  readonly progress: PollProgress | null;
  /** The result (a fresh copy, parsed from the stored JSON), once `succeeded`. */
  readonly result?: R;
  /** What went wrong, once `failed`. */
  readonly error?: PollJobError;
  /** Bumped by every change of state or progress; the HTTP `ETag` is `"<version>"`. */
  readonly version: number;
}

/**
 * The state of one job, shared by its {@link PollJob} views.
 * @internal
 */
export class JobRecord {
  state: PollJobState = 'pending';
  progress: PollProgress | null = null;
  /** The result as JSON text, once succeeded (dropped on expiry). */
  resultJson: string | undefined = undefined;
  error: PollJobError | undefined = undefined;
  version = 1;
  startedAt = Number.NaN;
  finishedAt = Number.NaN;
  fn: PollJobFunction | null;
  controller: AbortController | null = null;
  /** The pending queue's links. */
  qPrev: JobRecord | null = null;
  qNext: JobRecord | null = null;
  queued = false;
  inFlight = false;
  /** The timeout while running, then the TTL. */
  timer: JobTimer | null = null;
  /** Resolvers of `done()`. */
  settle: ((snapshot: PollSnapshot) => void)[] | null = null;
  /** The view `get`/`lookup` return, made on first read. */
  view: PollJob | undefined = undefined;
  /** What the code serving the job keeps with it ({@link PollJob.attachment}). */
  attachment: unknown = undefined;
  /** Shared registry: the job runs in this registry (else this record is a copy of another's job). */
  owned = true;
  /** Shared registry: progress not written yet. */
  wantProgress: PollProgress | undefined = undefined;
  /** Shared registry: the outcome not written yet. */
  outcome: JobUpdate | undefined = undefined;
  /** Shared registry: a write loop runs for this job. */
  writing = false;
  /** Shared registry: a re-read is in flight, and whether another was asked for meanwhile. */
  refreshing = false;
  refreshAgain = false;
  /** Shared registry: the abort reason of a cancel asked here. */
  cancelReason: unknown = undefined;
  constructor(
    readonly id: string,
    /** The purgatory key of this job's waiters. */
    readonly key: string,
    fn: PollJobFunction | null,
    readonly createdAt: number,
    readonly timeoutMs: number,
    readonly ttlMs: number,
    readonly idempotencyKey: string | undefined,
    readonly fingerprint: string | undefined,
  ) {
    this.fn = fn;
  }
}

/** True while a job has no outcome yet (`pending` or `running`). @internal */
export function isLive(state: PollJobState): boolean {
  return state === 'pending' || state === 'running';
}

/** True for the three outcomes. @internal */
export function isOutcome(state: PollJobState): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'canceled';
}

/** Builds the snapshot of a record. @internal */
export function snapshotOf<R>(rec: JobRecord): PollSnapshot<R> {
  const s: { -readonly [K in keyof PollSnapshot<R>]: PollSnapshot<R>[K] } = { id: rec.id, state: rec.state, progress: rec.progress, version: rec.version };
  // The JSON may come from a job store (Redis): read as untrusted input.
  if (rec.resultJson !== undefined) s.result = parseJson(rec.resultJson, { what: 'A stored job result' }) as R;
  if (rec.error !== undefined) s.error = rec.error;
  return s;
}

/** A {@link JobTimer} that ends a running job's timeout. @internal */
export const TIMEOUT = 0;
/** A {@link JobTimer} that ends a finished job's TTL. @internal */
export const TTL = 1;

/** @internal */
export interface TimerHost {
  /** Called when a timer expires. */
  fire(timer: JobTimer): void;
}

/** A job's timeout or TTL, as a purgatory operation that only ever expires. @internal */
export class JobTimer extends DelayedOperation {
  constructor(
    readonly host: TimerHost,
    readonly rec: JobRecord,
    readonly kind: number,
    timeoutMs: number,
  ) {
    super(timeoutMs);
  }
  override tryComplete(): boolean {
    return false;
  }
  onComplete(): void {}
  override onExpiration(): void {
    this.host.fire(this);
  }
}
