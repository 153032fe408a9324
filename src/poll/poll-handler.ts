/**
 * The HTTP face of a {@link PollHandle}: the asynchronous request-reply pattern over plain
 * `node:http`, with RFC 7240 `Prefer` for bridging sync and async, `ETag`/`304` for cheap polls,
 * and `Idempotency-Key` for safe retries of a start.
 *
 * ## The contract
 *
 * Routes, under `basePath` (default `/jobs`); every body is JSON (`application/json; charset=utf-8`).
 * A `basePath` may have parameters (`/rooms/:room/summarize`): a segment that starts with `:`
 * matches any one non-empty segment, the matched values reach `parse` and `authorize`, and
 * `{basePath}` below is the path the request came on (`/rooms/42/summarize`), so `Location`
 * headers point back under the same room.
 * A *status* is `{ "id", "state", "progress", "result"?, "error"? }`: `state` is one of
 * `pending`, `running`, `succeeded`, `failed`, `canceled`; `progress` is `null`, a fraction from
 * 0 to 1, or `{ "done", "total"?, "message"? }`; `result` is there once `succeeded`; `error`
 * (`{ "name", "message", "code"?, "stack"? }`) once `failed`. An error is
 * `{ "error": { "code", "message" } }` with a code from `docs/errors.md`.
 *
 * `POST {basePath}` starts a job. The body (at most `maxBodyBytes`; `application/json` or
 * `text/plain`, empty for none) goes through `parse`, then to `run`.
 * - `202 Accepted`: `Location: {basePath}/{id}`, `Retry-After: <s>`, `ETag`, body the status.
 * - `Prefer: respond-async, wait=N` (or `Prefer: wait=N`): if the job ends within N seconds
 *   (at most `maxWaitSeconds`), `200 OK` with the final status (result inline), `ETag`,
 *   `Content-Location: {basePath}/{id}` and `Preference-Applied: wait=N`; otherwise `202` as
 *   above, after N seconds, with `Preference-Applied: respond-async, wait=N` (`wait=N` alone if
 *   `respond-async` was not asked). `Prefer: respond-async` alone: `202` at once, with
 *   `Preference-Applied: respond-async`.
 * - `Idempotency-Key: <key>` (1 to 255 printable ASCII characters, bare or as a Structured Field
 *   string): the same key with the same body (byte for byte, same media type) answers for the
 *   job it first started, whatever its state, with `Idempotent-Replayed: true` and no new job
 *   (a still-running one is reported, not duplicated); the same key with another body is
 *   `422` `PB_ERR_IDEMPOTENCY_CONFLICT`. A key lives as long as its job (until it expires).
 *   Two `Idempotency-Key` headers are a `400`.
 * - `503` `PB_ERR_CAPACITY` with `Retry-After` when `maxLiveJobs` or `maxStoredResults` is reached;
 *   `400` (bad body, bad `Prefer`, bad key, `parse` refused), `413` (`PB_ERR_BODY_TOO_LARGE`),
 *   `415` (`PB_ERR_UNSUPPORTED_MEDIA_TYPE`).
 *
 * `GET` (or `HEAD`) `{basePath}/{id}` reads the status.
 * - `200 OK` with the status, `ETag: "<version>"`, `Cache-Control: no-cache`, and, while the job
 *   is pending or running, `Retry-After: <s>` (an estimate of the time left from the progress
 *   rate, clamped to `minRetryAfterSeconds`..`maxRetryAfterSeconds`).
 * - `304 Not Modified` (same headers, no body) when `If-None-Match` names the current `ETag`.
 * - `resultMode: 'redirect'`: once the job has its outcome (succeeded, failed or canceled),
 *   `303 See Other` with `Location: {basePath}/{id}/result` (body: the final status too).
 * - `Prefer: wait=N`: held until the status differs from the one the client has (the one its
 *   `If-None-Match` names, or else the current one) or N seconds pass (at most `maxWaitSeconds`),
 *   then answered as above (so `304` if still unchanged and `If-None-Match` was sent). A finished
 *   job without a matching `If-None-Match` is answered at once. Answers carry
 *   `Preference-Applied: wait=N` (N as applied, after clamping).
 * - `429` `PB_ERR_RATE_LIMITED` with `Retry-After`, only with `rejectEarlyPolls`: a read without
 *   `Prefer: wait` that comes sooner than the `Retry-After` the job last announced (less
 *   `earlyPollToleranceMs`).
 * - `404` `PB_ERR_NOT_FOUND` for an unknown (or malformed) id; `410` `PB_ERR_GONE` once the job's
 *   outcome has expired (`ttlMs` after it ended; for `goneMs`, then `404`); a held read whose job
 *   expires is answered `410`. `400` for a malformed `Prefer` (`wait` not a whole number of seconds).
 *
 * `GET` (or `HEAD`) `{basePath}/{id}/result`: `200` with the final status (the same body and
 * `ETag`; `304` on a matching `If-None-Match`) once the job has its outcome; `409`
 * `PB_ERR_INVALID_STATE` with `Retry-After` while it is pending or running; `404`, `410` as above.
 *
 * `DELETE {basePath}/{id}` cancels: the job ends `canceled` at once and its `AbortSignal` aborts;
 * `200 OK` with the status (`canceled`, or the outcome it already had: canceling a finished job
 * changes nothing). `404`, `410` as above.
 *
 * With a registry that shares its jobs through a store (a {@link SharedPollHandle}, on a
 * `RedisJobStore` say), every route answers for any job of the store, whichever process runs it: reads
 * and cancels go to the store (one round trip), held reads are woken by the store's announcements,
 * and `Idempotency-Key`s are looked up there. `503` `PB_ERR_UNAVAILABLE` with `Retry-After` when
 * the store cannot be reached.
 *
 * Other methods: `405` with `Allow`. Other paths under `basePath`: `404`. With `cors`, preflights
 * allow `Content-Type`, `Prefer`, `Idempotency-Key` and `If-None-Match`, and scripts may read
 * `Location`, `Content-Location`, `Retry-After`, `ETag`, `Preference-Applied` and
 * `Idempotent-Replayed`.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../core/clock.js';
import { ClosedError, ForbiddenError, GoneError, InvalidArgumentError, InvalidStateError, MethodNotAllowedError, NotFoundError, RateLimitedError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { applyCors, type CorsOptions, decodeBody, readBody, sendError } from '../http/index.js';
import { DelayedOperation, type Purgatory } from '../purgatory/index.js';
import { parseIdempotencyKey, parseIfNoneMatch, parsePrefer, tagsMatch } from './headers.js';
import { isOutcome } from './job-record.js';
import type { PollHandle } from './poll-handle.js';
import type { PollJob, PollJobContext } from './poll-job.js';
import type { SharedPollHandle } from './shared-poll-handle.js';

/** How a finished job's status is answered: inline (`200`), or `303 See Other` to `{id}/result`. */
export type PollResultMode = 'inline' | 'redirect';

