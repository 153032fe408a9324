/**
 * A registry of long jobs for short polling: {@link PollHandle}.
 *
 * ## Life of a job
 *
 * `start(fn)` files the job as `pending` and returns its {@link PollJob} at once; `fn({ signal,
 * progress })` begins in a microtask (later when `concurrency` is reached), and the job is then
 * `running`. It ends in exactly one outcome: `succeeded` (with `fn`'s result), `failed` (`fn`
 * threw or rejected, its result was not JSON, or the job timeout passed) or `canceled` (by
 * {@link PollJob.cancel}, {@link PollHandle.cancel} or `close()`). The first outcome wins and
 * nothing changes it: a result that arrives after a cancel is dropped. Canceling and timing out
 * abort the job's `signal`; cancellation is cooperative, so a job that ignores its signal keeps
 * its concurrency slot (and counts as live) until `fn` settles.
 *
 * A finished job keeps its result for `ttlMs`, then becomes `expired`: its result is dropped, its
 * id is answered as gone ({@link GoneError}) for `goneMs`, then as unknown ({@link NotFoundError}).
 *
 * Every change (state or progress) bumps the job's `version`, which is what an HTTP `ETag`
 * names and what waiters compare against.
 *
 * ## Time
 *
 * One {@link Purgatory} drives every timer: TTLs, job timeouts and the waits of
 * {@link PollHandle.waitForChange} (and of the HTTP handler's `Prefer: wait`), so there is one
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
 * ## Sharing jobs between processes
 *
 * With a `store` ({@link JobStore}: `RedisJobStore` from `patchbay/redis`, or a
 * {@link MemoryJobStore} in one process) the store is the authority on every job: each change
 * (running, progress, the outcome, a cancel) is written there first and applied here from its
 * answer, so two processes can never give one job two outcomes. Jobs are started with
 * {@link PollHandle.submit} and found with {@link PollHandle.lookup} (both go to the store; the
 * synchronous `start` refuses), and any registry on the store reads, awaits and cancels any job.
 * The job function runs in the registry that started it; progress reports made while a write is
 * in flight collapse into the last one. Each registry renews a lease every third of `leaseMs` and
 * fails the live jobs of registries whose lease ran out (`PB_ERR_WORKER_LOST`); a cancel or a
 * failure decided elsewhere aborts the job's signal here.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { type Clock, type ClockTimer, realClock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import {
  CanceledError,
  CapacityError,
  ClosedError,
  GoneError,
  IdempotencyConflictError,
  InvalidArgumentError,
  InvalidStateError,
  NotFoundError,
  TimeoutError,
  ErrorCodes,
} from '../core/errors.js';
import { assertJsonValue, parseJson } from '../core/json.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { DelayedOperation, Purgatory } from '../purgatory/index.js';
import type { JobLookup, JobStore, JobUpdate, PollJobError, PollJobState, PollProgress, StoredJob } from '../core/jobs.js';

export type { PollJobError, PollJobState, PollProgress } from '../core/jobs.js';

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

/** What a job function receives. */
export interface PollJobContext {
  /** The job's id. */
  readonly id: string;
  /** Aborted when the job is canceled, times out, or the registry closes; stop work then. */
  readonly signal: AbortSignal;
  /**
   * Reports progress: a fraction from 0 to 1, or `{ done, total?, message? }`. A value equal to
   * the last one changes nothing; calls after the job ended are ignored.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a value of another shape.
   */
  progress(value: PollProgress): void;
}

/**
 * The work of a job. Its return value (or what its promise resolves with) is the result, which
 * must be JSON-serializable (`undefined` is stored as `null`); a throw or rejection fails the job.
 */
export type PollJobFunction<R = unknown> = (context: PollJobContext) => R | PromiseLike<R>;

/** Options for {@link PollHandle.start}. */
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

/** Options for {@link PollHandle}. */
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
  /**
   * Share jobs with other processes through this store (`RedisJobStore` from `patchbay/redis`,
   * or a {@link MemoryJobStore} between registries of one process). The store is then the
   * authority on every job's state: jobs are started with {@link PollHandle.submit} (not
   * `start`), read with {@link PollHandle.lookup}, and any process that shares the store can read,
   * await and cancel them. The registry does not close the store.
   * @defaultValue none: jobs live in this registry's memory only
   */
  readonly store?: JobStore;
  /**
   * With a `store`: how long this registry's lease lasts, in ms. It is renewed every third of it;
   * if this process dies (or cannot reach the store) for longer, any other registry on the store
   * fails its live jobs with a `WorkerLostError` (code `PB_ERR_WORKER_LOST`).
   * @defaultValue 30000
   */
  readonly leaseMs?: number;
}

/** The `code` of the error a job fails with when its owner's lease ran out ({@link PollHandleOptions.leaseMs}). */
export const WORKER_LOST = ErrorCodes.WORKER_LOST;

/** Counters reported by {@link PollHandle.stats}. */
export interface PollHandleStats {
  /** Jobs pending now. */
  readonly pending: number;
  /** Jobs running now. */
  readonly running: number;
  /** Job functions that have not returned yet (running jobs, and ended ones whose function ignores its signal). */
  readonly inFlight: number;
  /** Finished jobs whose outcome is kept now. */
  readonly stored: number;
  /** Expired ids remembered as gone now (with a store: only this registry's own jobs). */
  readonly tombstones: number;
  /** Idempotency keys known now (without a store; with one they live in the store, and this is 0). */
  readonly idempotencyKeys: number;
  /** Waits held by {@link PollHandle.waitForChange} now. */
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
  /** With a store: jobs of other registries this one holds a copy of now (while they are read or awaited). */
  readonly mirrors: number;
  /** With a store: live jobs of dead registries this one failed so far. */
  readonly reaped: number;
}

/** The diagnostics channels a {@link PollHandle} publishes on. */
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

const MAX_MS = 2 ** 31 - 1;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The state of one job, shared by every {@link PollJob} view of it and by the HTTP handler.
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
  /** What the HTTP handler built for `cacheVersion` (its answer bytes). */
  cache: unknown = undefined;
  cacheVersion = 0;
  /** The HTTP handler's early-poll limit: no status read before this time. */
  nextPollAt = 0;
  /** With a store: the job runs in this registry (else this record is a copy of another's job). */
  owned = true;
  /** With a store: progress not written yet. */
  wantProgress: PollProgress | undefined = undefined;
  /** With a store: the outcome not written yet. */
  outcome: JobUpdate | undefined = undefined;
  /** With a store: a write loop runs for this job. */
  writing = false;
  /** With a store: a re-read is in flight, and whether another was asked for meanwhile. */
  refreshing = false;
  refreshAgain = false;
  /** With a store: the abort reason of a cancel asked here. */
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

/**
 * One job of a {@link PollHandle}: a live view (its getters read the current state) plus
 * `done()` and `cancel()`. Views are cheap; {@link PollHandle.get} returns a new one each time.
 */
export class PollJob<R = unknown> {
  /** @internal */
  readonly _rec: JobRecord;
  readonly #host: PollHandle;
  /** `true` when the start that returned this view found the job by its idempotency key. */
  readonly replayed: boolean;

