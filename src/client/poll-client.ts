/**
 * A fetch-based client for short-polled jobs (`PollHandler`-style endpoints, the demo's
 * `POST /jobs`): start a job, follow `Retry-After` (or hold each read with `Prefer: wait`), report
 * progress, cancel through an AbortSignal, and resolve with the result.
 *
 * @module
 */
import type { PollJobState, PollProgress } from '../core/jobs.js';
import type { Clock } from '../core/clock.js';
import { CanceledError, HttpStatusError, InvalidArgumentError, JobFailedError, ProtocolError } from '../core/errors.js';
import {
  ClientTransport,
  type ClientTransportOptions,
  durationOption,
  isRecord,
  isRetryableStatus,
  parseJson,
  type ReadResponse,
  resolveUrl,
  reasonOf,
  retryAfterMs,
  type RetryPolicy,
  RetryState,
  sleep,
  statusError,
} from './transport.js';

/** The states of a job. `succeeded`, `failed`, `canceled` and `expired` are final. */
export type JobState = PollJobState;

/** A job's progress: a fraction from 0 to 1, or parts done out of a total, with a message for people. */
export type JobProgress = PollProgress;

/** One snapshot of a job, as the status resource answers it: `{ id, state, progress, result?, error? }`. */
export interface JobStatus<R = unknown> {
  /** The job's id. */
  readonly id: string;
  /** Its state when the snapshot was taken. */
  readonly state: JobState;
  /** The last progress it reported, if any. */
  readonly progress?: JobProgress | null;
  /** The result, once `succeeded` (when the server answers it inline). */
  readonly result?: R;
  /** What went wrong, once `failed`: the server's safe serialization (at least a `message`). */
  readonly error?: unknown;
}

/** A job the server accepted. */
export interface JobRef<R = unknown> {
  /** The job's id. */
  readonly id: string;
  /** Its status resource (the start's `Location`), absolute. */
  readonly location: URL;
  /** The snapshot the start answered with, if it sent one. */
  readonly status: JobStatus<R> | undefined;
  /** The server's `Retry-After` on the start, in ms, if it sent one. */
  readonly retryAfterMs: number | undefined;
  /** The `ETag` of `status`, if the start sent one: the first held read waits for a change from it. */
  readonly etag?: string | undefined;
}

/** One read of a job's status resource. */
export interface JobRead<R = unknown> {
  /** The snapshot; for a 304, the one the client already had (`undefined` if it had none). */
  readonly status: JobStatus<R> | undefined;
  /** The snapshot's `ETag`, for the next `If-None-Match`. */
  readonly etag: string | undefined;
  /** The server answered 304: nothing changed since `etag`. */
  readonly notModified: boolean;
  /** The server honoured `Prefer: wait` (it said so in `Preference-Applied`). */
  readonly waited: boolean;
  /** The server's `Retry-After`, in ms. */
  readonly retryAfterMs: number | undefined;
}

/** Options for {@link PollClient}. */
export interface PollClientOptions extends ClientTransportOptions {
  /**
   * The base that relative URLs given to the methods are resolved against.
   * @defaultValue the page's URL (`location.href`) in a browser; none in Node
   */
  readonly baseUrl?: string | URL;
  /**
   * Hold each status read on the server for up to this many seconds, until the job changes
   * (`Prefer: wait=N`, RFC 7240); 0 turns it off, and the client then follows `Retry-After`.
   * Servers that do not honour it are polled by `Retry-After` anyway.
   * @defaultValue 20
   */
  readonly waitSeconds?: number;
  /**
   * The pause between status reads when the server neither held the read nor sent `Retry-After`, in ms.
   * @defaultValue 1000
   */
  readonly intervalMs?: number;
  /**
   * The deadline of a request that is not held (start, cancel, a read without `Prefer: wait`), in
   * ms; a held read gets its wait plus this.
   * @defaultValue 30000
   */
  readonly requestTimeoutMs?: number;
  /**
   * Failed attempts in a row before a call gives up and throws the last error.
   * @defaultValue 10
   */
  readonly maxRetries?: number;
}

