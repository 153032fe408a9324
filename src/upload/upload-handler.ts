/**
 * Resumable uploads over the tus 1.0 protocol, built on `@tus/server` and `@tus/file-store`
 * (optional peer dependencies) rather than by hand. patchbay adds what they lack: mounting on
 * plain `node:http` under a base path, limits (size, uploads in progress, expiry of abandoned
 * uploads on one timer), JSON error bodies, an `authorize` hook, and the hand-off to a
 * {@link PollHandle}: when an upload completes, its processing starts as a job and the client
 * short-polls the result.
 *
 * ## The contract (tus 1.0: core, creation, creation-with-upload, expiration, termination)
 *
 * - `OPTIONS {basePath}`: `204` with `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`.
 * - `POST {basePath}` with `Upload-Length` (or `Upload-Defer-Length: 1`) and `Upload-Metadata`:
 *   `201 Created`, `Location: {basePath}/{id}`. Over `maxSizeBytes` (or over `maxTotalBytes`,
 *   which it could never fit in): `413`. With `maxActiveUploads` unfinished uploads already, or
 *   when its `Upload-Length` does not fit in `maxTotalBytes` next to what the folder holds and has
 *   reserved: `503` `PB_ERR_CAPACITY` with `Retry-After`.
 * - `HEAD {basePath}/{id}`: `200` with `Upload-Offset` (what the store holds: a client cut off
 *   mid-chunk resumes from there) and `Upload-Length`; once complete and handed off, also
 *   `Patchbay-Job-Location`.
 * - `PATCH {basePath}/{id}` with `Upload-Offset` and `Content-Type: application/offset+octet-stream`:
 *   `204` with the new `Upload-Offset`. A wrong offset is `409`; a missing or unsupported
 *   `Tus-Resumable` is `412`; past the declared length (or, deferred, past `maxSizeBytes`), `413`
 *   `PB_ERR_BODY_TOO_LARGE`, also when the body is chunked and its length unknown until then; a
 *   deferred-length upload that would pass `maxTotalBytes`, `503` `PB_ERR_CAPACITY` (the bytes
 *   before it are kept: resume later). The `PATCH` that completes the upload answers with
 *   `Patchbay-Job-Location: {jobsBasePath}/{jobId}` when `jobs` is set.
 * - `DELETE {basePath}/{id}`: `204`, the upload and its bytes are removed (termination). While
 *   the upload is being handed off, or its processing job still runs in `jobs`: `409`
 *   `PB_ERR_INVALID_STATE` (the job reads the file; terminate it once the job is done).
 * - `GET {basePath}/{id}` of a finished upload: its bytes (tus's download).
 * - Any other method: `405` `PB_ERR_METHOD_NOT_ALLOWED` with `Allow`.
 * - Unknown ids: `404`; ids are the store's own random names, and an id that decodes to a path
 *   separator, a dot-segment or NUL is refused, so nothing is written outside `directory`.
 *
 * Errors carry a JSON body `{ "error": { "code", "message" } }`: tus's own refusals keep their
 * status (`409` of a wrong offset, `413` of a body past the length) with tus's message and a code
 * for the status (`PB_ERR_PROTOCOL` for `400`, `409` and `412`). Answers without a body (`201`,
 * `204`, `HEAD`) carry no `Content-Type`.
 *
 * ## Disk (bounded, and cleaned)
 *
 * Every upload in `directory` is booked: its bytes on disk, and for an unfinished one with a
 * declared `Upload-Length` the rest of that length as reserved. The total never passes
 * `maxTotalBytes`. Unfinished uploads expire `expiryMs` after creation; finished ones
 * `completedExpiryMs` after they finish (while their processing job is still running in this
 * registry, they wait for it). One timer sweeps them every `cleanupIntervalMs` on the injected
 * clock; a removed upload answers `404`. The sweep never removes an upload in use: one being
 * written (a `PATCH` begun before its deadline finishes, and the sweep after it removes it), or
 * finished and not yet handed to its job. Uploads left in `directory` by a previous process are
 * booked at startup (their age taken from their files), so a restarted server resumes them and
 * expires them.
 *
 * ## Several processes on one folder (a cluster)
 *
 * Processes whose handlers share `directory` (the workers of a `node:cluster`, on one machine or
 * one shared file system) serve the same uploads: tus keeps an upload's offset, length and
 * metadata in its files, and a process books an upload another one created when a request for it
 * first arrives (and, at each sweep, what others wrote to the uploads it booked). So a `PATCH`
 * continues an upload on whichever process it reaches. What stays per process:
 *
 * - the limits: `maxActiveUploads` and `maxTotalBytes` are counted by each process, so N
 *   processes may hold up to N times them;
 * - tus's lock of an upload: two `PATCH`es of one upload at the same time on two processes are
 *   not made to wait for each other. A tus client sends one at a time; one that gives up on a
 *   stuck `PATCH` and resends while the first still writes on another process can race it (the
 *   bytes written are the same bytes, at the same offsets, when the client resends what it sent);
 * - which processing job an upload has is asked of the job registry by the upload's id (the
 *   idempotency key), so with a shared registry (`SharedPollHandle`) a completion seen on two
 *   processes starts one job; but a `DELETE` on a process other than the one running the job is
 *   not refused with `409` while the job runs.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, resolve, sep } from 'node:path';
import { EVENTS, Server as TusServer } from '@tus/server';
import type { Clock, ClockTimer } from '../core/clock.js';
import {
  CapacityError,
  ClosedError,
  ErrorCodes,
  ForbiddenError,
  InvalidArgumentError,
  MethodNotAllowedError,
  PatchbayError,
  RateLimitedError,
  UnavailableError,
} from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import { optionalClock, optionsObject } from '../core/validate.js';
import { type CorsOptions, requestUrl, sendError } from '../http/index.js';
import { originAllowed } from '../http/cors.js';
import { codeForStatus, errorStatus } from '../http/respond.js';
import type { PollHandle, PollJob, PollJobContext, SharedPollHandle } from '../poll/index.js';
import { LedgerFileStore, UploadLedger } from './ledger.js';

/** The response header that names the processing job of a completed upload. */
export const JOB_LOCATION_HEADER = 'Patchbay-Job-Location';

