/**
 * What both clients share: a fetch with a deadline and an AbortSignal, the error a non-retryable
 * status becomes, `Retry-After` parsing, and jittered exponential backoff on the injected clock.
 *
 * Nothing here imports a Node built-in: the clients run in browsers as they do in Node.
 *
 * @module
 */
import { type Backoff, backoffDelay, type BackoffOptions, resolveBackoff } from '../core/backoff.js';
import type { Clock } from '../core/clock.js';
import { HttpStatusError, InvalidArgumentError, ProtocolError, TimeoutError } from '../core/errors.js';
import { optionalClock } from '../core/validate.js';

/** The `fetch` the clients call: the global one by default; pass your own to add auth or tracing. */
export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** Headers to add to every request: fixed, or computed per request (a fresh token, say). */
export type HeadersSource = Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);

/**
 * The clients' backoff: the library's one shape ({@link BackoffOptions}), with the clients'
 * defaults: the first delay at most 250 ms, growing ×2 to at most 30 s, full jitter. @internal
 */
export const CLIENT_BACKOFF: Backoff = Object.freeze({ initialDelayMs: 250, maxDelayMs: 30_000, factor: 2, jitter: 1 });

/**
 * Checks a client's `backoff` option and fills in {@link CLIENT_BACKOFF}.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad field.
 * @internal
 */
export function resolveClientBackoff(options: BackoffOptions | undefined): Backoff {
  return resolveBackoff('backoff', options, CLIENT_BACKOFF);
}

/**
 * The delay before retry number `attempt`, as {@link backoffDelay} draws it, but with the clients'
 * `random` read as the share of the cap to wait: a draw of 1 waits the whole cap, 0 waits only
 * `floorMs` (so with full jitter the wait is `cap * random()`, as it always was for the clients).
 * A broken draw waits the cap (NaN, above 1) or `floorMs` (below 0).
 * @internal
 */
export function clientBackoffDelay(b: Backoff, attempt: number, random: () => number, floorMs = 0): number {
  return backoffDelay(b, attempt, () => 1 - random(), floorMs);
}

/** The options every client takes for its requests and their retries. */
export interface ClientTransportOptions {
  /** Headers for every request (say, `authorization`): fixed, or computed per request. */
  readonly headers?: HeadersSource;
  /**
   * The fetch to use.
   * @defaultValue `globalThis.fetch`
   */
  readonly fetch?: FetchLike;
  /**
   * Backoff after failures: the first delay at most `initialDelayMs`, growing by `factor` up to
   * `maxDelayMs`, each drawn at random from the last `jitter` share of its bound.
   * @defaultValue `{ initialDelayMs: 250, maxDelayMs: 30000, factor: 2, jitter: 1 }` (full jitter)
   */
  readonly backoff?: BackoffOptions;
  /**
   * The time source for deadlines, pauses and backoff (tests pass a `ManualClock`).
   * @defaultValue the real clock
   */
  readonly clock?: Clock;
  /**
   * Random numbers in [0, 1) for the backoff jitter.
   * @defaultValue `Math.random`
   */
  readonly random?: () => number;
}

/**
 * What the two clients hold for their requests, checked once: the fetch, the headers option, and
 * the retry policy (backoff, clock, random source, and `maxRetries`: an integer >= 0 or
 * `Infinity`, `defaultMaxRetries` when left out).
 *
 * @internal
 */
export class ClientTransport {
  readonly policy: RetryPolicy;
  readonly #fetch: FetchLike;
  readonly #headers: HeadersSource | undefined;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad option; its message starts with `name`. */
  constructor(name: string, options: ClientTransportOptions & { readonly maxRetries?: number }, defaultMaxRetries: number) {
    const backoff = resolveClientBackoff(options.backoff);
    const maxRetries = options.maxRetries ?? defaultMaxRetries;
    if (!(maxRetries >= 0) || (Number.isFinite(maxRetries) && !Number.isInteger(maxRetries))) {
      throw new InvalidArgumentError(`${name}: maxRetries must be an integer >= 0 or Infinity, got ${String(options.maxRetries)}`);
    }
    this.policy = { backoff, maxRetries, clock: optionalClock('clock', options.clock), random: options.random ?? Math.random };
    this.#fetch = options.fetch ?? defaultFetch();
    this.#headers = options.headers;
  }

  /** The clock of the policy. */
  get clock(): Clock {
    return this.policy.clock;
  }