/** Options for {@link PollClient.start} and {@link PollClient.run}. */
export interface StartOptions {
  /**
   * The start's `Idempotency-Key`: a retried start returns the same job instead of a second one.
   * @defaultValue a fresh random key per call, so the client's own retries are safe
   */
  readonly idempotencyKey?: string;
  /**
   * Ask the server to answer the start with the finished result when the job ends within this
   * many seconds (`Prefer: respond-async, wait=N`), and with `202` otherwise.
   */
  readonly waitSeconds?: number;
  /** Cancels the call (and, in {@link PollClient.run}, the job). */
  readonly signal?: AbortSignal;
}

/** Options for {@link PollClient.wait} and {@link PollClient.run}. */
export interface PollClientWaitOptions<R = unknown> {
  /** Called with each new snapshot (state or progress changed), the final one included. */
  readonly onProgress?: (status: JobStatus<R>) => void;
  /** Stops waiting; unless `cancelOnAbort` is false the job is canceled (`DELETE`) first. */
  readonly signal?: AbortSignal;
  /**
   * On abort, cancel the job on the server before rejecting.
   * @defaultValue true
   */
  readonly cancelOnAbort?: boolean;
}

const STATES: ReadonlySet<string> = new Set(['pending', 'running', 'succeeded', 'failed', 'canceled', 'expired']);
const FINAL: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'canceled', 'expired']);

/** Whether a state is final. */
export function isFinalState(state: JobState): boolean {
  return FINAL.has(state);
}

/**
 * A short-polling client for long jobs.
 *
 * - {@link PollClient.run} starts a job and resolves with its result: it follows the `Location`
 *   of the `202`, reads the status with `If-None-Match` and `Prefer: wait` (so each read returns
 *   at the first change), falls back to `Retry-After` pacing, and calls `onProgress` with each new
 *   snapshot.
 * - A `failed` job rejects with a {@link JobFailedError} carrying the server's error; `canceled`
 *   with a {@link CanceledError}; a result gone before it was read (`410`, or `expired`) with a
 *   {@link JobFailedError} whose `state` is `expired`.
 * - Network errors, 5xx, 408 and 429 are retried with jittered backoff (at least `Retry-After`);
 *   starts are retried safely because each carries an `Idempotency-Key`.
 * - Aborting the signal cancels the job with `DELETE` (unless told not to), then rejects with the
 *   signal's reason; no timer stays behind.
 *
 * It uses only `fetch`, so it runs in browsers as in Node.
 *
 * @example
 * ```ts
 * import { PollClient } from 'patchbay/client';
 *
 * const jobs = new PollClient({ baseUrl: 'http://127.0.0.1:3000' });
 * const result = await jobs.run('/jobs', { steps: 5, stepMs: 200 }, {
 *   onProgress: (s) => console.log(s.state, s.progress),
 *   signal: AbortSignal.timeout(60_000),
 * });
 * ```
 */
export class PollClient {
  readonly #base: URL | undefined;
  readonly #waitSeconds: number;
  readonly #intervalMs: number;
  readonly #requestTimeoutMs: number;
  readonly #retryPolicy: RetryPolicy;
  readonly #transport: ClientTransport;
  readonly #clock: Clock;

  /**
   * @param options - Where the server is and how to poll it.
   * @throws {@link InvalidArgumentError} for a bad option.
   */
  constructor(options: PollClientOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('PollClient: options must be an object');
    if (options.baseUrl !== undefined) {
      try {
        this.#base = new URL(options.baseUrl);
      } catch (error) {
        throw new InvalidArgumentError(`PollClient: baseUrl must be an absolute URL, got ${String(options.baseUrl)}`, { cause: error });
      }
    }
    this.#waitSeconds = Math.floor(durationOption('waitSeconds', options.waitSeconds, 20));
    this.#intervalMs = durationOption('intervalMs', options.intervalMs, 1000);
    this.#requestTimeoutMs = durationOption('requestTimeoutMs', options.requestTimeoutMs, 30_000, 1);
    this.#transport = new ClientTransport('PollClient', options, 10);
    this.#retryPolicy = this.#transport.policy;
    this.#clock = this.#transport.clock;
  }

