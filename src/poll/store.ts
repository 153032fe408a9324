/**
 * Where a `SharedPollHandle` keeps its jobs when several processes share them: the
 * {@link JobStore} seam, and {@link MemoryJobStore}, its in-process implementation.
 *
 * A `PollHandle` keeps its jobs in its own memory, and only its own process can read them. For a
 * `SharedPollHandle` (`new SharedPollHandle({ store })`) the store is the authority on every job's
 * state: a job started by one process can be read, awaited (`Prefer: wait`) and canceled through
 * any other that shares the store, idempotency keys are shared, and a process that dies has its
 * running jobs failed once its lease runs out. `patchbay/redis` has the Redis one
 * (`RedisJobStore`).
 *
 * The contract a store keeps is in {@link JobStore}'s documentation.
 *
 * @module
 */
import type { Clock } from '../core/clock.js';
import { ClosedError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import type { JobCreate, JobCreateResult, JobLookup, JobStore, JobStoreListener, JobUpdate, PollJobError, StoredJob } from '../core/jobs.js';

/** Options for {@link MemoryJobStore}. */
export interface MemoryJobStoreOptions {
  /**
   * The time source of TTLs and leases.
   * @defaultValue the real clock
   */
  readonly clock?: Clock;
  /**
   * Most ended job ids remembered as gone (410) at once; past it, the oldest are forgotten early.
   * @defaultValue 100000
   */
  readonly maxTombstones?: number;
}

/** What {@link MemoryJobStore.stats} counts. */
export interface MemoryJobStoreStats {
  /** Jobs kept (live ones and outcomes within their TTL). */
  readonly jobs: number;
  /** Expired ids remembered as gone. */
  readonly gone: number;
  /** Idempotency keys. */
  readonly keys: number;
  /** Owners' leases (and released ones that still own live jobs). */
  readonly leases: number;
}

interface MemoryEntry {
  job: StoredJob;
  /** When the outcome expires (Infinity while live). */
  expiresAt: number;
  key: string | undefined;
  ttlMs: number;
  goneMs: number;
}

/**
 * A {@link JobStore} in this process's memory: several `SharedPollHandle`s in one process share
 * jobs through it as processes share them through Redis. It is the reference implementation of
 * the contract, and what tests run the shared mode on without a Redis. Announcements are made in
 * a microtask after each change, as a network store would make them later.
 */
export class MemoryJobStore extends Resource implements JobStore {
  readonly #clock: Clock;
  readonly #jobs = new Map<string, MemoryEntry>();
  readonly #gone = new Map<string, number>();
  readonly #keys = new Map<string, string>();
  readonly #leases = new Map<string, number>();
  readonly #listeners = new Set<JobStoreListener>();
  #ops = 0;
  readonly #maxGone: number;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options?: MemoryJobStoreOptions) {
    super();
    const opts = check.optionsObject('options', options) as MemoryJobStoreOptions;
    this.#clock = check.optionalClock('clock', opts.clock);
    this.#maxGone = check.integerInRange('maxTombstones', opts.maxTombstones ?? 100_000, 0, 100_000_000);
  }

  subscribe(listener: JobStoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  ready(): Promise<void> {
    return this.closed ? Promise.reject(new ClosedError('The job store is closed')) : Promise.resolve();
  }

  create(job: JobCreate): Promise<JobCreateResult> {
    return this.#op(() => {
      this.#leases.set(job.owner, this.#clock.now() + job.leaseMs);
      if (job.idempotencyKey !== undefined) {
        const existing = this.#keys.get(job.idempotencyKey);
        const entry = existing === undefined ? undefined : this.#live(existing);
        if (entry !== undefined) return { created: false, job: entry.job };
      }
      const stored: StoredJob = { id: job.id, state: 'pending', progress: null, version: 1, owner: job.owner, ...(job.fingerprint === undefined ? {} : { fingerprint: job.fingerprint }) };
      this.#jobs.set(job.id, { job: stored, expiresAt: Infinity, key: job.idempotencyKey, ttlMs: job.ttlMs, goneMs: job.goneMs });
      if (job.idempotencyKey !== undefined) this.#keys.set(job.idempotencyKey, job.id);
      this.#announce(job.id, 1);
      return { created: true, job: stored };
    });
  }

  read(id: string): Promise<JobLookup> {
    return this.#op(() => this.#lookup(id));
  }

  findByKey(idempotencyKey: string): Promise<StoredJob | undefined> {
    return this.#op(() => {
      const id = this.#keys.get(idempotencyKey);
      return id === undefined ? undefined : this.#live(id)?.job;
    });
  }

  update(id: string, update: JobUpdate): Promise<JobLookup> {
    return this.#op(() => {
      const entry = this.#live(id);
      if (entry === undefined) return this.#lookup(id);
      const next = applyUpdate(entry.job, update);
      if (next !== undefined) {
        entry.job = next;
        if (next.state !== 'pending' && next.state !== 'running') entry.expiresAt = this.#clock.now() + entry.ttlMs;
        this.#announce(id, next.version);
      }
      return entry.job;
    });
  }

  expire(id: string): Promise<void> {
    return this.#op(() => {
      const entry = this.#live(id);
      if (entry === undefined || entry.job.state === 'pending' || entry.job.state === 'running') return;
      this.#drop(id, entry, this.#clock.now());
      this.#announce(id, entry.job.version + 1);
    });
  }

  heartbeat(owner: string, leaseMs: number): Promise<void> {
    return this.#op(() => {
      this.#leases.set(owner, this.#clock.now() + leaseMs);
    });
  }

  release(owner: string): Promise<void> {
    return this.#op(() => {
      // With live jobs left, the lease runs out now (the next reap fails them).
      for (const entry of this.#jobs.values()) {
        if (entry.job.owner === owner && (entry.job.state === 'pending' || entry.job.state === 'running')) {
          this.#leases.set(owner, -Infinity);
          return;
        }
      }
      this.#leases.delete(owner);
    });
  }

  reap(error: PollJobError): Promise<number> {
    return this.#op(() => {
      const now = this.#clock.now();
      const dead = new Set<string>();
      for (const [owner, until] of this.#leases) if (until < now) dead.add(owner);
      if (dead.size === 0) return 0;
      let count = 0;
      for (const [id, entry] of this.#jobs) {
        if (!dead.has(entry.job.owner)) continue;
        const next = applyUpdate(entry.job, { kind: 'failed', error });
        if (next === undefined) continue;
        entry.job = next;
        entry.expiresAt = now + entry.ttlMs;
        count++;
        this.#announce(id, next.version);
      }
      for (const owner of dead) this.#leases.delete(owner);
      return count;
    });
  }

  /** Stops answering: later calls reject with a {@link ClosedError} (`PB_ERR_CLOSED`), and listeners hear nothing more. */
  protected onClose(): void {
    this.#listeners.clear();
  }

  /** As `onClose`, at once. */
  protected onDestroy(): void {
    this.#listeners.clear();
  }

  /** How many jobs, gone ids, keys and leases it holds now (expired ones are dropped first). */
  stats(): MemoryJobStoreStats {
    const now = this.#clock.now();
    for (const [id, entry] of this.#jobs) if (entry.expiresAt <= now) this.#drop(id, entry, entry.expiresAt);
    for (const [id, until] of this.#gone) if (until <= now) this.#gone.delete(id);
    return { jobs: this.#jobs.size, gone: this.#gone.size, keys: this.#keys.size, leases: this.#leases.size };
  }

  #op<T>(run: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new ClosedError('The job store is closed'));
    // Now and then, drop what expired without being read again: nothing grows for good.
    if (++this.#ops % 1024 === 0) this.stats();
    try {
      return Promise.resolve(run());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The entry of a job that is kept now (its outcome not past its TTL). */
  #live(id: string): MemoryEntry | undefined {
    const entry = this.#jobs.get(id);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= this.#clock.now()) {
      this.#drop(id, entry, entry.expiresAt);
      return undefined;
    }
    return entry;
  }

  #lookup(id: string): JobLookup {
    const entry = this.#live(id);
    if (entry !== undefined) return entry.job;
    const until = this.#gone.get(id);
    if (until === undefined) return undefined;
    if (until > this.#clock.now()) return 'gone';
    this.#gone.delete(id);
    return undefined;
  }

  #drop(id: string, entry: MemoryEntry, at: number): void {
    this.#jobs.delete(id);
    if (entry.key !== undefined && this.#keys.get(entry.key) === id) this.#keys.delete(entry.key);
    if (entry.goneMs === 0 || this.#maxGone === 0) return;
    this.#gone.delete(id);
    this.#gone.set(id, at + entry.goneMs);
    if (this.#gone.size > this.#maxGone) this.#gone.delete(this.#gone.keys().next().value!);
  }

  #announce(id: string, version: number): void {
    queueMicrotask(() => {
      for (const listener of this.#listeners) listener.changed(id, version);
    });
  }
}

/** The job after `update`, or `undefined` when its state refuses it. @internal */
export function applyUpdate(job: StoredJob, update: JobUpdate): StoredJob | undefined {
  const state = job.state;
  switch (update.kind) {
    case 'running':
      return state === 'pending' ? { ...job, state: 'running', version: job.version + 1 } : undefined;
    case 'progress':
      return state === 'running' ? { ...job, progress: update.progress, version: job.version + 1 } : undefined;
    case 'succeeded':
      return state === 'running' ? { ...job, state: 'succeeded', resultJson: update.resultJson, version: job.version + 1 } : undefined;
    case 'failed':
      return state === 'pending' || state === 'running' ? { ...job, state: 'failed', error: update.error, version: job.version + 1 } : undefined;
    case 'canceled':
      return state === 'pending' || state === 'running' ? { ...job, state: 'canceled', version: job.version + 1 } : undefined;
    default:
      return undefined;
  }
}
