/**
 * {@link PollHandle}: a registry of long jobs kept in this process's memory.
 *
 * It decides every change of its jobs alone and applies it at once, so besides what every
 * registry does ({@link JobRegistry}: `submit`, `lookup`, `cancelJob`, `waitForChange`, ...) it
 * answers synchronously: {@link PollHandle.start}, {@link PollHandle.get},
 * {@link PollHandle.cancel} and {@link PollHandle.findByIdempotencyKey} read and change its
 * memory and return at once. `get` returns the job's one cached view, so a status read (the hot
 * path of short polling) costs no promise and no allocation. To share jobs between processes,
 * use a `SharedPollHandle` on a `JobStore` instead: it has the asynchronous methods only.
 *
 * @module
 */
import { CanceledError, InvalidArgumentError } from '../core/errors.js';
import type { PollProgress } from '../core/jobs.js';
import * as check from '../core/validate.js';
import { checkKey, newId, sameProgress } from './job-helpers.js';
import { isLive, type JobRecord, type PollSnapshot, snapshotOf } from './job-record.js';
import type { PollJob, PollJobFunction } from './poll-job.js';
import { type JobEnd, JobRegistry, type PollHandleOptions, type PollStartOptions } from './registry.js';

/**
 * A registry of long jobs for short polling, in this process's memory. Start a job, hand its id
 * to the client, and let the client ask how it is doing (the {@link PollHandler} does this over
 * HTTP: `202` + `Location`, status with `ETag`/`304`, `Prefer: wait`, `DELETE`, `410` after the TTL).
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
export class PollHandle extends JobRegistry {
  /** Always `false`: jobs live in this process's memory. */
  readonly shared = false as const;

  /**
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option, and for a
   *   `store` (jobs shared through a store are a `SharedPollHandle`'s).
   */
  constructor(options?: PollHandleOptions) {
    super(options);
    if (typeof options === 'object' && options !== null && (options as { store?: unknown }).store !== undefined) {
      throw new InvalidArgumentError('A PollHandle keeps its jobs in memory: to share them through a `store`, use `new SharedPollHandle({ store, ... })`');
    }
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
    const { key, fingerprint, timeoutMs, ttlMs } = this.startOptions(options);
    if (key !== undefined) {
      const existing = this.findByIdempotencyKey<R>(key, fingerprint);
      if (existing !== undefined) return existing;
    }
    this.checkCapacity();
    let id = newId();
    while (this.records.has(id)) id = newId();
    const rec = this.newRecord(id, fn as PollJobFunction, timeoutMs, ttlMs, key, fingerprint);
    if (key !== undefined) this.idempotency.set(key, rec);
    this.pending++;
    return this.admit<R>(rec);
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
    const rec = this.idempotency.get(key);
    if (rec === undefined) return undefined;
    this.checkReplay(rec.id, rec.fingerprint, fingerprint);
    return this.viewOf<R>(rec, true);
  }

  /**
   * The job with this id: its view (the same object at every call, so a read allocates nothing).
   * @throws NotFoundError (`PB_ERR_NOT_FOUND`) for an unknown (or forgotten) id.
   * @throws GoneError (`PB_ERR_GONE`) for a job whose outcome expired less than `goneMs` ago.
   * @throws ClosedError (`PB_ERR_CLOSED`) after `close()`.
   */
  get<R = unknown>(id: string): PollJob<R> {
    return this.viewOf<R>(this.localRecord(id));
  }

  /**
   * Cancels the job with this id (see {@link PollJob.cancel}) and returns its snapshot: `canceled`,
   * or its outcome if it already had one.
   * @throws NotFoundError (`PB_ERR_NOT_FOUND`) or GoneError (`PB_ERR_GONE`), as {@link PollHandle.get}.
   */
  cancel<R = unknown>(id: string, reason?: unknown): PollSnapshot<R> {
    const rec = this.localRecord(id);
    this.cancelRecord(rec, reason);
    return snapshotOf<R>(rec);
  }

  /** {@link PollHandle.start}, as a promise (what every registry has). */
  async submit<R = unknown>(fn: PollJobFunction<R>, options?: PollStartOptions): Promise<PollJob<R>> {
    return this.start(fn, options);
  }

  /** {@link PollHandle.get}, as a promise (what every registry has). */
  async lookup<R = unknown>(id: string): Promise<PollJob<R>> {
    return this.get<R>(id);
  }

  /** {@link PollHandle.findByIdempotencyKey}, as a promise (what every registry has). */
  async lookupByIdempotencyKey<R = unknown>(key: string, fingerprint?: string): Promise<PollJob<R> | undefined> {
    return this.findByIdempotencyKey<R>(key, fingerprint);
  }

  // --- the steps a registry does its own way: here, at once -------------------------------------

  /** @internal */
  protected recordFor(id: string): JobRecord {
    return this.localRecord(id);
  }

  /** @internal */
  protected runJob(rec: JobRecord): void {
    const fn = rec.fn!;
    rec.fn = null;
    rec.state = 'running';
    rec.startedAt = this.clock.now();
    this.pending--;
    this.running++;
    this.inFlight++;
    rec.inFlight = true;
    const controller = new AbortController();
    rec.controller = controller;
    this.changed(rec);
    this.invoke(rec, fn, controller);
  }

  /** @internal */
  protected endJob(rec: JobRecord, end: JobEnd): void {
    if (end.kind === 'failed') this.finish(rec, 'failed', undefined, end.error);
    else this.finish(rec, 'succeeded', end.resultJson, undefined);
  }

  /** @internal */
  protected reportProgress(rec: JobRecord, progress: PollProgress): void {
    if (rec.state !== 'running' || sameProgress(rec.progress, progress)) return;
    rec.progress = progress;
    this.changed(rec);
  }

  /** @internal */
  protected cancelRecord(rec: JobRecord, reason: unknown): boolean {
    if (!isLive(rec.state)) return false;
    const controller = rec.controller;
    this.finish(rec, 'canceled', undefined, undefined);
    controller?.abort(reason ?? new CanceledError(`Job ${rec.id} was canceled`));
    return true;
  }

  /** @internal */
  protected cancelAndWait(rec: JobRecord, reason: unknown): Promise<boolean> {
    return Promise.resolve(this.cancelRecord(rec, reason));
  }

  /** @internal */
  protected doneAgain(): undefined {
    return undefined;
  }
}
