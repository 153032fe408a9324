/**
 * A fetch-based Server-Sent Events client: what `EventSource` does, plus what it lacks (request
 * headers, `Retry-After`, a bounded parser, backoff, an async iterator, an `AbortSignal`, and
 * patchbay's gap and stop events).
 *
 * ## Reconnecting
 *
 * The spec's rules, with backoff on top:
 *
 * - A `200` stream that ends (cleanly or cut) is reconnected after the reconnection time (the
 *   server's last `retry`, else `retryMs`), sending `Last-Event-ID`. A stream that ends before any
 *   event or comment arrived counts as a failure, so a server that accepts and drops at once is
 *   backed off, not hammered.
 * - Failures in a row (network errors, a stream cut before anything arrived, 5xx, 408, 429) wait a
 *   jittered, growing delay, never less than the reconnection time nor the server's `Retry-After`.
 * - `204 No Content` stops the client for good (the spec's "stop" signal), as does patchbay's
 *   `patchbay-stop` event (sent by `SseStream.close({ reconnect: false })`): the iterator ends.
 * - Any other status (other 4xx, 1xx/3xx that fetch did not follow, other 2xx) fails with an
 *   {@link HttpStatusError}; a `200` that is not `text/event-stream` fails with a
 *   {@link ProtocolError}. Neither is retried.
 *
 * @module
 */
import type { Clock } from '../core/clock.js';
import { ClosedError, HttpStatusError, InvalidArgumentError, InvalidStateError, OverflowError, ProtocolError, TimeoutError } from '../core/errors.js';
import { type SseMessage, SseDecoder, SseParser } from './sse-parser.js';
import {
  ClientTransport,
  type ClientTransportOptions,
  defaultFetch,
  durationOption,
  type FetchLike,
  isRecord,
  isRetryableStatus,
  linkedController,
  reasonOf,
  resolveHeaders,
  resolveUrl,
  RetryState,
  sleep,
  statusError,
} from './transport.js';

export type { SseMessage } from './sse-parser.js';

/** The longest reconnection time honoured, whatever the server's `retry` says: one hour. */
const MAX_RETRY_MS = 3_600_000;
/** Bytes of an error answer's body read for its JSON error (the rest is dropped). */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** What {@link SseClientOptions.onGap} is told: the server lost messages, or skipped one. */
export interface SseGap {
  /**
   * The id the server was asked to resume after, when the gap is in a replay (`SseHandler`'s
   * `{"lastEventId": ...}` data).
   */
  readonly after?: string;
  /** The id of a message the server could not send (`SseHandler`'s `{"skipped": ...}` data). */
  readonly skipped?: string;
  /** The topic of the skipped message. */
  readonly topic?: string;
  /** The gap event's data as sent. */
  readonly data: string;
  /** The last event id when the gap event arrived. */
  readonly lastEventId: string;
}

/** What {@link SseClientOptions.onRetry} is told before each wait to reconnect. */
export interface SseRetry {
  /** Why the connection ended: the error, or `undefined` for a stream that simply ended. */
  readonly error: unknown;
  /** Failed attempts in a row, this one included (0 when the stream ended after delivering events). */
  readonly attempt: number;
  /** How long the client waits before it reconnects, in ms. */
  readonly delayMs: number;
}

/** How the client stopped for good, as {@link SseClientOptions.onStop} is told. */
export type SseStopReason = 'no-content' | 'stop-event';

