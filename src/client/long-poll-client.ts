/**
 * A fetch-based long-poll client for `LongPollHandler`-style endpoints (the demo's
 * `GET /lp/:topic`): it polls with the cursor of the last answer, asks for a client timeout
 * longer than the server's hold, retries failures with jittered backoff, reports gaps, and hands
 * out messages through an async iterator.
 *
 * @module
 */
import type { Clock } from '../core/clock.js';
import { ClosedError, InvalidArgumentError, ProtocolError } from '../core/errors.js';
import {
  ClientTransport,
  type ClientTransportOptions,
  durationOption,
  isRecord,
  linkedController,
  parseJson,
  resolveUrl,
  RetryState,
  sleep,
  statusError,
} from './transport.js';

/** A poll asks for JSON (a `headers` option may say otherwise). */
const ACCEPT_JSON: Readonly<Record<string, string>> = Object.freeze({ accept: 'application/json' });
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** One message of a long-poll answer, as the server sent it. */
export interface LongPollMessage<T = unknown> {
  /** The message's id: opaque, ordered within its topic; a cursor to resume after it. */
  readonly id: string;
  /** The topic it was published on. */
  readonly topic: string;
  /** The published value (a string for `text/plain` publishes). */
  readonly data: T;
  /** Headers given at publish time, if any. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** What one poll brought back. */
export interface LongPollBatch<T = unknown> {
  /** The messages, oldest first; empty when the server's hold ended without one. */
  readonly messages: readonly LongPollMessage<T>[];
  /** The cursor to poll with next (the client keeps it; this is for saving it elsewhere). */
  readonly cursor: string;
  /**
   * Messages after the cursor polled with were lost (to the server log's bounds, or a restart)
   * before this answer: the batch holds what was left.
   */
  readonly gap: boolean;
  /** The server has more messages after this batch: the next poll answers at once. */
  readonly more: boolean;
  /** The server's hold ended with nothing new (HTTP 204). */
  readonly timedOut: boolean;
}

/** What {@link LongPollClientOptions.onGap} is told. */
export interface LongPollGap {
  /** The cursor that was polled with: messages after it were lost. */
  readonly after: string | undefined;
  /** The cursor of the answer that reported the gap. */
  readonly cursor: string;
}

/** What {@link LongPollClientOptions.onRetry} is told before each wait. */
export interface LongPollRetry {
  /** Why the last attempt failed. */
  readonly error: unknown;
  /** Failed attempts in a row, this one included. */
  readonly attempt: number;
  /** How long the client waits before the next attempt, in ms. */
  readonly delayMs: number;
}

/** Options for {@link LongPollClient}. */
export interface LongPollClientOptions extends ClientTransportOptions {
  /**
   * The long-poll endpoint, such as `https://example.com/lp/news`, or relative (`/lp/news`) in a
   * page, where it resolves against the page's URL (`location.href`) as `fetch` and `EventSource`
   * do. Its own query (say, `?topic=a&topic=b`) is kept; the client sets `cursor`, `timeout` and
   * `limit` on it.
   */
  readonly url: string | URL;
  /**
   * Resume after this cursor (a message id or a saved {@link LongPollClient.cursor}).
   * @defaultValue none: wait for the next message
   */
  readonly cursor?: string;
  /**
   * The hold to ask the server for, in ms (the `timeout` query; the server caps it at its own
   * maximum).
   * @defaultValue none: the server's default (30 s for `LongPollHandler`)
   */
  readonly holdMs?: number;
  /**
   * How long the client waits for an answer before it gives the poll up and polls again. Must be
   * longer than the server's hold, or every quiet poll would end as a client timeout.
   * @defaultValue `holdMs` + 10 s, or 40 s when `holdMs` is not given
   */
  readonly clientTimeoutMs?: number;
  /** The most messages per answer (the `limit` query). */
  readonly limit?: number;
  /**
   * Failed attempts in a row before the iterator gives up and throws the last error.
   * @defaultValue `Infinity`: retry for as long as it takes
   */
  readonly maxRetries?: number;
  /** Stops the client: the iterators end, a pending {@link LongPollClient.poll} rejects. */
  readonly signal?: AbortSignal;
  /** Called when an answer reports lost messages. */
  readonly onGap?: (gap: LongPollGap) => void;
  /** Called before each wait after a failed attempt. */
  readonly onRetry?: (retry: LongPollRetry) => void;
}

/**
 * A long-poll client: `for await (const message of client)` yields every message after the
 * starting cursor, in order, across server timeouts, network failures and restarts.
 *
 * - Each poll carries the cursor of the last answer, so nothing is skipped or repeated; a server
 *   that lost messages (its log's bounds) says so, and the client reports it through `onGap` and
 *   {@link LongPollClient.gaps}.
 * - A quiet poll ends with the server's 204 and is sent again at once. A poll that outlives
 *   `clientTimeoutMs`, a network error, a 5xx, a 408 or a 429 is retried after a jittered,
 *   growing delay (at least the server's `Retry-After`); the delay resets after a success.
 * - Other 4xx answers (a malformed cursor, a refused `authorize`) are not retried: the iterator
 *   throws an {@link HttpStatusError}.
 * - `close()` or the `signal` ends the iterators quietly and cancels the poll in flight; no timer
 *   stays behind.
 *
 * It uses only `fetch`, so it runs in browsers as in Node; in a page, `url` may be relative. Without
 * a bundler, load `dist/browser/client.js` (this entry point as one ES module).
 *
 * @example
 * ```ts
 * import { LongPollClient } from 'patchbay/client';
 *
 * const client = new LongPollClient({ url: 'http://127.0.0.1:3000/lp/news', holdMs: 25_000 });
 * for await (const message of client) {
 *   console.log(message.id, message.data);
 *   saveCursor(client.cursor); // resume from here after a restart
 * }
 * ```
 *
 * @typeParam T - The type of the messages' `data`.
 */
export class LongPollClient<T = unknown> implements AsyncIterable<LongPollMessage<T>> {
  readonly #url: URL;
  readonly #holdMs: number | undefined;
  readonly #clientTimeoutMs: number;
  readonly #limit: number | undefined;
  readonly #onGap: ((gap: LongPollGap) => void) | undefined;
  readonly #onRetry: ((retry: LongPollRetry) => void) | undefined;
  readonly #transport: ClientTransport;
  readonly #clock: Clock;
  /** Failures in a row, across this client's iterators. */
  readonly #retry: RetryState;
  /** Aborted by close() or by the caller's signal. */
  readonly #life: { controller: AbortController; dispose(): void };
  #cursor: string | undefined;
  #gaps = 0;
  #polls = 0;