  /**
   * Starts a job: `POST url` with `body` as JSON and an `Idempotency-Key`, retried on failures
   * that may be passing. Resolves once the server accepted it.
   *
   * @param url - The start endpoint (absolute, or relative to `baseUrl`).
   * @param body - The job's parameters, sent as JSON (`undefined` sends no body).
   * @throws {@link HttpStatusError} for a refusal (`4xx`, a `503`/`429` after the retries),
   * {@link ProtocolError} for an answer without a usable `Location`, the abort reason when aborted.
   */
  async start<R = unknown>(url: string | URL, body?: unknown, options: StartOptions = {}): Promise<JobRef<R>> {
    const target = this.#resolve(url);
    const key = options.idempotencyKey ?? randomKey();
    if (typeof key !== 'string' || key === '' || /[\r\n]/.test(key)) throw new InvalidArgumentError('idempotencyKey must be a non-empty string without CR or LF');
    const wait = options.waitSeconds === undefined ? undefined : Math.floor(durationOption('waitSeconds', options.waitSeconds, 0));
    const signal = options.signal ?? new AbortController().signal;
    const headers: Record<string, string> = { accept: 'application/json', 'idempotency-key': key };
    if (wait !== undefined) headers['prefer'] = `respond-async, wait=${wait}`;
    let text: string | undefined;
    if (body !== undefined) {
      text = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    const what = `POST ${target.pathname}`;
    const res = await this.#withRetries(what, signal, () =>
      this.#request({ method: 'POST', url: target, headers, ...(text === undefined ? {} : { body: text }), timeoutMs: this.#requestTimeoutMs + (wait ?? 0) * 1000, signal }),
    );
    if (res.status === 202 || res.status === 201) {
      const location = res.headers.get('location');
      if (location === null) throw new ProtocolError(`${what} answered ${res.status} without a Location header`);
      const abs = new URL(location, res.url || target);
      const status = res.text === '' ? undefined : asStatus<R>(what, parseJson(what, res.text));
      return { id: status?.id ?? lastSegment(abs), location: abs, status, retryAfterMs: retryAfterMs(res.headers), etag: res.headers.get('etag') ?? undefined };
    }
    if (res.status === 200) {
      // Finished within the respond-async wait: the answer is the final snapshot, or (after a 303) the result itself.
      const parsed = parseJson(what, res.text);
      const location = res.headers.get('content-location') ?? res.headers.get('location');
      const abs = location !== null ? new URL(location, res.url || target) : new URL(res.url || target);
      const status = res.redirected && !looksLikeStatus(parsed) ? ({ id: lastSegment(abs), state: 'succeeded', result: parsed } as JobStatus<R>) : asStatus<R>(what, parsed);
      return { id: status.id, location: abs, status, retryAfterMs: undefined, etag: res.headers.get('etag') ?? undefined };
    }
    throw statusError(what, res);
  }

  /**
   * Reads a job's status once. With `etag`, an unchanged job answers 304 (`notModified`); with
   * `waitSeconds` the server may hold the read until the job changes (`Prefer: wait`).
   *
   * @throws {@link HttpStatusError} (`404` unknown, `410` gone, ...), the abort reason when aborted.
   */
  async read<R = unknown>(location: string | URL, options: { readonly etag?: string; readonly waitSeconds?: number; readonly signal?: AbortSignal } = {}): Promise<JobRead<R>> {
    const target = this.#resolve(location);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.etag !== undefined) headers['if-none-match'] = options.etag;
    const wait = options.waitSeconds ?? 0;
    if (wait > 0) headers['prefer'] = `wait=${Math.floor(wait)}`;
    const signal = options.signal ?? new AbortController().signal;
    const res = await this.#request({ method: 'GET', url: target, headers, timeoutMs: this.#requestTimeoutMs + wait * 1000, signal });
    const what = `GET ${target.pathname}`;
    const waited = /\bwait\b/i.test(res.headers.get('preference-applied') ?? '');
    const retryAfter = retryAfterMs(res.headers);
    if (res.status === 304) return { status: undefined, etag: options.etag, notModified: true, waited, retryAfterMs: retryAfter };
    if (res.status !== 200) throw statusError(what, res);
    const parsed = parseJson(what, res.text);
    // A finished job may answer 303 See Other to its result resource; fetch followed it.
    const status = res.redirected && !looksLikeStatus(parsed) ? ({ id: lastSegment(target), state: 'succeeded', result: parsed } as JobStatus<R>) : asStatus<R>(what, parsed);
    return { status, etag: res.headers.get('etag') ?? undefined, notModified: false, waited, retryAfterMs: retryAfter };
  }

