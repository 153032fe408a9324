/**
 * The test suite's shared pieces, written once: waits (turn-based {@link until}, real-time
 * {@link eventually}), cleanup ({@link TestResources}, {@link perTest}), a server on 127.0.0.1:0
 * ({@link serveRig}), an SSE reader ({@link readSse}) and the flags that let a child process run
 * the sources ({@link sourceNodeArgs}).
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/**
 * Waits, one event-loop turn at a time, until `condition()` holds. Bounded: fails after
 * `maxTurns` turns instead of hanging, and never sleeps on a timer.
 */
export async function until(condition: () => boolean, what: string, maxTurns = 200_000): Promise<void> {
  for (let turn = 0; turn < maxTurns; turn++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`Timed out after ${maxTurns} event-loop turns waiting for ${what}`);
}

/** Options of {@link eventually}. */
export interface EventuallyOptions {
  /**
   * How long to wait before failing, in ms of real time.
   * @defaultValue 10_000
   */
  readonly timeoutMs?: number;
}

/**
 * Waits until `condition()` (sync or async) holds, checking every few ms on the real clock: for
 * what another process or a socket does (a child's exit, a line in its log, a message through
 * Redis, a browser's request), where event-loop turns say nothing about time. Bounded: fails
 * naming `what` after `timeoutMs`. For what this process does on its own, use the turn-based
 * {@link until}, which never sleeps.
 */
