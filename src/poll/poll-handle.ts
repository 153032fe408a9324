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
 * nothing changes it: a result that arrives after a cancel is dropped. Cancelling and timing out
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
 * @module
 */
import { randomBytes } from 'node:crypto';
import { type Clock, realClock } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import {
  CancelledError,
  CapacityError,
  ClosedError,
  GoneError,
  IdempotencyConflictError,
  InvalidArgumentError,
  NotFoundError,
  TimeoutError,
} from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { DelayedOperation, Purgatory } from '../purgatory/index.js';

/**
 * Where a job is: `pending` (filed, `fn` not begun), `running`, then exactly one outcome,
 * `succeeded`, `failed` or `canceled`; an outcome becomes `expired` once its TTL has passed.
 */
export type PollJobState = 'pending' | 'running' | 'succeeded' | 'failed' | 'canceled' | 'expired';

/**
 * A job's progress: a fraction from 0 to 1, or parts done out of a total, with an optional
 * message for people.
 */
export type PollProgress =
  | number
  | {
      /** Parts done, a finite number >= 0. */
      readonly done: number;
      /** Parts in all, a finite number >= 0, if known. */
      readonly total?: number;
      /** What the job is doing, for people (at most 1,000 characters). */
      readonly message?: string;
    };

/** A failed job's error, serialized safely for clients: no stack unless `exposeStack` is set. */
export interface PollJobError {
  /** The error's `name` (`Error`, `TypeError`, `TimeoutError`, ...). */
  readonly name: string;
  /** The error's message (at most 1,000 characters). */
  readonly message: string;
  /** The error's `code`, when it had a string one (a patchbay code, `ECONNREFUSED`, ...). */
  readonly code?: string;
  /** The stack, only when {@link PollHandleOptions.exposeStack} is `true`. */
  readonly stack?: string;
}

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
  /** Aborted when the job is cancelled, times out, or the registry closes; stop work then. */
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
   * Most jobs pending or running (including cancelled ones whose function has not returned yet).
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
  /** Expired ids remembered as gone now. */
  readonly tombstones: number;
  /** Idempotency keys known now. */
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
  /** Jobs cancelled so far. */
  readonly canceled: number;
  /** Outcomes expired so far. */
  readonly expired: number;
}

/** The diagnostics channels a {@link PollHandle} publishes on. */
export const pollChannels = {
  /** `{ poll, id }` when a job is started. */
  start: channel('poll', 'start'),
  /** `{ poll, id, state, error }` when a job reaches its outcome. */
  finish: channel('poll', 'finish'),
  /** `{ poll, id }` when an outcome expires. */
  expire: channel('poll', 'expire'),
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
  constructor(
    readonly id: string,
    /** The purgatory key of this job's waiters. */
    readonly key: string,
    fn: PollJobFunction,
    readonly createdAt: number,
    readonly timeoutMs: number,
    readonly ttlMs: number,
    readonly idempotencyKey: string | undefined,
    readonly fingerprint: string | undefined,
  ) {
    this.fn = fn;
  }
}

/** True for the three outcomes. @internal */
export function isOutcome(state: PollJobState): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'canceled';
}