  /**
   * Waits for a started job to end and resolves with its result.
   *
   * @param job - The job (from {@link PollClient.start}) or its status URL.
   * @throws {@link JobFailedError} when it failed or expired, {@link CanceledError} when it was
   * canceled, {@link HttpStatusError} for a refusal, the abort reason when aborted.
   */
  async wait<R = unknown>(job: JobRef<R> | string | URL, options: PollClientWaitOptions<R> = {}): Promise<R> {
    const location = typeof job === 'string' || job instanceof URL ? this.#resolve(job) : job.location;
    const first = typeof job === 'string' || job instanceof URL ? undefined : job;
    const signal = options.signal ?? new AbortController().signal;
    try {
      return await this.#follow<R>(location, first, options.onProgress, signal);
    } catch (error) {
      if (signal.aborted && options.cancelOnAbort !== false) {
        await this.cancel(location).catch(() => undefined); // best effort, bounded by requestTimeoutMs
        throw reasonOf(signal);
      }
      throw error;
    }
  }

  /**
   * Starts a job and waits for its result: {@link PollClient.start} then {@link PollClient.wait}.
   *
   * @param url - The start endpoint.
   * @param body - The job's parameters, as JSON.
   */
  async run<R = unknown>(url: string | URL, body?: unknown, options: StartOptions & PollClientWaitOptions<R> = {}): Promise<R> {
    const ref = await this.start<R>(url, body, options);
    return this.wait<R>(ref, options);
  }

