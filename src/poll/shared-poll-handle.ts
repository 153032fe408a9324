/**
 * {@link SharedPollHandle}: a registry of long jobs shared between processes through a
 * {@link JobStore} (`RedisJobStore` from `patchbay/redis`, or a `MemoryJobStore` in one process).
 *
 * ## The store decides
 *
 * The store is the authority on every job: each change (running, progress, the outcome, a
 * cancel) is written there first and applied here from its answer, so two processes can never
 * give one job two outcomes. Any registry on the store reads, awaits and cancels any job, and
 * idempotency keys are looked up there, across processes. Which is why this registry has only
 * the asynchronous methods every registry has ({@link JobRegistry}): there is no synchronous
 * `start` or `get` to mean "in this process only".
 *
 * The job function runs in the registry that started it (its *owner*); progress reports made
 * while a write is in flight collapse into the last one, and an outcome whose write fails is
 * retried every second until the store answers. A registry holds *copies* of other registries'
 * jobs while something reads or awaits them, re-read when the store announces a change (and at
 * every tick, in case an announcement was lost); copies nobody uses are dropped at a tick.
 *
 * ## Leases
 *
 * Each registry renews a lease every third of `leaseMs` and fails the live jobs of registries
 * whose lease ran out (`PB_ERR_WORKER_LOST`); a cancel or a failure decided elsewhere aborts the
 * job's signal here. Closing ends this registry's live jobs in the store (canceled, or the outcome
 * they were writing), cancels its timers, and releases its lease.
 *
 * @module
 */
import type { ClockTimer } from '../core/clock.js';
import { CanceledError, ClosedError, ErrorCodes, GoneError, InvalidArgumentError } from '../core/errors.js';
import type { JobLookup, JobStore, JobUpdate, PollJobError, PollJobState, PollProgress, StoredJob } from '../core/jobs.js';
import * as check from '../core/validate.js';
import { checkKey, ID_RE, MAX_MS, newId, sameProgress } from './job-helpers.js';
import { isLive, isOutcome, type JobRecord, type PollSnapshot, snapshotOf } from './job-record.js';
import type { PollJob, PollJobDoneOptions, PollJobFunction } from './poll-job.js';
import { type JobEnd, JobRegistry, pollChannels, type PollHandleOptions, type PollHandleStats, type PollStartOptions } from './registry.js';

/** Options for {@link SharedPollHandle}: those of every registry, plus the store and the lease. */
export interface SharedPollHandleOptions extends PollHandleOptions {
  /**
   * Where the jobs live: `RedisJobStore` from `patchbay/redis`, or a `MemoryJobStore` between
   * registries of one process. The registry does not close the store.
   */
  readonly store: JobStore;
  /**
   * How long this registry's lease lasts, in ms. It is renewed every third of it; if this process
   * dies (or cannot reach the store) for longer, any other registry on the store fails its live
   * jobs with a `WorkerLostError` (code `PB_ERR_WORKER_LOST`).
   * @defaultValue 30000
   */
  readonly leaseMs?: number;
}

/** Counters reported by {@link SharedPollHandle.stats}. */
export interface SharedPollHandleStats extends PollHandleStats {
  /** Jobs of other registries this one holds a copy of now (while they are read or awaited). */
  readonly mirrors: number;
  /** Live jobs of dead registries this one failed so far. */
  readonly reaped: number;
}

/** What the live jobs of a registry whose lease ran out fail with. */
const LOST_WORKER: PollJobError = Object.freeze({
  name: 'WorkerLostError',
  code: ErrorCodes.WORKER_LOST,
  message: 'The process running this job stopped renewing its lease (it died, or lost the job store) before the job ended',
});

/** Most copies of other registries' jobs held at once (past it, unused ones are dropped). */
const MAX_MIRRORS = 10_000;
/** How long a failed store write of a job's start or outcome waits before it is tried again, in ms. */
const RETRY_MS = 1000;