/** What an upload's processing is given. */
export interface UploadedFile {
  /** The upload's id (its last path segment). */
  readonly id: string;
  /** Its size in bytes. */
  readonly size: number;
  /** The `Upload-Metadata` the client sent, decoded (values may be `null` for keys without one). */
  readonly metadata: Readonly<Record<string, string | null>>;
  /** Where its bytes are on disk. */
  readonly path: string;
}

/** What {@link UploadHandlerOptions.authorize} is asked about. */
export type UploadAction = 'create' | 'read' | 'write' | 'terminate' | 'options';

/** Options for {@link UploadHandler}. */
export interface UploadHandlerOptions<R = unknown> {
  /**
   * The folder uploads are stored in. Created if missing, with any missing parents, with mode
   * `0o700` (private to this user; an existing folder keeps its mode). Nothing is written outside it.
   */
  readonly directory: string;
  /**
   * The path the routes live under; `Location` headers use it.
   * @defaultValue `'/uploads'`
   */
  readonly basePath?: string;
  /**
   * The largest upload, in bytes (`Tus-Max-Size`).
   * @defaultValue 1 GiB
   */
  readonly maxSizeBytes?: number;
  /**
   * Uploads created and not yet complete (nor terminated, nor expired) at once; a create past it
   * answers `503` `PB_ERR_CAPACITY` with `Retry-After`. Counts the unfinished uploads in
   * `directory`, those found there at startup included.
   * @defaultValue 100
   */
  readonly maxActiveUploads?: number;
  /**
   * Bytes all uploads in `directory` may hold, finished and unfinished: the bytes on disk, plus
   * for each unfinished upload with a declared `Upload-Length` the rest of that length (reserved
   * at creation). A create whose length does not fit answers `503` `PB_ERR_CAPACITY` with
   * `Retry-After` (room comes back as uploads expire); a deferred-length upload that would write
   * past it is cut with the same answer. An upload larger than this alone is refused with `413`
   * (`Tus-Max-Size` is the smaller of this and `maxSizeBytes`). The JSON metadata files next to
   * the uploads (a few hundred bytes each) are not counted.
   * @defaultValue 10 GiB (ten uploads of the default `maxSizeBytes`)
   */
  readonly maxTotalBytes?: number;
  /**
   * An unfinished upload older than this (from its creation) expires: tus answers it `410`
   * (expiration extension) and the cleanup timer removes its bytes, after which it is `404`.
   * Two clocks: the `410` is decided by `@tus/server` on the wall clock (`Date.now()` against the
   * upload's recorded creation date), the removal on the injected `clock`. With the real clock
   * they agree; with a manual one, only the removal follows it.
   * @defaultValue 24 hours
   */
  readonly expiryMs?: number;
  /**
   * A finished upload is removed this long after it finished (or `expiryMs` after its creation,
   * if sooner), then answers `404`. Its processing (`process`) is meant to read it, or move it
   * somewhere of the app's, well within this; while its job is still running in `jobs`, it is
   * kept. One hour covers a slow processing job and a client that checks the result, while the
   * disk holds at most an hour of finished uploads (and never more than `maxTotalBytes`).
   * @defaultValue 1 hour
   */
  readonly completedExpiryMs?: number;
  /**
   * How often expired uploads are removed, in ms (one timer for the handler).
   * @defaultValue 60000
   */
  readonly cleanupIntervalMs?: number;
  /** The registry a completed upload's processing job is started in (with `process`). */
  readonly jobs?: PollHandle | SharedPollHandle;
  /** The processing of a completed upload: a job whose result the client short-polls. */
  readonly process?: (file: UploadedFile, context: PollJobContext) => R | PromiseLike<R>;
  /**
   * Where the job routes live (the `PollHandler`'s `basePath`), for `Patchbay-Job-Location`.
   * @defaultValue `'/jobs'`
   */
  readonly jobsBasePath?: string;
  /** May this request do this? Return `false` to answer `403`. `id` is undefined for create and options. */
  readonly authorize?: (req: IncomingMessage, action: UploadAction, id: string | undefined) => boolean | Promise<boolean>;
  /**
   * CORS for browsers on other origins, the shape every handler takes: an origin that
   * `cors.origin` lets in (a list of exact origins, a predicate, or `'*'`) is echoed back in
   * `Access-Control-Allow-Origin` (with `Vary: Origin`), `credentials` sends
   * `Access-Control-Allow-Credentials`, and `maxAgeSeconds` is the preflight's `Access-Control-Max-Age`.
   * Any other origin gets no `Access-Control-*` header at all.
   * @defaultValue `undefined`: no CORS headers
   */
  readonly cors?: CorsOptions;
  /**
   * The time source of expiry and of the cleanup timer.
   * @defaultValue the real clock
   */
  readonly clock?: Clock;
}