  /**
   * One {@link exchange}, with headers in this order, each over the one before: `defaults`, the
   * `headers` option, `spec.headers`.
   */
  async send(spec: RequestSpec, defaults?: Record<string, string>): Promise<ReadResponse> {
    const headers = { ...defaults, ...(await resolveHeaders(this.#headers)), ...spec.headers };
    return exchange(this.#fetch, this.policy.clock, { ...spec, headers });
  }
}

/**
 * Resolves after `ms` on `clock`, or rejects with the signal's reason when it aborts first. The
 * timer and the abort listener are removed on every path.
 *
 * @internal
 */
export function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(reasonOf(signal));
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(reasonOf(signal));
    };
    const timer = clock.setTimer(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** @internal How a retry loop backs off and when it gives up. */
export interface RetryPolicy {
  readonly backoff: Backoff;
  /** Failed attempts in a row that are retried; the next failure gives up. */
  readonly maxRetries: number;
  readonly clock: Clock;
  /** Random numbers in [0, 1) for the jitter. */
  readonly random: () => number;
  /**
   * Which failures are worth another attempt.
   * @defaultValue {@link isRetryableError}
   */
  readonly retryable?: (error: unknown) => boolean;
}

/**
 * The count of failed attempts in a row that every client retry loop keeps. A loop calls
 * {@link RetryState.succeeded} after an attempt that worked (the backoff starts over) and
 * {@link RetryState.failed} (or {@link RetryState.backOff}) after one that did not; what to do
 * about an abort stays with the loop, since each client ends differently.
 *
 * @internal
 */
export class RetryState {
  readonly #policy: RetryPolicy;
  readonly #retryable: (error: unknown) => boolean;
  #failures = 0;

  constructor(policy: RetryPolicy) {
    this.#policy = policy;
    this.#retryable = policy.retryable ?? isRetryableError;
  }

  /** Failed attempts in a row right now (0 after a success). */
  get failures(): number {
    return this.#failures;
  }

  /** An attempt worked: the next failure is the first again. */
  succeeded(): void {
    this.#failures = 0;
  }

  /**
   * Counts a failed attempt and returns how long to wait before the next one: full jitter, and no
   * less than the server's `Retry-After`.
   *
   * @throws `error` itself when it is not worth retrying or it is failure number `maxRetries + 1`.
   */
  failed(error: unknown): number {
    if (!this.#retryable(error)) throw error;
    this.#failures++;
    if (this.#failures > this.#policy.maxRetries) throw error;
    // Never sooner than the server's Retry-After.
    const floor = error instanceof HttpStatusError ? (error.retryAfterMs ?? 0) : 0;
    return clientBackoffDelay(this.#policy.backoff, this.#failures, this.#policy.random, floor);
  }

  /**
   * {@link RetryState.failed}, then the wait on the policy's clock.
   *
   * @throws `error` when it is not retried, the signal's reason when it aborts during the wait.
   */
  async backOff(error: unknown, signal: AbortSignal): Promise<void> {
    await sleep(this.#policy.clock, this.failed(error), signal);
  }
}

/** @internal */
export function reasonOf(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * A child AbortController that aborts when any parent aborts; `dispose()` detaches it from the
 * parents (call it on every path, or long-lived parents collect listeners).
 *
 * @internal
 */
export function linkedController(...parents: (AbortSignal | undefined)[]): { controller: AbortController; dispose(): void } {
  const controller = new AbortController();
  const detach: (() => void)[] = [];
  for (const parent of parents) {
    if (parent === undefined) continue;
    if (parent.aborted) {
      controller.abort(reasonOf(parent));
      break;
    }
    const onAbort = (): void => controller.abort(reasonOf(parent));
    parent.addEventListener('abort', onAbort, { once: true });
    detach.push(() => parent.removeEventListener('abort', onAbort));
  }
  return {
    controller,
    dispose: () => {
      for (const d of detach) d();
      detach.length = 0;
    },
  };
}

/** @internal */
export interface RequestSpec {
  readonly method: string;
  readonly url: URL;
  readonly headers: Record<string, string>;
  readonly body?: string;
  /** The client-side deadline for the whole exchange (headers and body), in ms. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /** Follow redirects (the default) or not. */
  readonly redirect?: 'follow' | 'manual' | 'error';
}

/** @internal A response with its body read (text), so no stream outlives the deadline. */
export interface ReadResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The URL that answered, after redirects. */
  readonly url: string;
  readonly redirected: boolean;
}

/**
 * One HTTP exchange with a deadline: the request and the whole body must arrive within
 * `timeoutMs`, or it fails with a {@link TimeoutError}. An abort of `signal` rejects with the
 * signal's reason. The deadline's timer is canceled on every path.
 *
 * @internal
 */
export async function exchange(fetchFn: FetchLike, clock: Clock, spec: RequestSpec): Promise<ReadResponse> {
  if (spec.signal.aborted) throw reasonOf(spec.signal);
  const link = linkedController(spec.signal);
  let timedOut = false;
  const timer = clock.setTimer(() => {
    timedOut = true;
    link.controller.abort(new TimeoutError(`${spec.method} ${spec.url.pathname} got no full answer within ${spec.timeoutMs} ms`));
  }, spec.timeoutMs);
  try {
    const init: RequestInit = { method: spec.method, headers: spec.headers, signal: link.controller.signal, redirect: spec.redirect ?? 'follow' };
    if (spec.body !== undefined) init.body = spec.body;
    const res = await fetchFn(spec.url, init);
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, url: res.url, redirected: res.redirected };
  } catch (error) {
    if (spec.signal.aborted) throw reasonOf(spec.signal);
    if (timedOut) throw reasonOf(link.controller.signal);
    throw error;
  } finally {
    timer.cancel();
    link.dispose();
  }
}

/** @internal */
export async function resolveHeaders(source: HeadersSource | undefined): Promise<Record<string, string>> {
  if (source === undefined) return {};
  return typeof source === 'function' ? await source() : source;
}

/**
 * `Retry-After` in ms: delay-seconds, or an HTTP-date relative to the response's `Date` (or now).
 * Anything else (absent, negative, garbage) is `undefined`. Capped at one hour.
 *
 * @internal
 */
// eslint-disable-next-line no-restricted-syntax -- an HTTP-date is wall-clock time, whatever the Clock says
export function retryAfterMs(headers: Headers, wallNow: () => number = () => Date.now()): number | undefined {
  const raw = headers.get('retry-after');
  if (raw === null) return undefined;
  const value = raw.trim();
  let ms: number;
  if (/^\d+$/.test(value)) ms = Number(value) * 1000;
  else if (/^[A-Za-z]{3,9},? /.test(value)) {
    // An HTTP-date starts with the day's name (IMF-fixdate, RFC 850 and asctime forms alike).
    const at = Date.parse(value);
    if (Number.isNaN(at)) return undefined;
    const date = headers.get('date');
    const base = date !== null && !Number.isNaN(Date.parse(date)) ? Date.parse(date) : wallNow();
    ms = Math.max(0, at - base);
  } else return undefined;
  return Math.min(ms, 3_600_000);
}

/** @internal Statuses worth trying again after a wait: the server or the path is having trouble. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** @internal Is this failure of fetch worth retrying (network trouble, our own deadline)? */
export function isRetryableError(error: unknown): boolean {
  if (error instanceof TimeoutError) return true;
  if (error instanceof HttpStatusError) return isRetryableStatus(error.status);
  if (error instanceof ProtocolError) return false;
  // fetch reports network failures (refused, reset, DNS) as a TypeError.
  return error instanceof TypeError;
}

/**
 * The error a non-2xx answer becomes: an {@link HttpStatusError} carrying the status and the code
 * of the server's JSON error body (`{ "error": { "code", "message" } }`) when it has one.
 *
 * @internal
 */
export function statusError(what: string, res: ReadResponse): HttpStatusError {
  let serverCode: string | undefined;
  let serverMessage: string | undefined;
  try {
    const body = JSON.parse(res.text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body?.error?.code === 'string') serverCode = body.error.code;
    if (typeof body?.error?.message === 'string') serverMessage = body.error.message;
  } catch {
    // not JSON: keep the status alone
  }
  const detail = serverMessage !== undefined ? `: ${serverCode ?? ''} ${serverMessage}`.replace(':  ', ': ') : '';
  const retryAfter = retryAfterMs(res.headers);
  return new HttpStatusError(res.status, `${what} answered HTTP ${res.status}${detail}`, serverCode, retryAfter === undefined ? undefined : { retryAfterMs: retryAfter });
}

/** @internal Parses a JSON body or fails with a ProtocolError naming what was expected. */
export function parseJson(what: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ProtocolError(`${what}: the body is not JSON (${text.slice(0, 80)})`, { cause: error });
  }
}

/** @internal */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** @internal Validates a client option that is a positive finite duration in ms. */
export function durationOption(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(`${name} must be a finite number >= ${min}, got ${String(value)}`);
  }
  return value;
}

/**
 * The URL relative URLs resolve against by default: the page's (`location.href`) in a browser or
 * a worker, none in Node. @internal
 */
export function pageUrl(): string | undefined {
  const href = (globalThis as { location?: { href?: unknown } }).location?.href;
  return typeof href === 'string' && href !== '' ? href : undefined;
}

/**
 * `url` made absolute against `base`, or the page's URL when `base` is undefined, as `fetch` and
 * `EventSource` resolve in a page.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) when it cannot be resolved: malformed,
 *   or relative with nothing to resolve it against (Node without a base); the message starts with `what`.
 * @internal
 */
export function resolveUrl(what: string, url: string | URL, base?: string | URL): URL {
  const against = base ?? pageUrl();
  try {
    return new URL(url, against);
  } catch (error) {
    const hint = against === undefined ? ': a relative URL needs a base, and there is no page URL (location.href) here to resolve it against' : '';
    throw new InvalidArgumentError(`${what} cannot be resolved, got ${String(url)}${hint}`, { cause: error });
  }
}

/** @internal */
export function defaultFetch(): FetchLike {
  const f = (globalThis as { fetch?: FetchLike }).fetch;
  if (typeof f !== 'function') throw new InvalidArgumentError('No global fetch here: pass options.fetch');
  return f.bind(globalThis);
}