/** What a request asks of the handler, for {@link PollHandlerOptions.authorize}. */
export type PollAction = 'start' | 'status' | 'result' | 'cancel';

/** Options for {@link PollHandler}. */
export interface PollHandlerOptions<I = unknown, R = unknown> {
  /**
   * The registry the jobs live in: a {@link PollHandle} (in this process) or a
   * {@link SharedPollHandle} (shared through a store). The handler does not close it.
   */
  readonly jobs: PollHandle | SharedPollHandle;
  /** The work of a job started over HTTP, given the parsed input. Its result must be JSON-serializable. */
  readonly run: (input: I, context: PollJobContext) => R | PromiseLike<R>;
  /**
   * Validates and converts a start's decoded body (`undefined` when empty) before any job exists:
   * throw an `InvalidArgumentError` to answer `400`.
   * @defaultValue the decoded body, as is
   */
  readonly parse?: (body: unknown, req: IncomingMessage, params: PollRouteParams) => I | Promise<I>;
  /**
   * The path the routes live under: `POST {basePath}`, `GET|DELETE {basePath}/{id}`,
   * `GET {basePath}/{id}/result`. A segment that starts with `:` is a parameter
   * (`'/rooms/:room/summarize'`): it matches one non-empty segment, its decoded value reaches
   * `parse` and `authorize` as `params.room`, and `Location` headers use the path the request
   * came on (`/rooms/42/summarize/{id}`). Job ids are one space for every value of the
   * parameters: to keep a room's jobs to that room, check in `authorize`.
   * @defaultValue `'/jobs'`
   */
  readonly basePath?: string;
  /**
   * How a finished job's status read is answered.
   * @defaultValue `'inline'`
   */
  readonly resultMode?: PollResultMode;
  /**
   * The longest `Prefer: wait` honoured, in seconds (longer ones are clamped); 0 ignores `wait`.
   * @defaultValue 30
   */
  readonly maxWaitSeconds?: number;
  /**
   * The largest start body, in bytes.
   * @defaultValue 65536
   */
  readonly maxBodyBytes?: number;
  /**
   * The smallest `Retry-After` sent, in seconds.
   * @defaultValue 1
   */
  readonly minRetryAfterSeconds?: number;
  /**
   * The largest `Retry-After` sent, in seconds.
   * @defaultValue 30
   */
  readonly maxRetryAfterSeconds?: number;
  /**
   * Answer `429` with `Retry-After` to a status read (without `Prefer: wait`) that comes sooner
   * than the `Retry-After` the job last announced. The limit is per job, not per client.
   * @defaultValue `false`
   */
  readonly rejectEarlyPolls?: boolean;
  /**
   * How much sooner than `Retry-After` a read may come before it counts as early, in ms.
   * @defaultValue 250
   */
  readonly earlyPollToleranceMs?: number;
  /**
   * Scopes idempotency keys, so two clients' keys never meet: return, say, the authenticated
   * user's id. Keys are compared as (scope, key).
   * @defaultValue one scope for everyone
   */
  readonly idempotencyScope?: (req: IncomingMessage) => string;
  /** CORS: without it, no CORS headers are sent. */
  readonly cors?: CorsOptions;
  /**
   * May this request do this? Return `false` to answer `403`. `id` is undefined for a start;
   * `params` holds the values of `basePath`'s parameters (empty without any).
   */
  readonly authorize?: (req: IncomingMessage, action: PollAction, id: string | undefined, params: PollRouteParams) => boolean | Promise<boolean>;
}

