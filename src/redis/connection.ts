/**
 * The Redis backend's two connections and their fault handling, apart from what the backend
 * does with them.
 *
 * A {@link RedisConnection} holds the command connection (with the Lua scripts defined on it)
 * and the subscriber connection, made from the options once. Every command sequence goes
 * through {@link RedisConnection.call}, which is where the failure rules live:
 *
 * - Commands are never queued while Redis is away (`enableOfflineQueue: false`): a call made
 *   before the first connection waits for it (up to `connectTimeoutMs`); after it, a call made
 *   while Redis is unreachable rejects at once with an {@link UnavailableError}.
 * - Commands are never resent after a reconnect (a publish might run twice), and never wait
 *   forever for an answer (`commandTimeoutMs`).
 * - A call whose connection drops under it rejects at once, saying it may or may not have run.
 *
 * The subscriber connection carries the backend's feed channel (handed to the backend's hooks)
 * and any other channel another part of patchbay listens to (the job store's), which it
 * subscribes again when the connection comes back. It is its own piece because none of this
 * knows what a topic, a message or an epoch is.
 *
 * @module
 * @internal
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Clock } from '../core/clock.js';
import { ClosedError, InvalidCursorError, UnavailableError } from '../core/errors.js';
import type { RedisBackendOptions } from './redis-options.js';
import { DROP_EVICTED, HEAD, PUBLISH_APPEND, PUBLISH_MANY, PUBLISH_NEXT, PUBLISH_ONE, READ_META, READ_ONE, READ_STREAMS, RECOVER } from './scripts.js';

/** A script's answer, as ioredis gives it. @internal */
export type Reply = (string | Reply)[];
/** What a call does, for the words of its errors. @internal */
export type Work = 'publish' | 'read' | 'write';
/** One server, or a cluster. @internal */
export type Client = Redis | Cluster;

/** Who hears a channel through `RedisBackend._listen`. @internal */
export interface ChannelListener {
  /** A message on the channel. */
  message(payload: string): void;
  /** The subscriber connection came back: messages may have been missed. */
  resync(): void;
}

/** The backend's scripts, as commands on the command connection. @internal */
export interface Scripted {
  pbPublishOne(...args: (string | number)[]): Promise<Reply>;
  pbPublishMany(...args: (string | number)[]): Promise<Reply>;
  pbPublishNext(...args: (string | number)[]): Promise<Reply>;
  pbPublishAppend(...args: (string | number)[]): Promise<Reply>;
  pbReadOne(...args: (string | number)[]): Promise<Reply>;
  pbReadMeta(...args: (string | number)[]): Promise<Reply>;
  pbReadStreams(...args: (string | number)[]): Promise<Reply>;
  pbHead(...args: (string | number)[]): Promise<Reply>;
  pbRecover(...args: (string | number)[]): Promise<Reply>;
  pbDropEvicted(...args: (string | number)[]): Promise<Reply>;
}

const SCRIPTS: Record<keyof Scripted, string> = {
  pbPublishOne: PUBLISH_ONE,
  pbPublishMany: PUBLISH_MANY,
  pbPublishNext: PUBLISH_NEXT,
  pbPublishAppend: PUBLISH_APPEND,
  pbReadOne: READ_ONE,
  pbReadMeta: READ_META,
  pbReadStreams: READ_STREAMS,
  pbHead: HEAD,
  pbRecover: RECOVER,
  pbDropEvicted: DROP_EVICTED,
};

/** What the connection tells its backend. @internal */
export interface ConnectionHooks {
  /** A message on the feed channel. */
  feed(payload: string): void;
  /** The subscriber connection closed: the feed may miss messages from now on. */
  subscriberLost(): void;
  /** The subscriber connection is ready (again). */
  subscriberReady(): void;
  /** Connection errors, and errors of work done in the background. */
  error(error: unknown): void;
  /** Whether the backend is closed. */
  closed(): boolean;
}

/** The settings a {@link RedisConnection} takes, checked by the backend. @internal */
export interface ConnectionSettings {
  readonly options: RedisBackendOptions;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retryAfterSeconds: number;
  /** The feed channel, whose messages go to {@link ConnectionHooks.feed}. */
  readonly feedChannel: string;
  readonly clock: Clock;
}

/** The command and subscriber connections of a Redis backend, with their fault handling. @internal */
export class RedisConnection {
  /** The command connection, with the backend's scripts. */
  readonly client: Client & Scripted;
  /** The subscriber connection. */
  readonly sub: Client;
  /** Whether these are cluster connections. */
  readonly cluster: boolean;
  readonly #hooks: ConnectionHooks;
  readonly #commandTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #retryAfter: number;
  readonly #clock: Clock;
  /** Other channels heard on the subscriber connection, and their subscriptions. */
  readonly #channels = new Map<string, Set<ChannelListener>>();
  readonly #subscribed = new Map<string, Promise<void>>();
  #subLost = false;
  #everReady = false;
  readonly #readyWaiters = new Set<{ resolve: () => void; reject: (e: unknown) => void }>();
  /** Calls in flight, rejected as "may or may not" if the connection drops under them. */
  readonly #inflight = new Set<(error: unknown) => void>();