/** Counters reported by {@link UploadHandler.stats}. */
export interface UploadHandlerStats {
  /** Unfinished uploads in `directory` (counted against `maxActiveUploads`). */
  readonly active: number;
  /** Finished uploads still in `directory` (until `completedExpiryMs`). */
  readonly finished: number;
  /** Bytes of upload data in `directory`, finished and unfinished. */
  readonly bytesOnDisk: number;
  /**
   * Bytes declared by unfinished uploads and not written yet. Every create, write and declared
   * length is admitted only if `bytesOnDisk + bytesReserved` stays at most `maxTotalBytes`, so the
   * sum passes it only when it was over already: when the startup scan books a folder that holds
   * more (left by an earlier process, or by one with a larger `maxTotalBytes`). Then every create
   * and growth is refused (`503` `PB_ERR_CAPACITY`) until expiries bring it back under, and it
   * stays under from then on.
   */
  readonly bytesReserved: number;
  /** Uploads completed so far. */
  readonly completed: number;
  /** Processing jobs started so far. */
  readonly jobsStarted: number;
  /** Creates and writes refused because `maxActiveUploads` or `maxTotalBytes` was reached. */
  readonly refused: number;
  /** Expired uploads removed so far by the sweep (finished and unfinished; a client's `DELETE` is not counted). */
  readonly expired: number;
}

const ID_RE = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * A tus 1.0 upload endpoint on `node:http`, with processing handed to a {@link PollHandle}: the
 * seed's "upload, then poll". See the module documentation for the contract.
 *
 * @example
 * ```ts
 * import { PollHandle } from 'patchbay';
 * import { UploadHandler } from 'patchbay/upload';
 *
 * const jobs = new PollHandle();
 * const uploads = new UploadHandler({
 *   directory: '/var/lib/app/uploads',
 *   maxSizeBytes: 100 * 1024 * 1024,
 *   jobs,
 *   process: async (file, { progress }) => ({ sha256: await hashFile(file.path, progress) }),
 * });
 * http.createServer((req, res) => {
 *   if (req.url?.startsWith('/uploads')) void uploads.handle(req, res);
 *   // ... and a PollHandler on /jobs for the results
 * });
 * ```
 */
