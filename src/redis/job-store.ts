/**
 * {@link RedisJobStore}: the jobs of `SharedPollHandle`s shared through Redis, so a job started by
 * one process is read, awaited and canceled through any other.
 *
 * ## What lives where
 *
 * Each job is a hash under `<prefix>{j}:` (the hash tag keeps the store on one cluster slot), its
 * idempotency key a string naming it (the key's SHA-256, so any key fits), and each owner's lease
 * a score in one sorted set. Every change is one Lua script that checks the state machine (the
 * first outcome wins), updates the job, and announces `id version` on `<prefix>jobs`: every
 * process hears it on the subscriber connection it already has for the broker's feed, and
 * re-reads the jobs it holds (only those). An outcome is kept for the job's TTL, then the job is
 * answered as gone (410) for its gone time; key TTLs remove what nobody reads.
 *
 * Ended jobs are remembered as gone in one sorted set, at most `maxTombstones` of them.
 *
 * ## Time
 *
 * Leases and TTLs are measured by Redis's clock (`TIME`), so processes on machines whose clocks
 * differ agree. Tests pass a `clock` (a `ManualClock`) that every store and registry shares.
 *
 * ## Faults
 *
 * Calls fail fast while Redis is unreachable, with an {@link UnavailableError} (HTTP 503 with
 * `Retry-After`). A registry keeps trying to write its jobs' outcomes until Redis answers; if it
 * cannot renew its lease for longer than the lease, other registries fail its jobs
 * (`PB_ERR_WORKER_LOST`) and it stops them when it hears so. When the subscriber connection comes
 * back, registries re-read every job they hold.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Clock } from '../core/clock.js';
import { ClosedError, InvalidArgumentError } from '../core/errors.js';
import { parseJson } from '../core/json.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import type { JobCreate, JobCreateResult, JobLookup, JobStore, JobStoreListener, JobUpdate, PollJobError, PollProgress, StoredJob } from '../core/jobs.js';
import { JOB_SCRIPTS } from './job-scripts.js';
import { RedisBackend } from './redis-backend.js';
import type { RedisBackendOptions } from './redis-options.js';

/** Options for {@link RedisJobStore}: a backend to share, or how to connect (as {@link RedisBackend} takes it). */
export interface RedisJobStoreOptions extends Pick<RedisBackendOptions, 'url' | 'redis' | 'cluster' | 'prefix' | 'commandTimeoutMs' | 'connectTimeoutMs' | 'retryAfterSeconds' | 'onError'> {
  /**
   * Use this backend's connections and key prefix (the broker's, typically) instead of opening
   * new ones. It is not closed with the store. Give either `backend` or connection options.
   */
  readonly backend?: RedisBackend;
  /**
   * Measure leases and TTLs by this clock instead of Redis's. Every process (store and
   * `SharedPollHandle`) must then share it: this is for tests with a `ManualClock`.
   * @defaultValue Redis's clock (`TIME`)
   */
  readonly clock?: Clock;
  /**
   * Most ended job ids remembered as gone (410) at once, over every registry of the store; past
   * it, the oldest are forgotten early (404). Each costs a sorted-set entry in Redis.
   * @defaultValue 100000
   */
  readonly maxTombstones?: number;
}

type Reply = (string | Reply)[];
type Scripted = {
  [K in keyof typeof JOB_SCRIPTS]: (key: string, ...args: (string | number)[]) => Promise<unknown>;
};

/** Key TTL slack with an injected clock, whose time is not Redis's (ms). */
const CLOCK_SLACK_MS = 3_600_000;