/**
 * A registry of long jobs shared between processes through a {@link JobStore}: a job started by
 * one process is read, awaited and canceled through any other, and a process that dies has its
 * running jobs failed once its lease runs out.
 *
 * @example
 * ```ts
 * import { PollHandler, SharedPollHandle } from 'patchbay';
 * import { RedisBackend, RedisJobStore } from 'patchbay/redis';
 *
 * const jobs = new SharedPollHandle({ store: new RedisJobStore({ backend: new RedisBackend({ url }) }) });
 * const job = await jobs.submit(async ({ progress }) => ({ ok: true }));
 * await (await otherProcessJobs.lookup(job.id)).done(); // from any process on the store
 * const poll = new PollHandler({ jobs, run: async (input) => input });
 * ```
 */
export class SharedPollHandle extends JobRegistry {
  /** Always `true`: jobs live in the store. */
  readonly shared = true as const;
  readonly #store: JobStore;
  readonly #leaseMs: number;
  /** This registry's id as an owner of jobs in the store. */
  readonly #owner = newId();
  /** Copies of other registries' jobs, while something reads or awaits them. */
  readonly #mirrors = new Map<string, JobRecord>();
  #unsubscribe: (() => void) | undefined;
  #tickTimer: ClockTimer | undefined;
  #ticking = false;
  #beating = false;
  #reaped = 0;
  /** Writes to the store in flight (close waits for them). */
  readonly #writes = new Set<Promise<unknown>>();
  /** Ids of jobs whose creation the store may or may not have done (its answer was lost). */
  readonly #orphans = new Set<string>();
  /** The retry timers armed now, and the write loops they will wake: close cancels and wakes them. */
  readonly #retries = new Set<ClockTimer>();
  readonly #sleepers = new Set<() => void>();

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option, or without a `store`. */
  constructor(options: SharedPollHandleOptions) {
    super(options);
    const opts = check.optionsObject('options', options) as Partial<SharedPollHandleOptions>;
    const store = opts.store;
    if (typeof store !== 'object' || store === null || typeof store.create !== 'function' || typeof store.subscribe !== 'function') {
      throw new InvalidArgumentError(`Expected \`store\` to be a JobStore, got ${check.describe(store)}`);
    }
    this.#store = store;
    this.#leaseMs = check.integerInRange('leaseMs', opts.leaseMs ?? 30_000, 30, MAX_MS);
    this.#unsubscribe = store.subscribe({ changed: this.#onStoreChange, resync: this.#onStoreResync });
    this.#scheduleTick();
  }