export class UploadHandler<R = unknown> extends Resource {
  /** The underlying `@tus/server` instance (for its events). */
  readonly tus: TusServer;
  readonly #store: LedgerFileStore;
  readonly #ledger: UploadLedger;
  readonly #directory: string;
  readonly #basePath: string;
  /** Whether a browser origin may use the uploads (the `cors.origin` rule; none without `cors`). */
  readonly #corsAllowed: (origin: string) => boolean;
  readonly #corsMaxAge: string | undefined;
  readonly #jobs: PollHandle | SharedPollHandle | undefined;
  readonly #process: ((file: UploadedFile, context: PollJobContext) => R | PromiseLike<R>) | undefined;
  readonly #jobsBasePath: string;
  readonly #authorize: UploadHandlerOptions['authorize'];
  readonly #clock: Clock;
  readonly #cleanupMs: number;
  #cleanupTimer: ClockTimer | undefined;
  /** The sweep in progress (the timer's or a caller's), shared. */
  #cleaning: Promise<number> | undefined;
  /** The startup scan of `directory`: requests and sweeps wait for it. Never rejects. */
  readonly #ready: Promise<void>;
  /** Completed upload id -> its processing job's id (forgotten with the upload). */
  readonly #jobOf = new Map<string, PollJob>();
  /** The releases of the ledger holds taken while serving the current request (see `handle`). */
  readonly #requestHolds = new AsyncLocalStorage<(() => void)[]>();
  #completed = 0;
  #jobsStarted = 0;
  #expired = 0;