  constructor(settings: ConnectionSettings, hooks: ConnectionHooks) {
    const opts = settings.options;
    this.#hooks = hooks;
    this.#commandTimeoutMs = settings.commandTimeoutMs;
    this.#connectTimeoutMs = settings.connectTimeoutMs;
    this.#retryAfter = settings.retryAfterSeconds;
    this.#clock = settings.clock;
    this.cluster = opts.cluster !== undefined;
    // Commands are never queued while Redis is away (a publish fails at once instead of being
    // sent minutes later), never resent after a reconnect (a publish might run twice), and never
    // wait forever for an answer.
    // ioredis's auto-pipelining (`redis: { enableAutoPipelining: true }`) raises burst throughput
    // but holds each command to the next turn of the event loop (~0.1 ms of publish-to-delivery
    // latency here), so it is left to the caller.
    const commandOptions: RedisOptions = {
      ...(opts.cluster === undefined ? opts.redis : opts.cluster.options?.redisOptions),
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.#commandTimeoutMs,
    };
    const scripts = Object.fromEntries(Object.entries(SCRIPTS).map(([name, lua]) => [name, { lua }]));
    if (opts.cluster !== undefined) {
      const base = opts.cluster.options ?? {};
      const nodes = [...opts.cluster.nodes];
      // No auto-pipelining here: ioredis refuses a pipeline whose keys span slots.
      this.client = new Cluster(nodes, {
        ...base,
        enableOfflineQueue: false,
        redisOptions: { ...base.redisOptions, ...commandOptions },
        scripts,
      }) as Cluster & Scripted;
      this.sub = new Cluster(nodes, base);
    } else {
      const make = (extra: RedisOptions): Redis => (opts.url !== undefined ? new Redis(opts.url, { ...opts.redis, ...extra }) : new Redis({ ...opts.redis, ...extra }));
      this.client = make({ ...commandOptions, scripts }) as Redis & Scripted;
      this.sub = make({});
    }
    this.client.on('error', hooks.error);
    this.sub.on('error', hooks.error);
    this.client.on('ready', () => {
      this.#everReady = true;
      for (const w of this.#readyWaiters) w.resolve();
      this.#readyWaiters.clear();
    });
    // A dropped command connection: calls in flight may or may not have run. Say so now.
    this.client.on('close', () => {
      if (this.#inflight.size === 0) return;
      const error = this.unavailable('The connection to Redis was lost with the call in flight: it may or may not have taken effect');
      for (const reject of [...this.#inflight]) reject(error);
    });
    const feedChannel = settings.feedChannel;
    this.sub.on('message', (channel: string, payload: string) => {
      if (channel === feedChannel) hooks.feed(payload);
      else {
        const listeners = this.#channels.get(channel);
        if (listeners !== undefined) for (const listener of listeners) listener.message(payload);
      }
    });
    this.sub.on('close', () => {
      this.#subLost = true;
      hooks.subscriberLost();
    });
    this.sub.on('ready', () => {
      hooks.subscriberReady();
      if (this.#subLost && this.#channels.size > 0 && !hooks.closed()) void this.#resubscribe();
      this.#subLost = false;
    });
  }

  /** Defines Lua scripts as commands on the command connection (each with one key). */
  defineScripts(scripts: Readonly<Record<string, string>>): void {
    for (const [name, lua] of Object.entries(scripts)) this.client.defineCommand(name, { lua, numberOfKeys: 1 });
  }

  /** Hears `channel` on the subscriber connection (see `RedisBackend._listen`). */
  listen(channel: string, listener: ChannelListener): { ready: Promise<void>; stop: () => void } {
    let listeners = this.#channels.get(channel);
    let ready: Promise<void>;
    if (listeners === undefined) {
      listeners = new Set();
      this.#channels.set(channel, listeners);
      ready = this.sub.subscribe(channel).then(
        () => undefined,
        (error: unknown) => {
          throw this.mapError(error, 'read');
        },
      );
      this.#subscribed.set(channel, ready);
      ready.catch(() => {});
    } else {
      ready = this.#subscribed.get(channel) ?? Promise.resolve();
    }
    listeners.add(listener);
    const set = listeners;
    return {
      ready,
      stop: () => {
        if (!set.delete(listener) || set.size > 0) return;
        this.#channels.delete(channel);
        this.#subscribed.delete(channel);
        if (this.sub.status === 'ready') this.sub.unsubscribe(channel).catch(() => {});
      },
    };
  }

  async #resubscribe(): Promise<void> {
    const channels = [...this.#channels.keys()];
    try {
      await this.sub.subscribe(...channels);
    } catch (error) {
      this.#hooks.error(error);
      return;
    }
    for (const channel of channels) {
      const listeners = this.#channels.get(channel);
      if (listeners !== undefined) for (const listener of listeners) listener.resync();
    }
  }

  /** Runs a command sequence: waits for the first connection, fails fast after it, maps errors. */
  call<T>(run: () => Promise<T>, what: Work): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const fail = (error: unknown): void => {
        if (settled) return;
        settled = true;
        this.#inflight.delete(fail);
        reject(error);
      };
      const start = (): void => {
        if (settled) return;
        if (this.#hooks.closed()) return fail(new ClosedError('The backend is closed'));
        if (this.client.status !== 'ready') {
          return fail(this.unavailable(`Redis is unreachable (connection ${this.client.status}): nothing was ${what === 'publish' ? 'published' : what === 'write' ? 'written' : 'read'}`));
        }
        this.#inflight.add(fail);
        run().then(
          (value) => {
            if (settled) return;
            settled = true;
            this.#inflight.delete(fail);
            resolve(value);
          },
          (error: unknown) => fail(this.mapError(error, what)),
        );
      };
      if (this.#everReady || this.client.status === 'ready') start();
      else this.whenConnected().then(start, fail);
    });
  }

  /** Waits for `promise`, at most `connectTimeoutMs`; never rejects. */
  bounded(promise: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.#clock.setTimer(resolve, this.#connectTimeoutMs);
      void promise.then(() => {
        timer.cancel();
        resolve();
      });
    });
  }

  /** Resolves once the command connection is ready: waits for the first connection only. */
  whenConnected(): Promise<void> {
    if (this.#hooks.closed()) return Promise.reject(new ClosedError('The backend is closed'));
    if (this.client.status === 'ready') return Promise.resolve();
    if (this.#everReady) return Promise.reject(this.unavailable(`Redis is unreachable (connection ${this.client.status})`));
    return new Promise<void>((resolve, reject) => {
      const timer = this.#clock.setTimer(() => {
        this.#readyWaiters.delete(waiter);
        reject(this.unavailable(`Could not connect to Redis within ${this.#connectTimeoutMs} ms`));
      }, this.#connectTimeoutMs);
      const waiter = {
        resolve: () => {
          timer.cancel();
          resolve();
        },
        reject: (e: unknown) => {
          timer.cancel();
          reject(e);
        },
      };
      this.#readyWaiters.add(waiter);
    });
  }

  /** The error a caller sees for what Redis (or ioredis) threw. */
  mapError(error: unknown, what: Work): unknown {
    if (error instanceof InvalidCursorError || error instanceof ClosedError || error instanceof UnavailableError) return error;
    const text = error instanceof Error ? error.message : String(error);
    if (/timed out/i.test(text)) {
      return this.unavailable(
        `Redis did not answer within ${this.#commandTimeoutMs} ms: the ${what} ${what === 'read' ? 'failed' : 'may or may not have been stored'}`,
        error,
      );
    }
    if (/writeable|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE/i.test(text)) {
      return this.unavailable(`Redis is unreachable: ${what === 'publish' ? 'the message was not published' : what === 'write' ? 'nothing was written' : 'nothing was read'} (${text})`, error);
    }
    return this.unavailable(`Redis answered the ${what} with an error: ${text}`, error);
  }

  /** An {@link UnavailableError} with the configured `retryAfterSeconds`. */
  unavailable(message: string, cause?: unknown): UnavailableError {
    return new UnavailableError(message, { cause, retryAfterSeconds: this.#retryAfter });
  }

  /**
   * Ends the waits: callers waiting for the first connection reject with ClosedError and, when
   * `hard`, calls in flight reject with `reason` (or ClosedError) at once.
   */
  shutdown(hard: boolean, reason?: unknown): void {
    const closed = new ClosedError('The backend is closed');
    if (hard) for (const reject of [...this.#inflight]) reject(reason ?? closed);
    for (const w of this.#readyWaiters) w.reject(closed);
    this.#readyWaiters.clear();
  }

  /** Quits both connections: calls in flight are answered first. */
  async quit(): Promise<void> {
    await Promise.all([quit(this.client), quit(this.sub)]);
  }

  /** Drops both connections at once. */
  disconnect(): void {
    this.client.disconnect();
    this.sub.disconnect();
  }
}

async function quit(client: Client): Promise<void> {
  if (client.status === 'end') return;
  try {
    if (client.status === 'ready') await client.quit();
    else client.disconnect();
  } catch {
    client.disconnect();
  }
}