/** Options for {@link SseClient}. */
export interface SseClientOptions extends ClientTransportOptions {
  /**
   * The stream's URL, absolute, or relative in a page (it resolves against `location.href` as
   * `fetch` and `EventSource` do).
   */
  readonly url: string | URL;
  /**
   * Resume after this event id: sent as `Last-Event-ID` from the first request on (an
   * `EventSource` cannot).
   * @defaultValue none
   */
  readonly lastEventId?: string;
  /**
   * Also send the last event id in this query parameter (for servers that read it there, such as
   * an `SseHandler` with `lastEventIdQuery`).
   * @defaultValue none: the header only
   */
  readonly lastEventIdQuery?: string;
  /**
   * The reconnection time until the server sends `retry`, in ms: the least wait before a reconnect.
   * A server's `retry` above one hour counts as one hour.
   * @defaultValue `3000`
   */
  readonly retryMs?: number;
  /**
   * How long to wait for the response's status and headers, in ms; past it the attempt fails (and
   * is retried). The body has no deadline: a stream may be quiet for long.
   * @defaultValue `30000`
   */
  readonly connectTimeoutMs?: number;
  /**
   * The longest line accepted, counted in UTF-16 code units of the decoded text (never more than
   * its UTF-8 bytes). A longer line fails the client with an {@link OverflowError}
   * (`PB_ERR_OVERFLOW`) and drops the connection: it is not retried, since the server would send
   * the same line again.
   * @defaultValue 1 MiB (1048576)
   */
  readonly maxLineBytes?: number;
  /**
   * The largest data of one event (its `data` lines joined), counted as `maxLineBytes` is. A
   * larger event fails the client with an {@link OverflowError} and drops the connection, not retried.
   * @defaultValue 4 MiB (4194304)
   */
  readonly maxEventBytes?: number;
  /**
   * Failed attempts in a row before the iterator gives up and throws the last error.
   * @defaultValue `Infinity`
   */
  readonly maxRetries?: number;
  /**
   * The event type of patchbay's gap events, reported through `onGap` and not yielded; `null`
   * yields them as any other event (for a server whose `gap` events mean something else).
   * @defaultValue `'gap'` (`SseHandler`'s default `gapEvent`)
   */
  readonly gapEvent?: string | null;
  /** Stops the client: the iterator ends and the connection is canceled. */
  readonly signal?: AbortSignal;
  /** Called when a connection is open (a `200` `text/event-stream` answer), with the response. */
  readonly onOpen?: (response: Response) => void;
  /** Called when the server reports lost or skipped messages (patchbay's gap event). */
  readonly onGap?: (gap: SseGap) => void;
  /** Called before each wait to reconnect. */
  readonly onRetry?: (retry: SseRetry) => void;
  /** Called once when the server told the client to stop (204, or `patchbay-stop`). */
  readonly onStop?: (reason: SseStopReason) => void;
  /** Called for each comment line (heartbeats), with its text after the colon. */
  readonly onComment?: (text: string) => void;
}

/** Event types patchbay's `SseHandler` and `SseStream` send for their own use, never yielded. */
const OPEN_EVENT = 'patchbay-open';
const STOP_EVENT = 'patchbay-stop';

/**
 * What the parser found, in stream order, handed out as the iterator is consumed: an event to
 * yield, a new last event id (an id-only event, patchbay's opening event), a gap, or the stop.
 */
type Step = { readonly message: SseMessage } | { readonly id: string } | { readonly gap: SseMessage } | { readonly stop: string };

/** What a connection attempt ended with. */
type Outcome = { readonly kind: 'ended'; readonly progressed: boolean; readonly error?: unknown } | { readonly kind: 'stop'; readonly reason: SseStopReason };

/**
 * A Server-Sent Events client on `fetch`: `for await (const event of client)` yields every event
 * of the stream across reconnects, resuming with `Last-Event-ID`.
 *
 * - Request headers (an `authorization`, fixed or computed per request) go with every request, and
 *   `Last-Event-ID` with every request once an id is known (from the first one with `lastEventId`).
 * - Reconnects follow the spec (the server's `retry`, `204` stops) with jittered backoff after
 *   failures and `Retry-After` honoured (see the module's "Reconnecting").
 * - patchbay's own events are handled, not yielded: `patchbay-open` moves the last event id,
 *   `gap` reaches `onGap` and {@link SseClient.gaps}, `patchbay-stop` ends the client.
 * - Lines and events are bounded (`maxLineBytes`, `maxEventBytes`).
 * - `close()` or the `signal` ends the iterator quietly and cancels the connection; no timer
 *   stays behind. The iterator is not an event queue: the stream is read as it is consumed.
 *
 * It uses only `fetch`, so it runs in browsers, Deno, Bun and Node alike.
 *
 * @example
 * ```ts
 * import { SseClient } from 'patchbay/client';
 *
 * const client = new SseClient({
 *   url: 'https://example.com/sse/news',
 *   headers: () => ({ authorization: `Bearer ${token()}` }),
 *   onGap: (gap) => console.warn('messages lost after', gap.after),
 * });
 * for await (const event of client) {
 *   console.log(event.lastEventId, event.type, event.data);
 * }
 * ```
 *
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html
 */
export class SseClient implements AsyncIterable<SseMessage> {
  readonly #url: URL;
  readonly #lastEventIdQuery: string | undefined;
  readonly #connectTimeoutMs: number;
  readonly #limits: { readonly maxLineBytes: number; readonly maxEventBytes: number };
  readonly #gapEvent: string | null;
  readonly #fetch: FetchLike;
  readonly #clock: Clock;
  readonly #retry: RetryState;
  readonly #life: { controller: AbortController; dispose(): void };
  readonly #options: SseClientOptions;
  #lastEventId: string;
  #retryMs: number;
  #connections = 0;
  #gaps = 0;
  #stopped: SseStopReason | undefined;
  #iterating = false;

