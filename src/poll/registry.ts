/**
 * What every registry of long jobs does, written once: {@link JobRegistry}, the base of
 * `PollHandle` (jobs in this process) and `SharedPollHandle` (jobs shared through a
 * `JobStore`).
 *
 * ## Life of a job
 *
 * A start files the job as `pending` and returns its {@link PollJob}; `fn({ signal, progress })`
 * begins in a microtask (later when `concurrency` is reached), and the job is then `running`. It
 * ends in exactly one outcome: `succeeded` (with `fn`'s result), `failed` (`fn` threw or
 * rejected, its result was not JSON, or the job timeout passed) or `canceled` (by a cancel or
 * `close()`). The first outcome wins and nothing changes it: a result that arrives after a
 * cancel is dropped. Canceling and timing out abort the job's `signal`; cancellation is
 * cooperative, so a job that ignores its signal keeps its concurrency slot (and counts as live)
 * until `fn` settles.
 *
 * A finished job keeps its result for `ttlMs`, then becomes `expired`: its result is dropped, its
 * id is answered as gone ({@link GoneError}) for `goneMs`, then as unknown ({@link NotFoundError}).
 * Every change (state or progress) bumps the job's `version`, which is what an HTTP `ETag`
 * names and what waiters compare against.
 *
 * ## One registry, two deciders
 *
 * The two registries run their jobs the same way: the same records, pending queue, concurrency
 * slots, timeouts, TTLs, counters and waiters, all here. They differ in one thing, who decides a
 * change: a `PollHandle` decides alone and applies it at once; a `SharedPollHandle` writes
 * it to its store first and applies the store's answer, so two processes never give a job two
 * outcomes. That difference is a handful of steps (run a job, report progress, end it, cancel
 * it, find it), which this class leaves abstract and each registry writes its own way.
 *
 * Their surfaces follow from it. What means the same in both is here: `submit`, `lookup`,
 * `lookupByIdempotencyKey`, `cancelJob` and `waitForChange` (asynchronous, since a store is
 * asynchronous), `watch`, `stats`. What has a meaning in one of them only is on that one: the
 * synchronous `start`, `get`, `cancel` and `findByIdempotencyKey` of a `PollHandle`, which read
 * and change this process's memory and so answer at once. The HTTP handler branches once on
 * {@link JobRegistry.shared}: a status read of a local job is `jobs.get(id)`, which returns the
 * job's cached view with no promise and no allocation.
 *
 * ## Time
 *
 * One {@link Purgatory} drives every timer: TTLs, job timeouts and the waits of
 * {@link JobRegistry.waitForChange} (and of the HTTP handler's `Prefer: wait`), so there is one
 * Node timer however many jobs and waiters there are. Waiters are keyed by job and woken by the
 * change itself (`checkAndComplete`), never by polling. Expiry is never early: deadlines are
 * rounded up to the purgatory's tick.
 *
 * ## Bounds
 *
 * At most `maxLiveJobs` jobs are pending or running, and at most `maxStoredResults` jobs are kept
 * in all (live ones will become results): a start beyond either throws a {@link CapacityError}
 * and creates nothing. Results are kept as JSON text of at most `maxResultBytes`. Idempotency
 * keys live as long as their job, expired ids as small tombstones (at most `maxTombstones`).
 *
 * @module
 */