export async function eventually(condition: () => boolean | Promise<boolean>, what: string, options: EventuallyOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (performance.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * What a `beforeAll` starts, stopped by the matching `afterAll` on every path: a test that failed,
 * a setup that threw, and a setup that timed out. vitest runs `afterAll` when `beforeAll` times
 * out but does not stop it, so a setup that goes on afterwards would start processes nobody
 * stops. Here `teardown()` first aborts `signal` (so `wait` rejects and `add` refuses from then
 * on), waits (bounded) for the setup to settle, then runs every closer, last added first; a
 * resource added after that is closed at once.
 *
 * @example
 * ```ts
 * const resources = new TestResources();
 * beforeAll(() => resources.setup(async (r) => {
 *   demo = r.add(createDemo(), closeDemo);
 *   await r.wait(listen(demo.server));
 * }));
 * afterAll(() => resources.teardown());
 * ```
 */
export class TestResources {
  #abort = new AbortController();
  readonly #closers: (() => unknown)[] = [];
  #setups: Promise<unknown>[] = [];
  #closed = false;
  readonly #reusable: boolean;

  /**
   * @param options.reusable - whether the teardown makes it ready for the next test (as for
   * {@link perTest}) instead of closing at once whatever is added later.
   * @defaultValue `{ reusable: false }`
   */
  constructor(options: { readonly reusable?: boolean } = {}) {
    this.#reusable = options.reusable ?? false;
  }

  /** Aborted when the teardown starts. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Runs `fn` (the body of a `beforeAll`); the teardown waits for it to settle. */
  setup(fn: (resources: this) => Promise<void>): Promise<void> {
    const running = fn(this);
    this.#setups.push(running.catch(() => undefined));
    return running;
  }

  /**
   * Registers `value` to be closed by `close` at teardown, and returns it. After the teardown
   * started it is still closed (by the teardown, or at once when the teardown is done), and this
   * throws, so the setup stops.
   */
  add<T>(value: T, close: (value: T) => unknown): T {
    const closer = (): unknown => close(value);
    if (this.#closed) {
      void Promise.resolve().then(closer).catch(() => undefined);
    } else {
      this.#closers.push(closer);
    }
    this.#abort.signal.throwIfAborted();
    return value;
  }

  /** Registers `close` to run at teardown (an {@link add} with nothing to hand back). */
  defer(close: () => unknown): void {
    this.add(undefined, close);
  }

  /** Waits for `promise`, or rejects as soon as the teardown starts (for waits that start nothing). */
  wait<T>(promise: Promise<T>): Promise<T> {
    const signal = this.#abort.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /**
   * Stops the setup, then closes everything added, last first; every closer runs even when one
   * fails, and the failures are thrown together at the end.
   */
  async teardown(settleMs = 10_000): Promise<void> {
    this.#abort.abort(new Error('torn down: the setup was stopped'));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.#setups), new Promise((resolve) => (timer = setTimeout(resolve, settleMs)))]);
    clearTimeout(timer);
    this.#closed = true;
    const errors: unknown[] = [];
    for (const close of this.#closers.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        errors.push(error);
      }
    }
    if (this.#reusable) {
      this.#abort = new AbortController();
      this.#setups = [];
      this.#closed = false;
    }
    if (errors.length > 0) throw new AggregateError(errors, `${errors.length} resource(s) failed to close: ${errors.map(String).join('; ')}`);
  }
}

/**
 * What the running test started, closed after it (last added first) by the `afterEach` of
 * test/leak-guard.setup.ts, which every test file runs: `perTest.defer(() => broker.close())`
 * instead of a file's own array of cleanups. {@link serveRig} registers its server here unless
 * given other resources.
 */
export const perTest = new TestResources({ reusable: true });

/** A node:http server listening on 127.0.0.1, as {@link serveRig} answers. */
export interface ServeRig {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Cuts every connection and closes the server; idempotent. */
  close(): Promise<void>;
}

/** Options of {@link serveRig}. */
export interface ServeRigOptions {
  /**
   * Where the server is registered to be closed.
   * @defaultValue {@link perTest} (closed after the running test)
   */
  readonly resources?: TestResources;
  /**
   * The listen backlog, for tests that open many connections at once.
   * @defaultValue Node's default (511)
   */
  readonly backlog?: number;
}

/**
 * Listens on 127.0.0.1 and a free port with `handler` (a request listener, for which it makes a
 * node:http server) or with `server` as given (a demo's, one with upgrade handlers), and registers
 * it to be closed after the test (or with `options.resources`). Rejects when listening fails.
 */
export async function serveRig(handler: RequestListener | Server, options: ServeRigOptions = {}): Promise<ServeRig> {
  const server = typeof handler === 'function' ? createServer(handler) : handler;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  (options.resources ?? perTest).defer(close);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', ...(options.backlog === undefined ? {} : { backlog: options.backlog }) }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, port, server, close };
}

/** Options of {@link readSse}. */
export interface ReadSseOptions {
  /** Request headers (`last-event-id`, ...), when `readSse` makes the request. */
  readonly headers?: Record<string, string>;
  /**
   * Keep at most this many events (the opening `patchbay-open` not counted), then cut the
   * connection: events parsed after them are dropped, as if never received. `0` cuts right after
   * the opening event.
   * @defaultValue `Infinity`
   */
  readonly limit?: number;
  /** Stops reading (and cuts the connection) when it aborts. */
  readonly signal?: AbortSignal;
  /**
   * The array to push the events into, for a client that follows one feed over several streams.
   * @defaultValue a new array
   */
  readonly into?: EventSourceMessage[];
}

/** Options of {@link SseReader.take} and {@link SseReader.until}. */
export interface SseWaitOptions {
  /**
   * How long to wait, in ms of real time, before failing with what was awaited.
   * @defaultValue 5000
   */
  readonly timeoutMs?: number;
}

/** A Server-Sent Events stream being read, as {@link readSse} answers. */
export interface SseReader {
  /** The response (status and headers; its body is being read here). */
  readonly res: Response;
  /** Every event so far, in order, but the opening `patchbay-open` (it carries the stream's starting id; it is not a message). */
  readonly events: EventSourceMessage[];
  /** The opening `patchbay-open` events. */
  readonly opens: EventSourceMessage[];
  /** The comment lines (heartbeats, the opening comment), without the colon. */
  readonly comments: string[];
  /** The body as decoded, chunk by chunk. */
  readonly raw: string[];
  /** The id of the last event with one (the opening event's included), else the `last-event-id` sent. */
  readonly lastId: string | undefined;
  /** Settles (never rejects) once the stream ended: finished, cut by the server, or closed here. */
  readonly ended: Promise<void>;
  /** Whether `ended` settled. */
  readonly done: boolean;
  /** The next `n` events not taken yet (from the start, for the first call); fails if the stream ends first. */
  take(n: number, what: string, options?: SseWaitOptions): Promise<EventSourceMessage[]>;
  /** Waits until `condition(events)` holds; fails if the stream ends first. */
  until(condition: (events: readonly EventSourceMessage[]) => boolean, what: string, options?: SseWaitOptions): Promise<void>;
  /** Stops reading and cuts the connection; resolves once reading ended. */
  close(): Promise<void>;
}

/**
 * Opens `url` with fetch (or takes a `Response` already fetched) and reads it as Server-Sent
 * Events, parsed by the WHATWG rules (eventsource-parser: any of CRLF/LF/CR line ends, a field
 * without a colon, one leading space stripped, `data` lines joined with LF, ids with NUL ignored).
 *
 * @see https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 */
export async function readSse(source: string | Response, options: ReadSseOptions = {}): Promise<SseReader> {
  const ac = new AbortController();
  const headers = options.headers ?? {};
  const signal = options.signal === undefined ? ac.signal : AbortSignal.any([ac.signal, options.signal]);
  const res = typeof source === 'string' ? await fetch(source, { headers, signal }) : source;
  const limit = options.limit ?? Infinity;
  const events: EventSourceMessage[] = options.into ?? [];
  const opens: EventSourceMessage[] = [];
  const comments: string[] = [];
  const raw: string[] = [];
  let lastId = Object.entries(headers).find(([name]) => name.toLowerCase() === 'last-event-id')?.[1];
  let taken = events.length;
  let done = false;
  let cut = limit === 0 ? 'open' : 'no';
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const w of wakers) w();
  };
  const body = res.body?.getReader();
  const stop = (): void => {
    ac.abort();
    void body?.cancel().catch(() => undefined);
  };
  options.signal?.addEventListener('abort', stop, { once: true });
  const parser = createParser({
    onEvent: (e) => {
      if (cut === 'yes') return;
      (e.event === 'patchbay-open' ? opens : events).push(e);
      if (e.id !== undefined) lastId = e.id;
      if (cut === 'open' || events.length >= limit) {
        cut = 'yes';
        stop();
      }
      wake();
    },
    onComment: (c) => comments.push(c),
  });
  const ended = (async () => {
    if (body === undefined) return;
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done: finished, value } = await body.read();
        if (finished) break;
        const text = decoder.decode(value, { stream: true });
        raw.push(text);
        parser.feed(text);
      }
    } catch {
      // cut or closed
    } finally {
      options.signal?.removeEventListener('abort', stop);
      done = true;
      wake();
    }
  })();
  const until = (condition: (events: readonly EventSourceMessage[]) => boolean, what: string, waitOptions: SseWaitOptions = {}): Promise<void> => {
    const timeoutMs = waitOptions.timeoutMs ?? 5000;
    return new Promise<void>((resolve, reject) => {
      const finish = (error?: Error): void => {
        wakers.delete(check);
        clearTimeout(timer);
        if (error === undefined) resolve();
        else reject(error);
      };
      const check = (): void => {
        if (condition(events)) finish();
        else if (done) finish(new Error(`The stream ended before ${what}`));
      };
      const timer = setTimeout(() => finish(new Error(`Deadline of ${timeoutMs} ms passed waiting for ${what}`)), timeoutMs);
      wakers.add(check);
      check();
    });
  };
  return {
    res,
    events,
    opens,
    comments,
    raw,
    get lastId() {
      return lastId;
    },
    ended,
    get done() {
      return done;
    },
    until,
    async take(n, what, waitOptions) {
      const from = taken;
      await until((all) => all.length >= from + n, what, waitOptions);
      taken = from + n;
      return events.slice(from, from + n);
    },
    async close() {
      stop();
      await ended;
    },
  };
}

/**
 * The node flags that let a child process run the TypeScript sources as an app would import
 * them: tsx, plus test/fixtures/resolve-src.mjs, which makes `patchbay` mean src/index.ts,
 * `patchbay/<name>` src/<name>/index.ts and `patchbay/express|fastify|koa|web` the adapters (as
 * vitest.config.ts's aliases do in the test process). For `spawn(process.execPath, [...sourceNodeArgs, file])`,
 * `fork`'s `execArgv` and the demo's `sidecars.nodeArgs`.
 */
export const sourceNodeArgs: readonly string[] = ['--import', 'tsx', '--import', fileURLToPath(new URL('./fixtures/resolve-src.mjs', import.meta.url))];