  /**
   * @param options - The stream and how to follow it.
   * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for a bad option, or a URL
   * that cannot be resolved.
   */
  constructor(options: SseClientOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('SseClient needs an options object with a url');
    this.#url = resolveUrl('SseClient: url', options.url);
    if (options.lastEventId !== undefined && typeof options.lastEventId !== 'string') {
      throw new InvalidArgumentError(`SseClient: lastEventId must be a string, got ${typeof options.lastEventId}`);
    }
    if (options.lastEventId !== undefined && /[\0\r\n]/.test(options.lastEventId)) throw new InvalidArgumentError('SseClient: lastEventId must not contain NUL, CR or LF');
    this.#lastEventId = options.lastEventId ?? '';
    if (options.lastEventIdQuery !== undefined && (typeof options.lastEventIdQuery !== 'string' || options.lastEventIdQuery === '')) {
      throw new InvalidArgumentError('SseClient: lastEventIdQuery must be a non-empty string');
    }
    this.#lastEventIdQuery = options.lastEventIdQuery;
    this.#retryMs = Math.min(MAX_RETRY_MS, durationOption('retryMs', options.retryMs, 3000));
    this.#connectTimeoutMs = durationOption('connectTimeoutMs', options.connectTimeoutMs, 30_000, 1);
    this.#limits = {
      maxLineBytes: sizeOption('maxLineBytes', options.maxLineBytes, 1024 * 1024),
      maxEventBytes: sizeOption('maxEventBytes', options.maxEventBytes, 4 * 1024 * 1024),
    };
    if (options.gapEvent !== undefined && options.gapEvent !== null && (typeof options.gapEvent !== 'string' || options.gapEvent === '')) {
      throw new InvalidArgumentError('SseClient: gapEvent must be a non-empty string or null');
    }
    this.#gapEvent = options.gapEvent === undefined ? 'gap' : options.gapEvent;
    for (const name of ['onOpen', 'onGap', 'onRetry', 'onStop', 'onComment'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') throw new InvalidArgumentError(`SseClient: ${name} must be a function`);
    }
    const transport = new ClientTransport('SseClient', options, Number.POSITIVE_INFINITY);
    this.#fetch = options.fetch ?? defaultFetch();
    this.#clock = transport.clock;
    this.#retry = new RetryState({ ...transport.policy, retryable: isRetryable });
    this.#life = linkedController(options.signal);
    this.#options = options;
  }

  /** The last event id: sent as `Last-Event-ID` on the next connection (empty: none sent). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** The reconnection time now, in ms: `retryMs`, or the server's last valid `retry`. */
  get retryMs(): number {
    return this.#retryMs;
  }

  /** Connections opened so far (`200` `text/event-stream` answers). */
  get connections(): number {
    return this.#connections;
  }

  /** Gap events received so far. */
  get gaps(): number {
    return this.#gaps;
  }

  /** Failed attempts in a row right now (0 after a connection that delivered something). */
  get failures(): number {
    return this.#retry.failures;
  }

  /** Why the server stopped the client (`204`, or patchbay's stop event), or `undefined`. */
  get stopped(): SseStopReason | undefined {
    return this.#stopped;
  }

  /** Whether `close()` was called or the options' signal aborted. */
  get closed(): boolean {
    return this.#life.controller.signal.aborted;
  }