/**
 * A {@link JobStore} on Redis (7.0 or later) through ioredis: give it to every process's
 * `SharedPollHandle` and they share jobs.
 *
 * @example
 * ```ts
 * import { PollHandler, SharedPollHandle } from 'patchbay';
 * import { RedisBackend, RedisJobStore } from 'patchbay/redis';
 *
 * const backend = new RedisBackend({ url: process.env.REDIS_URL });
 * const jobs = new SharedPollHandle({ store: new RedisJobStore({ backend }), leaseMs: 30_000 });
 * const poll = new PollHandler({ jobs, run: async (input, { progress }) => ({ ok: true }) });
 * // Any process can now answer GET /jobs/:id, Prefer: wait and DELETE for a job started by another.
 * ```
 */
export class RedisJobStore extends Resource implements JobStore {
  readonly #backend: RedisBackend;
  readonly #ownsBackend: boolean;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #clock: Clock | undefined;
  readonly #slack: string;
  readonly #maxGone: string;
  readonly #listeners = new Set<JobStoreListener>();
  #subscription: { ready: Promise<void>; stop: () => void } | undefined;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options?: RedisJobStoreOptions) {
    super();
    const opts = check.optionsObject('options', options) as RedisJobStoreOptions;
    const { backend, clock, maxTombstones, ...connection } = opts;
    if (backend !== undefined) {
      if (!(backend instanceof RedisBackend)) throw new InvalidArgumentError(`Expected \`backend\` to be a RedisBackend, got ${check.describe(backend)}`);
      if (Object.values(connection).some((v) => v !== undefined)) {
        throw new InvalidArgumentError('Give either `backend`, or connection options (`url`, `redis`, `cluster`, `prefix`, ...), not both');
      }
    }
    this.#ownsBackend = backend === undefined;
    this.#backend = backend ?? new RedisBackend(connection);
    this.#backend._defineScripts(JOB_SCRIPTS);
    this.#prefix = `${this.#backend.prefix}{j}:`;
    this.#channel = `${this.#backend.prefix}jobs`;
    this.#clock = clock === undefined ? undefined : check.optionalClock('clock', clock);
    this.#slack = String(clock === undefined ? 0 : CLOCK_SLACK_MS);
    this.#maxGone = String(check.integerInRange('maxTombstones', maxTombstones ?? 100_000, 0, 100_000_000));
  }

  subscribe(listener: JobStoreListener): () => void {
    this.#listeners.add(listener);
    if (this.#subscription === undefined && !this.closed) {
      this.#subscription = this.#backend._listen(this.#channel, {
        message: this.#onMessage,
        resync: () => {
          for (const l of this.#listeners) l.resync();
        },
      });
    }
    return () => {
      if (!this.#listeners.delete(listener) || this.#listeners.size > 0) return;
      this.#subscription?.stop();
      this.#subscription = undefined;
    };
  }

  async ready(): Promise<void> {
    if (this.closed) throw new ClosedError('The job store is closed');
    await this.#backend._command((client) => client.ping(), 'read');
    await this.#subscription?.ready;
  }

  async create(job: JobCreate): Promise<JobCreateResult> {
    const keyName = job.idempotencyKey === undefined ? '' : this.#keyName(job.idempotencyKey);
    const reply = (await this.#run(
      'write',
      'pbJobCreate',
      job.id,
      job.owner,
      job.ttlMs,
      job.goneMs,
      job.leaseMs,
      keyName,
      job.fingerprint ?? '',
    )) as Reply;
    return { created: reply[0] === 'created', job: parseJob(reply[1] as string[]) };
  }

  async read(id: string): Promise<JobLookup> {
    return lookupOf(id, (await this.#run('read', 'pbJobRead', id)) as Reply);
  }

  async findByKey(idempotencyKey: string): Promise<StoredJob | undefined> {
    const reply = (await this.#run('read', 'pbJobFindKey', this.#keyName(idempotencyKey))) as Reply;
    if (reply[0] !== 'job') return undefined;
    return parseJob(reply[1] as string[]);
  }

  async update(id: string, update: JobUpdate): Promise<JobLookup> {
    let value = '';
    if (update.kind === 'progress') value = JSON.stringify(update.progress);
    else if (update.kind === 'succeeded') value = update.resultJson;
    else if (update.kind === 'failed') value = JSON.stringify(update.error);
    return lookupOf(id, (await this.#run('write', 'pbJobUpdate', id, update.kind, value)) as Reply);
  }

  async expire(id: string): Promise<void> {
    await this.#run('write', 'pbJobExpire', id);
  }

  async heartbeat(owner: string, leaseMs: number): Promise<void> {
    await this.#run('write', 'pbJobLease', owner, Math.max(1, leaseMs));
  }

  async release(owner: string): Promise<void> {
    await this.#run('write', 'pbJobLease', owner, 0);
  }

  async reap(error: PollJobError): Promise<number> {
    return Number(await this.#run('write', 'pbJobReap', JSON.stringify(error)));
  }

  /** The backend whose connections the store uses. */
  get backend(): RedisBackend {
    return this.#backend;
  }

  /** The Redis key of an idempotency key: its SHA-256, so any key fits. */
  #keyName(idempotencyKey: string): string {
    return `${this.#prefix}key:${createHash('sha256').update(idempotencyKey).digest('base64url')}`;
  }

  #run(what: 'read' | 'write', name: keyof typeof JOB_SCRIPTS, ...args: (string | number)[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new ClosedError('The job store is closed'));
    const now = this.#clock === undefined ? '' : String(Math.floor(this.#clock.now()));
    return this.#backend._command(
      (client: Redis | Cluster) => (client as unknown as Scripted)[name](`${this.#prefix}workers`, this.#prefix, now, this.#slack, this.#channel, this.#maxGone, ...args),
      what,
    );
  }

  readonly #onMessage = (payload: string): void => {
    const space = payload.lastIndexOf(' ');
    if (space <= 0) return;
    const version = Number(payload.slice(space + 1));
    if (!Number.isSafeInteger(version)) return;
    const id = payload.slice(0, space);
    for (const listener of this.#listeners) listener.changed(id, version);
  };

  protected async onClose(): Promise<void> {
    this.#stop();
    if (this.#ownsBackend) await this.#backend.close();
  }

  protected onDestroy(reason: unknown): void {
    this.#stop();
    if (this.#ownsBackend) this.#backend.destroy(reason);
  }

  #stop(): void {
    this.#subscription?.stop();
    this.#subscription = undefined;
    this.#listeners.clear();
  }
}

function lookupOf(id: string, reply: Reply): JobLookup {
  if (reply[0] === 'job') return parseJob(reply[1] as string[], id);
  return reply[0] === 'gone' ? 'gone' : undefined;
}

/** A job's hash (a flat field, value list) as a {@link StoredJob}. */
function parseJob(fields: readonly string[], knownId = ''): StoredJob {
  let id = knownId;
  let state = 'pending';
  let progress: PollProgress | null = null;
  let resultJson: string | undefined;
  let error: PollJobError | undefined;
  let version = 1;
  let owner = '';
  let fingerprint: string | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    const value = fields[i + 1]!;
    switch (fields[i]) {
      case 'i':
        id = value;
        break;
      case 's':
        state = value;
        break;
      case 'p':
        progress = parseJson(value, { what: 'A job record from Redis' }) as PollProgress | null;
        break;
      case 'r':
        resultJson = value;
        break;
      case 'e':
        error = parseJson(value, { what: 'A job record from Redis' }) as PollJobError;
        break;
      case 'v':
        version = Number(value);
        break;
      case 'o':
        owner = value;
        break;
      case 'f':
        if (value !== '') fingerprint = value;
        break;
    }
  }
  const job: { -readonly [K in keyof StoredJob]: StoredJob[K] } = { id, state: state as StoredJob['state'], progress, version, owner };
  if (resultJson !== undefined) job.resultJson = resultJson;
  if (error !== undefined) job.error = error;
  if (fingerprint !== undefined) job.fingerprint = fingerprint;
  return job;
}