  /**
   * @param options - The endpoint and how to poll it.
   * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for a bad option, or a URL
   * that cannot be resolved: malformed, or relative where there is no page URL (in Node).
   */
  constructor(options: LongPollClientOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('LongPollClient needs an options object with a url');
    this.#url = resolveUrl('LongPollClient: url', options.url);
    if (options.cursor !== undefined && (typeof options.cursor !== 'string' || options.cursor === '')) {
      throw new InvalidArgumentError('LongPollClient: cursor must be a non-empty string');
    }
    this.#cursor = options.cursor;
    this.#holdMs = options.holdMs === undefined ? undefined : Math.floor(durationOption('holdMs', options.holdMs, 0));
    this.#clientTimeoutMs = durationOption('clientTimeoutMs', options.clientTimeoutMs, (this.#holdMs ?? 30_000) + 10_000, 1);
    if (options.limit !== undefined && (!Number.isInteger(options.limit) || options.limit < 1)) {
      throw new InvalidArgumentError(`LongPollClient: limit must be an integer >= 1, got ${String(options.limit)}`);
    }
    this.#limit = options.limit;
    this.#transport = new ClientTransport('LongPollClient', options, Number.POSITIVE_INFINITY);
    this.#onGap = options.onGap;
    this.#onRetry = options.onRetry;
    this.#clock = this.#transport.clock;
    this.#retry = new RetryState(this.#transport.policy);
    this.#life = linkedController(options.signal);
  }

  /** The cursor the next poll sends: the id of the last message received, or where the server said to resume. */
  get cursor(): string | undefined {
    return this.#cursor;
  }

  /** Answers so far that reported lost messages. */
  get gaps(): number {
    return this.#gaps;
  }

  /** Polls answered so far (200 or 204). */
  get polls(): number {
    return this.#polls;
  }

  /** Whether `close()` was called or the options' signal aborted. */
  get closed(): boolean {
    return this.#life.controller.signal.aborted;
  }