  /**
   * Every event, in order, across reconnects, until `close()`, the signal, a stop from the
   * server, or a failure that is not retried (thrown). One iteration at a time per client.
   *
   * @param options - `signal` ends this iteration alone.
   * @throws {@link InvalidStateError} (`PB_ERR_INVALID_STATE`) when another iteration is running;
   *   {@link ClosedError} (`PB_ERR_CLOSED`) after `close()`; {@link HttpStatusError},
   *   {@link ProtocolError} and {@link OverflowError} as the module's "Reconnecting" says.
   */
  async *events(options?: { readonly signal?: AbortSignal }): AsyncGenerator<SseMessage, void, undefined> {
    if (this.closed) throw new ClosedError('The SseClient is closed');
    if (this.#iterating) throw new InvalidStateError('The SseClient is already being iterated: one iteration at a time');
    if (this.#stopped !== undefined) return;
    this.#iterating = true;
    const link = linkedController(this.#life.controller.signal, options?.signal);
    const signal = link.controller.signal;
    try {
      while (!signal.aborted) {
        const outcome = yield* this.#connect(signal);
        if (signal.aborted) return;
        if (outcome.kind === 'stop') {
          this.#stop(outcome.reason);
          return;
        }
        let delayMs: number;
        let attempt = 0;
        // A stream that ended before any event or comment is a failure, with an error to throw at the end.
        const error = outcome.progressed ? outcome.error : (outcome.error ?? emptyStream(this.#url));
        if (outcome.progressed) {
          delayMs = this.#retryMs; // the failures were reset by the first event or comment
        } else {
          delayMs = Math.max(this.#retryMs, this.#retry.failed(error)); // throws what is not retried
          attempt = this.#retry.failures;
        }
        this.#options.onRetry?.({ error, attempt, delayMs });
        try {
          await sleep(this.#clock, delayMs, signal);
        } catch {
          return; // aborted while waiting
        }
      }
    } finally {
      this.#iterating = false;
      link.dispose();
    }
  }

  /** The same as {@link SseClient.events}. */
  [Symbol.asyncIterator](): AsyncGenerator<SseMessage, void, undefined> {
    return this.events();
  }

  /** Stops the client: the connection is canceled and the iterator ends. Idempotent. */
  close(): void {
    if (!this.#life.controller.signal.aborted) this.#life.controller.abort(new ClosedError('The SseClient was closed'));
    this.#life.dispose();
  }

  /** The same as {@link SseClient.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #stop(reason: SseStopReason): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = reason;
    this.#options.onStop?.(reason);
  }

  /**
   * One connection: yields its events as they are parsed, and returns how it ended. Throws what
   * must not be retried.
   */
  async *#connect(signal: AbortSignal): AsyncGenerator<SseMessage, Outcome, undefined> {
    const conn = linkedController(signal);
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let progressed = false;
    try {
      let response: Response;
      try {
        response = await this.#request(conn.controller);
      } catch (error) {
        if (signal.aborted) return { kind: 'ended', progressed: false };
        return { kind: 'ended', progressed: false, error };
      }
      if (response.status === 204) {
        await response.body?.cancel().catch(() => undefined);
        return { kind: 'stop', reason: 'no-content' };
      }
      if (response.status !== 200) {
        const error = statusError(`GET ${this.#url.pathname}`, {
          status: response.status,
          headers: response.headers,
          text: await readBounded(response, MAX_ERROR_BODY_BYTES),
          url: response.url,
          redirected: response.redirected,
        });
        if (isRetryableStatus(response.status)) return { kind: 'ended', progressed: false, error };
        throw error;
      }
      const type = response.headers.get('content-type') ?? '';
      if (type.split(';')[0]!.trim().toLowerCase() !== 'text/event-stream') {
        await response.body?.cancel().catch(() => undefined);
        throw new ProtocolError(`GET ${this.#url.pathname} answered 200 with content-type "${type.slice(0, 100)}", not text/event-stream`);
      }
      if (response.body === null) throw new ProtocolError(`GET ${this.#url.pathname} answered 200 with no body`);
      this.#connections++;
      this.#options.onOpen?.(response);
      reader = response.body.getReader();
      const steps: Step[] = [];
      const progress = (): void => {
        if (progressed) return;
        progressed = true;
        this.#retry.succeeded();
      };
      const parser = new SseParser(
        {
          onEvent: (m) => {
            progress();
            if (m.type === OPEN_EVENT) steps.push({ id: m.lastEventId });
            else if (m.type === STOP_EVENT) steps.push({ stop: m.lastEventId });
            else if (m.type === this.#gapEvent) steps.push({ gap: m });
            else steps.push({ message: m });
          },
          onDispatch: (id) => {
            progress();
            steps.push({ id });
          },
          onComment: (text) => {
            progress();
            this.#options.onComment?.(text);
          },
          onRetry: (ms) => {
            this.#retryMs = Math.min(ms, MAX_RETRY_MS);
          },
        },
        this.#limits,
        this.#lastEventId,
      );
      const decoder = new SseDecoder(parser);
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (error) {
          if (signal.aborted) return { kind: 'ended', progressed };
          return { kind: 'ended', progressed, error };
        }
        if (chunk.done) return { kind: 'ended', progressed };
        let overflow: unknown;
        try {
          decoder.feed(chunk.value);
        } catch (error) {
          overflow = error; // thrown once what came before it is handed out
        }
        // In stream order, each event yielded before the next step is taken: the client's last
        // event id is always that of the last event handed out (or of a later id-only event).
        while (steps.length > 0) {
          if (signal.aborted) return { kind: 'ended', progressed };
          const step = steps.shift()!;
          if ('message' in step) {
            this.#lastEventId = step.message.lastEventId;
            yield step.message;
          } else if ('id' in step) {
            this.#lastEventId = step.id;
          } else if ('gap' in step) {
            this.#lastEventId = step.gap.lastEventId;
            this.#gap(step.gap);
          } else {
            this.#lastEventId = step.stop;
            return { kind: 'stop', reason: 'stop-event' };
          }
        }
        if (overflow !== undefined) throw overflow;
      }
    } finally {
      conn.controller.abort(new ClosedError('The SSE connection was ended by the client'));
      if (reader !== undefined) void reader.cancel().catch(() => undefined);
      conn.dispose();
    }
  }

  #gap(m: SseMessage): void {
    this.#gaps++;
    let after: string | undefined;
    let skipped: string | undefined;
    let topic: string | undefined;
    try {
      const body = JSON.parse(m.data) as unknown;
      if (isRecord(body)) {
        if (typeof body['lastEventId'] === 'string') after = body['lastEventId'];
        if (typeof body['skipped'] === 'string') skipped = body['skipped'];
        if (typeof body['topic'] === 'string') topic = body['topic'];
      }
    } catch {
      // not JSON: reported with its data alone
    }
    this.#options.onGap?.({
      data: m.data,
      lastEventId: m.lastEventId,
      ...(after === undefined ? {} : { after }),
      ...(skipped === undefined ? {} : { skipped }),
      ...(topic === undefined ? {} : { topic }),
    });
  }

  /** Sends the request; rejects with a TimeoutError when no answer came within connectTimeoutMs. */
  async #request(controller: AbortController): Promise<Response> {
    const url = new URL(this.#url);
    const headers: Record<string, string> = {};
    if (this.#lastEventId !== '') {
      headers['last-event-id'] = headerBytes(this.#lastEventId);
      if (this.#lastEventIdQuery !== undefined) url.searchParams.set(this.#lastEventIdQuery, this.#lastEventId);
    }
    let timedOut = false;
    const timer = this.#clock.setTimer(() => {
      timedOut = true;
      controller.abort(new TimeoutError(`GET ${this.#url.pathname} got no answer within ${this.#connectTimeoutMs} ms`));
    }, this.#connectTimeoutMs);
    try {
      const all = { accept: 'text/event-stream', ...(await resolveHeaders(this.#options.headers)), ...headers };
      return await this.#fetch(url, { method: 'GET', headers: all, signal: controller.signal });
    } catch (error) {
      if (timedOut) throw reasonOf(controller.signal);
      throw error;
    } finally {
      timer.cancel();
    }
  }
}

/** The errors of streams that ended before any event: protocol errors that are retried. */
const EMPTY_STREAMS = new WeakSet<object>();

function emptyStream(url: URL): ProtocolError {
  const error = new ProtocolError(`GET ${url.pathname}: the stream ended before any event or comment`);
  EMPTY_STREAMS.add(error);
  return error;
}

/** Failures worth another connection: all but answers and streams that would fail the same way again. */
function isRetryable(error: unknown): boolean {
  if (error instanceof HttpStatusError) return isRetryableStatus(error.status);
  if (error instanceof ProtocolError && EMPTY_STREAMS.has(error)) return true;
  return !(error instanceof ProtocolError || error instanceof OverflowError || error instanceof InvalidArgumentError);
}

/** Reads at most `max` bytes of a body as text, then cancels the rest. Never rejects. */
async function readBounded(response: Response, max: number): Promise<string> {
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < max) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      size += value.byteLength;
    }
  } catch {
    // a cut body: keep what came
  } finally {
    void reader.cancel().catch(() => undefined);
  }
  const bytes = new Uint8Array(Math.min(size, max));
  let at = 0;
  for (const p of parts) {
    const take = Math.min(p.byteLength, bytes.length - at);
    bytes.set(p.subarray(0, take), at);
    at += take;
    if (at >= bytes.length) break;
  }
  return new TextDecoder().decode(bytes);
}

/**
 * The id as a header value: its UTF-8 bytes, one character each (fetch takes header values as byte
 * strings, and throws for a character above U+00FF), as the spec sends `Last-Event-ID`.
 */
function headerBytes(id: string): string {
  // Printable ASCII goes as it is.
  if (/^[\x20-\x7e]*$/.test(id)) return id;
  let out = '';
  for (const b of new TextEncoder().encode(id)) out += String.fromCharCode(b);
  return out;
}

function sizeOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`SseClient: ${name} must be an integer >= 1, got ${String(value)}`);
  }
  return value;
}