  async submit<R = unknown>(fn: PollJobFunction<R>, options?: PollStartOptions): Promise<PollJob<R>> {
    this.assertOpen('submit');
    if (typeof fn !== 'function') throw new InvalidArgumentError(`Expected \`fn\` to be a function, got ${check.describe(fn)}`);
    const store = this.#store;
    const { key, fingerprint, timeoutMs, ttlMs } = this.startOptions(options);
    this.checkCapacity();
    const id = newId();
    const rec = this.newRecord(id, fn as PollJobFunction, timeoutMs, ttlMs, key, fingerprint);
    this.pending++; // the slot is held while the store answers
    let created: { created: boolean; job: StoredJob };
    try {
      created = await this.#storeWrite(store.create({ id, owner: this.#owner, ttlMs, goneMs: this.goneMs, leaseMs: this.#leaseMs, idempotencyKey: key, fingerprint }));
    } catch (error) {
      this.pending--;
      // The store may have created it all the same (the answer was lost): such a job would stay
      // pending for good, so it is failed as soon as the store answers again.
      this.#orphans.add(id);
      if (this.#orphans.size > MAX_MIRRORS) this.#orphans.delete(this.#orphans.values().next().value!);
      throw error;
    }
    if (!created.created) {
      this.pending--;
      this.assertOpen('submit');
      return this.#replay<R>(created.job, fingerprint);
    }
    if (this.closed) {
      this.pending--;
      this.#storeWrite(store.update(id, { kind: 'canceled' })).catch((error: unknown) => this.#storeError(error, 'write'));
      throw new ClosedError('The SharedPollHandle was closed');
    }
    return this.admit<R>(rec);
  }

  async lookup<R = unknown>(id: string): Promise<PollJob<R>> {
    return this.viewOf<R>(await this.recordFor(id));
  }

  async lookupByIdempotencyKey<R = unknown>(key: string, fingerprint?: string): Promise<PollJob<R> | undefined> {
    this.assertOpen('lookupByIdempotencyKey');
    checkKey(key);
    const job = await this.#store.findByKey(key);
    this.assertOpen('lookupByIdempotencyKey');
    return job === undefined ? undefined : this.#replay<R>(job, fingerprint);
  }

  /** A snapshot of the counters. */
  override stats(): SharedPollHandleStats {
    return { ...super.stats(), mirrors: this.#mirrors.size, reaped: this.#reaped };
  }

  /** A view of a job an idempotency key named in the store. */
  #replay<R>(job: StoredJob, fingerprint: string | undefined): PollJob<R> {
    this.checkReplay(job.id, job.fingerprint, fingerprint);
    return this.viewOf<R>(this.#mirror(job), true);
  }

  // --- the steps a registry does its own way: here, through the store ---------------------------

  /**
   * The record of a job wherever it runs (read from the store unless it is an outcome of this
   * registry's), or the error for an unknown or expired id. @internal
   */
  protected async recordFor(id: string): Promise<JobRecord> {
    this.assertOpen('get');
    if (typeof id !== 'string' || !ID_RE.test(id)) return this.localRecord(id, this.#mirrors);
    // An outcome is final (only this registry's TTL timer ends it), so a finished job of this
    // registry is answered from memory.
    const own = this.records.get(id);
    if (own !== undefined && isOutcome(own.state)) return own;
    // Read through even for a live job that runs here: a cancel made through another process must show
    // in the next read anywhere, before its announcement arrives. When the store cannot be reached,
    // this registry's own jobs are answered as it knows them.
    let found: JobLookup;
    try {
      found = await this.#store.read(id);
    } catch (error) {
      if (own !== undefined && !this.closed) return own;
      throw error;
    }
    this.assertOpen('get');
    if (found !== undefined && found !== 'gone') return this.#mirror(found);
    const copy = this.records.get(id) ?? this.#mirrors.get(id);
    if (copy !== undefined) this.#vanished(copy, found);
    if (found === 'gone') throw new GoneError(`Job ${id} has expired: its outcome was kept for its TTL and is gone`);
    return this.localRecord(id, this.#mirrors);
  }

  /** The job runs once the store has it `running` (it may have been canceled meanwhile). @internal */
  protected runJob(rec: JobRecord): void {
    const fn = rec.fn!;
    this.inFlight++; // the slot is held while the store answers
    rec.inFlight = true;
    const release = (): void => {
      rec.inFlight = false;
      this.inFlight--;
      this.schedulePump();
    };
    this.#storeWrite(this.#store.update(rec.id, { kind: 'running' })).then(
      (found) => {
        if (!this.destroyed) this.#apply(rec, found);
        // Runs once: `fn` is cleared when it is called (or when the job ends first).
        if (rec.state !== 'running' || this.closed || rec.fn === null) return release();
        rec.fn = null;
        const controller = new AbortController();
        rec.controller = controller;
        this.invoke(rec, fn, controller);
      },
      (error: unknown) => {
        this.#storeError(error, 'write');
        release();
        // The store may or may not have it running (the answer may be what was lost): try again in
        // a second. A write to a job already running is refused with the job as it is, and the
        // function runs then; a job that ended meanwhile is dropped.
        if (rec.fn !== null && !this.closed) {
          this.#later(() => {
            if (rec.fn !== null && !rec.queued && !rec.inFlight && !this.closed && isLive(rec.state)) this.enqueue(rec);
          });
        }
      },
    );
  }

  /** @internal */
  protected endJob(rec: JobRecord, end: JobEnd): void {
    if (rec.outcome !== undefined) return;
    rec.outcome = end;
    this.#flush(rec);
  }

  /** Written in the background, one write at a time: reports made meanwhile collapse into the last. @internal */
  protected reportProgress(rec: JobRecord, progress: PollProgress): void {
    if (rec.state !== 'running' || rec.outcome !== undefined || sameProgress(rec.wantProgress ?? rec.progress, progress)) return;
    rec.wantProgress = progress;
    this.#flush(rec);
  }

  /** Sends the cancel in the background. @internal */
  protected cancelRecord(rec: JobRecord, reason: unknown): boolean {
    if (!isLive(rec.state)) return false;
    this.cancelAndWait(rec, reason).catch((error: unknown) => this.#storeError(error, 'write'));
    return true;
  }

  /** Cancels a record, and resolves once the store has the cancel. @internal */
  protected async cancelAndWait(rec: JobRecord, reason: unknown): Promise<boolean> {
    if (!isLive(rec.state)) return false;
    if (rec.owned && reason !== undefined) rec.cancelReason = reason;
    let found: JobLookup;
    try {
      found = await this.#storeWrite(this.#store.update(rec.id, { kind: 'canceled' }));
    } catch (error) {
      if (rec.cancelReason === reason) rec.cancelReason = undefined;
      throw error;
    }
    const wasLive = isLive(rec.state);
    if (!this.destroyed) this.#apply(rec, found);
    return wasLive && (rec.state as PollJobState) === 'canceled';
  }

  /**
   * `done()` on a copy this registry no longer holds (dropped at a tick since it was read): the
   * job is looked up again, and its outcome awaited on the fresh copy. @internal
   */
  protected doneAgain<R>(rec: JobRecord, options: PollJobDoneOptions | undefined): Promise<PollSnapshot<R>> | undefined {
    if (rec.owned || this.#mirrors.get(rec.id) === rec || this.closed) return undefined;
    return this.lookup<R>(rec.id).then(
      (job) => job.done(options),
      () => snapshotOf<R>(rec),
    );
  }

  /** @internal */
  protected override beforeExpire(rec: JobRecord): void {
    if (isOutcome(rec.state)) this.#storeWrite(this.#store.expire(rec.id)).catch((error: unknown) => this.#storeError(error, 'write'));
  }

  // --- the store decides, this registry applies what it answers ----------------------------------

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
      if (after === 'running') rec.startedAt = this.clock.now();
      if (rec.owned) {
        if (before === 'pending') this.pending--;
        else if (before === 'running') this.running--;
        if (after === 'running') {
          this.running++;
          // Running in the store before this registry heard the answer to its own write (it was
          // lost): the function runs when the job is taken from the queue.
          if (rec.fn !== null && !rec.inFlight && !rec.queued) this.enqueue(rec);
        } else if (rec.queued) this.dequeue(rec);
      }
      if (isOutcome(after)) this.#reached(rec);
    }
    if (!this.purgatory.closed) this.purgatory.checkAndComplete(rec.key);
  }

  /** A record got its outcome from the store. */
  #reached(rec: JobRecord): void {
    const state = rec.state;
    rec.finishedAt = this.clock.now();
    if (rec.owned) {
      rec.fn = null;
      rec.wantProgress = undefined;
      rec.outcome = undefined;
      this.keep(rec);
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
    this.settle(rec);
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
      this.settle(rec);
      if (!this.purgatory.closed) this.purgatory.checkAndComplete(rec.key);
      return;
    }
    if (isLive(rec.state)) {
      // The store lost a live job of ours (flushed, or restarted without its data): it fails here.
      this.#apply(rec, {
        id: rec.id,
        state: 'failed',
        progress: rec.progress,
        error: { name: 'JobLostError', code: ErrorCodes.WORKER_LOST, message: `Job ${rec.id} is no longer in the job store${found === 'gone' ? '' : ' (was its data lost?)'}` },
        version: rec.version + 1,
        owner: this.#owner,
      });
      return;
    }
    if (rec.timer !== null) this.disarm(rec);
    this.expire(rec);
  }

  /** The record of a job the store has: this registry's own, or a copy (new or refreshed). */
  #mirror(job: StoredJob): JobRecord {
    const own = this.records.get(job.id);
    if (own !== undefined) {
      this.#apply(own, job);
      return own;
    }
    let copy = this.#mirrors.get(job.id);
    if (copy === undefined) {
      copy = this.newRecord(job.id, null, Infinity, this.ttlMs, undefined, job.fingerprint);
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
      if (copy.settle === null && !copy.refreshing && this.purgatory.watcherCount(copy.key) === 0) this.#mirrors.delete(id);
    }
  }

  /** Writes an owned job's progress and outcome, one write at a time, in order. */
  #flush(rec: JobRecord): void {
    if (rec.writing) return;
    rec.writing = true;
    void this.#writeLoop(rec);
  }

  async #writeLoop(rec: JobRecord): Promise<void> {
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
          const found = await this.#storeWrite(this.#store.update(rec.id, update));
          if (!this.destroyed) this.#apply(rec, found);
        } catch (error) {
          this.#storeError(error, 'write');
          // Progress is dropped (the next report or the outcome carries on); an outcome is retried
          // (until close, which writes it one last time).
          if (update.kind === 'progress') continue;
          if (this.closed) return;
          await new Promise<void>((resolve) => {
            this.#sleepers.add(resolve);
            this.#later(() => {
              this.#sleepers.delete(resolve);
              resolve();
            });
          });
          if (this.closed) return;
        }
      }
    } finally {
      rec.writing = false;
    }
  }

  /** Runs `fn` in {@link RETRY_MS}, on the clock; close cancels it. */
  #later(fn: () => void): void {
    const timer = this.clock.setTimer(() => {
      this.#retries.delete(timer);
      fn();
    }, RETRY_MS);
    this.#retries.add(timer);
  }

  /** Fails the jobs whose creation the store may have done without saying so. */
  async #failOrphans(): Promise<void> {
    for (const id of [...this.#orphans]) {
      await this.#store.update(id, { kind: 'failed', error: { name: 'JobLostError', code: ErrorCodes.WORKER_LOST, message: `Job ${id} was not started: the job store did not confirm it` } });
      this.#orphans.delete(id);
    }
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
    const rec = this.records.get(id) ?? this.#mirrors.get(id);
    if (rec !== undefined && version > rec.version) this.#refresh(rec);
  };

  /** Announcements may have been lost: re-read every job held here that can still change. */
  readonly #onStoreResync = (): void => {
    if (this.closed) return;
    for (const rec of this.records.values()) if (isLive(rec.state)) this.#refresh(rec);
    for (const rec of this.#mirrors.values()) this.#refresh(rec);
  };

  #refresh(rec: JobRecord): void {
    if (rec.refreshing) {
      rec.refreshAgain = true;
      return;
    }
    rec.refreshing = true;
    const store = this.#store;
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
    this.#tickTimer = this.clock.setTimer(this.#tick, Math.max(10, Math.floor(this.#leaseMs / 3)));
  }

  /**
   * Every third of the lease: renew it, fail the jobs of registries whose lease ran out, re-read
   * the copies something awaits (in case an announcement was lost) and drop the others.
   */
  readonly #tick = (): void => {
    this.#tickTimer = undefined;
    if (this.closed) return;
    const store = this.#store;
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
      this.#failOrphans()
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

  /**
   * This registry's live jobs end (canceled, or the outcome they were writing) in the store, then
   * the lease is released (with live jobs left, it counts as run out, so another registry fails
   * them). What could not be written ends canceled here all the same (as in every registry);
   * copies of other registries' jobs are answered as they are. @internal
   */
  protected override async shutdown(reason: unknown): Promise<void> {
    await this.#shutdownShared(reason, !this.destroyed);
    for (const copy of this.#mirrors.values()) {
      this.settle(copy);
      if (!this.ownsPurgatory && !this.purgatory.closed) this.purgatory.cancelForKey(copy.key, reason);
    }
    this.#mirrors.clear();
    await super.shutdown(reason);
  }

  async #shutdownShared(reason: unknown, wait: boolean): Promise<void> {
    const store = this.#store;
    this.#tickTimer?.cancel();
    this.#tickTimer = undefined;
    for (const timer of this.#retries) timer.cancel();
    this.#retries.clear();
    for (const wake of this.#sleepers) wake();
    this.#sleepers.clear();
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    const ends: Promise<boolean>[] = [];
    for (const rec of this.records.values()) {
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
    await this.#failOrphans().catch((error: unknown) => this.#storeError(error, 'write'));
    // Released with live jobs left (their end could not be written), the lease counts as run out:
    // any other registry fails them at its next tick.
    await store.release(this.#owner).catch((error: unknown) => this.#storeError(error, 'lease'));
  }
}