/** The values of a parameterised `basePath`'s parameters, by name, decoded: `{ room: '42' }` for `/rooms/:room/summarize`. */
export type PollRouteParams = Readonly<Record<string, string>>;

/** Counters reported by {@link PollHandler.stats}. */
export interface PollHandlerStats {
  /** Status reads held by `Prefer: wait` now. */
  readonly held: number;
  /** Starts held by `Prefer: wait` now. */
  readonly heldStarts: number;
  /** Starts answered `202` so far. */
  readonly accepted: number;
  /** Starts answered `200` with the outcome (within their `Prefer: wait`) so far. */
  readonly finishedInWait: number;
  /** Status answers with a body (`200`) so far. */
  readonly statusAnswers: number;
  /** `304` answers so far. */
  readonly notModified: number;
  /** `303` answers so far. */
  readonly redirects: number;
  /** Reads refused as early (`429`) so far. */
  readonly rateLimited: number;
}

const ALLOW_HEADERS = ['Content-Type', 'Prefer', 'Idempotency-Key', 'If-None-Match'];
const EXPOSE_HEADERS = ['Location', 'Content-Location', 'Retry-After', 'ETag', 'Preference-Applied', 'Idempotent-Replayed'];
const METHODS = ['GET', 'HEAD', 'POST', 'DELETE'];
const CONTENT_TYPE = 'application/json; charset=utf-8';
const NO_PARAMS: PollRouteParams = Object.freeze({});
/** A `basePath` segment that is a parameter. */
const PARAM_SEGMENT = /^:[A-Za-z_][A-Za-z0-9_]*$/;

/** What {@link PollHandler.handle} returns for a request answered (or held) at once. */
const DONE: Promise<void> = Promise.resolve();

/** The client went away: a held request is dropped without an answer. */
const CLIENT_GONE = new Error('client disconnected');

const MODE_START = 1;
const RESPOND_ASYNC = 2;
const REPLAYED = 4;
const CONDITIONAL = 8;

/**
 * What the handler keeps with a job (its {@link PollJob.attachment}): the status bytes of one
 * version and their tag, and the job's early-poll limit.
 */
interface Entity {
  readonly version: number;
  /**
   * The status JSON as a string: `res.end(string)` joins it to the head into one write (a
   * Buffer goes as a second chunk, through `writev`).
   */
  readonly body: string;
  readonly etag: string;
  readonly length: string;
  /** The early-poll limit: no status read before this time (the last `Retry-After` announced). */
  nextPollAt: number;
}

/**
 * Short polling of long jobs over `node:http`: starts, status reads, results and cancels for a
 * {@link PollHandle}. The exact HTTP contract is in this module's documentation (above) and in
 * the README.
 *
 * @example
 * ```ts
 * const jobs = new PollHandle({ ttlMs: 600_000 });
 * const poll = new PollHandler({
 *   jobs,
 *   basePath: '/jobs',
 *   parse: (body) => {
 *     if (typeof body !== 'object' || body === null) throw new InvalidArgumentError('Send a JSON object');
 *     return body as { url: string };
 *   },
 *   run: async (input, { signal, progress }) => {
 *     progress(0.5);
 *     return (await fetch(input.url, { signal })).status;
 *   },
 * });
 * http.createServer((req, res) => {
 *   if (req.url?.startsWith('/jobs')) void poll.handle(req, res);
 * });
 * ```
 */