  /**
   * Cancels a job (`DELETE` on its status resource) and returns the snapshot the server answered
   * with, if any. Canceling a finished job is not an error: the server reports its final state.
   *
   * @throws {@link HttpStatusError} (`404` unknown, `410` gone, ...).
   */
  async cancel<R = unknown>(job: JobRef<R> | string | URL, options: { readonly signal?: AbortSignal } = {}): Promise<JobStatus<R> | undefined> {
    const target = typeof job === 'string' || job instanceof URL ? this.#resolve(job) : job.location;
    const signal = options.signal ?? new AbortController().signal;
    const what = `DELETE ${target.pathname}`;
    const res = await this.#withRetries(what, signal, () =>
      this.#request({ method: 'DELETE', url: target, headers: { accept: 'application/json' }, timeoutMs: this.#requestTimeoutMs, signal, redirect: 'manual' }),
    );
    if (res.status === 204 || res.status === 202 || (res.status >= 300 && res.status < 400) || res.status === 0) return undefined;
    if (res.status !== 200) throw statusError(what, res);
    return res.text === '' ? undefined : asStatus<R>(what, parseJson(what, res.text));
  }

  async #follow<R>(location: URL, first: JobRef<R> | undefined, onProgress: ((s: JobStatus<R>) => void) | undefined, signal: AbortSignal): Promise<R> {
    let last: JobStatus<R> | undefined = first?.status;
    // With the start's ETag, the first read can be held until the job changes: no pause first.
    let etag: string | undefined = last !== undefined ? first?.etag : undefined;
    let pause = etag !== undefined && this.#waitSeconds > 0 ? undefined : first?.retryAfterMs;
    const report = (s: JobStatus<R>): void => {
      if (last !== undefined && last !== s && sameSnapshot(last, s)) return;
      onProgress?.(s);
    };
    if (last !== undefined) {
      onProgress?.(last);
      if (isFinalState(last.state)) return settle(last);
    }
    const retry = new RetryState(this.#retryPolicy);
    for (;;) {
      if (pause !== undefined && pause > 0) await sleep(this.#clock, pause, signal);
      pause = undefined;
      const useWait = etag !== undefined && this.#waitSeconds > 0;
      let r: JobRead<R>;
      try {
        r = await this.read<R>(location, { ...(etag === undefined ? {} : { etag }), waitSeconds: useWait ? this.#waitSeconds : 0, signal });
        retry.succeeded();
      } catch (error) {
        if (signal.aborted) throw reasonOf(signal);
        if (error instanceof HttpStatusError && error.status === 410) {
          throw new JobFailedError(lastSegment(location), 'expired', `Job ${lastSegment(location)} is gone: its result expired before it was read`, error.serverCode, { cause: error });
        }
        pause = retry.failed(error); // throws the error when it is not retried
        continue;
      }
      if (!r.notModified && r.status !== undefined) {
        const s = r.status;
        report(s);
        last = s;
        etag = r.etag;
        if (isFinalState(s.state)) return settle(s);
      }
      // A held read that came back is the signal to read again at once; otherwise pace the reads.
      if (!(useWait && r.waited)) pause = r.retryAfterMs ?? this.#intervalMs;
    }
  }

  /**
   * Runs `attempt` until it answers with a status not worth retrying. Past `maxRetries` failures
   * in a row it throws the last error: for a retryable status, the `statusError` that the callers
   * would throw for it.
   */
  async #withRetries(what: string, signal: AbortSignal, attempt: () => Promise<ReadResponse>): Promise<ReadResponse> {
    const retry = new RetryState(this.#retryPolicy);
    for (;;) {
      let res: ReadResponse;
      try {
        res = await attempt();
      } catch (error) {
        if (signal.aborted) throw error;
        await retry.backOff(error, signal);
        continue;
      }
      if (!isRetryableStatus(res.status)) return res;
      await retry.backOff(statusError(what, res), signal);
    }
  }

  async #request(spec: { method: string; url: URL; headers: Record<string, string>; body?: string; timeoutMs: number; signal: AbortSignal; redirect?: 'follow' | 'manual' }): Promise<ReadResponse> {
    return this.#transport.send(spec);
  }

  #resolve(url: string | URL): URL {
    return resolveUrl(`PollClient: URL${this.#base === undefined ? ' (relative URLs need options.baseUrl outside a page)' : ''}`, url, this.#base);
  }
}

function settle<R>(s: JobStatus<R>): R {
  switch (s.state) {
    case 'succeeded':
      return s.result as R;
    case 'canceled':
      throw new CanceledError(`Job ${s.id} was canceled`);
    case 'expired':
      throw new JobFailedError(s.id, 'expired', `Job ${s.id} expired before its result was read`, s.error);
    default: {
      const message = isRecord(s.error) && typeof s.error['message'] === 'string' ? s.error['message'] : 'no message';
      throw new JobFailedError(s.id, 'failed', `Job ${s.id} failed: ${message}`, s.error);
    }
  }
}

function looksLikeStatus(value: unknown): boolean {
  return isRecord(value) && typeof value['id'] === 'string' && typeof value['state'] === 'string' && STATES.has(value['state']);
}

function asStatus<R>(what: string, value: unknown): JobStatus<R> {
  if (!looksLikeStatus(value)) throw new ProtocolError(`${what}: expected a job status { id, state, progress, result?, error? }, got ${JSON.stringify(value)?.slice(0, 120)}`);
  return value as JobStatus<R>;
}

function sameSnapshot(a: JobStatus, b: JobStatus): boolean {
  return a.state === b.state && JSON.stringify(a.progress ?? null) === JSON.stringify(b.progress ?? null);
}

function lastSegment(url: URL): string {
  const parts = url.pathname.split('/').filter((p) => p !== '');
  return decodeURIComponent(parts[parts.length - 1] ?? '');
}

function randomKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  let s = '';
  for (let i = 0; i < 4; i++) s += Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
  return s;
}