  /**
   * Sends one poll and returns its answer; no retry. The client's cursor moves on to the
   * answer's. For loops, prefer the iterators, which retry.
   *
   * @param options - `signal` cancels this poll alone.
   * @throws {@link HttpStatusError} for a non-2xx answer, {@link TimeoutError} past
   * `clientTimeoutMs`, {@link ProtocolError} for a malformed answer, `TypeError` for a network
   * failure, the abort reason when aborted, and {@link ClosedError} after `close()`.
   */
  async poll(options?: { readonly signal?: AbortSignal }): Promise<LongPollBatch<T>> {
    if (this.closed) throw new ClosedError('The LongPollClient is closed');
    const link = linkedController(this.#life.controller.signal, options?.signal);
    try {
      return await this.#pollOnce(link.controller.signal);
    } catch (error) {
      if (this.#life.controller.signal.aborted && !options?.signal?.aborted) throw new ClosedError('The LongPollClient was closed during the poll', { cause: error });
      throw error;
    } finally {
      link.dispose();
    }
  }

  async #pollOnce(signal: AbortSignal): Promise<LongPollBatch<T>> {
    const url = new URL(this.#url);
    const polledWith = this.#cursor;
    if (polledWith !== undefined) url.searchParams.set('cursor', polledWith);
    if (this.#holdMs !== undefined) url.searchParams.set('timeout', String(this.#holdMs));
    if (this.#limit !== undefined) url.searchParams.set('limit', String(this.#limit));
    const res = await this.#transport.send({ method: 'GET', url, headers: NO_HEADERS, timeoutMs: this.#clientTimeoutMs, signal }, ACCEPT_JSON);
    const what = `GET ${this.#url.pathname}`;
    if (res.status === 204) {
      this.#polls++;
      const cursor = res.headers.get('patchbay-cursor') ?? polledWith ?? '';
      if (cursor !== '') this.#cursor = cursor;
      return { messages: [], cursor, gap: false, more: false, timedOut: true };
    }
    if (res.status !== 200) throw statusError(what, res);
    const batch = parseBatch<T>(what, parseJson(what, res.text));
    this.#polls++;
    this.#cursor = batch.cursor;
    if (batch.gap) {
      this.#gaps++;
      this.#onGap?.({ after: polledWith, cursor: batch.cursor });
    }
    return batch;
  }

  /**
   * Every answer with messages (or a gap), in order, until `close()`, the signal, or a failure
   * that is not retried. Quiet polls (204) are not yielded.
   *
   * @param options - `signal` ends this iteration alone.
   */
  async *batches(options?: { readonly signal?: AbortSignal }): AsyncGenerator<LongPollBatch<T>, void, undefined> {
    const link = linkedController(this.#life.controller.signal, options?.signal);
    const signal = link.controller.signal;
    try {
      while (!signal.aborted) {
        let batch: LongPollBatch<T>;
        try {
          batch = await this.#pollOnce(signal);
          this.#retry.succeeded();
        } catch (error) {
          if (signal.aborted) return;
          const delayMs = this.#retry.failed(error); // throws the error when it is not retried
          this.#onRetry?.({ error, attempt: this.#retry.failures, delayMs });
          try {
            await sleep(this.#clock, delayMs, signal);
          } catch {
            return; // aborted while waiting
          }
          continue;
        }
        if (batch.messages.length > 0 || batch.gap) yield batch;
      }
    } finally {
      link.dispose();
    }
  }

  /**
   * Every message, one at a time, in order (see {@link LongPollClient.batches}).
   *
   * @param options - `signal` ends this iteration alone.
   */
  async *messages(options?: { readonly signal?: AbortSignal }): AsyncGenerator<LongPollMessage<T>, void, undefined> {
    for await (const batch of this.batches(options)) yield* batch.messages;
  }

  /** The same as {@link LongPollClient.messages}. */
  [Symbol.asyncIterator](): AsyncGenerator<LongPollMessage<T>, void, undefined> {
    return this.messages();
  }

  /** Stops the client: the poll in flight is canceled and every iterator ends. Idempotent. */
  close(): void {
    if (!this.#life.controller.signal.aborted) this.#life.controller.abort(new ClosedError('The LongPollClient was closed'));
    this.#life.dispose();
  }

  /** The same as {@link LongPollClient.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Failed attempts in a row right now (0 after any success). */
  get failures(): number {
    return this.#retry.failures;
  }
}

/** Checks a 200 answer's shape: `{ messages: [{ id, topic, data, headers? }], cursor, gap, more }`. */
function parseBatch<T>(what: string, body: unknown): LongPollBatch<T> {
  if (!isRecord(body) || !Array.isArray(body['messages']) || typeof body['cursor'] !== 'string' || body['cursor'] === '') {
    throw new ProtocolError(`${what}: expected { messages: [], cursor, gap, more }, got ${JSON.stringify(body)?.slice(0, 120)}`);
  }
  const messages: LongPollMessage<T>[] = [];
  for (const m of body['messages'] as unknown[]) {
    if (!isRecord(m) || typeof m['id'] !== 'string' || typeof m['topic'] !== 'string' || !('data' in m)) {
      throw new ProtocolError(`${what}: a message lacks id, topic or data: ${JSON.stringify(m)?.slice(0, 120)}`);
    }
    messages.push(m as unknown as LongPollMessage<T>);
  }
  return { messages, cursor: body['cursor'], gap: body['gap'] === true, more: body['more'] === true, timedOut: false };
}