export class PollHandler<I = unknown, R = unknown> extends Resource {
  readonly #jobs: PollHandle | SharedPollHandle;
  readonly #run: (input: I, context: PollJobContext) => R | PromiseLike<R>;
  readonly #parse: PollHandlerOptions<I, R>['parse'];
  readonly #base: string;
  /** The segments of a `basePath` with parameters (`:room` as is); undefined for a fixed one. */
  readonly #pattern: readonly string[] | undefined;
  readonly #redirect: boolean;
  readonly #maxWait: number;
  readonly #maxBody: number;
  readonly #minRetry: number;
  readonly #maxRetry: number;
  readonly #rejectEarly: boolean;
  readonly #tolerance: number;
  readonly #scope: ((req: IncomingMessage) => string) | undefined;
  readonly #cors: CorsOptions | undefined;
  readonly #authorize: PollHandlerOptions<I, R>['authorize'];
  readonly #clock: Clock;
  readonly #held = new Set<HeldRequest>();
  #heldStatus = 0;
  #heldStarts = 0;
  #accepted = 0;
  #finishedInWait = 0;
  #statusAnswers = 0;
  #notModified = 0;
  #redirects = 0;
  #rateLimited = 0;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: PollHandlerOptions<I, R>) {
    super();
    const opts = check.optionsObject('options', options) as PollHandlerOptions<I, R>;
    if (opts.jobs === undefined || opts.jobs === null || typeof opts.jobs.lookup !== 'function' || typeof opts.jobs.watch !== 'function') {
      throw new InvalidArgumentError(`Expected \`jobs\` to be a PollHandle or a SharedPollHandle, got ${check.describe(opts.jobs)}`);
    }
    this.#jobs = opts.jobs;
    if (typeof opts.run !== 'function') throw new InvalidArgumentError(`Expected \`run\` to be a function, got ${check.describe(opts.run)}`);
    this.#run = opts.run;
    this.#parse = check.optionalFunction('parse', opts.parse);
    const base = opts.basePath ?? '/jobs';
    if (typeof base !== 'string' || !/^(?:\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*\/?$/.test(base)) {
      throw new InvalidArgumentError(`Expected \`basePath\` to be a URL path such as '/jobs', got ${check.describe(base)}`);
    }
    this.#base = base.endsWith('/') ? base.slice(0, -1) : base;
    const segments = this.#base.split('/').slice(1);
    this.#pattern = segments.some((segment) => PARAM_SEGMENT.test(segment)) ? segments : undefined;
    this.#redirect = check.oneOf<PollResultMode>('resultMode', opts.resultMode, ['inline', 'redirect'], 'inline') === 'redirect';
    this.#maxWait = check.integerInRange('maxWaitSeconds', opts.maxWaitSeconds ?? 30, 0, 86_400);
    this.#maxBody = check.integerInRange('maxBodyBytes', opts.maxBodyBytes ?? 65_536, 0, 2 ** 30);
    this.#minRetry = check.integerInRange('minRetryAfterSeconds', opts.minRetryAfterSeconds ?? 1, 0, 86_400);
    this.#maxRetry = check.integerInRange('maxRetryAfterSeconds', opts.maxRetryAfterSeconds ?? 30, this.#minRetry, 86_400);
    this.#rejectEarly = opts.rejectEarlyPolls === true;
    this.#tolerance = check.integerInRange('earlyPollToleranceMs', opts.earlyPollToleranceMs ?? 250, 0, 86_400_000);
    this.#scope = check.optionalFunction('idempotencyScope', opts.idempotencyScope);
    this.#cors = opts.cors === undefined ? undefined : check.optionsObject('cors', opts.cors);
    this.#authorize = check.optionalFunction('authorize', opts.authorize);
    this.#clock = this.#jobs.clock;
  }

  /** Counters. */
  stats(): PollHandlerStats {
    return {
      held: this.#heldStatus,
      heldStarts: this.#heldStarts,
      accepted: this.#accepted,
      finishedInWait: this.#finishedInWait,
      statusAnswers: this.#statusAnswers,
      notModified: this.#notModified,
      redirects: this.#redirects,
      rateLimited: this.#rateLimited,
    };
  }