  /** @internal */
  constructor(rec: JobRecord, host: PollHandle, replayed: boolean) {
    this._rec = rec;
    this.#host = host;
    this.replayed = replayed;
  }

  /** The job's id. */
  get id(): string {
    return this._rec.id;
  }

  /** Its state now. */
  get state(): PollJobState {
    return this._rec.state;
  }

  /** Its last progress, or `null`. */
  get progress(): PollProgress | null {
    return this._rec.progress;
  }

  /** Its version now (bumped by every change). */
  get version(): number {
    return this._rec.version;
  }

  /** One atomic snapshot of the job. */
  snapshot(): PollSnapshot<R> {
    return snapshotOf<R>(this._rec);
  }

  /**
   * Resolves with the snapshot of the job's outcome (`succeeded`, `failed` or `canceled`) once it
   * has one; at once if it already has (`expired`, without the result, once its TTL has passed).
   * Never rejects: closing the registry cancels the job. On a copy of another registry's job
   * (with a store), closing this registry resolves it with the job as last read.
   */
  done(): Promise<PollSnapshot<R>> {
    const rec = this._rec;
    if (!isLive(rec.state)) return Promise.resolve(snapshotOf<R>(rec));
    const again = this.#host._doneOf<R>(rec);
    if (again !== undefined) return again;
    return new Promise<PollSnapshot<R>>((resolve) => {
      (rec.settle ??= []).push(resolve as (snapshot: PollSnapshot) => void);
    });
  }

  /**
   * Cancels the job if it has no outcome yet: it ends `canceled` now and its signal aborts with
   * `reason`.
   * @param reason - The abort reason the job function sees.
   * @defaultValue `reason` is a {@link CanceledError}
   * @returns `true` if this call canceled it. With a store: `true` when the cancel was sent (the
   *   job was live as this registry knew it); {@link PollHandle.cancelJob} tells for sure.
   */
  cancel(reason?: unknown): boolean {
    return this.#host._cancel(this._rec, reason);
  }
}

/**
 * A registry of long jobs for short polling. Start a job, hand its id to the client, and let the
 * client ask how it is doing (the {@link PollHandler} does this over HTTP: `202` + `Location`,
 * status with `ETag`/`304`, `Prefer: wait`, `DELETE`, `410` after the TTL).
 *
 * @example
 * ```ts
 * const jobs = new PollHandle({ ttlMs: 600_000, maxLiveJobs: 100 });
 * const job = jobs.start(async ({ signal, progress }) => {
 *   for (let i = 1; i <= 10; i++) {
 *     await setTimeout(1000, undefined, { signal });
 *     progress({ done: i, total: 10 });
 *   }
 *   return { ok: true };
 * });
 * job.id; // hand it to the client
 * await job.done(); // { id, state: 'succeeded', progress: { done: 10, total: 10 }, result: { ok: true }, version: 12 }
 * ```
 */
