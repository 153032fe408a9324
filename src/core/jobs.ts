/**
 * The shapes of jobs that the poll layer and the stores below it share: a job's state, progress
 * and error, and the {@link JobStore} seam (implemented by `MemoryJobStore` here and by
 * `RedisJobStore` in `patchbay/redis`). The contract a store keeps is described in
 * {@link JobStore}.
 *
 * @module
 */

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
  /** The stack, only when `exposeStack` is `true`. */
  readonly stack?: string;
}

/** A job as a {@link JobStore} keeps it. */
export interface StoredJob {
  /** The job's id. */
  readonly id: string;
  /** Its state (never `expired`: an expired job is `'gone'`). */
  readonly state: Exclude<PollJobState, 'expired'>;
  /** Its last progress, or `null`. */
  readonly progress: PollProgress | null;
  /** The result as JSON text, once `succeeded`. */
  readonly resultJson?: string;
  /** What went wrong, once `failed`. */
  readonly error?: PollJobError;
  /** Bumped by every accepted change; starts at 1. */
  readonly version: number;
  /** The id of the `SharedPollHandle` that runs the job. */
  readonly owner: string;
  /** The fingerprint of the request that started it, if one was given. */
  readonly fingerprint?: string;
}

/** What a read of a job finds: the job, `'gone'` (expired less than `goneMs` ago), or `undefined` (unknown). */
export type JobLookup = StoredJob | 'gone' | undefined;

/** What {@link JobStore.create} is asked to create. */
export interface JobCreate {
  /** The new job's id. */
  readonly id: string;
  /** The owner's id (the `SharedPollHandle` that will run it). */
  readonly owner: string;
  /** How long its outcome is kept, in ms. */
  readonly ttlMs: number;
  /** How long it is remembered as gone after that, in ms. */
  readonly goneMs: number;
  /** The owner's lease, in ms: creating a job renews it. */
  readonly leaseMs: number;
  /** The idempotency key: while a job created with it is kept, `create` returns that job instead. */
  readonly idempotencyKey?: string;
  /** The fingerprint of the request, kept with the job. */
  readonly fingerprint?: string;
}

/** What {@link JobStore.create} did: created the job, or found the one its idempotency key names. */
export interface JobCreateResult {
  /** `false` when the idempotency key named a job that is still kept (returned as `job`). */
  readonly created: boolean;
  /** The new job, or the existing one. */
  readonly job: StoredJob;
}

/** An update to a job, as {@link JobStore.update} applies it. */
export type JobUpdate =
  | {
      /** `pending` → `running`. */
      readonly kind: 'running';
    }
  | {
      /** New progress, while `running`. */
      readonly kind: 'progress';
      /** The progress. */
      readonly progress: PollProgress;
    }
  | {
      /** `running` → `succeeded`. */
      readonly kind: 'succeeded';
      /** The result as JSON text. */
      readonly resultJson: string;
    }
  | {
      /** `pending` or `running` → `failed`. */
      readonly kind: 'failed';
      /** What went wrong. */
      readonly error: PollJobError;
    }
  | {
      /** `pending` or `running` → `canceled`. */
      readonly kind: 'canceled';
    };

/** Who hears of changes to a {@link JobStore}'s jobs. */
export interface JobStoreListener {
  /** The job `id` changed; `version` is its version now (its last one + 1 once it expired). */
  changed(id: string, version: number): void;
  /** Announcements may have been missed (a connection came back): re-read the jobs you hold. */
  resync(): void;
}

/**
 * Where shared jobs live (the `store` of a `SharedPollHandle`). Implement it to put jobs in another
 * database; the job store kit in patchbay's tests checks an implementation. The contract:
 *
 * - A job is created `pending` with version 1. Every accepted update bumps the version by one.
 * - `pending` → `running` → one outcome (`succeeded`, `failed`, `canceled`); `canceled` and
 *   `failed` also from `pending`. The first outcome wins: an update to a job that already has one
 *   is refused, and the store answers with the job as it is.
 * - An outcome is kept for the job's `ttlMs`; then the job is gone for `goneMs` (reads answer
 *   `'gone'`), then unknown. Its idempotency key lives exactly as long as the job.
 * - Every accepted change is announced to every subscriber (of every process) as `(id, version)`,
 *   after it is stored.
 * - Each owner (a `SharedPollHandle`) renews a lease; `reap` fails the live jobs of every owner whose
 *   lease ran out.
 */
export interface JobStore {
  /** Hears of every change to any job of this store; returns the unsubscribe function. */
  subscribe(listener: JobStoreListener): () => void;
  /** Resolves once changes are being announced to subscribers (the subscription is live). */
  ready(): Promise<void>;
  /** Creates a job, or returns the one its idempotency key names. */
  create(job: JobCreate): Promise<JobCreateResult>;
  /** Reads a job. */
  read(id: string): Promise<JobLookup>;
  /** The job an idempotency key names, while it is kept. */
  findByKey(idempotencyKey: string): Promise<StoredJob | undefined>;
  /**
   * Applies an update if the job's state allows it (see the module documentation) and resolves
   * with the job after it, whether the update was applied or refused.
   */
  update(id: string, update: JobUpdate): Promise<JobLookup>;
  /** Drops a finished job now (its TTL passed): it is gone for its `goneMs`. Live jobs are left alone. */
  expire(id: string): Promise<void>;
  /** Renews an owner's lease for `leaseMs`. */
  heartbeat(owner: string, leaseMs: number): Promise<void>;
  /** The owner leaves: its lease is forgotten, or, if it still owns live jobs, counts as run out (the next `reap` fails them). */
  release(owner: string): Promise<void>;
  /** Fails the live jobs of every owner whose lease ran out with `error`; resolves with how many. */
  reap(error: PollJobError): Promise<number>;
}