import { type Clock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import { CapacityError, ClosedError, GoneError, IdempotencyConflictError, InvalidArgumentError, NotFoundError, TimeoutError } from '../core/errors.js';
import type { PollJobError, PollProgress } from '../core/jobs.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { type DelayedOperation, Purgatory } from '../purgatory/index.js';
import { checkKey, ID_RE, MAX_MS, normalizeProgress, resultOf, serializeWith, timeoutOption } from './job-helpers.js';
import { isLive, isOutcome, JobRecord, JobTimer, type PollSnapshot, snapshotOf, type TimerHost, TIMEOUT, TTL } from './job-record.js';
import { type JobHost, PollJob, type PollJobContext, type PollJobDoneOptions, type PollJobFunction, recordOf } from './poll-job.js';

/** Options for `PollHandle.start` and {@link JobRegistry.submit}. */
export interface PollStartOptions {
  /**
   * Makes the start idempotent: while a job started with this key is kept (until it expires), a
   * start with the same key returns that job (`replayed: true`) instead of starting another.
   */
  readonly idempotencyKey?: string;
  /**
   * A digest of the request the key came with (the HTTP handler hashes the body). The same key
   * with another fingerprint throws {@link IdempotencyConflictError}. Without one, no check.
   */
  readonly fingerprint?: string;
  /**
   * This job's timeout in ms, from when it starts running.
   * @defaultValue {@link PollHandleOptions.timeoutMs}
   */
  readonly timeoutMs?: number;
  /**
   * How long this job's outcome is kept, in ms.
   * @defaultValue {@link PollHandleOptions.ttlMs}
   */
  readonly ttlMs?: number;
}

/** Options of a job registry: a `PollHandle`, and (with its store) a `SharedPollHandle`. */
export interface PollHandleOptions {
  /**
   * The time source of TTLs, timeouts and waits.
   * @defaultValue the real clock
   */
  readonly clock?: Clock;
  /**
   * The purgatory that holds timers and waiters. A shared one is not closed with the registry.
   * @defaultValue a new one on `clock` (10 ms tick), closed with the registry
   */
  readonly purgatory?: Purgatory;
  /**
   * How long a finished job's outcome is kept, in ms; then it expires (HTTP 410).
   * @defaultValue 600000 (10 minutes)
   */
  readonly ttlMs?: number;
  /**
   * How long an expired job's id is remembered as gone (410) before it is unknown (404), in ms.
   * @defaultValue 3600000 (1 hour)
   */
  readonly goneMs?: number;
  /**
   * Most expired ids remembered as gone; past it, the oldest are forgotten (404) early.
   * @defaultValue 10000
   */
  readonly maxTombstones?: number;
  /**
   * A job's timeout in ms, from when it starts running: past it the job fails with a
   * `TimeoutError` (`PB_ERR_TIMEOUT`) and its signal aborts. `Infinity`: none.
   * @defaultValue `Infinity`
   */
  readonly timeoutMs?: number;
  /**
   * Most jobs running at once; the rest wait `pending`, first in first out.
   * @defaultValue `Infinity`
   */
  readonly concurrency?: number;
  /**
   * Most jobs pending or running (including canceled ones whose function has not returned yet).
   * @defaultValue 1000
   */
  readonly maxLiveJobs?: number;
  /**
   * Most jobs kept in all, live ones included (each will become a stored result).
   * @defaultValue 10000
   */
  readonly maxStoredResults?: number;
  /**
   * Largest result, as JSON, in bytes; a larger one fails the job.
   * @defaultValue 1048576 (1 MiB)
   */
  readonly maxResultBytes?: number;
  /**
   * Include the stack in a failed job's {@link PollJobError}. Keep it off where clients are not trusted.
   * @defaultValue `false`
   */
  readonly exposeStack?: boolean;
  /**
   * Turns a job's thrown value into what clients see. Without it: `name`, `message`, a string
   * `code`, and the stack only with `exposeStack`. If it throws, the default is used.
   */
  readonly serializeError?: (error: unknown) => PollJobError;
}

/** Options for {@link JobRegistry.waitForChange}. */
export interface PollWaitOptions {
  /** The version the caller has; by default the current one. */
  readonly version?: number;
  /** How long to wait at most, in ms. */
  readonly timeoutMs: number;
  /** Stops waiting: the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Counters reported by `PollHandle.stats()` (and, with more, by `SharedPollHandle.stats`). */
export interface PollHandleStats {
  /** Jobs pending now. */
  readonly pending: number;
  /** Jobs running now. */
  readonly running: number;
  /** Job functions that have not returned yet (running jobs, and ended ones whose function ignores its signal). */
  readonly inFlight: number;
  /** Finished jobs whose outcome is kept now. */
  readonly stored: number;
  /** Expired ids remembered as gone now (shared: only this registry's own jobs). */
  readonly tombstones: number;
  /** Idempotency keys known now (shared: they live in the store, and this is 0). */
  readonly idempotencyKeys: number;
  /** Waits held by {@link JobRegistry.waitForChange} now. */
  readonly waiting: number;
  /** Jobs started so far. */
  readonly started: number;
  /** Starts answered with an existing job because of their idempotency key, so far. */
  readonly replayed: number;
  /** Starts refused for capacity so far. */
  readonly rejected: number;
  /** Jobs that succeeded so far. */
  readonly succeeded: number;
  /** Jobs that failed so far (timeouts included). */
  readonly failed: number;
  /** Jobs canceled so far. */
  readonly canceled: number;
  /** Outcomes expired so far. */
  readonly expired: number;
}

/** The diagnostics channels a job registry publishes on. */
export const pollChannels = {
  /** `{ poll, id }` when a job is started. */
  start: channel('poll', 'start'),
  /** `{ poll, id, state, error }` when a job reaches its outcome. */
  finish: channel('poll', 'finish'),
  /** `{ poll, id }` when an outcome expires. */
  expire: channel('poll', 'expire'),
  /** `{ poll, error, what }` when a call to the job store failed (`what`: `'read'`, `'write'`, `'lease'`). */
  storeError: channel('poll', 'store-error'),
};

/** How a job ends when its function returns, throws or times out. @internal */
export type JobEnd = { kind: 'succeeded'; resultJson: string } | { kind: 'failed'; error: PollJobError };

let registryCount = 0;

/**
 * A registry of long jobs for short polling: what `PollHandle` (jobs in this process) and
 * `SharedPollHandle` (jobs shared through a `JobStore`) have in common. Give either to a
 * `PollHandler`. See this module's documentation for how the two differ.
 */
export abstract class JobRegistry extends Resource {
  /** `false` for a `PollHandle`, `true` for a `SharedPollHandle`: branch on it once. */
  abstract readonly shared: boolean;
  readonly #clock: Clock;
  readonly #purgatory: Purgatory;
  /** @internal */
  protected readonly ownsPurgatory: boolean;
  /** @internal */
  protected readonly ttlMs: number;
  /** @internal */
  protected readonly goneMs: number;
  readonly #maxTombstones: number;
  readonly #timeoutMs: number;
  readonly #concurrency: number;
  readonly #maxLive: number;
  readonly #maxStored: number;
  /** @internal */
  protected readonly maxResultBytes: number;
  readonly #exposeStack: boolean;
  readonly #serializeError: ((error: unknown) => PollJobError) | undefined;
  /** This registry's own jobs, by id. @internal */
  protected readonly records = new Map<string, JobRecord>();
  /** Idempotency keys of jobs in this process's memory. @internal */
  protected readonly idempotency = new Map<string, JobRecord>();
  /** Expired ids, oldest first, with when they expired. */
  readonly #tombstones = new Map<string, number>();
  /** Keys are namespaced per registry, so a shared purgatory never mixes two registries' waiters. @internal */
  protected readonly ns = `poll${++registryCount}:`;
  /** @internal */
  protected readonly timersKey = `${this.ns}\u0000timers`;
  #qHead: JobRecord | null = null;
  #qTail: JobRecord | null = null;
  #pumpQueued = false;
  /** @internal */
  protected pending = 0;
  /** @internal */
  protected running = 0;
  /** @internal */
  protected inFlight = 0;
  #stored = 0;
  #waiting = 0;
  #started = 0;
  #replayed = 0;
  #rejected = 0;
  #succeeded = 0;
  #failed = 0;
  #canceled = 0;
  #expired = 0;
  /** What views call back into. @internal */
  protected readonly host: JobHost = {
    cancel: (rec, reason) => this.cancelRecord(rec, reason),
    doneAgain: (rec, options) => this.doneAgain(rec, options),
  };

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: PollHandleOptions | undefined) {
    super();
    const opts = check.optionsObject('options', options) as PollHandleOptions;
    this.#clock = check.optionalClock('clock', opts.clock);
    if (opts.purgatory !== undefined && !(opts.purgatory instanceof Purgatory)) {
      throw new InvalidArgumentError(`Expected \`purgatory\` to be a Purgatory, got ${check.describe(opts.purgatory)}`);
    }
    this.ownsPurgatory = opts.purgatory === undefined;
    this.#purgatory = opts.purgatory ?? new Purgatory({ name: 'poll', clock: this.#clock });
    this.ttlMs = check.integerInRange('ttlMs', opts.ttlMs ?? 600_000, 1, MAX_MS);
    this.goneMs = check.integerInRange('goneMs', opts.goneMs ?? 3_600_000, 0, MAX_MS);
    this.#maxTombstones = check.integerInRange('maxTombstones', opts.maxTombstones ?? 10_000, 0, 10_000_000);
    this.#timeoutMs = timeoutOption('timeoutMs', opts.timeoutMs);
    const concurrency = opts.concurrency ?? Infinity;
    this.#concurrency = concurrency === Infinity ? Infinity : check.integerInRange('concurrency', concurrency, 1, 10_000_000);
    this.#maxLive = check.integerInRange('maxLiveJobs', opts.maxLiveJobs ?? 1000, 1, 10_000_000);
    this.#maxStored = check.integerInRange('maxStoredResults', opts.maxStoredResults ?? 10_000, 1, 10_000_000);
    this.maxResultBytes = check.integerInRange('maxResultBytes', opts.maxResultBytes ?? 1024 * 1024, 0, 2 ** 30);
    this.#exposeStack = opts.exposeStack === true;
    this.#serializeError = check.optionalFunction('serializeError', opts.serializeError);
  }

  /** The time source of TTLs, timeouts and waits. */
  get clock(): Clock {
    return this.#clock;
  }

  /** The purgatory that holds this registry's timers and waiters (see {@link JobRegistry.watch}). */
  get purgatory(): Purgatory {
    return this.#purgatory;
  }

  /**
   * Starts a job wherever this registry keeps jobs, and resolves with its view once it is filed
   * (in a store, that is once the store has it, so every process that shares it can read it).
   * With an `idempotencyKey` already known (in a store: known to any process), resolves with
   * that job instead (`replayed: true`), whatever its state, and starts nothing.
   *
   * @param fn - The work: `fn({ id, signal, progress })`; its result must be JSON-serializable.
   * @throws (rejects) CapacityError (`PB_ERR_CAPACITY`, with `retryAfterSeconds`) when
   *   `maxLiveJobs` or `maxStoredResults` is reached; IdempotencyConflictError
   *   (`PB_ERR_IDEMPOTENCY_CONFLICT`) when the key is known with another fingerprint;
   *   InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad function or option; ClosedError
   *   (`PB_ERR_CLOSED`) after `close()`; the store's error when it cannot be reached (an
   *   `UnavailableError`, `PB_ERR_UNAVAILABLE`, from `RedisJobStore`).
   */
  abstract submit<R = unknown>(fn: PollJobFunction<R>, options?: PollStartOptions): Promise<PollJob<R>>;

  /**
   * The job with this id, wherever it runs (with a store: read from it, so a change made through
   * another process shows at once).
   * @throws (rejects) NotFoundError (`PB_ERR_NOT_FOUND`) for an unknown (or forgotten) id;
   *   GoneError (`PB_ERR_GONE`) for a job whose outcome expired less than `goneMs` ago; the
   *   store's error when it cannot be reached.
   */
  abstract lookup<R = unknown>(id: string): Promise<PollJob<R>>;

  /**
   * The job started with this idempotency key, if it is still kept, wherever it runs.
   * @param fingerprint - When given, must equal the fingerprint the job was started with.
   * @throws (rejects) IdempotencyConflictError (`PB_ERR_IDEMPOTENCY_CONFLICT`) when the
   *   fingerprints differ; InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a key that is not
   *   a non-empty string; the store's error when it cannot be reached.
   */
  abstract lookupByIdempotencyKey<R = unknown>(key: string, fingerprint?: string): Promise<PollJob<R> | undefined>;

  /**
   * Cancels a job, wherever it runs, and resolves with its snapshot once the cancel is done:
   * `canceled`, or the outcome it already had. The registry that runs the job aborts its signal.
   * @param job - The job's id, or a view of it from this registry (which saves reading it again).
   * @throws (rejects) as {@link JobRegistry.lookup}.
   */
  async cancelJob<R = unknown>(job: string | PollJob<R>, reason?: unknown): Promise<PollSnapshot<R>> {
    const rec = typeof job === 'object' && job instanceof PollJob && recordOf(job).key.startsWith(this.ns) ? recordOf(job) : await this.recordFor(typeof job === 'string' ? job : job.id);
    await this.cancelAndWait(rec, reason);
    return snapshotOf<R>(rec);
  }

  /**
   * Waits until the job's version differs from `version` (any change of state or progress, or
   * expiry), or `timeoutMs` passes, and resolves with the snapshot then.
   * @throws (rejects) NotFoundError or GoneError as {@link JobRegistry.lookup}; the signal's reason
   *   when aborted; ClosedError (`PB_ERR_CLOSED`) when the registry closes meanwhile.
   */
  async waitForChange<R = unknown>(id: string, options: PollWaitOptions): Promise<PollSnapshot<R>> {
    const found = this.recordFor(id);
    const rec = found instanceof JobRecord ? found : await found;
    const opts = check.optionsObject('options', options) as PollWaitOptions;
    const version = opts.version ?? rec.version;
    if (typeof version !== 'number') throw new InvalidArgumentError(`Expected \`version\` to be a number, got ${check.describe(version)}`);
    this.#waiting++;
    try {
      await this.#purgatory.wait(rec.key, { timeoutMs: opts.timeoutMs, signal: opts.signal, tryComplete: () => rec.version !== version });
    } finally {
      this.#waiting--;
    }
    return snapshotOf<R>(rec);
  }

  /**
   * Holds `operation` in {@link JobRegistry.purgatory} on `job`: every change of the job (state,
   * progress, expiry) calls its `tryComplete`, until it completes, its deadline passes, or it is
   * canceled (`purgatory.cancel(operation)`). This is how the HTTP handler holds `Prefer: wait`.
   * @param job - A view this registry returned.
   */
  watch(job: PollJob, operation: DelayedOperation): void {
    this.#purgatory.tryCompleteElseWatch(operation, recordOf(job).key);
  }

  /** A snapshot of the counters. */
  stats(): PollHandleStats {
    return {
      pending: this.pending,
      running: this.running,
      inFlight: this.inFlight,
      stored: this.#stored,
      tombstones: this.#tombstones.size,
      idempotencyKeys: this.idempotency.size,
      waiting: this.#waiting,
      started: this.#started,
      replayed: this.#replayed,
      rejected: this.#rejected,
      succeeded: this.#succeeded,
      failed: this.#failed,
      canceled: this.#canceled,
      expired: this.#expired,
    };
  }

  // --- what each registry does its own way ---------------------------------------------------------

  /** The record of a job by id, or the error for an unknown or expired one. @internal */
  protected abstract recordFor(id: string): JobRecord | Promise<JobRecord>;
  /** Runs a job taken from the pending queue. @internal */
  protected abstract runJob(rec: JobRecord): void;
  /** A running job's function returned, threw, or its timeout passed. @internal */
  protected abstract endJob(rec: JobRecord, end: JobEnd): void;
  /** A running job reported progress (already checked). @internal */
  protected abstract reportProgress(rec: JobRecord, progress: PollProgress): void;
  /** `PollJob.cancel()`: starts canceling a live job; `false` when it had ended. @internal */
  protected abstract cancelRecord(rec: JobRecord, reason: unknown): boolean;
  /** Cancels a job and resolves once the cancel is decided. @internal */
  protected abstract cancelAndWait(rec: JobRecord, reason: unknown): Promise<unknown>;
  /** `done()` of a record this registry no longer holds, or `undefined`. @internal */
  protected abstract doneAgain<R>(rec: JobRecord, options: PollJobDoneOptions | undefined): Promise<PollSnapshot<R>> | undefined;
  /** A job's TTL passed, before it expires here. @internal */
  protected beforeExpire(_rec: JobRecord): void {}

  // --- starting ------------------------------------------------------------------------------------

  /** The start options, checked, with the registry's defaults. @internal */
  protected startOptions(options: PollStartOptions | undefined): { key: string | undefined; fingerprint: string | undefined; timeoutMs: number; ttlMs: number } {
    const opts = check.optionsObject('options', options) as PollStartOptions;
    const key = opts.idempotencyKey;
    const fingerprint = opts.fingerprint;
    if (fingerprint !== undefined && typeof fingerprint !== 'string') {
      throw new InvalidArgumentError(`Expected \`fingerprint\` to be a string, got ${check.describe(fingerprint)}`);
    }
    if (key !== undefined) checkKey(key);
    const timeoutMs = opts.timeoutMs === undefined ? this.#timeoutMs : timeoutOption('timeoutMs', opts.timeoutMs);
    const ttlMs = opts.ttlMs === undefined ? this.ttlMs : check.integerInRange('ttlMs', opts.ttlMs, 1, MAX_MS);
    return { key, fingerprint, timeoutMs, ttlMs };
  }

  /** Throws a CapacityError when a start would pass `maxLiveJobs` or `maxStoredResults`. @internal */
  protected checkCapacity(): void {
    if (this.pending + this.inFlight >= this.#maxLive) {
      this.#rejected++;
      throw new CapacityError(`The server runs its maximum of ${this.#maxLive} live jobs; retry later`, { retryAfterSeconds: 1 });
    }
    if (this.pending + this.running + this.#stored >= this.#maxStored) {
      this.#rejected++;
      throw new CapacityError(`The server keeps its maximum of ${this.#maxStored} jobs; retry when results expire`, { retryAfterSeconds: 1 });
    }
  }

  /** A new record of this registry. @internal */
  protected newRecord(id: string, fn: PollJobFunction | null, timeoutMs: number, ttlMs: number, key: string | undefined, fingerprint: string | undefined): JobRecord {
    return new JobRecord(id, this.ns + id, fn, this.#clock.now(), timeoutMs, ttlMs, key, fingerprint);
  }

  /** Files a new job (already counted pending) and queues it to run. @internal */
  protected admit<R>(rec: JobRecord): PollJob<R> {
    this.records.set(rec.id, rec);
    this.#started++;
    this.enqueue(rec);
    if (pollChannels.start.hasSubscribers) pollChannels.start.publish({ poll: this, id: rec.id });
    return this.viewOf<R>(rec);
  }

  /** A start replayed by its idempotency key: the same request, or an IdempotencyConflictError. @internal */
  protected checkReplay(id: string, first: string | undefined, fingerprint: string | undefined): void {
    if (fingerprint !== undefined && first !== undefined && fingerprint !== first) {
      throw new IdempotencyConflictError(`The Idempotency-Key was first used for job ${id} with a different request`);
    }
    this.#replayed++;
  }

  /** The record's view (made once), or a view of its own for a replayed start. @internal */
  protected viewOf<R>(rec: JobRecord, replayed = false): PollJob<R> {
    if (replayed) return new PollJob<R>(rec, this.host, true);
    return (rec.view ??= new PollJob(rec, this.host, false)) as PollJob<R>;
  }

  /**
   * The record of a job in this registry's memory, or the error for an unknown or expired id.
   * @internal
   */
  protected localRecord(id: string, held?: Map<string, JobRecord>): JobRecord {
    this.assertOpen('get');
    const rec = typeof id === 'string' ? (this.records.get(id) ?? held?.get(id)) : undefined;
    if (rec !== undefined) return rec;
    const shown = typeof id === 'string' && ID_RE.test(id) ? id : '(malformed id)';
    if (typeof id === 'string') {
      const at = this.#tombstones.get(id);
      if (at !== undefined) {
        if (this.#clock.now() - at <= this.goneMs) throw new GoneError(`Job ${shown} has expired: its outcome was kept for its TTL and is gone`);
        this.#tombstones.delete(id);
      }
    }
    throw new NotFoundError(`No job ${shown}`);
  }

  // --- the pending queue and running ------------------------------------------------------------

  /** @internal */
  protected enqueue(rec: JobRecord): void {
    rec.queued = true;
    rec.qPrev = this.#qTail;
    if (this.#qTail !== null) this.#qTail.qNext = rec;
    else this.#qHead = rec;
    this.#qTail = rec;
    this.schedulePump();
  }

  /** @internal */
  protected dequeue(rec: JobRecord): void {
    if (!rec.queued) return;
    rec.queued = false;
    if (rec.qPrev !== null) rec.qPrev.qNext = rec.qNext;
    else this.#qHead = rec.qNext;
    if (rec.qNext !== null) rec.qNext.qPrev = rec.qPrev;
    else this.#qTail = rec.qPrev;
    rec.qPrev = rec.qNext = null;
  }

  /** @internal */
  protected schedulePump(): void {
    if (this.#pumpQueued || this.#qHead === null || this.inFlight >= this.#concurrency) return;
    this.#pumpQueued = true;
    queueMicrotask(this.#pump);
  }

  readonly #pump = (): void => {
    this.#pumpQueued = false;
    while (!this.closed && this.#qHead !== null && this.inFlight < this.#concurrency) {
      const rec = this.#qHead;
      this.dequeue(rec);
      this.runJob(rec);
    }
  };

  /** Calls the job function. @internal */
  protected invoke(rec: JobRecord, fn: PollJobFunction, controller: AbortController): void {
    if (rec.timeoutMs !== Infinity) this.#arm(rec, TIMEOUT, rec.timeoutMs);
    const context: PollJobContext = {
      id: rec.id,
      // Node builds an AbortSignal on first access (about 0.7 KB): a job that never looks at its
      // signal never pays for one.
      get signal(): AbortSignal {
        return controller.signal;
      },
      progress: (value: PollProgress) => this.reportProgress(rec, normalizeProgress(value)),
    };
    let value: unknown;
    try {
      value = fn(context);
    } catch (error) {
      this.#settled(rec, false, error);
      return;
    }
    if (value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function') {
      Promise.resolve(value as PromiseLike<unknown>).then(
        (v) => this.#settled(rec, true, v),
        (e: unknown) => this.#settled(rec, false, e),
      );
    } else {
      this.#settled(rec, true, value);
    }
  }

  #settled(rec: JobRecord, ok: boolean, value: unknown): void {
    rec.inFlight = false;
    this.inFlight--;
    if (rec.state === 'running') {
      this.endJob(rec, ok ? resultOf(rec.id, value, this.maxResultBytes) : { kind: 'failed', error: serializeWith(this.#serializeError, value, this.#exposeStack) });
    }
    rec.controller = null;
    this.schedulePump();
  }

  /** The one way to an outcome decided in this process: the first call wins. @internal */
  protected finish(rec: JobRecord, state: 'succeeded' | 'failed' | 'canceled', resultJson: string | undefined, error: PollJobError | undefined): void {
    if (rec.state === 'pending') {
      this.pending--;
      this.dequeue(rec);
      rec.fn = null;
    } else if (rec.state === 'running') {
      this.running--;
    } else {
      return;
    }
    rec.state = state;
    rec.finishedAt = this.#clock.now();
    rec.resultJson = resultJson;
    rec.error = error;
    this.keep(rec);
    this.changed(rec);
    if (pollChannels.finish.hasSubscribers) pollChannels.finish.publish({ poll: this, id: rec.id, state, error });
    this.settle(rec);
  }

  /** A job of this registry has its outcome: counted, and kept for its TTL. @internal */
  protected keep(rec: JobRecord): void {
    if (rec.state === 'succeeded') this.#succeeded++;
    else if (rec.state === 'failed') this.#failed++;
    else this.#canceled++;
    this.#stored++;
    if (rec.timer !== null) this.disarm(rec);
    this.#arm(rec, TTL, rec.ttlMs);
  }

  /** An outcome's TTL passed: the result goes, the id is remembered as gone. @internal */
  protected expire(rec: JobRecord): void {
    if (!isOutcome(rec.state)) return;
    rec.state = 'expired';
    rec.resultJson = undefined;
    this.#stored--;
    this.#expired++;
    this.records.delete(rec.id);
    if (rec.idempotencyKey !== undefined && this.idempotency.get(rec.idempotencyKey) === rec) this.idempotency.delete(rec.idempotencyKey);
    this.#bury(rec.id);
    this.changed(rec);
    if (pollChannels.expire.hasSubscribers) pollChannels.expire.publish({ poll: this, id: rec.id });
  }

  #bury(id: string): void {
    if (this.#maxTombstones === 0 || this.goneMs === 0) return;
    const now = this.#clock.now();
    this.#tombstones.set(id, now);
    for (const [oldest, at] of this.#tombstones) {
      if (this.#tombstones.size <= this.#maxTombstones && now - at <= this.goneMs) break;
      this.#tombstones.delete(oldest);
    }
  }

  /** A change of state or progress: new version, and wake whoever waits on the job. @internal */
  protected changed(rec: JobRecord): void {
    rec.version++;
    if (!this.#purgatory.closed) this.#purgatory.checkAndComplete(rec.key);
  }

  /** Resolves the `done()` of a job that has its outcome (or is left as it is at close). @internal */
  protected settle(rec: JobRecord): void {
    const settle = rec.settle;
    if (settle === null) return;
    rec.settle = null;
    const snapshot = snapshotOf(rec);
    for (const resolve of settle) resolve(snapshot);
  }

  // --- timers: one purgatory for TTLs and timeouts ----------------------------------------------

  #arm(rec: JobRecord, kind: number, ms: number): void {
    if (this.closed || this.#purgatory.closed) return;
    const timer = new JobTimer(this.#timerHost, rec, kind, ms);
    rec.timer = timer;
    this.#purgatory.tryCompleteElseWatch(timer, this.timersKey);
  }

  /** @internal */
  protected disarm(rec: JobRecord): void {
    const timer = rec.timer!;
    rec.timer = null;
    if (!timer.isDone && !this.#purgatory.closed) this.#purgatory.cancel(timer);
  }

  readonly #timerHost: TimerHost = {
    fire: (timer) => {
      const rec = timer.rec;
      if (rec.timer === timer) rec.timer = null;
      if (this.closed) return;
      if (timer.kind === TTL) {
        this.beforeExpire(rec);
        this.expire(rec);
        return;
      }
      if (rec.state !== 'running') return;
      const error = new TimeoutError(`Job ${rec.id} did not finish within its timeout of ${rec.timeoutMs} ms`);
      const controller = rec.controller;
      this.endJob(rec, { kind: 'failed', error: { name: 'TimeoutError', code: error.code, message: error.message } });
      controller?.abort(error);
    },
  };

  // --- lifecycle -------------------------------------------------------------------------------

  /** Fails every live job's waiters with a {@link ClosedError}, cancels the registry's timers and lets running jobs see their signal abort. */
  protected async onClose(): Promise<void> {
    await this.shutdown(new ClosedError(`The ${this.constructor.name} was closed`));
  }

  /** As `onClose`, at once, with `reason`. */
  protected onDestroy(reason: unknown): void {
    void this.shutdown(reason ?? new ClosedError(`The ${this.constructor.name} was destroyed`));
  }

  /**
   * Live jobs end canceled (their waiters are answered with that), then every timer and waiter
   * goes with the purgatory (or with this registry's keys of a shared one). @internal
   */
  protected async shutdown(reason: unknown): Promise<void> {
    for (const rec of this.records.values()) {
      if (isLive(rec.state)) {
        const controller = rec.controller;
        this.finish(rec, 'canceled', undefined, undefined);
        controller?.abort(reason);
      }
      if (rec.timer !== null) this.disarm(rec);
    }
    if (this.ownsPurgatory) await this.#purgatory.close();
    else if (!this.#purgatory.closed) {
      this.#purgatory.cancelForKey(this.timersKey, reason);
      for (const rec of this.records.values()) this.#purgatory.cancelForKey(rec.key, reason);
    }
    this.records.clear();
    this.idempotency.clear();
    this.#tombstones.clear();
    this.#qHead = this.#qTail = null;
  }
}