export class PollHandle extends Resource {
  readonly #clock: Clock;
  readonly #purgatory: Purgatory;
  readonly #ownsPurgatory: boolean;
  readonly #ttlMs: number;
  readonly #goneMs: number;
  readonly #maxTombstones: number;
  readonly #timeoutMs: number;
  readonly #concurrency: number;
  readonly #maxLive: number;
  readonly #maxStored: number;
  readonly #maxResultBytes: number;
  readonly #exposeStack: boolean;
  readonly #serializeError: ((error: unknown) => PollJobError) | undefined;
  readonly #records = new Map<string, JobRecord>();
  readonly #idempotency = new Map<string, JobRecord>();
  /** Expired ids, oldest first, with when they expired. */
  readonly #tombstones = new Map<string, number>();
  /** Keys are namespaced per registry, so a shared purgatory never mixes two registries' waiters. */
  readonly #ns = `poll${++registryCount}:`;
  readonly #timersKey = `${this.#ns}\u0000timers`;
  #qHead: JobRecord | null = null;
  #qTail: JobRecord | null = null;
  #pumpQueued = false;
  #pending = 0;
  #running = 0;
  #inFlight = 0;
  #stored = 0;
  #waiting = 0;
  #started = 0;
  #replayed = 0;
  #rejected = 0;
  #succeeded = 0;
  #failed = 0;
  #canceled = 0;
  #expired = 0;
  #reaped = 0;
  // --- with a store ---
  readonly #store: JobStore | undefined;
  readonly #leaseMs: number;
  /** This registry's id as an owner of jobs in the store. */
  readonly #owner = newId();
  /** Copies of other registries' jobs, while something reads or awaits them. */
  readonly #mirrors = new Map<string, JobRecord>();
  #unsubscribe: (() => void) | undefined;
  #tickTimer: ClockTimer | undefined;
  #ticking = false;
  #beating = false;
  /** Writes to the store in flight (close waits for them). */
  readonly #writes = new Set<Promise<unknown>>();
  /** Ids of jobs whose creation the store may or may not have done (its answer was lost). */
  readonly #orphans = new Set<string>();

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options?: PollHandleOptions) {
    super();
    const opts = check.optionsObject('options', options) as PollHandleOptions;
    this.#clock = opts.clock ?? realClock;
    if (typeof this.#clock.now !== 'function' || typeof this.#clock.setTimer !== 'function') {
      throw new InvalidArgumentError(`Expected \`clock\` to be a Clock, got ${check.describe(this.#clock)}`);
    }
    if (opts.purgatory !== undefined && !(opts.purgatory instanceof Purgatory)) {
      throw new InvalidArgumentError(`Expected \`purgatory\` to be a Purgatory, got ${check.describe(opts.purgatory)}`);
    }
    this.#ownsPurgatory = opts.purgatory === undefined;
    this.#purgatory = opts.purgatory ?? new Purgatory({ name: 'poll', clock: this.#clock });
    this.#ttlMs = check.integerInRange('ttlMs', opts.ttlMs ?? 600_000, 1, MAX_MS);
    this.#goneMs = check.integerInRange('goneMs', opts.goneMs ?? 3_600_000, 0, MAX_MS);
    this.#maxTombstones = check.integerInRange('maxTombstones', opts.maxTombstones ?? 10_000, 0, 10_000_000);
    this.#timeoutMs = timeoutOption('timeoutMs', opts.timeoutMs);
    const concurrency = opts.concurrency ?? Infinity;
    this.#concurrency = concurrency === Infinity ? Infinity : check.integerInRange('concurrency', concurrency, 1, 10_000_000);
    this.#maxLive = check.integerInRange('maxLiveJobs', opts.maxLiveJobs ?? 1000, 1, 10_000_000);
    this.#maxStored = check.integerInRange('maxStoredResults', opts.maxStoredResults ?? 10_000, 1, 10_000_000);
    this.#maxResultBytes = check.integerInRange('maxResultBytes', opts.maxResultBytes ?? 1024 * 1024, 0, 2 ** 30);
    this.#exposeStack = opts.exposeStack === true;
    this.#serializeError = check.optionalFunction('serializeError', opts.serializeError);
    const store = opts.store;
    if (store !== undefined && (typeof store !== 'object' || store === null || typeof store.create !== 'function' || typeof store.subscribe !== 'function')) {
      throw new InvalidArgumentError(`Expected \`store\` to be a JobStore, got ${check.describe(store)}`);
    }
    this.#store = store;
    this.#leaseMs = check.integerInRange('leaseMs', opts.leaseMs ?? 30_000, 30, MAX_MS);
    if (store !== undefined) {
      this.#unsubscribe = store.subscribe({ changed: this.#onStoreChange, resync: this.#onStoreResync });
      this.#scheduleTick();
    }
  }

  /** `true` when jobs are shared through a {@link PollHandleOptions.store}. */
  get shared(): boolean {
    return this.#store !== undefined;
  }

  /**
   * Starts a job: files it as `pending` and returns its view at once; `fn` begins in a microtask
   * (or when a `concurrency` slot frees). With an `idempotencyKey` already known, returns that
   * job instead (`replayed: true`), whatever its state, and starts nothing.
   *
   * @param fn - The work: `fn({ id, signal, progress })`; its result must be JSON-serializable.
   * @throws CapacityError (`PB_ERR_CAPACITY`, with `retryAfterSeconds`) when `maxLiveJobs` or
   *   `maxStoredResults` is reached.
   * @throws IdempotencyConflictError (`PB_ERR_IDEMPOTENCY_CONFLICT`) when the key is known with
   *   another fingerprint.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad function or option.
   * @throws ClosedError (`PB_ERR_CLOSED`) after `close()`.
   */
  start<R = unknown>(fn: PollJobFunction<R>, options?: PollStartOptions): PollJob<R> {
    this.assertOpen('start');
    if (this.#store !== undefined) throw new InvalidStateError('This PollHandle shares its jobs through a store: start jobs with `await jobs.submit(fn, options)`');
    if (typeof fn !== 'function') throw new InvalidArgumentError(`Expected \`fn\` to be a function, got ${check.describe(fn)}`);
    const { key, fingerprint, timeoutMs, ttlMs } = this.#startOptions(options);
    if (key !== undefined) {
      const existing = this.findByIdempotencyKey<R>(key, fingerprint);
      if (existing !== undefined) return existing;
    }
    this.#checkCapacity();
    let id = newId();
    while (this.#records.has(id)) id = newId();
    const rec = new JobRecord(id, this.#ns + id, fn as PollJobFunction, this.#clock.now(), timeoutMs, ttlMs, key, fingerprint);
    if (key !== undefined) this.#idempotency.set(key, rec);
    this.#pending++;
    return this.#admit<R>(rec);
  }

  /** Files a new job (already counted pending) and queues it to run. */
  #admit<R>(rec: JobRecord): PollJob<R> {
    this.#records.set(rec.id, rec);
    this.#started++;
    this.#enqueue(rec);
    if (pollChannels.start.hasSubscribers) pollChannels.start.publish({ poll: this, id: rec.id });
    return new PollJob<R>(rec, this, false);
  }

  #startOptions(options: PollStartOptions | undefined): { key: string | undefined; fingerprint: string | undefined; timeoutMs: number; ttlMs: number } {
    const opts = check.optionsObject('options', options) as PollStartOptions;
    const key = opts.idempotencyKey;
    const fingerprint = opts.fingerprint;
    if (fingerprint !== undefined && typeof fingerprint !== 'string') {
      throw new InvalidArgumentError(`Expected \`fingerprint\` to be a string, got ${check.describe(fingerprint)}`);
    }
    if (key !== undefined) checkKey(key);
    const timeoutMs = opts.timeoutMs === undefined ? this.#timeoutMs : timeoutOption('timeoutMs', opts.timeoutMs);
    const ttlMs = opts.ttlMs === undefined ? this.#ttlMs : check.integerInRange('ttlMs', opts.ttlMs, 1, MAX_MS);
    return { key, fingerprint, timeoutMs, ttlMs };
  }

  #checkCapacity(): void {
    if (this.#pending + this.#inFlight >= this.#maxLive) {
      this.#rejected++;
      throw new CapacityError(`The server runs its maximum of ${this.#maxLive} live jobs; retry later`, { retryAfterSeconds: 1 });
    }
    if (this.#pending + this.#running + this.#stored >= this.#maxStored) {
      this.#rejected++;
      throw new CapacityError(`The server keeps its maximum of ${this.#maxStored} jobs; retry when results expire`, { retryAfterSeconds: 1 });
    }
  }

  /** A view of a job an idempotency key named in the store. */
  #replay<R>(job: StoredJob, fingerprint: string | undefined): PollJob<R> {
    this.#checkReplay(job.id, job.fingerprint, fingerprint);
    return new PollJob<R>(this.#mirror(job), this, true);
  }

  /** A start replayed by its idempotency key: the same request, or an IdempotencyConflictError. */
  #checkReplay(id: string, first: string | undefined, fingerprint: string | undefined): void {
    if (fingerprint !== undefined && first !== undefined && fingerprint !== first) {
      throw new IdempotencyConflictError(`The Idempotency-Key was first used for job ${id} with a different request`);
    }
    this.#replayed++;
  }

  /**
   * The job started with this idempotency key, if it is still kept.
   * @param fingerprint - When given, must equal the fingerprint the job was started with.
   * @throws IdempotencyConflictError (`PB_ERR_IDEMPOTENCY_CONFLICT`) when the fingerprints differ.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a key that is not a non-empty string.
   */
  findByIdempotencyKey<R = unknown>(key: string, fingerprint?: string): PollJob<R> | undefined {
    this.assertOpen('findByIdempotencyKey');
    checkKey(key);
    if (this.#store !== undefined) throw new InvalidStateError('This PollHandle shares its jobs through a store: use `await jobs.lookupByIdempotencyKey(key)`');
    const rec = this.#idempotency.get(key);
    if (rec === undefined) return undefined;
    this.#checkReplay(rec.id, rec.fingerprint, fingerprint);
    return new PollJob<R>(rec, this, true);
  }

  /**
   * The job with this id. With a store, only the jobs this registry runs or holds a copy of: use
   * {@link PollHandle.lookup} for any job of the store.
   * @throws NotFoundError (`PB_ERR_NOT_FOUND`) for an id this registry does not know (or forgot).
   * @throws GoneError (`PB_ERR_GONE`) for a job whose outcome expired less than `goneMs` ago.
   */
  get<R = unknown>(id: string): PollJob<R> {
    return new PollJob<R>(this._record(id), this, false);
  }

  /**
   * Cancels the job with this id (see {@link PollJob.cancel}) and returns its snapshot: `canceled`,
   * or its outcome if it already had one. With a store the cancel is written in the background and
   * the snapshot is the one before it: use {@link PollHandle.cancelJob} to wait for it.
   * @throws NotFoundError (`PB_ERR_NOT_FOUND`) or GoneError (`PB_ERR_GONE`), as {@link PollHandle.get}.
   */
  cancel<R = unknown>(id: string, reason?: unknown): PollSnapshot<R> {
    const rec = this._record(id);
    this._cancel(rec, reason);
    return snapshotOf<R>(rec);
  }

  /**
   * Starts a job wherever this registry keeps jobs: like {@link PollHandle.start} without a store;
   * with one, the job is created in the store (so every process that shares it can read it) before
   * this resolves, and an `idempotencyKey` is looked up in the store, across processes.
   *
   * @throws (rejects) as {@link PollHandle.start}, and with the store's error when it cannot be
   *   reached (an `UnavailableError`, `PB_ERR_UNAVAILABLE`, from `RedisJobStore`).
   */
  async submit<R = unknown>(fn: PollJobFunction<R>, options?: PollStartOptions): Promise<PollJob<R>> {
    const store = this.#store;
    if (store === undefined) return this.start(fn, options);
    this.assertOpen('submit');
    if (typeof fn !== 'function') throw new InvalidArgumentError(`Expected \`fn\` to be a function, got ${check.describe(fn)}`);
    const { key, fingerprint, timeoutMs, ttlMs } = this.#startOptions(options);
    this.#checkCapacity();
    const id = newId();
    const rec = new JobRecord(id, this.#ns + id, fn as PollJobFunction, this.#clock.now(), timeoutMs, ttlMs, key, fingerprint);
    this.#pending++; // the slot is held while the store answers
    let created: { created: boolean; job: StoredJob };
    try {
      created = await this.#storeWrite(store.create({ id, owner: this.#owner, ttlMs, goneMs: this.#goneMs, leaseMs: this.#leaseMs, idempotencyKey: key, fingerprint }));
    } catch (error) {
      this.#pending--;
      // The store may have created it all the same (the answer was lost): such a job would stay
      // pending for good, so it is failed as soon as the store answers again.
      this.#orphans.add(id);
      if (this.#orphans.size > MAX_MIRRORS) this.#orphans.delete(this.#orphans.values().next().value!);
      throw error;
    }
    if (!created.created) {
      this.#pending--;
      this.assertOpen('submit');
      return this.#replay<R>(created.job, fingerprint);
    }
    if (this.closed) {
      this.#pending--;
      this.#storeWrite(store.update(id, { kind: 'canceled' })).catch((error: unknown) => this.#storeError(error, 'write'));
      throw new ClosedError('The PollHandle was closed');
    }
    return this.#admit<R>(rec);
  }

  /**
   * The job with this id, wherever it runs: without a store as {@link PollHandle.get}; with one,
   * read from the store (so jobs of other processes are found, and a change made through another
   * process shows at once).
   * @throws (rejects) NotFoundError (`PB_ERR_NOT_FOUND`) or GoneError (`PB_ERR_GONE`) as
   *   {@link PollHandle.get}; the store's error when it cannot be reached.
   */
  async lookup<R = unknown>(id: string): Promise<PollJob<R>> {
    return new PollJob<R>(await this._resolve(id), this, false);
  }

  /**
   * The job started with this idempotency key, if it is still kept, wherever it runs: without a
   * store as {@link PollHandle.findByIdempotencyKey}; with one, looked up in the store.
   * @throws (rejects) IdempotencyConflictError as {@link PollHandle.findByIdempotencyKey}; the
   *   store's error when it cannot be reached.
   */
  async lookupByIdempotencyKey<R = unknown>(key: string, fingerprint?: string): Promise<PollJob<R> | undefined> {
    const store = this.#store;
    if (store === undefined) return this.findByIdempotencyKey<R>(key, fingerprint);
    this.assertOpen('lookupByIdempotencyKey');
    checkKey(key);
    const job = await store.findByKey(key);
    this.assertOpen('lookupByIdempotencyKey');
    return job === undefined ? undefined : this.#replay<R>(job, fingerprint);
  }

  /**
   * Cancels the job with this id, wherever it runs, and resolves with its snapshot once the cancel
   * is done: `canceled`, or the outcome it already had. The registry that runs the job aborts its
   * signal when it hears of it.
   * @throws (rejects) as {@link PollHandle.lookup}.
   */
  async cancelJob<R = unknown>(id: string, reason?: unknown): Promise<PollSnapshot<R>> {
    const rec = await this._resolve(id);
    await this._cancelAsync(rec, reason);
    return snapshotOf<R>(rec);
  }

  /**
   * Waits until the job's version differs from `version` (any change of state or progress, or
   * expiry), or `timeoutMs` passes, and resolves with the snapshot then.
   *
   * @param options.version - The version the caller has; by default the current one.
   * @throws (rejects) NotFoundError or GoneError as {@link PollHandle.get}; the signal's reason
   *   when aborted; ClosedError (`PB_ERR_CLOSED`) when the registry closes meanwhile.
   */
  async waitForChange<R = unknown>(
    id: string,
    options: { readonly version?: number; readonly timeoutMs: number; readonly signal?: AbortSignal },
  ): Promise<PollSnapshot<R>> {
    const rec = this.#store === undefined ? this._record(id) : await this._resolve(id);
    const opts = check.optionsObject('options', options) as { version?: number; timeoutMs: number; signal?: AbortSignal };
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

  /** A snapshot of the counters. */
  stats(): PollHandleStats {
    return {
      pending: this.#pending,
      running: this.#running,
      inFlight: this.#inFlight,
      stored: this.#stored,
      tombstones: this.#tombstones.size,
      idempotencyKeys: this.#idempotency.size,
      waiting: this.#waiting,
      started: this.#started,
      replayed: this.#replayed,
      rejected: this.#rejected,
      succeeded: this.#succeeded,
      failed: this.#failed,
      canceled: this.#canceled,
      expired: this.#expired,
      mirrors: this.#mirrors.size,
      reaped: this.#reaped,
    };
  }

  /** The clock. @internal */
  get _clock(): Clock {
    return this.#clock;
  }

  /** The purgatory waiters are held in. @internal */
  get _purgatory(): Purgatory {
    return this.#purgatory;
  }

  /**
   * The record of a job, or the error for an unknown or expired id. @internal
   */
  _record(id: string): JobRecord {
    this.assertOpen('get');
    const rec = typeof id === 'string' ? (this.#records.get(id) ?? this.#mirrors.get(id)) : undefined;
    if (rec !== undefined) return rec;
    const shown = typeof id === 'string' && ID_RE.test(id) ? id : '(malformed id)';
    if (typeof id === 'string') {
      const at = this.#tombstones.get(id);
      if (at !== undefined) {
        if (this.#clock.now() - at <= this.#goneMs) throw new GoneError(`Job ${shown} has expired: its outcome was kept for its TTL and is gone`);
        this.#tombstones.delete(id);
      }
    }
    throw new NotFoundError(`No job ${shown}`);
  }

  /**
   * The record of a job wherever it runs (read from the store unless it runs here), or the error
   * for an unknown or expired id. @internal
   */
  async _resolve(id: string): Promise<JobRecord> {
    const store = this.#store;
    if (store === undefined) return this._record(id);
    this.assertOpen('get');
    if (typeof id !== 'string' || !ID_RE.test(id)) return this._record(id);
    // An outcome is final (only this registry's TTL timer ends it), so a finished job of this
    // registry is answered from memory.
    const own = this.#records.get(id);
    if (own !== undefined && isOutcome(own.state)) return own;
    // Read through even for a live job that runs here: a cancel made through another process must show
    // in the next read anywhere, before its announcement arrives. When the store cannot be reached,
    // this registry's own jobs are answered as it knows them.
    let found: JobLookup;
    try {
      found = await store.read(id);
    } catch (error) {
      if (own !== undefined && !this.closed) return own;
      throw error;
    }
    this.assertOpen('get');
    if (found !== undefined && found !== 'gone') return this.#mirror(found);
    const copy = this.#records.get(id) ?? this.#mirrors.get(id);
    if (copy !== undefined) this.#vanished(copy, found);
    if (found === 'gone') throw new GoneError(`Job ${id} has expired: its outcome was kept for its TTL and is gone`);
    return this._record(id);
  }

  /** Cancels a record, and with a store resolves once the store has the cancel. @internal */
  async _cancelAsync(rec: JobRecord, reason?: unknown): Promise<boolean> {
    const store = this.#store;
    if (store === undefined) return this._cancel(rec, reason);
    if (!isLive(rec.state)) return false;
    if (rec.owned && reason !== undefined) rec.cancelReason = reason;
    let found: JobLookup;
    try {
      found = await this.#storeWrite(store.update(rec.id, { kind: 'canceled' }));
    } catch (error) {
      if (rec.cancelReason === reason) rec.cancelReason = undefined;
      throw error;
    }
    const wasLive = isLive(rec.state);
    if (!this.destroyed) this.#apply(rec, found);
    return wasLive && (rec.state as PollJobState) === 'canceled';
  }

  /** Cancels a record (with a store: in the background). @internal */
  _cancel(rec: JobRecord, reason?: unknown): boolean {
    if (!isLive(rec.state)) return false;
    if (this.#store !== undefined) {
      this._cancelAsync(rec, reason).catch((error: unknown) => this.#storeError(error, 'write'));
      return true;
    }
    const controller = rec.controller;
    this.#finish(rec, 'canceled', undefined, undefined);
    controller?.abort(reason ?? new CanceledError(`Job ${rec.id} was canceled`));
    return true;
  }

  // --- the pending queue and running -----------------------------------------------------------

  #enqueue(rec: JobRecord): void {
    rec.queued = true;
    rec.qPrev = this.#qTail;
    if (this.#qTail !== null) this.#qTail.qNext = rec;
    else this.#qHead = rec;
    this.#qTail = rec;
    this.#schedulePump();
  }

  #dequeue(rec: JobRecord): void {
    if (!rec.queued) return;
    rec.queued = false;
    if (rec.qPrev !== null) rec.qPrev.qNext = rec.qNext;
    else this.#qHead = rec.qNext;
    if (rec.qNext !== null) rec.qNext.qPrev = rec.qPrev;
    else this.#qTail = rec.qPrev;
    rec.qPrev = rec.qNext = null;
  }

  #schedulePump(): void {
    if (this.#pumpQueued || this.#qHead === null || this.#inFlight >= this.#concurrency) return;
    this.#pumpQueued = true;
    queueMicrotask(this.#pump);
  }

  readonly #pump = (): void => {
    this.#pumpQueued = false;
    while (!this.closed && this.#qHead !== null && this.#inFlight < this.#concurrency) {
      const rec = this.#qHead;
      this.#dequeue(rec);
      this.#run(rec);
    }
  };

  #run(rec: JobRecord): void {
    if (this.#store !== undefined) {
      this.#runShared(rec, this.#store);
      return;
    }
    const fn = rec.fn!;
    rec.fn = null;
    rec.state = 'running';
    rec.startedAt = this.#clock.now();
    this.#pending--;
    this.#running++;
    this.#inFlight++;
    rec.inFlight = true;
    const controller = new AbortController();
    rec.controller = controller;
    this.#changed(rec);
    this.#invoke(rec, fn, controller);
  }

  /** With a store: the job runs once the store has it `running` (it may have been canceled meanwhile). */
  #runShared(rec: JobRecord, store: JobStore): void {
    const fn = rec.fn!;
    this.#inFlight++; // the slot is held while the store answers
    rec.inFlight = true;
    const release = (): void => {
      rec.inFlight = false;
      this.#inFlight--;
      this.#schedulePump();
    };
    this.#storeWrite(store.update(rec.id, { kind: 'running' })).then(
      (found) => {
        if (!this.destroyed) this.#apply(rec, found);
        // Runs once: `fn` is cleared when it is called (or when the job ends first).
        if (rec.state !== 'running' || this.closed || rec.fn === null) return release();
        rec.fn = null;
        const controller = new AbortController();
        rec.controller = controller;
        this.#invoke(rec, fn, controller);
      },
      (error: unknown) => {
        this.#storeError(error, 'write');
        release();
        // The store may or may not have it running (the answer may be what was lost): try again in
        // a second. A write to a job already running is refused with the job as it is, and the
        // function runs then; a job that ended meanwhile is dropped.
        if (rec.fn !== null && !this.closed) {
          this.#clock.setTimer(() => {
            if (rec.fn !== null && !rec.queued && !rec.inFlight && !this.closed && isLive(rec.state)) this.#enqueue(rec);
          }, RETRY_MS);
        }
      },
    );
  }

  /** Calls the job function. */
  #invoke(rec: JobRecord, fn: PollJobFunction, controller: AbortController): void {
    if (rec.timeoutMs !== Infinity) this.#arm(rec, TIMEOUT, rec.timeoutMs);
    const context: PollJobContext = {
      id: rec.id,
      // Node builds an AbortSignal on first access (about 0.7 KB): a job that never looks at its
      // signal never pays for one.
      get signal(): AbortSignal {
        return controller.signal;
      },
      progress: (value: PollProgress) => this.#progress(rec, value),
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
    this.#inFlight--;
    if (rec.state === 'running') {
      if (this.#store !== undefined) {
        if (rec.outcome === undefined) {
          rec.outcome = ok ? this.#resultOf(rec, value) : { kind: 'failed', error: this.#serialize(value) };
          this.#flush(rec);
        }
      } else if (ok) this.#succeed(rec, value);
      else this.#finish(rec, 'failed', undefined, this.#serialize(value));
    }
    rec.controller = null;
    this.#schedulePump();
  }

  #succeed(rec: JobRecord, value: unknown): void {
    const outcome = this.#resultOf(rec, value);
    if (outcome.kind === 'failed') this.#finish(rec, 'failed', undefined, outcome.error);
    else this.#finish(rec, 'succeeded', outcome.resultJson, undefined);
  }

  /** A job function's value as its outcome: its JSON, or a failure when it has none or is too large. */
  #resultOf(rec: JobRecord, value: unknown): { kind: 'succeeded'; resultJson: string } | { kind: 'failed'; error: PollJobError } {
    let json: string | undefined;
    let problem: string | undefined;
    try {
      // Results travel as JSON (to clients, through a job store): held to the rule of published data.
      if (value !== undefined) assertJsonValue(value, { what: 'the result' });
      json = JSON.stringify(value === undefined ? null : value);
      if (json === undefined) problem = `the result is not JSON-serializable (${typeof value})`;
      else if (json.length > this.#maxResultBytes / 3 && Buffer.byteLength(json) > this.#maxResultBytes) {
        problem = `the result is larger than maxResultBytes (${this.#maxResultBytes} bytes as JSON)`;
      }
    } catch (error) {
      problem = `the result is not JSON-serializable: ${errorMessage(error)}`;
    }
    if (problem !== undefined || json === undefined) {
      return { kind: 'failed', error: { name: 'InvalidResultError', code: ErrorCodes.INVALID_ARGUMENT, message: `Job ${rec.id} failed: ${problem}` } };
    }
    return { kind: 'succeeded', resultJson: json };
  }

  #progress(rec: JobRecord, value: PollProgress): void {
    const next = normalizeProgress(value);
    if (this.#store !== undefined) {
      // Written in the background, one write at a time: reports made meanwhile collapse into the last.
      if (rec.state !== 'running' || rec.outcome !== undefined || sameProgress(rec.wantProgress ?? rec.progress, next)) return;
      rec.wantProgress = next;
      this.#flush(rec);
      return;
    }
    if (rec.state !== 'running' || sameProgress(rec.progress, next)) return;
    rec.progress = next;
    this.#changed(rec);
  }

  /** The one way to an outcome: the first call wins. */
  #finish(rec: JobRecord, state: 'succeeded' | 'failed' | 'canceled', resultJson: string | undefined, error: PollJobError | undefined): void {
    if (rec.state === 'pending') {
      this.#pending--;
      this.#dequeue(rec);
      rec.fn = null;
    } else if (rec.state === 'running') {
      this.#running--;
    } else {
      return;
    }
    rec.state = state;
    rec.finishedAt = this.#clock.now();
    rec.resultJson = resultJson;
    rec.error = error;
    this.#keep(rec);
    this.#changed(rec);
    if (pollChannels.finish.hasSubscribers) pollChannels.finish.publish({ poll: this, id: rec.id, state, error });
    this.#settle(rec);
  }

  /** A job of this registry has its outcome: counted, and kept for its TTL. */
  #keep(rec: JobRecord): void {
    if (rec.state === 'succeeded') this.#succeeded++;
    else if (rec.state === 'failed') this.#failed++;
    else this.#canceled++;
    this.#stored++;
    if (rec.timer !== null) this.#disarm(rec);
    this.#arm(rec, TTL, rec.ttlMs);
  }

  #expire(rec: JobRecord): void {
    if (!isOutcome(rec.state)) return;
    rec.state = 'expired';
    rec.resultJson = undefined;
    this.#stored--;
    this.#expired++;
    this.#records.delete(rec.id);
    if (rec.idempotencyKey !== undefined && this.#idempotency.get(rec.idempotencyKey) === rec) this.#idempotency.delete(rec.idempotencyKey);
    this.#bury(rec.id);
    this.#changed(rec);
    if (pollChannels.expire.hasSubscribers) pollChannels.expire.publish({ poll: this, id: rec.id });
  }

  #bury(id: string): void {
    if (this.#maxTombstones === 0 || this.#goneMs === 0) return;
    const now = this.#clock.now();
    this.#tombstones.set(id, now);
    for (const [oldest, at] of this.#tombstones) {
      if (this.#tombstones.size <= this.#maxTombstones && now - at <= this.#goneMs) break;
      this.#tombstones.delete(oldest);
    }
  }

  /** A change of state or progress: new version, and wake whoever waits on the job. */
  #changed(rec: JobRecord): void {
    rec.version++;
    if (!this.#purgatory.closed) this.#purgatory.checkAndComplete(rec.key);
  }

  #serialize(error: unknown): PollJobError {
    if (this.#serializeError !== undefined) {
      try {
        const custom = this.#serializeError(error);
        if (typeof custom === 'object' && custom !== null && typeof custom.message === 'string' && typeof custom.name === 'string') {
          return { ...custom, message: custom.message.slice(0, 1000), name: custom.name.slice(0, 100) };
        }
      } catch {
        // fall back to the default
      }
    }
    return serializeError(error, this.#exposeStack);
  }

  // --- timers: one purgatory for TTLs and timeouts ----------------------------------------------

  #arm(rec: JobRecord, kind: number, ms: number): void {
    if (this.closed || this.#purgatory.closed) return;
    const timer = new JobTimer(this.#timerHost, rec, kind, ms);
    rec.timer = timer;
    this.#purgatory.tryCompleteElseWatch(timer, this.#timersKey);
  }

  #disarm(rec: JobRecord): void {
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
        const store = this.#store;
        if (store !== undefined && isOutcome(rec.state)) {
          this.#storeWrite(store.expire(rec.id)).catch((error: unknown) => this.#storeError(error, 'write'));
        }
        this.#expire(rec);
        return;
      }
      if (rec.state !== 'running') return;
      const error = new TimeoutError(`Job ${rec.id} did not finish within its timeout of ${rec.timeoutMs} ms`);
      const controller = rec.controller;
      const failure: PollJobError = { name: 'TimeoutError', code: error.code, message: error.message };
      if (this.#store !== undefined) {
        if (rec.outcome === undefined) {
          rec.outcome = { kind: 'failed', error: failure };
          this.#flush(rec);
        }
      } else {
        this.#finish(rec, 'failed', undefined, failure);
      }
      controller?.abort(error);
    },
  };

  // --- with a store: the store decides, this registry applies what it answers ---------------------

  /**
   * Applies what the store says of a job to its record here: state, progress, outcome and version,
   * when newer than what the record has. Counters, timers, the job's signal, `done()` and waiters
   * follow.
   */
  #apply(rec: JobRecord, found: JobLookup): void {
    if (found === undefined || found === 'gone') {
      this.#vanished(rec, found);
      return;
    }
    const before = rec.state;
    if (found.version <= rec.version || before === 'expired') return;
    rec.version = found.version;
    rec.progress = found.progress;
    rec.resultJson = found.resultJson;
    rec.error = found.error;
    const after = found.state;
    if (before !== after) {
      rec.state = after;
      if (after === 'running') rec.startedAt = this.#clock.now();
      if (rec.owned) {
        if (before === 'pending') this.#pending--;
        else if (before === 'running') this.#running--;
        if (after === 'running') {
          this.#running++;
          // Running in the store before this registry heard the answer to its own write (it was
          // lost): the function runs when the job is taken from the queue.
          if (rec.fn !== null && !rec.inFlight && !rec.queued) this.#enqueue(rec);
        } else if (rec.queued) this.#dequeue(rec);
      }
      if (isOutcome(after)) this.#reached(rec);
    }
    if (!this.#purgatory.closed) this.#purgatory.checkAndComplete(rec.key);
  }

  /** A record got its outcome from the store. */
  #reached(rec: JobRecord): void {
    const state = rec.state;
    rec.finishedAt = this.#clock.now();
    if (rec.owned) {
      rec.fn = null;
      rec.wantProgress = undefined;
      rec.outcome = undefined;
      this.#keep(rec);
      // Ended elsewhere (canceled through another process, failed by a lease): stop the work here.
      const controller = rec.controller;
      if (controller !== null && !controller.signal.aborted) {
        const error = rec.error;
        controller.abort(
          state === 'canceled'
            ? (rec.cancelReason ?? new CanceledError(`Job ${rec.id} was canceled`))
            : new CanceledError(`Job ${rec.id} ended ${state}${error === undefined ? '' : `: ${error.message}`}`),
        );
      }
      rec.cancelReason = undefined;
      if (pollChannels.finish.hasSubscribers) pollChannels.finish.publish({ poll: this, id: rec.id, state, error: rec.error });
    }
    this.#settle(rec);
  }

  #settle(rec: JobRecord): void {
    const settle = rec.settle;
    if (settle === null) return;
    rec.settle = null;
    const snapshot = snapshotOf(rec);
    for (const resolve of settle) resolve(snapshot);
  }

  /** The store no longer has the job: it expired (or the store lost it). */
  #vanished(rec: JobRecord, found: 'gone' | undefined): void {
    if (rec.state === 'expired') return;
    if (!rec.owned) {
      // A copy: the job expired where it runs (or the store lost it).
      this.#mirrors.delete(rec.id);
      rec.state = 'expired';
      rec.resultJson = undefined;
      rec.version++;
      this.#settle(rec);
      if (!this.#purgatory.closed) this.#purgatory.checkAndComplete(rec.key);
      return;
    }
    if (isLive(rec.state)) {
      // The store lost a live job of ours (flushed, or restarted without its data): it fails here.
      this.#apply(rec, {
        id: rec.id,
        state: 'failed',
        progress: rec.progress,
        error: { name: 'JobLostError', code: WORKER_LOST, message: `Job ${rec.id} is no longer in the job store${found === 'gone' ? '' : ' (was its data lost?)'}` },
        version: rec.version + 1,
        owner: this.#owner,
      });
      return;
    }
    if (rec.timer !== null) this.#disarm(rec);
    this.#expire(rec);
  }

  /** The record of a job the store has: this registry's own, or a copy (new or refreshed). */
  #mirror(job: StoredJob): JobRecord {
    const own = this.#records.get(job.id);
    if (own !== undefined) {
      this.#apply(own, job);
      return own;
    }
    let copy = this.#mirrors.get(job.id);
    if (copy === undefined) {
      copy = new JobRecord(job.id, this.#ns + job.id, null, this.#clock.now(), Infinity, this.#ttlMs, undefined, job.fingerprint);
      copy.owned = false;
      copy.version = 0;
      if (this.#mirrors.size >= MAX_MIRRORS) this.#sweepMirrors();
      this.#mirrors.set(job.id, copy);
    }
    this.#apply(copy, job);
    return copy;
  }

  /** Drops the copies nobody reads or awaits now (a later read fetches the job again). */
  #sweepMirrors(): void {
    for (const [id, copy] of this.#mirrors) {
      if (copy.settle === null && !copy.refreshing && this.#purgatory.watcherCount(copy.key) === 0) this.#mirrors.delete(id);
    }
  }

  /** Writes an owned job's progress and outcome, one write at a time, in order. */
  #flush(rec: JobRecord): void {
    if (rec.writing) return;
    rec.writing = true;
    void this.#writeLoop(rec, this.#store!);
  }

  async #writeLoop(rec: JobRecord, store: JobStore): Promise<void> {
    // `writing` is cleared by the finally below in the same turn as the last look for work, so
    // nothing queued after that look is left unwritten.
    try {
      for (;;) {
        if (rec.state !== 'running' && rec.state !== 'pending') return;
        let update: JobUpdate;
        const progress = rec.wantProgress;
        if (progress !== undefined) {
          update = { kind: 'progress', progress };
          rec.wantProgress = undefined;
        } else if (rec.outcome !== undefined) {
          update = rec.outcome;
        } else {
          return;
        }
        try {
          const found = await this.#storeWrite(store.update(rec.id, update));
          if (!this.destroyed) this.#apply(rec, found);
        } catch (error) {
          this.#storeError(error, 'write');
          // Progress is dropped (the next report or the outcome carries on); an outcome is retried.
          if (update.kind === 'progress') continue;
          if (this.destroyed) return;
          await new Promise<void>((resolve) => this.#clock.setTimer(resolve, RETRY_MS));
        }
      }
    } finally {
      rec.writing = false;
    }
  }

  /** Fails the jobs whose creation the store may have done without saying so. */
  async #failOrphans(store: JobStore): Promise<void> {
    for (const id of [...this.#orphans]) {
      await store.update(id, { kind: 'failed', error: { name: 'JobLostError', code: WORKER_LOST, message: `Job ${id} was not started: the job store did not confirm it` } });
      this.#orphans.delete(id);
    }
  }

  /**
   * `done()` on a copy this registry no longer holds (dropped at a tick since it was read): the
   * job is looked up again, and its outcome awaited on the fresh copy. @internal
   */
  _doneOf<R>(rec: JobRecord): Promise<PollSnapshot<R>> | undefined {
    if (rec.owned || this.#mirrors.get(rec.id) === rec || this.closed) return undefined;
    return this.lookup<R>(rec.id).then(
      (job) => job.done(),
      () => snapshotOf<R>(rec),
    );
  }

  /** Keeps track of a write, so close() can wait for it. */
  #storeWrite<T>(promise: Promise<T>): Promise<T> {
    this.#writes.add(promise);
    const done = (): void => {
      this.#writes.delete(promise);
    };
    promise.then(done, done);
    return promise;
  }

  #storeError(error: unknown, what: 'read' | 'write' | 'lease'): void {
    if (pollChannels.storeError.hasSubscribers) pollChannels.storeError.publish({ poll: this, error, what });
  }

  /** The store announced a change: re-read the job if this registry holds it and is behind. */
  readonly #onStoreChange = (id: string, version: number): void => {
    if (this.closed) return;
    const rec = this.#records.get(id) ?? this.#mirrors.get(id);
    if (rec !== undefined && version > rec.version) this.#refresh(rec);
  };

  /** Announcements may have been lost: re-read every job held here that can still change. */
  readonly #onStoreResync = (): void => {
    if (this.closed) return;
    for (const rec of this.#records.values()) if (isLive(rec.state)) this.#refresh(rec);
    for (const rec of this.#mirrors.values()) this.#refresh(rec);
  };

  #refresh(rec: JobRecord): void {
    if (rec.refreshing) {
      rec.refreshAgain = true;
      return;
    }
    rec.refreshing = true;
    const store = this.#store!;
    const loop = async (): Promise<void> => {
      try {
        do {
          rec.refreshAgain = false;
          const found = await store.read(rec.id);
          if (this.closed) return;
          this.#apply(rec, found);
        } while (rec.refreshAgain && rec.state !== 'expired');
      } catch (error) {
        this.#storeError(error, 'read');
      } finally {
        rec.refreshing = false;
      }
    };
    void loop();
  }

  #scheduleTick(): void {
    if (this.closed) return;
    this.#tickTimer = this.#clock.setTimer(this.#tick, Math.max(10, Math.floor(this.#leaseMs / 3)));
  }

  /**
   * Every third of the lease: renew it, fail the jobs of registries whose lease ran out, re-read
   * the copies something awaits (in case an announcement was lost) and drop the others.
   */
  readonly #tick = (): void => {
    this.#tickTimer = undefined;
    if (this.closed) return;
    const store = this.#store!;
    this.#sweepMirrors();
    for (const copy of this.#mirrors.values()) if (isLive(copy.state)) this.#refresh(copy);
    if (!this.#beating) {
      // The lease is renewed every tick, whatever the reaping below is doing.
      this.#beating = true;
      store
        .heartbeat(this.#owner, this.#leaseMs)
        .catch((error: unknown) => this.#storeError(error, 'lease'))
        .finally(() => {
          this.#beating = false;
        });
    }
    if (!this.#ticking) {
      this.#ticking = true;
      this.#failOrphans(store)
        .then(() => store.reap(LOST_WORKER))
        .then(
          (count) => {
            this.#reaped += count;
          },
          (error: unknown) => this.#storeError(error, 'lease'),
        )
        .finally(() => {
          this.#ticking = false;
        });
    }
    this.#scheduleTick();
  };

  // --- lifecycle -------------------------------------------------------------------------------

  protected async onClose(): Promise<void> {
    await this.#shutdown(new ClosedError('The PollHandle was closed'));
  }

  protected onDestroy(reason: unknown): void {
    void this.#shutdown(reason ?? new ClosedError('The PollHandle was destroyed'));
  }

  /**
   * With a store: this registry's live jobs end (canceled, or the outcome they were writing) in
   * the store, then the lease is released (with live jobs left, it counts as run out, so another
   * registry fails them).
   */
  async #shutdownShared(store: JobStore, reason: unknown, wait: boolean): Promise<void> {
    this.#tickTimer?.cancel();
    this.#tickTimer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    const ends: Promise<boolean>[] = [];
    for (const rec of this.#records.values()) {
      if (!isLive(rec.state)) continue;
      rec.cancelReason = reason;
      rec.controller?.abort(reason);
      ends.push(
        store.update(rec.id, rec.outcome ?? { kind: 'canceled' }).then(
          (found) => {
            this.#apply(rec, found);
            return true;
          },
          () => false,
        ),
      );
    }
    if (!wait) return;
    await Promise.all(ends);
    await Promise.allSettled([...this.#writes]);
    await this.#failOrphans(store).catch((error: unknown) => this.#storeError(error, 'write'));
    // Released with live jobs left (their end could not be written), the lease counts as run out:
    // any other registry fails them at its next tick.
    await store.release(this.#owner).catch((error: unknown) => this.#storeError(error, 'lease'));
  }

  async #shutdown(reason: unknown): Promise<void> {
    const store = this.#store;
    if (store !== undefined) {
      await this.#shutdownShared(store, reason, !this.destroyed);
      // What could not be written ends canceled here all the same (below, as without a store);
      // copies of other registries' jobs are answered as they are.
      for (const copy of this.#mirrors.values()) {
        this.#settle(copy);
        if (!this.#ownsPurgatory && !this.#purgatory.closed) this.#purgatory.cancelForKey(copy.key, reason);
      }
      this.#mirrors.clear();
    }
    // Live jobs end canceled (their waiters are answered with that), then every timer and
    // waiter goes with the purgatory (or with this registry's keys of a shared one).
    for (const rec of this.#records.values()) {
      if (isLive(rec.state)) {
        const controller = rec.controller;
        this.#finish(rec, 'canceled', undefined, undefined);
        controller?.abort(reason);
      }
      if (rec.timer !== null) this.#disarm(rec);
    }
    if (this.#ownsPurgatory) await this.#purgatory.close();
    else if (!this.#purgatory.closed) {
      this.#purgatory.cancelForKey(this.#timersKey, reason);
      for (const rec of this.#records.values()) this.#purgatory.cancelForKey(rec.key, reason);
    }
    this.#records.clear();
    this.#idempotency.clear();
    this.#tombstones.clear();
    this.#qHead = this.#qTail = null;
  }
}

let registryCount = 0;

const TIMEOUT = 0;
const TTL = 1;

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

/** What the live jobs of a registry whose lease ran out fail with. */
const LOST_WORKER: PollJobError = Object.freeze({
  name: 'WorkerLostError',
  code: WORKER_LOST,
  message: 'The process running this job stopped renewing its lease (it died, or lost the job store) before the job ended',
});

/** Most copies of other registries' jobs held at once (past it, unused ones are dropped). */
const MAX_MIRRORS = 10_000;
/** How long a failed store write of a job's start or outcome waits before it is tried again, in ms. */
const RETRY_MS = 1000;

function checkKey(key: unknown): void {
  if (typeof key !== 'string' || key === '' || key.length > 1024) {
    throw new InvalidArgumentError(`Expected \`idempotencyKey\` to be a string of 1 to 1024 characters, got ${check.describe(key)}`);
  }
}

function newId(): string {
  return randomBytes(12).toString('base64url');
}

function timeoutOption(name: string, value: unknown): number {
  if (value === undefined || value === Infinity) return Infinity;
  return check.integerInRange(name, value, 1, MAX_MS);
}

function normalizeProgress(value: unknown): PollProgress {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0 || value > 1) {
      throw new InvalidArgumentError(`Expected \`progress\` to be a fraction from 0 to 1, or { done, total?, message? }, got ${check.describe(value)}`);
    }
    return value;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`Expected \`progress\` to be a fraction from 0 to 1, or { done, total?, message? }, got ${check.describe(value)}`);
  }
  const { done, total, message } = value as { done?: unknown; total?: unknown; message?: unknown };
  if (typeof done !== 'number' || !Number.isFinite(done) || done < 0) {
    throw new InvalidArgumentError(`Expected \`progress.done\` to be a finite number >= 0, got ${check.describe(done)}`);
  }
  if (total !== undefined && (typeof total !== 'number' || !Number.isFinite(total) || total < 0)) {
    throw new InvalidArgumentError(`Expected \`progress.total\` to be a finite number >= 0, got ${check.describe(total)}`);
  }
  if (message !== undefined && (typeof message !== 'string' || message.length > 1000)) {
    throw new InvalidArgumentError(`Expected \`progress.message\` to be a string of at most 1000 characters, got ${check.describe(message)}`);
  }
  const out: { done: number; total?: number; message?: string } = { done };
  if (total !== undefined) out.total = total;
  if (message !== undefined) out.message = message;
  return Object.freeze(out);
}

function sameProgress(a: PollProgress | null, b: PollProgress): boolean {
  if (typeof a === 'number' || typeof b === 'number' || a === null) return a === b;
  return a.done === b.done && a.total === b.total && a.message === b.message;
}

function errorMessage(error: unknown): string {
  try {
    return error instanceof Error ? String(error.message) : String(error);
  } catch {
    return 'unknown error';
  }
}

/** The default serialization of what a job threw: name, message, string code; the stack only if asked. */
function serializeError(error: unknown, exposeStack: boolean): PollJobError {
  let name = 'Error';
  let message = 'The job failed';
  let code: string | undefined;
  let stack: string | undefined;
  try {
    if (typeof error === 'object' && error !== null) {
      const e = error as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown };
      if (typeof e.name === 'string' && e.name !== '') name = e.name.slice(0, 100);
      if (typeof e.message === 'string') message = e.message;
      if (typeof e.code === 'string') code = e.code.slice(0, 100);
      if (exposeStack && typeof e.stack === 'string') stack = e.stack.slice(0, 16_384);
    } else if (error !== undefined) {
      message = String(error);
    }
  } catch {
    // a hostile getter or toString: keep what we have
  }
  const out: { -readonly [K in keyof PollJobError]: PollJobError[K] } = { name, message: message.slice(0, 1000) };
  if (code !== undefined) out.code = code;
  if (stack !== undefined) out.stack = stack;
  return out;
}