  /**
   * @param options - Where uploads go, their limits, and their processing.
   * @throws `InvalidArgumentError` (`PB_ERR_INVALID_ARGUMENT`) for a bad option.
   */
  constructor(options: UploadHandlerOptions<R>) {
    super();
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('UploadHandler needs an options object');
    if (typeof options.directory !== 'string' || options.directory === '') throw new InvalidArgumentError('UploadHandler: directory must be a non-empty path');
    const basePath = options.basePath ?? '/uploads';
    if (!/^\/[A-Za-z0-9/_.-]*$/.test(basePath) || basePath.endsWith('/') || basePath.includes('..')) {
      throw new InvalidArgumentError(`UploadHandler: basePath must look like /uploads, got ${JSON.stringify(basePath)}`);
    }
    const maxSizeBytes = positiveInt('maxSizeBytes', options.maxSizeBytes, 1024 ** 3);
    const maxActive = positiveInt('maxActiveUploads', options.maxActiveUploads, 100);
    const maxTotalBytes = positiveInt('maxTotalBytes', options.maxTotalBytes, 10 * 1024 ** 3);
    const expiryMs = positiveInt('expiryMs', options.expiryMs, 24 * 3_600_000);
    const completedExpiryMs = positiveInt('completedExpiryMs', options.completedExpiryMs, 3_600_000);
    this.#cleanupMs = positiveInt('cleanupIntervalMs', options.cleanupIntervalMs, 60_000);
    if ((options.jobs === undefined) !== (options.process === undefined)) {
      throw new InvalidArgumentError('UploadHandler: jobs and process go together (both or neither)');
    }
    this.#directory = resolve(options.directory);
    this.#basePath = basePath;
    this.#jobs = options.jobs;
    this.#process = options.process;
    this.#jobsBasePath = options.jobsBasePath ?? '/jobs';
    this.#authorize = options.authorize;
    this.#clock = optionalClock('clock', options.clock);
    try {
      // Here, not in FileStore's constructor, which creates it later and throws where nobody can catch.
      mkdirSync(this.#directory, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new InvalidArgumentError(`UploadHandler: cannot create directory ${JSON.stringify(this.#directory)}`, { cause: error });
    }
    const clock = this.#clock;
    this.#ledger = new UploadLedger({ maxTotalBytes, maxActive, expiryMs, completedExpiryMs, cleanupIntervalMs: this.#cleanupMs, now: () => clock.now() });
    const requestHolds = this.#requestHolds;
    this.#store = new LedgerFileStore(this.#directory, expiryMs, this.#ledger, {
      inUse: (id) => this.#jobIsRunning(id),
      releaseWithRequest: (release) => {
        const holds = requestHolds.getStore();
        holds?.push(release);
        return holds !== undefined;
      },
    }, () => clock.now());
    const cors = options.cors === undefined ? undefined : optionsObject('cors', options.cors);
    const rule = cors === undefined ? undefined : (cors.origin ?? '*');
    const corsAllowed = (origin: string): boolean => rule !== undefined && originAllowed(rule, origin);
    this.#corsAllowed = corsAllowed;
    this.#corsMaxAge = cors?.maxAgeSeconds === undefined ? undefined : String(cors.maxAgeSeconds);
    this.tus = new TusServer({
      path: basePath,
      datastore: this.#store,
      // An upload larger than maxTotalBytes could never fit: 413, not a 503 to retry forever.
      maxSize: Math.min(maxSizeBytes, maxTotalBytes),
      relativeLocation: true,
      // A predicate, not the list: given a list, tus answers any other origin (or none) with the first one.
      allowedOrigins: corsAllowed,
      allowedCredentials: cors?.credentials === true,
      exposedHeaders: [JOB_LOCATION_HEADER],
      disableTerminationForFinishedUploads: false,
      getFileIdFromRequest: (_req, lastPath) => (lastPath !== undefined && ID_RE.test(lastPath) ? lastPath : undefined),
      // maxActiveUploads and maxTotalBytes are checked by the store as it creates (LedgerFileStore).
      onUploadCreate: async () => {
        if (this.closed) throw new ClosedError('The upload handler is closing');
        return {};
      },
      onUploadFinish: async (_req, upload) => {
        const headers: Record<string, string> = {};
        const jobId = await this.#handOff(upload.id, upload.size ?? upload.offset, upload.metadata ?? {});
        if (jobId !== undefined) headers[JOB_LOCATION_HEADER] = `${this.#jobsBasePath}/${jobId}`;
        return { headers };
      },
      onResponseError: (req, err) => {
        // A patchbay error (a full folder, a full job registry, an unreachable job store) keeps its
        // status and code. A tus refusal keeps its status, whatever its class: tus throws plain
        // objects and Errors alike with a `status_code` (its size limiter's is an Error), and a
        // 413 answered 500 would make a tus client retry forever. Anything else is a failure of
        // ours, answered as sendError does.
        if (err instanceof PatchbayError) {
          const retryAfter = retryAfterOf(err);
          if (retryAfter !== undefined) nodeResponseOf(req)?.setHeader('retry-after', String(retryAfter));
          return { status_code: errorStatus[err.code] ?? 500, body: jsonError(err) };
        }
        const status = (err as { status_code?: unknown }).status_code;
        if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 599) {
          return { status_code: 500, body: JSON.stringify({ error: { code: ErrorCodes.INTERNAL, message: 'The upload failed on the server' } }) };
        }
        // tus's own refusals are fixed texts; a 5xx Error from elsewhere may carry internals.
        const text = status >= 500 && err instanceof Error ? undefined : (err as { body?: unknown }).body;
        const body = typeof text === 'string' ? text : '';
        if (body.startsWith('{"error"')) return { status_code: status, body };
        const message = body.trim() || (status >= 500 ? 'The upload failed on the server' : `HTTP ${status}`);
        return { status_code: status, body: JSON.stringify({ error: { code: codeForStatus(status), message } }) };
      },
    });
    this.tus.on(EVENTS.POST_TERMINATE, (_req, _res, id) => {
      this.#jobOf.delete(id);
    });
    this.#ready = this.#scan();
    this.#armCleanup();
  }

  /**
   * Serves one request under `basePath`. Never rejects: errors are answered with a status and a
   * JSON body.
   */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.closed) throw new ClosedError('The upload handler is closed');
      await this.#ready;
      const url = requestUrl(req);
      const rest = url.pathname === this.#basePath ? '' : url.pathname.startsWith(`${this.#basePath}/`) ? url.pathname.slice(this.#basePath.length + 1) : null;
      if (rest === null) throw new PatchbayError(ErrorCodes.NOT_FOUND, `No upload route for ${url.pathname}`);
      let id: string | undefined;
      if (rest !== '') {
        let decoded: string;
        try {
          decoded = decodeURIComponent(rest);
        } catch {
          decoded = '\u0000';
        }
        if (!ID_RE.test(decoded) || decoded !== rest) throw new PatchbayError(ErrorCodes.NOT_FOUND, 'No such upload');
        id = decoded;
      }
      const method = req.method ?? 'GET';
      const allow = id === undefined ? COLLECTION_METHODS : UPLOAD_METHODS;
      if (!allow.includes(method)) throw new MethodNotAllowedError(method, allow);
      const action: UploadAction =
        method === 'OPTIONS' ? 'options' : method === 'POST' ? 'create' : method === 'PATCH' ? 'write' : method === 'DELETE' ? 'terminate' : 'read';
      if (this.#authorize !== undefined && method !== 'OPTIONS' && (await this.#authorize(req, action, id)) !== true) {
        throw new ForbiddenError('Not allowed to do this to this upload');
      }
      if (id !== undefined && (method === 'HEAD' || method === 'GET')) {
        const jobId = this.#jobOf.get(id)?.id ?? (await this.#handOffAgain(id));
        if (jobId !== undefined) res.setHeader(JOB_LOCATION_HEADER, `${this.#jobsBasePath}/${jobId}`);
      }
      const origin = req.headers.origin;
      tusResponse(res, origin !== undefined && this.#corsAllowed(origin), method, this.#corsMaxAge);
      // An upload this request finishes stays busy (the sweep leaves it, a DELETE is refused)
      // until tus has run onUploadFinish, its hand-off, and answered.
      const holds: (() => void)[] = [];
      try {
        await this.#requestHolds.run(holds, () => this.tus.handle(req, res));
      } finally {
        for (const release of holds) release();
      }
    } catch (error) {
      if (!res.headersSent) sendError(res, error);
      else if (!res.writableEnded) res.destroy();
    }
  }

  /** The processing job of a completed upload, by upload id. */
  jobFor(uploadId: string): string | undefined {
    return this.#jobOf.get(uploadId)?.id;
  }

  /** Counters: uploads in progress and finished, bytes on disk and reserved, completions, jobs, refusals, expiries. */
  stats(): UploadHandlerStats {
    const ledger = this.#ledger;
    return {
      active: ledger.active,
      finished: ledger.finished,
      bytesOnDisk: ledger.bytesOnDisk,
      bytesReserved: ledger.bytesReserved,
      completed: this.#completed,
      jobsStarted: this.#jobsStarted,
      refused: ledger.refused,
      expired: this.#expired,
    };
  }

  /**
   * Removes the uploads whose time is up now, on the injected clock: unfinished ones `expiryMs`
   * after creation, finished ones `completedExpiryMs` after they finished (unless their job is
   * still running), except those in use (being written, or finished and not handed off yet). The
   * cleanup timer does this every `cleanupIntervalMs`; a call while a sweep runs shares it.
   * Resolves with how many it removed; one that cannot be removed now stays booked and is tried
   * again next time.
   * @throws ClosedError (`PB_ERR_CLOSED`), as a rejection, after `close()` or `destroy()`.
   */
  cleanUpExpired(): Promise<number> {
    try {
      this.assertOpen('cleanUpExpired');
    } catch (error) {
      return Promise.reject(error as Error);
    }
    this.#cleaning ??= this.#sweep().finally(() => {
      this.#cleaning = undefined;
    });
    return this.#cleaning;
  }

  async #sweep(): Promise<number> {
    await this.#ready;
    // Another process sharing the folder may have written to (or finished) what is booked here.
    await this.#store.reconcile();
    let removed = 0;
    // Each is checked again as it is removed: one may have been terminated, or come into use, meanwhile.
    for (const id of this.#ledger.due()) {
      if (!(await this.#store.expire(id))) continue;
      this.#jobOf.delete(id);
      this.#expired++;
      removed++;
    }
    return removed;
  }

  #jobIsRunning(id: string): boolean {
    // The view of the job this handler started reads its state as the registry knows it now.
    const state = this.#jobOf.get(id)?.state;
    return state === 'pending' || state === 'running';
  }

  /**
   * Books the uploads a previous process left in `directory` (a `.json` record next to its data
   * file), as {@link LedgerFileStore.adopt} does.
   */
  async #scan(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.#directory);
    } catch {
      return; // nothing there yet
    }
    const present = new Set(names);
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -'.json'.length);
      if (ID_RE.test(id) && present.has(id)) await this.#store.adopt(id);
    }
  }

  async #handOff(id: string, size: number, metadata: Readonly<Record<string, string | null>>): Promise<string | undefined> {
    this.#completed++;
    return this.#startJob(id, size, metadata);
  }

  /**
   * A complete upload whose hand-off failed (the job registry was full, or its store
   * unreachable, and the last PATCH was answered with that error): its job starts when the
   * client asks for the upload's offset again, as a tus client does before it resumes.
   */
  async #handOffAgain(id: string): Promise<string | undefined> {
    if (this.#jobs === undefined || this.#process === undefined) return undefined;
    let upload: { offset: number; size?: number; metadata?: Record<string, string | null> };
    try {
      upload = await this.#store.getUpload(id);
    } catch {
      return undefined; // unknown or expired: tus answers it
    }
    if (upload.size === undefined || upload.offset < upload.size) return undefined;
    return this.#startJob(id, upload.size, upload.metadata ?? {});
  }

  async #startJob(id: string, size: number, metadata: Readonly<Record<string, string | null>>): Promise<string | undefined> {
    const jobs = this.#jobs;
    const process = this.#process;
    if (jobs === undefined || process === undefined) return undefined;
    const existing = this.#jobOf.get(id);
    if (existing !== undefined) return existing.id;
    const path = join(this.#directory, id);
    if (!path.startsWith(this.#directory + sep)) throw { status_code: 500, body: jsonError(new InvalidArgumentError('Upload path escapes the store')) };
    const file: UploadedFile = Object.freeze({ id, size, metadata: Object.freeze({ ...metadata }), path });
    // Busy until its job is registered (then the job keeps it); being removed already: no job.
    const held = this.#ledger.hold(id);
    if (held === undefined) return undefined;
    try {
      // The upload id is the idempotency key: a completion seen twice starts one job (across
      // processes too, when the registry shares its jobs through a store).
      const job = await jobs.submit((context) => process(file, context), { idempotencyKey: `upload:${id}` });
      this.#jobOf.set(id, job);
      this.#jobsStarted++;
      return job.id;
    } finally {
      this.#ledger.release(held);
    }
  }

  #armCleanup(): void {
    this.#cleanupTimer = this.#clock.setTimer(() => {
      this.#cleanupTimer = undefined;
      if (this.closed) return;
      // The next sweep is armed when this one is done: never two at once, one timer at a time.
      void this.cleanUpExpired()
        .catch(() => 0)
        .then(() => {
          if (!this.closed) this.#armCleanup();
        });
    }, this.#cleanupMs);
  }

  /** Stops the expiry sweep and waits for the one in progress. */
  protected async onClose(): Promise<void> {
    this.#cleanupTimer?.cancel();
    this.#cleanupTimer = undefined;
    await this.#ready;
    await this.#cleaning?.catch(() => 0);
  }

  /** Stops the expiry sweep at once. */
  protected onDestroy(): void {
    this.#cleanupTimer?.cancel();
    this.#cleanupTimer = undefined;
  }
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`UploadHandler: ${name} must be a positive integer, got ${String(value)}`);
  return value;
}