  /**
   * Serves one request under `basePath` (see the module documentation for the contract). Bad
   * input answers 4xx with a JSON error body; a client that disconnects while held is dropped at
   * once. Resolves once the request is answered or held (a held request costs no pending
   * promise); never rejects.
   */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A status read of a local job (the hot route of short polling) is answered synchronously:
    // no async function, so no promise of its own per request; only the routes that wait for
    // something (a start, `authorize`, a shared store) go through one.
    try {
      const pending = this.#route(req, res);
      return pending === undefined ? DONE : pending.then(undefined, (error: unknown) => sendError(res, error));
    } catch (error) {
      try {
        sendError(res, error);
      } catch (failure) {
        return Promise.reject(failure instanceof Error ? failure : new Error(String(failure)));
      }
      return DONE;
    }
  }

  /** Routes a request: undefined once it is answered (or held), else the promise of its answer. */
  #route(req: IncomingMessage, res: ServerResponse): Promise<void> | undefined {
    if (applyCors(req, res, this.#cors, METHODS, ALLOW_HEADERS, EXPOSE_HEADERS)) return undefined;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    let base = this.#base;
    let params = NO_PARAMS;
    if (this.#pattern !== undefined) {
      const matched = matchBase(this.#pattern, path);
      if (matched === undefined) throw notFound(path);
      ({ base, params } = matched);
    } else if (!path.startsWith(base)) throw notFound(path);
    const rest = path.slice(base.length);
    if (rest === '' || rest === '/') {
      if (method !== 'POST') throw new MethodNotAllowedError(method, ['POST']);
      this.assertOpen('handle');
      return this.#startRoute(req, res, base, params);
    }
    if (rest.charCodeAt(0) !== 0x2f) throw notFound(path);
    const slash = rest.indexOf('/', 1);
    const isResult = slash !== -1;
    if (isResult && rest.slice(slash) !== '/result') throw notFound(path);
    const id = jobId(isResult ? rest.slice(1, slash) : rest.slice(1));
    if (isResult) {
      if (method !== 'GET' && method !== 'HEAD') throw new MethodNotAllowedError(method, ['GET', 'HEAD']);
    } else if (method !== 'GET' && method !== 'HEAD' && method !== 'DELETE') {
      throw new MethodNotAllowedError(method, ['GET', 'HEAD', 'DELETE']);
    }
    this.assertOpen('handle');
    const action: PollAction = isResult ? 'result' : method === 'DELETE' ? 'cancel' : 'status';
    const jobs = this.#jobs;
    // The one branch on the registry: a local job is read at once (its cached view, no promise),
    // a shared one from the store (one round trip).
    if (jobs.shared || this.#authorize !== undefined) return this.#jobRoute(req, res, action, id, base, params);
    this.#act(req, res, action, jobs.get(id), base);
    return undefined;
  }

  async #startRoute(req: IncomingMessage, res: ServerResponse, base: string, params: PollRouteParams): Promise<void> {
    if (this.#authorize !== undefined && (await this.#authorize(req, 'start', undefined, params)) !== true) throw new ForbiddenError('Not allowed to start a job');
    await this.#start(req, res, base, params);
  }

  /** A job route that waits: for `authorize`, or for the store of a shared registry. */
  async #jobRoute(req: IncomingMessage, res: ServerResponse, action: PollAction, id: string, base: string, params: PollRouteParams): Promise<void> {
    if (this.#authorize !== undefined && (await this.#authorize(req, action, id, params)) !== true) throw new ForbiddenError(`Not allowed to ${action} job ${id}`);
    const jobs = this.#jobs;
    if (!jobs.shared) {
      this.#act(req, res, action, jobs.get(id), base);
      return;
    }
    const job = await jobs.lookup(id);
    if (action === 'cancel') {
      await jobs.cancelJob(job);
      this.#send(res, 200, job, 'no-store');
    } else this.#act(req, res, action, job, base);
  }

  /** Answers a status read, a result read or (a local job's) cancel. */
  #act(req: IncomingMessage, res: ServerResponse, action: PollAction, job: PollJob, base: string): void {
    if (action === 'status') this.#status(req, res, job, base);
    else if (action === 'result') this.#result(req, res, job, base);
    else {
      job.cancel();
      this.#send(res, 200, job, 'no-store');
    }
  }

  // --- start ----------------------------------------------------------------------------------

  async #start(req: IncomingMessage, res: ServerResponse, base: string, params: PollRouteParams): Promise<void> {
    const prefer = parsePrefer(headerText(req.headers['prefer']));
    const rawKey = parseIdempotencyKey(req.headersDistinct['idempotency-key']);
    const body = await readBody(req, this.#maxBody);
    this.assertOpen('handle');
    const contentType = headerText(req.headers['content-type']);
    let key: string | undefined;
    let fingerprint: string | undefined;
    let job: PollJob | undefined;
    if (rawKey !== undefined) {
      const scope = this.#scope === undefined ? '' : this.#scope(req);
      if (typeof scope !== 'string') throw new InvalidArgumentError(`Expected \`idempotencyScope\` to return a string, got ${check.describe(scope)}`);
      key = scope === '' ? rawKey : `${scope}\u0000${rawKey}`;
      fingerprint = createHash('sha256').update(mediaType(contentType)).update('\n').update(body).digest('base64url');
      const jobs = this.#jobs;
      job = jobs.shared ? await jobs.lookupByIdempotencyKey(key, fingerprint) : jobs.findByIdempotencyKey(key, fingerprint);
    }
    if (job === undefined) {
      let input: unknown = body.length === 0 ? undefined : decodeBody(contentType, body);
      if (this.#parse !== undefined) input = await this.#parse(input, req, params);
      this.assertOpen('handle');
      const run = this.#run;
      const parsed = input as I;
      const fn = (context: PollJobContext): R | PromiseLike<R> => run(parsed, context);
      const jobs = this.#jobs;
      job = jobs.shared ? await jobs.submit(fn, { idempotencyKey: key, fingerprint }) : jobs.start(fn, { idempotencyKey: key, fingerprint });
    }
    const rec = job;
    const wait = prefer.wait === undefined ? 0 : Math.min(prefer.wait, this.#maxWait);
    let bits = MODE_START;
    if (prefer.respondAsync) bits |= RESPOND_ASYNC;
    if (job.replayed) bits |= REPLAYED;
    if (wait > 0 && (rec.state === 'pending' || rec.state === 'running')) {
      this.#hold(res, rec, 0, bits, wait, base);
      return;
    }
    this.#answerStart(res, rec, bits, wait, base);
  }

  /** Answers a start: `200` with the outcome when it waited and the job ended, else `202`. */
  #answerStart(res: ServerResponse, rec: PollJob, bits: number, wait: number, base: string): void {
    const extra: string[] = [];
    if ((bits & REPLAYED) !== 0) extra.push('idempotent-replayed', 'true');
    if (wait > 0 && isOutcome(rec.state)) {
      this.#finishedInWait++;
      extra.push('content-location', `${base}/${rec.id}`, 'preference-applied', `wait=${wait}`);
      this.#send(res, 200, rec, 'no-store', extra);
      return;
    }
    if (rec.state === 'expired') {
      sendError(res, gone(rec));
      return;
    }
    const applied = (bits & RESPOND_ASYNC) !== 0 ? (wait > 0 ? `respond-async, wait=${wait}` : 'respond-async') : wait > 0 ? `wait=${wait}` : '';
    if (applied !== '') extra.push('preference-applied', applied);
    extra.push('location', `${base}/${rec.id}`);
    this.#accepted++;
    this.#send(res, 202, rec, 'no-store', extra);
  }

  // --- status and result ----------------------------------------------------------------------

  #status(req: IncomingMessage, res: ServerResponse, rec: PollJob, base: string): void {
    const preferHeader = req.headers['prefer'];
    const prefer = preferHeader === undefined ? undefined : parsePrefer(headerText(preferHeader));
    const inm = req.headers['if-none-match'];
    const tags = inm === undefined ? undefined : parseIfNoneMatch(inm);
    const wait = prefer?.wait === undefined || this.#maxWait === 0 ? 0 : Math.min(prefer.wait, this.#maxWait);
    const live = rec.state === 'pending' || rec.state === 'running';
    if (wait > 0) {
      // Held while the client's snapshot is the current one: the one its If-None-Match names,
      // or else (a live job only) the current version.
      const has = tags !== undefined ? tags : live ? rec.version : undefined;
      if (has !== undefined && tagsMatch(has, rec.version)) {
        this.#hold(res, rec, has, tags !== undefined ? CONDITIONAL : 0, wait, base);
        return;
      }
    } else if (this.#rejectEarly && live) {
      const now = this.#clock.now();
      const nextPollAt = (rec.attachment as Entity | undefined)?.nextPollAt ?? 0;
      if (now < nextPollAt - this.#tolerance) {
        this.#rateLimited++;
        throw new RateLimitedError(`Job ${rec.id} was read too soon: wait for its Retry-After`, {
          retryAfterSeconds: Math.max(1, Math.ceil((nextPollAt - now) / 1000)),
        });
      }
    }
    this.#answerStatus(res, rec, tags, prefer?.wait === undefined || this.#maxWait === 0 ? -1 : wait, base);
  }

  /** A status answer: 410, 304, 303 or 200. `applied` is the wait to echo (-1: none). */
  #answerStatus(res: ServerResponse, rec: PollJob, tags: number | readonly number[] | undefined, applied: number, base: string): void {
    if (rec.state === 'expired') {
      sendError(res, gone(rec), applied >= 0 ? { 'preference-applied': `wait=${applied}` } : undefined);
      return;
    }
    const extra = applied >= 0 ? ['preference-applied', `wait=${applied}`] : undefined;
    if (tags !== undefined && tagsMatch(tags, rec.version)) {
      this.#send(res, 304, rec, 'no-cache', extra);
      return;
    }
    if (this.#redirect && isOutcome(rec.state)) {
      const list = extra ?? [];
      list.push('location', `${base}/${rec.id}/result`);
      this.#send(res, 303, rec, 'no-cache', list);
      return;
    }
    this.#send(res, 200, rec, 'no-cache', extra);
  }

  #result(req: IncomingMessage, res: ServerResponse, rec: PollJob, base: string): void {
    if (!isOutcome(rec.state)) {
      const retryAfter = this.#retryAfter(rec, this.#clock.now());
      sendError(res, new InvalidStateError(`Job ${rec.id} is ${rec.state}: it has no result yet; read ${base}/${rec.id}`), {
        'retry-after': String(retryAfter),
      });
      return;
    }
    const inm = req.headers['if-none-match'];
    const tags = inm === undefined ? undefined : parseIfNoneMatch(inm);
    this.#send(res, tags !== undefined && tagsMatch(tags, rec.version) ? 304 : 200, rec, 'no-cache');
  }

  // --- holding --------------------------------------------------------------------------------

  #hold(res: ServerResponse, rec: PollJob, has: number | readonly number[], bits: number, wait: number, base: string): void {
    // A client already gone has had its 'close' event: holding it would keep it until the deadline.
    if (res.destroyed || res.writableEnded) return;
    const op = new HeldRequest(this.#host, rec, res, has, bits, wait, base);
    if ((bits & MODE_START) !== 0) this.#heldStarts++;
    else this.#heldStatus++;
    this.#held.add(op);
    const held = res as HeldResponse;
    held[kOp] = op;
    res.on('close', onResponseClose);
    op.purgatory = this.#jobs.purgatory;
    this.#jobs.watch(rec, op);
  }

  /** What held requests call back into. */
  readonly #host: HeldHost = {
    ended: (op, reason) => {
      this.#held.delete(op);
      if ((op.bits & MODE_START) !== 0) this.#heldStarts--;
      else this.#heldStatus--;
      if (reason === CLIENT_GONE) return;
      if ((op.bits & MODE_START) !== 0) this.#answerStart(op.res, op.rec, op.bits, op.wait, op.base);
      else this.#answerStatus(op.res, op.rec, (op.bits & CONDITIONAL) !== 0 ? op.has : undefined, op.wait, op.base);
    },
  };

  // --- writing --------------------------------------------------------------------------------

  /**
   * Writes an answer about `rec`: its status entity (none for 304), `ETag`, `Retry-After` while
   * live, and `extra` headers (a flat name, value list).
   */
  #send(res: ServerResponse, status: number, rec: PollJob, cacheControl: string, extra?: string[]): void {
    if (res.writableEnded || res.destroyed) return;
    const entity = this.#entity(rec);
    const headers = ['cache-control', cacheControl, 'etag', entity.etag];
    if (rec.state === 'pending' || rec.state === 'running') {
      const now = this.#clock.now();
      const retryAfter = this.#retryAfter(rec, now);
      entity.nextPollAt = now + retryAfter * 1000;
      headers.push('retry-after', String(retryAfter));
    }
    if (extra !== undefined) for (let i = 0; i < extra.length; i++) headers.push(extra[i]!);
    if (status === 304) {
      this.#notModified++;
      res.writeHead(304, headers);
      res.end();
      return;
    }
    if (status === 303) this.#redirects++;
    else if (status === 200) this.#statusAnswers++;
    headers.push('content-type', CONTENT_TYPE, 'content-length', entity.length);
    res.writeHead(status, headers);
    res.end(entity.body);
  }

  /** The status bytes of the job's current version, built once per version. */
  #entity(rec: PollJob): Entity {
    const cached = rec.attachment as Entity | undefined;
    if (cached !== undefined && cached.version === rec.version) return cached;
    let json = `{"id":"${rec.id}","state":"${rec.state}","progress":${JSON.stringify(rec.progress)}`;
    if (rec.resultJson !== undefined) json += `,"result":${rec.resultJson}`;
    if (rec.error !== undefined) json += `,"error":${JSON.stringify(rec.error)}`;
    const body = `${json}}`;
    const entity: Entity = { version: rec.version, body, etag: `"${rec.version}"`, length: String(Buffer.byteLength(body)), nextPollAt: cached?.nextPollAt ?? 0 };
    rec.attachment = entity;
    return entity;
  }

  /** Seconds until the job is likely done, from its progress rate, clamped. */
  #retryAfter(rec: PollJob, now: number): number {
    let seconds = this.#minRetry;
    const f = fraction(rec);
    if (rec.state === 'running' && f > 0 && f < 1) seconds = Math.ceil(((now - rec.startedAt) * (1 - f)) / f / 1000);
    return Math.min(this.#maxRetry, Math.max(this.#minRetry, seconds));
  }

  // --- lifecycle ------------------------------------------------------------------------------

  protected onClose(): void {
    this.#release(new ClosedError('The PollHandler was closed'));
  }

  protected onDestroy(reason: unknown): void {
    this.#release(reason ?? new ClosedError('The PollHandler was destroyed'));
  }

  /** Held requests are answered with what is current, so clients read again (elsewhere). */
  #release(reason: unknown): void {
    for (const op of [...this.#held]) {
      const purgatory = op.purgatory;
      if (purgatory !== undefined && !purgatory.closed && !op.isDone) purgatory.cancel(op, reason);
    }
  }
}