/** Builds the snapshot of a record. @internal */
export function snapshotOf<R>(rec: JobRecord): PollSnapshot<R> {
  const s: { -readonly [K in keyof PollSnapshot<R>]: PollSnapshot<R>[K] } = { id: rec.id, state: rec.state, progress: rec.progress, version: rec.version };
  if (rec.resultJson !== undefined) s.result = JSON.parse(rec.resultJson) as R;
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
   * Never rejects: closing the registry cancels the job.
   */
  done(): Promise<PollSnapshot<R>> {
    const rec = this._rec;
    if (rec.state !== 'pending' && rec.state !== 'running') return Promise.resolve(snapshotOf<R>(rec));
    return new Promise<PollSnapshot<R>>((resolve) => {
      (rec.settle ??= []).push(resolve as (snapshot: PollSnapshot) => void);
    });
  }

  /**
   * Cancels the job if it has no outcome yet: it ends `canceled` now and its signal aborts with
   * `reason`.
   * @param reason - The abort reason the job function sees.
   * @defaultValue `reason` is a {@link CancelledError}
   * @returns `true` if this call cancelled it.
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
    if (typeof fn !== 'function') throw new InvalidArgumentError(`Expected \`fn\` to be a function, got ${check.describe(fn)}`);
    const opts = check.optionsObject('options', options) as PollStartOptions;
    const key = opts.idempotencyKey;
    const fingerprint = opts.fingerprint;
    if (fingerprint !== undefined && typeof fingerprint !== 'string') {
      throw new InvalidArgumentError(`Expected \`fingerprint\` to be a string, got ${check.describe(fingerprint)}`);
    }
    if (key !== undefined) {
      const existing = this.findByIdempotencyKey<R>(key, fingerprint);
      if (existing !== undefined) return existing;
    }
    const timeoutMs = opts.timeoutMs === undefined ? this.#timeoutMs : timeoutOption('timeoutMs', opts.timeoutMs);
    const ttlMs = opts.ttlMs === undefined ? this.#ttlMs : check.integerInRange('ttlMs', opts.ttlMs, 1, MAX_MS);
    if (this.#pending + this.#inFlight >= this.#maxLive) {
      this.#rejected++;
      throw new CapacityError(`The server runs its maximum of ${this.#maxLive} live jobs; retry later`, { retryAfterSeconds: 1 });
    }
    if (this.#pending + this.#running + this.#stored >= this.#maxStored) {
      this.#rejected++;
      throw new CapacityError(`The server keeps its maximum of ${this.#maxStored} jobs; retry when results expire`, { retryAfterSeconds: 1 });
    }
    let id = newId();
    while (this.#records.has(id)) id = newId();
    const rec = new JobRecord(id, this.#ns + id, fn as PollJobFunction, this.#clock.now(), timeoutMs, ttlMs, key, fingerprint);
    this.#records.set(id, rec);
    if (key !== undefined) this.#idempotency.set(key, rec);
    this.#pending++;
    this.#started++;
    this.#enqueue(rec);
    if (pollChannels.start.hasSubscribers) pollChannels.start.publish({ poll: this, id });
    return new PollJob<R>(rec, this, false);
  }

  /**
   * The job started with this idempotency key, if it is still kept.
   * @param fingerprint - When given, must equal the fingerprint the job was started with.
   * @throws IdempotencyConflictError (`PB_ERR_IDEMPOTENCY_CONFLICT`) when the fingerprints differ.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a key that is not a non-empty string.
   */
  findByIdempotencyKey<R = unknown>(key: string, fingerprint?: string): PollJob<R> | undefined {
    this.assertOpen('findByIdempotencyKey');
    if (typeof key !== 'string' || key === '' || key.length > 1024) {
      throw new InvalidArgumentError(`Expected \`idempotencyKey\` to be a string of 1 to 1024 characters, got ${check.describe(key)}`);
    }
    const rec = this.#idempotency.get(key);
    if (rec === undefined) return undefined;
    if (fingerprint !== undefined && rec.fingerprint !== undefined && fingerprint !== rec.fingerprint) {
      throw new IdempotencyConflictError(`The Idempotency-Key was first used for job ${rec.id} with a different request`);
    }
    this.#replayed++;
    return new PollJob<R>(rec, this, true);
  }

  /**
   * The job with this id.
   * @throws NotFoundError (`PB_ERR_NOT_FOUND`) for an id this registry does not know (or forgot).
   * @throws GoneError (`PB_ERR_GONE`) for a job whose outcome expired less than `goneMs` ago.
   */
  get<R = unknown>(id: string): PollJob<R> {
    return new PollJob<R>(this._record(id), this, false);
  }

  /**
   * Cancels the job with this id (see {@link PollJob.cancel}) and returns its snapshot: `canceled`,
   * or its outcome if it already had one.
   * @throws NotFoundError (`PB_ERR_NOT_FOUND`) or GoneError (`PB_ERR_GONE`), as {@link PollHandle.get}.
   */
  cancel<R = unknown>(id: string, reason?: unknown): PollSnapshot<R> {
    const rec = this._record(id);
    this._cancel(rec, reason);
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
    const rec = this._record(id);
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
    const rec = typeof id === 'string' ? this.#records.get(id) : undefined;
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

  /** Cancels a record. @internal */
  _cancel(rec: JobRecord, reason?: unknown): boolean {
    if (rec.state !== 'pending' && rec.state !== 'running') return false;
    const controller = rec.controller;
    this.#finish(rec, 'canceled', undefined, undefined);
    controller?.abort(reason ?? new CancelledError(`Job ${rec.id} was canceled`));
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
      if (ok) this.#succeed(rec, value);
      else this.#finish(rec, 'failed', undefined, this.#serialize(value));
    }
    rec.controller = null;
    this.#schedulePump();
  }

  #succeed(rec: JobRecord, value: unknown): void {
    let json: string | undefined;
    let problem: string | undefined;
    try {
      json = JSON.stringify(value === undefined ? null : value);
      if (json === undefined) problem = `the result is not JSON-serializable (${typeof value})`;
      else if (json.length > this.#maxResultBytes / 3 && Buffer.byteLength(json) > this.#maxResultBytes) {
        problem = `the result is larger than maxResultBytes (${this.#maxResultBytes} bytes as JSON)`;
      }
    } catch (error) {
      problem = `the result is not JSON-serializable: ${errorMessage(error)}`;
    }
    if (problem !== undefined) {
      this.#finish(rec, 'failed', undefined, { name: 'InvalidResultError', code: 'PB_ERR_INVALID_ARGUMENT', message: `Job ${rec.id} failed: ${problem}` });
    } else {
      this.#finish(rec, 'succeeded', json, undefined);
    }
  }

  #progress(rec: JobRecord, value: PollProgress): void {
    const next = normalizeProgress(value);
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
    if (state === 'succeeded') this.#succeeded++;
    else if (state === 'failed') this.#failed++;
    else this.#canceled++;
    this.#stored++;
    if (rec.timer !== null) this.#disarm(rec);
    this.#arm(rec, TTL, rec.ttlMs);
    this.#changed(rec);
    if (pollChannels.finish.hasSubscribers) pollChannels.finish.publish({ poll: this, id: rec.id, state, error });
    const settle = rec.settle;
    if (settle !== null) {
      rec.settle = null;
      const snapshot = snapshotOf(rec);
      for (const resolve of settle) resolve(snapshot);
    }
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
        this.#expire(rec);
        return;
      }
      if (rec.state !== 'running') return;
      const error = new TimeoutError(`Job ${rec.id} did not finish within its timeout of ${rec.timeoutMs} ms`);
      const controller = rec.controller;
      this.#finish(rec, 'failed', undefined, { name: 'TimeoutError', code: error.code, message: error.message });
      controller?.abort(error);
    },
  };

  // --- lifecycle -------------------------------------------------------------------------------

  protected async onClose(): Promise<void> {
    await this.#shutdown(new ClosedError('The PollHandle was closed'));
  }

  protected onDestroy(reason: unknown): void {
    void this.#shutdown(reason ?? new ClosedError('The PollHandle was destroyed'));
  }

  async #shutdown(reason: unknown): Promise<void> {
    // Live jobs end canceled (their waiters are answered with that), then every timer and
    // waiter goes with the purgatory (or with this registry's keys of a shared one).
    for (const rec of this.#records.values()) {
      if (rec.state === 'pending' || rec.state === 'running') {
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