/** The methods of `{basePath}` and of `{basePath}/{id}`, for `405` and its `Allow`. */
const COLLECTION_METHODS: readonly string[] = Object.freeze(['OPTIONS', 'POST']);
const UPLOAD_METHODS: readonly string[] = Object.freeze(['OPTIONS', 'HEAD', 'GET', 'PATCH', 'DELETE']);

/** The Node response under the web `Request` tus hands its hooks (srvx keeps it there). */
function nodeResponseOf(req: unknown): ServerResponse | undefined {
  return (req as { runtime?: { node?: { res?: ServerResponse } } } | undefined)?.runtime?.node?.res;
}

function retryAfterOf(error: PatchbayError): number | undefined {
  return error instanceof CapacityError || error instanceof RateLimitedError || error instanceof UnavailableError ? error.retryAfterSeconds : undefined;
}

/**
 * Puts right what tus writes:
 * - tus answers some errors itself, past `onResponseError` and as `text/plain` (a missing
 *   `Tus-Resumable` is a 412, a malformed header a 400, an unknown route a 404); and a JSON body
 *   from `onResponseError` still goes out under tus's `text/plain` content type. So every answer
 *   of 400 and up is held back and rewritten: a JSON `{ error: { code, message } }` body (tus's
 *   own text becomes the message) under `application/json`, its length recomputed.
 * - tus sends `Access-Control-Expose-Headers` (and, to preflights, the other
 *   `Access-Control-*` headers) whatever the origin: unless this request's origin is one of
 *   let in by `cors`, every `Access-Control-*` header is dropped; when it is, `Vary: Origin` is
 *   added, and tus's fixed `Access-Control-Max-Age` becomes `cors.maxAgeSeconds` when given.
 * - tus labels its bodiless successes (`201`, `HEAD`) `text/plain`: dropped.
 */