interface HeldHost {
  ended(op: HeldRequest, reason: unknown): void;
}

const kOp = Symbol('patchbay.poll.held');
type HeldResponse = ServerResponse & { [kOp]?: HeldRequest | undefined };

/** One listener function for every held response: no closure per request. */
function onResponseClose(this: HeldResponse): void {
  const op = this[kOp];
  if (op !== undefined && !op.isDone) op.purgatory?.cancel(op, CLIENT_GONE);
}

/** A held status read or start, as a purgatory operation. */
class HeldRequest extends DelayedOperation {
  purgatory: Purgatory | undefined;
  constructor(
    readonly host: HeldHost,
    readonly rec: PollJob,
    readonly res: ServerResponse,
    /** Status reads: the versions the client has (held while the current one is among them). */
    readonly has: number | readonly number[],
    readonly bits: number,
    /** The wait applied, in seconds. */
    readonly wait: number,
    /** The path the request came under: where its `Location` points. */
    readonly base: string,
  ) {
    super(wait * 1000);
  }
  override tryComplete(): boolean {
    const rec = this.rec;
    if ((this.bits & MODE_START) !== 0) return rec.state !== 'pending' && rec.state !== 'running';
    return rec.state === 'expired' || !tagsMatch(this.has, rec.version);
  }
  onComplete(): void {
    this.host.ended(this, undefined);
  }
  override onCancel(reason: unknown): void {
    this.host.ended(this, reason);
  }
}

