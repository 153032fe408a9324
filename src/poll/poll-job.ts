/**
 * {@link PollJob}: what a caller holds of one job, and what a job function is given
 * ({@link PollJobContext}).
 *
 * A view reads its job's record through getters, so it is always current and costs nothing to
 * read. Each record has one view (made on first read and kept on the record), which is what
 * `get` and `lookup` return: the HTTP handler reads a job's status on every poll without
 * allocating. A start answered by an idempotency key gets a view of its own (`replayed: true`).
 * The view is its own piece because both registries hand out the same one; the registry behind
 * it is reached through a small {@link JobHost}, not through the registry's class.
 *
 * @module
 */
import { onAbort, abortReason } from '../core/abort.js';
import type { PollJobError, PollJobState, PollProgress } from '../core/jobs.js';
import * as check from '../core/validate.js';
import { isLive, type JobRecord, type PollSnapshot, snapshotOf } from './job-record.js';

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

/** Options for {@link PollJob.done}. */
export interface PollJobDoneOptions {
  /** Stops waiting: the promise rejects with the signal's reason (the job goes on). */
  readonly signal?: AbortSignal;
}

/** What a {@link PollJob} asks of the registry that holds its job. @internal */
export interface JobHost {
  /** Cancels a live job (see {@link PollJob.cancel}). */
  cancel(rec: JobRecord, reason: unknown): boolean;
  /** `done()` of a record the registry no longer holds (a dropped copy): the outcome, read again; else `undefined`. */
  doneAgain<R>(rec: JobRecord, options: PollJobDoneOptions | undefined): Promise<PollSnapshot<R>> | undefined;
}

/** The record behind a view, for the registry that made it. @internal */
export let recordOf: (job: PollJob) => JobRecord;

/**
 * One job of a `PollHandle` or a `SharedPollHandle`: a live view (its getters read the
 * current state) plus `done()` and `cancel()`.
 */
export class PollJob<R = unknown> {
  readonly #rec: JobRecord;
  readonly #host: JobHost;
  /** `true` when the start that returned this view found the job by its idempotency key. */
  readonly replayed: boolean;

  static {
    recordOf = (job) => job.#rec;
  }

  /** @internal */
  constructor(rec: JobRecord, host: JobHost, replayed: boolean) {
    this.#rec = rec;
    this.#host = host;
    this.replayed = replayed;
  }

  /** The job's id. */
  get id(): string {
    return this.#rec.id;
  }

  /** Its state now. */
  get state(): PollJobState {
    return this.#rec.state;
  }

  /** Its last progress, or `null`. */
  get progress(): PollProgress | null {
    return this.#rec.progress;
  }

  /** Its version now (bumped by every change). */
  get version(): number {
    return this.#rec.version;
  }

  /** What went wrong, once `failed`. */
  get error(): PollJobError | undefined {
    return this.#rec.error;
  }

  /** The result as JSON text, once `succeeded` (what {@link PollJob.snapshot} parses); dropped on expiry. */
  get resultJson(): string | undefined {
    return this.#rec.resultJson;
  }

  /** When the job began running, by the registry's clock (ms); `NaN` while pending. */
  get startedAt(): number {
    return this.#rec.startedAt;
  }

  /**
   * What the code that serves this job keeps with it: the {@link PollHandler} keeps the bytes of
   * its answer for the current version there, and the early-poll limit. Shared by every view of
   * the job and dropped with it; the registry never reads it. Leave it alone for a job a
   * `PollHandler` serves.
   * @defaultValue `undefined`
   * @internal
   */
  get attachment(): unknown {
    return this.#rec.attachment;
  }
  /** Sets {@link PollJob.attachment}. @internal */
  set attachment(value: unknown) {
    this.#rec.attachment = value;
  }

  /** One atomic snapshot of the job. */
  snapshot(): PollSnapshot<R> {
    return snapshotOf<R>(this.#rec);
  }

  /**
   * Resolves with the snapshot of the job's outcome (`succeeded`, `failed` or `canceled`) once it
   * has one; at once if it already has (`expired`, without the result, once its TTL has passed).
   * Closing the registry cancels the job (on a copy of another registry's job, it resolves with
   * the job as last read).
   * @throws (rejects) the signal's reason when `options.signal` aborts first.
   */
  done(options?: PollJobDoneOptions): Promise<PollSnapshot<R>> {
    const rec = this.#rec;
    if (!isLive(rec.state)) return Promise.resolve(snapshotOf<R>(rec));
    const signal = options === undefined ? undefined : check.optionalSignal('signal', (check.optionsObject('options', options) as PollJobDoneOptions).signal);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const again = this.#host.doneAgain<R>(rec, options);
    if (again !== undefined) return again;
    return new Promise<PollSnapshot<R>>((resolve, reject) => {
      const waiters = (rec.settle ??= []);
      if (signal === undefined) {
        waiters.push(resolve as (snapshot: PollSnapshot) => void);
        return;
      }
      const settled = (snapshot: PollSnapshot): void => {
        listener[Symbol.dispose]();
        resolve(snapshot as PollSnapshot<R>);
      };
      waiters.push(settled);
      const listener = onAbort(signal, (reason) => {
        const i = rec.settle?.indexOf(settled) ?? -1;
        if (i !== -1) rec.settle!.splice(i, 1);
        reject(reason);
      });
    });
  }

  /**
   * Cancels the job if it has no outcome yet (as this registry knows it): its signal aborts with
   * `reason` and it ends `canceled`. Where the registry decides alone (a `PollHandle`) that
   * is now; where a store decides (a `SharedPollHandle`) it is once the store has the cancel
   * (`cancelJob` waits for that).
   * @param reason - The abort reason the job function sees.
   * @defaultValue `reason` is a `CanceledError`
   * @returns `true` if the job was live and is now being canceled, `false` if it had ended.
   */
  cancel(reason?: unknown): boolean {
    return this.#host.cancel(this.#rec, reason);
  }
}