function tusResponse(res: ServerResponse, corsAllowed: boolean, method: string, maxAge: string | undefined): void {
  if (corsAllowed) res.appendHeader('vary', 'Origin');
  const keep = (name: string): boolean => corsAllowed || !name.toLowerCase().startsWith('access-control-');
  const writeHead = res.writeHead as (...args: unknown[]) => ServerResponse;
  const write = res.write as (...args: unknown[]) => boolean;
  const end = res.end as (...args: unknown[]) => ServerResponse;
  let status = 0;
  let headers: [string, unknown][] = [];
  const chunks: Buffer[] = [];
  const toBuffer = (chunk: unknown) => (typeof chunk === 'string' ? Buffer.from(chunk) : chunk instanceof Uint8Array ? Buffer.from(chunk) : undefined);
  res.writeHead = function (this: ServerResponse, code: number, ...args: unknown[]) {
    const given = args.find((a) => typeof a === 'object' && a !== null);
    if (Array.isArray(given)) {
      if (Array.isArray(given[0])) headers = (given as [string, unknown][]).map(([k, v]) => [k, v]);
      else for (let i = 0; i + 1 < given.length; i += 2) headers.push([String(given[i]), given[i + 1]]);
    } else if (given !== undefined) headers = Object.entries(given as Record<string, unknown>);
    headers = headers.filter(([name]) => keep(name));
    if (maxAge !== undefined) headers = headers.map(([name, value]) => [name, name.toLowerCase() === 'access-control-max-age' ? maxAge : value]);
    if (code < 400) {
      // Only GET (a download) has a body; the rest say nothing about a body they do not have
      // (the web Response under tus labels an empty one text/plain).
      if (method !== 'GET') {
        headers = headers.filter(([name]) => name.toLowerCase() !== 'content-type');
        if (method !== 'HEAD' && code !== 204 && code !== 304 && !headers.some(([name]) => name.toLowerCase() === 'content-length')) headers.push(['content-length', '0']);
      }
      const statusText = typeof args[0] === 'string' ? [args[0]] : [];
      return writeHead.call(this, code, ...statusText, headers.flat());
    }
    status = code;
    return this;
  } as typeof res.writeHead;
  res.write = function (this: ServerResponse, chunk: unknown, ...args: unknown[]) {
    if (status === 0) return write.call(this, chunk, ...args);
    const buf = toBuffer(chunk);
    if (buf !== undefined) chunks.push(buf);
    const callback = args.find((a) => typeof a === 'function') as (() => void) | undefined;
    if (callback !== undefined) queueMicrotask(callback);
    return true;
  } as typeof res.write;
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (status === 0) return end.call(this, ...args);
    const buf = typeof args[0] === 'function' ? undefined : toBuffer(args[0]);
    if (buf !== undefined) chunks.push(buf);
    const callback = args.find((a) => typeof a === 'function');
    const text = Buffer.concat(chunks).toString('utf8').trim();
    const body = text.startsWith('{"error"') ? text : JSON.stringify({ error: { code: codeForStatus(status), message: text || `HTTP ${status}` } });
    res.writeHead = writeHead as typeof res.writeHead;
    res.write = write as typeof res.write;
    res.end = end as typeof res.end;
    for (const [name, value] of headers) {
      const lower = name.toLowerCase();
      if (lower !== 'content-type' && lower !== 'content-length') res.setHeader(name, value as string);
    }
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.setHeader('content-length', Buffer.byteLength(body));
    writeHead.call(this, status);
    return callback === undefined ? end.call(this, body) : end.call(this, body, callback);
  } as typeof res.end;
}

function jsonError(error: PatchbayError): string {
  return JSON.stringify({ error: { code: error.code, message: error.message } });
}