function fraction(rec: PollJob): number {
  const p = rec.progress;
  if (p === null) return 0;
  if (typeof p === 'number') return p;
  return p.total !== undefined && p.total > 0 ? Math.min(1, p.done / p.total) : 0;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

function jobId(raw: string): string {
  let id = raw;
  if (id.indexOf('%') !== -1) {
    try {
      id = decodeURIComponent(id);
    } catch {
      throw new NotFoundError('No job (malformed id)');
    }
  }
  if (id.length === 0 || id.length > 64) throw new NotFoundError('No job (malformed id)');
  return id;
}

/**
 * Matches the start of `path` against a `basePath` with parameters: the path it covers (the
 * base to answer under) and the parameters' decoded values, or undefined when it does not match.
 */
function matchBase(pattern: readonly string[], path: string): { base: string; params: PollRouteParams } | undefined {
  const params = Object.create(null) as Record<string, string>;
  let at = 0;
  for (const segment of pattern) {
    if (path.charCodeAt(at) !== 0x2f) return undefined;
    const end = path.indexOf('/', at + 1);
    const stop = end === -1 ? path.length : end;
    const raw = path.slice(at + 1, stop);
    if (PARAM_SEGMENT.test(segment)) {
      if (raw === '') return undefined;
      try {
        params[segment.slice(1)] = decodeURIComponent(raw);
      } catch {
        return undefined;
      }
    } else if (raw !== segment) return undefined;
    at = stop;
  }
  return { base: path.slice(0, at), params };
}

function notFound(path: string): NotFoundError {
  return new NotFoundError(`No route for ${JSON.stringify(path.length > 80 ? `${path.slice(0, 80)}…` : path)}`);
}

function gone(rec: PollJob): GoneError {
  return new GoneError(`Job ${rec.id} has expired: its outcome was kept for its TTL and is gone`);
}
