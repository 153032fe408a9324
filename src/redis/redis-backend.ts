/**
 * The broker's {@link Backend} on Redis, so many processes (and machines) share topics.
 *
 * ## What lives where
 *
 * - Each topic's log is a Redis Stream (`<prefix>{t:<topic>}`: the hash tag keeps a topic on one
 *   cluster slot), bounded by count (`MAXLEN`) and age (`MINID`, and a key TTL for idle topics).
 * - A meta hash (`<prefix>{m}:meta`) holds the epoch and the sequence counter; a sorted set
 *   (`<prefix>{m}:topics`) indexes topics by their newest sequence number, for pattern reads and
 *   catching up.
 * - Bounds across topics: the meta hash counts the bytes kept in all streams, a hash
 *   (`<prefix>{m}:bytes`) counts them per topic, and the index orders topics by recency. Past
 *   `maxTopics` or `maxTotalBytes` the least recently published topics' logs are dropped whole
 *   (readers behind them see a gap, as after an idle topic expires); a topic alone over the
 *   budget trims its own oldest messages (an exact gap for that topic). See `scripts.ts`.
 * - Every publish is one Lua script: take the next sequence number, append to the stream, and
 *   `PUBLISH` the whole message on one feed channel (`<prefix>feed`). Each process holds one
 *   subscriber connection to the feed, shared by every subscription of its broker: a long poll or
 *   SSE stream on process A is woken by a publish on process B.
 *
 * ## Reads
 *
 * A read after a cursor is one script over the meta hash and the streams (`XRANGE` after the
 * cursor's stream id). While the feed has been continuous, each process also keeps the newest
 * messages per topic that it received, and answers a read after a recent cursor from them
 * without a round trip (the usual read of a woken long poll). Anything it cannot answer for
 * certain goes to Redis.
 *
 * ## Faults
 *
 * Commands are never queued while Redis is unreachable: a publish then rejects at once with an
 * {@link UnavailableError} (`PB_ERR_UNAVAILABLE`, with `retryAfterSeconds`), and a publish whose
 * connection dropped (or that got no answer within `commandTimeoutMs`) rejects with one that says
 * it may or may not have been stored. A publish is reported sent only when Redis answered it.
 * When the feed connection comes back, the backend reads every stored message published since the
 * last one it delivered and delivers those first, in order, then goes live again: subscribers
 * miss nothing that Redis kept. A Redis that came back without its data gets a new epoch, so
 * cursors from before are answered as a gap, never silently skipped.
 *
 * ## Cluster and Sentinel
 *
 * With `redis: { sentinels, name }` ioredis finds the master through Sentinel; nothing else
 * changes. With `cluster`, a publish takes two round trips (the counter and the byte and topic
 * counts on the meta slot, then the topic's slot; a third, to drop evicted topics' streams on
 * their nodes, only when the bounds evict, as on one server), a read of several topics one per topic, and the feed, which reaches a
 * node's subscribers later from other nodes, is put back in order within `reorderWindowMs`.
 * One cursor over several topics is exact on one server; on a cluster a message published on
 * another topic at the same moment may fall behind it.
 *
 * @module
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Clock, ClockTimer } from '../core/clock.js';
import { ClosedError, InvalidArgumentError, InvalidCursorError, UnavailableError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import {
  type Backend,
  type BackendRead,
  type BackendStats,
  type Cursor,
  Message,
  MessageLog,
  matchTokens,
  type PublishRecord,
} from '../pubsub/index.js';
import { DEFAULT_MAX_TOTAL_BYTES } from '../pubsub/backend.js';
import { aheadError, epochOf, formatId, newEpoch, parseCursor } from '../pubsub/message.js';
import { readTopics } from '../pubsub/message-log.js';
import { decodeData, decodeHeaders, encodeData, encodeHeaders, type FeedEntry, parseFeed, seqOfStreamId } from './codec.js';
import { DROP_EVICTED, HEAD, PUBLISH_APPEND, PUBLISH_NEXT, PUBLISH_ONE, READ_META, READ_ONE, READ_STREAMS, RECOVER } from './scripts.js';

/** Bounds of each topic's log in Redis. */
export interface RedisHistoryLimits {
  /**
   * Most messages kept per topic (`XADD ... MAXLEN`). `0` keeps none (live delivery only).
   * @defaultValue 1000
   */
  readonly maxCount?: number;
  /**
   * Oldest message kept, in ms (`MINID`, by Redis's clock); a topic with no newer message
   * expires whole. `Infinity` keeps messages until `maxCount` pushes them out.
   * @defaultValue 3_600_000 (one hour)
   */
  readonly maxAgeMs?: number;
}

/** How to reach a Redis Cluster, as ioredis's `Cluster` takes it. */
export interface RedisClusterConfig {
  /** Startup nodes (`{ host, port }` or `'redis://host:port'`); ioredis discovers the rest. */
  readonly nodes: readonly ClusterNode[];
  /** ioredis `ClusterOptions` (`redisOptions` for every node's connection, `natMap`, ...). */
  readonly options?: ClusterOptions;
}

/** Options for {@link RedisBackend}. Give `url`, `redis`, or `cluster` (or none, for localhost). */
export interface RedisBackendOptions {
  /** A `redis://` or `rediss://` URL, as ioredis takes it (`redis://:password@host:6379/0`). */
  readonly url?: string;
  /**
   * ioredis options, passed through: `host`, `port`, `password`, `tls`, `db`, or `sentinels`
   * with `name` for Redis Sentinel. With `url`, they add to what the URL says.
   */
  readonly redis?: RedisOptions;
  /** Redis Cluster: the startup nodes and ioredis's `ClusterOptions`, passed through. */
  readonly cluster?: RedisClusterConfig;
  /**
   * Prefix of every key and of the feed channel. Give each app (or test) its own. A prefix with a
   * hash tag (`'{app}:'`) puts every key on one cluster slot.
   * @defaultValue `'patchbay:'`
   */
  readonly prefix?: string;
  /** Bounds of each topic's log. */
  readonly history?: RedisHistoryLimits;
  /**
   * Most bytes kept in all topics' logs together (each entry's data and headers as stored, so
   * strings by their UTF-8 length, bytes as base64, other values as JSON). Past it, the least
   * recently published topics' logs are dropped whole, and when the topic being published is the
   * only one left, its oldest messages are trimmed; a read after a cursor older than what went
   * reports a gap. Shared by every process on the prefix (the count lives in Redis). `0` keeps
   * nothing.
   *
   * Unlike `MemoryBackend`, which trims message by message and so reports a gap on the topic that
   * lost them only, a topic dropped whole here raises one mark for all topics: a read on ANY topic
   * after a cursor older than the dropped topic's newest message reports `gap: true`, though that
   * topic lost nothing. Readers that keep up (cursors newer than what was dropped) see no gap.
   * @defaultValue 64 MiB (67108864), as `MemoryBackend`'s
   */
  readonly maxTotalBytes?: number;
  /**
   * Most topics with a log. Past it, the least recently published topic's log is dropped whole,
   * and a read after a cursor older than what it held reports a gap, on any topic (as with
   * `MemoryBackend`'s `maxTopics`; see `maxTotalBytes`).
   * @defaultValue 100000, as `MemoryBackend`'s
   */
  readonly maxTopics?: number;
  /**
   * How long a command may wait for Redis's answer, in ms; past it the call rejects with an
   * {@link UnavailableError} (the command may still have run).
   * @defaultValue 5000
   */
  readonly commandTimeoutMs?: number;
  /**
   * How long a call made before the first connection waits for it, in ms. After the first
   * connection, calls made while Redis is unreachable reject at once.
   * @defaultValue 10000
   */
  readonly connectTimeoutMs?: number;
  /**
   * The `Retry-After` (seconds) carried by {@link UnavailableError}s, so HTTP answers say when to
   * come back.
   * @defaultValue 1
   */
  readonly retryAfterSeconds?: number;
  /**
   * Answer reads after a recent cursor from the messages this process received on the feed,
   * without a round trip, as long as the feed was continuous. Off in cluster mode.
   * @defaultValue true
   */
  readonly localReads?: boolean;
  /**
   * Most topics whose recent messages are kept for local reads.
   * @defaultValue 10000
   */
  readonly localTopics?: number;
  /**
   * Most messages kept per topic for local reads (at most `history.maxCount`).
   * @defaultValue 256
   */
  readonly localCount?: number;
  /**
   * Most messages delivered when catching up after the feed connection was lost; past it the
   * rest is skipped (subscribers with cursors still read it from the logs).
   * @defaultValue 100000
   */
  readonly catchUpLimit?: number;
  /**
   * Cluster mode: how long each feed message waits so that one published earlier on another
   * node, which comes through the cluster bus, is delivered before it. Order across nodes is
   * kept within this window only.
   * @defaultValue 50 with `cluster`, else 0
   */
  readonly reorderWindowMs?: number;
  /**
   * The time source (local read age limits).
   * @defaultValue the real clock (`realClock`)
   */
  readonly clock?: Clock;
  /** Called with connection errors (Redis unreachable, refused auth, ...). They also reach `patchbay:redis:error`. */
  readonly onError?: (error: unknown) => void;
}

/** Counters reported by {@link RedisBackend.redisStats}. */
export interface RedisBackendStats extends BackendStats {
  /** Whether the command connection is ready. */
  readonly connected: boolean;
  /** Whether the feed is live (subscribed, caught up). */
  readonly live: boolean;
  /** The epoch seen last. */
  readonly epoch: string | undefined;
  /** Messages published through this backend. */
  readonly published: number;
  /** Messages delivered from the feed (caught up ones included). */
  readonly delivered: number;
  /** Reads answered from local memory. */
  readonly localReads: number;
  /** Reads sent to Redis. */
  readonly redisReads: number;
  /** Times the feed was lost and caught up. */
  readonly resyncs: number;
  /** Messages delivered by catching up. */
  readonly caughtUp: number;
  /** Cluster mode: feed messages that came later than `reorderWindowMs` after a newer one. */
  readonly late: number;
  /**
   * Records read back from Redis that could not be decoded (a feed notification or a stream
   * entry written by another version, a bug, or by hand): skipped, and readers told of a gap.
   * Each record counts (and reaches `onError`) once, however often it is read (this process
   * remembers the last 10,000 such records); a feed notification too malformed to name its
   * record counts each time it arrives.
   */
  readonly undecodable: number;
}

/** What `patchbay:redis:*` diagnostics channels carry. */
export const redisChannels = {
  /** `{ backend, error }`: a connection error. */
  error: diagnosticsChannel.channel('patchbay:redis:error'),
  /** `{ backend, caughtUp, gap, epoch }`: the feed came back and caught up. */
  resync: diagnosticsChannel.channel('patchbay:redis:resync'),
} as const;

type Reply = (string | Reply)[];
/** What a call does, for the words of its errors. */
type Work = 'publish' | 'read' | 'write';
/** Who hears a channel through {@link RedisBackend._listen}. @internal */
export interface ChannelListener {
  /** A message on the channel. */
  message(payload: string): void;
  /** The subscriber connection came back: messages may have been missed. */
  resync(): void;
}
type StreamEntry = [string, string[]];
type Client = Redis | Cluster;
interface Scripted {
  pbPublishOne(...args: (string | number)[]): Promise<Reply>;
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
  pbPublishNext: PUBLISH_NEXT,
  pbPublishAppend: PUBLISH_APPEND,
  pbReadOne: READ_ONE,
  pbReadMeta: READ_META,
  pbReadStreams: READ_STREAMS,
  pbHead: HEAD,
  pbRecover: RECOVER,
  pbDropEvicted: DROP_EVICTED,
};

/** All topics, for catching up. */
const ALL: readonly (readonly string[])[] = [['>']];

/**
 * A {@link Backend} on Redis (7.0 or later) through ioredis: topics shared by every process that
 * uses the same Redis and prefix.
 *
 * @example
 * ```ts
 * import { PubSubBroker, LongPollHandler } from 'patchbay';
 * import { RedisBackend } from 'patchbay/redis';
 *
 * const backend = new RedisBackend({ url: process.env.REDIS_URL, history: { maxCount: 1000 } });
 * const broker = new PubSubBroker({ backend });
 * const longPoll = new LongPollHandler({ broker });
 * // ... on shutdown: await broker.close(); await backend.close();
 * ```
 */
export class RedisBackend extends Resource implements Backend {
  readonly #client: Client & Scripted;
  readonly #sub: Client;
  readonly #cluster: boolean;
  readonly #prefix: string;
  readonly #meta: string;
  readonly #index: string;
  readonly #channel: string;
  readonly #maxCount: number;
  readonly #maxAge: number;
  readonly #maxTotalBytes: number;
  readonly #maxTopics: number;
  readonly #bytesKey: string;
  /** Cluster: bytes that appends trimmed per topic, taken off the count by the next publish. */
  readonly #trimmed = new Map<string, number>();
  readonly #commandTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #retryAfter: number;
  readonly #localReads: boolean;
  readonly #localTopics: number;
  readonly #localCount: number;
  readonly #catchUpLimit: number;
  readonly #reorderMs: number;
  readonly #reorderQueue: { entry: FeedEntry; due: number }[] = [];
  #reorderTimer: ClockTimer | undefined;
  #late = 0;
  readonly #clock: Clock;
  readonly #onError: ((error: unknown) => void) | undefined;

  #deliver: ((message: Message) => void) | null = null;
  /** Other channels heard on the subscriber connection, and their subscriptions. */
  readonly #channels = new Map<string, Set<ChannelListener>>();
  readonly #subscribed = new Map<string, Promise<void>>();
  #subLost = false;
  #everReady = false;
  #readyWaiters = new Set<{ resolve: () => void; reject: (e: unknown) => void }>();
  /** Calls in flight, rejected as "may or may not" if the connection drops under them. */
  readonly #inflight = new Set<(error: unknown) => void>();

  /** The epoch of the newest message delivered (or of the head read at start). */
  #epoch: string | undefined;
  /** The newest seq delivered (or the head read at start). */
  #lastSeq = 0;
  /** The newest seq this process saw in `#epoch` (published or delivered), to notice lost writes. */
  #seen = 0;
  /** The feed is subscribed and caught up. */
  #live = false;
  #attachStarted = false;
  /** While catching up, live messages wait here. */
  #held: FeedEntry[] | null = null;
  /** Bumped each time the feed connection drops. */
  #feedGen = 0;
  #resyncing: Promise<void> | undefined;
  #startup: Promise<void> | undefined;

  /** Local reads: every stored message with seq > this has reached `#logs` (Infinity: none). */
  #coveredFrom = Infinity;
  /** The newest seq this process published, and its epoch. */
  #ownMax = 0;
  #ownEpoch: string | undefined;
  readonly #logs = new Map<string, MessageLog>();
  /** Bytes held in `#logs` (local reads trim by age as they read: counted there too). */
  #localBytes = 0;
  readonly #topicStats = new Map<string, { messages: number; bytes: number }>();

  #published = 0;
  #delivered = 0;
  #localReadCount = 0;
  #redisReadCount = 0;
  #resyncs = 0;
  #caughtUp = 0;
  #undecodable = 0;
  /** Records counted in `#undecodable` (`epoch-seq`), so each counts once; at most 10,000. */
  readonly #badSeen = new Set<string>();

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options?: RedisBackendOptions) {
    super();
    const opts = check.optionsObject('options', options);
    const prefix = opts.prefix ?? 'patchbay:';
    if (typeof prefix !== 'string' || prefix.length > 200 || /[\s]/.test(prefix)) {
      throw new InvalidArgumentError(`Expected \`prefix\` to be a string of at most 200 characters without spaces, got ${check.describe(prefix)}`);
    }
    if (opts.url !== undefined && typeof opts.url !== 'string') throw new InvalidArgumentError(`Expected \`url\` to be a string, got ${check.describe(opts.url)}`);
    if (opts.cluster !== undefined && (opts.url !== undefined || opts.redis !== undefined)) {
      throw new InvalidArgumentError('Give either `cluster`, or `url` and/or `redis`, not both');
    }
    if (opts.cluster !== undefined && !Array.isArray(opts.cluster.nodes)) {
      throw new InvalidArgumentError(`Expected \`cluster.nodes\` to be an array of startup nodes, got ${check.describe(opts.cluster.nodes)}`);
    }
    const history = check.optionsObject('history', opts.history);
    this.#maxCount = check.integerInRange('history.maxCount', history.maxCount ?? 1000, 0, 2 ** 31 - 1);
    const maxAge = history.maxAgeMs ?? 3_600_000;
    this.#maxAge = maxAge === Infinity ? -1 : Math.ceil(check.positiveNumber('history.maxAgeMs', maxAge));
    this.#maxTotalBytes = check.integerInRange('maxTotalBytes', opts.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES, 0, Number.MAX_SAFE_INTEGER);
    this.#maxTopics = check.integerInRange('maxTopics', opts.maxTopics ?? 100_000, 1, 2 ** 31 - 1);
    this.#commandTimeoutMs = check.integerInRange('commandTimeoutMs', opts.commandTimeoutMs ?? 5000, 1, 2 ** 31 - 1);
    this.#connectTimeoutMs = check.integerInRange('connectTimeoutMs', opts.connectTimeoutMs ?? 10_000, 0, 2 ** 31 - 1);
    this.#retryAfter = check.integerInRange('retryAfterSeconds', opts.retryAfterSeconds ?? 1, 0, 86_400);
    this.#cluster = opts.cluster !== undefined;
    this.#localReads = (opts.localReads ?? true) && !this.#cluster;
    this.#localTopics = check.integerInRange('localTopics', opts.localTopics ?? 10_000, 1, 10_000_000);
    this.#localCount = Math.min(check.integerInRange('localCount', opts.localCount ?? 256, 1, 1_000_000), Math.max(this.#maxCount, 1));
    this.#catchUpLimit = check.integerInRange('catchUpLimit', opts.catchUpLimit ?? 100_000, 0, 2 ** 31 - 1);
    this.#reorderMs = check.integerInRange('reorderWindowMs', opts.reorderWindowMs ?? (this.#cluster ? 50 : 0), 0, 60_000);
    this.#clock = check.optionalClock('clock', opts.clock);
    this.#onError = check.optionalFunction('onError', opts.onError);

    this.#prefix = prefix;
    this.#meta = `${prefix}{m}:meta`;
    this.#index = `${prefix}{m}:topics`;
    this.#bytesKey = `${prefix}{m}:bytes`;
    this.#channel = `${prefix}feed`;

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
    if (opts.cluster !== undefined) {
      const base = opts.cluster.options ?? {};
      const nodes = [...opts.cluster.nodes];
      // No auto-pipelining here: ioredis refuses a pipeline whose keys span slots.
      this.#client = new Cluster(nodes, {
        ...base,
        enableOfflineQueue: false,
        redisOptions: { ...base.redisOptions, ...commandOptions },
        scripts: Object.fromEntries(Object.entries(SCRIPTS).map(([name, lua]) => [name, { lua }])),
      }) as Cluster & Scripted;
      this.#sub = new Cluster(nodes, base);
    } else {
      const make = (extra: RedisOptions): Redis => (opts.url !== undefined ? new Redis(opts.url, { ...opts.redis, ...extra }) : new Redis({ ...opts.redis, ...extra }));
      this.#client = make({ ...commandOptions, scripts: Object.fromEntries(Object.entries(SCRIPTS).map(([name, lua]) => [name, { lua }])) }) as Redis & Scripted;
      this.#sub = make({});
    }
    this.#client.on('error', this.#reportError);
    this.#sub.on('error', this.#reportError);
    this.#client.on('ready', () => {
      this.#everReady = true;
      for (const w of this.#readyWaiters) w.resolve();
      this.#readyWaiters.clear();
    });
    // A dropped command connection: calls in flight may or may not have run. Say so now.
    this.#client.on('close', () => {
      if (this.#inflight.size === 0) return;
      const error = this.#unavailable('The connection to Redis was lost with the call in flight: it may or may not have taken effect');
      for (const reject of [...this.#inflight]) reject(error);
    });
    this.#sub.on('message', (channel: string, payload: string) => {
      if (channel === this.#channel) this.#onFeed(payload);
      else {
        const listeners = this.#channels.get(channel);
        if (listeners !== undefined) for (const listener of listeners) listener.message(payload);
      }
    });
    this.#sub.on('close', () => {
      this.#subLost = true;
      this.#onFeedLost();
    });
    this.#sub.on('ready', () => {
      if (this.#attachStarted && !this.#live && this.#resyncing === undefined && !this.closed) void this.#resync();
      if (this.#subLost && this.#channels.size > 0 && !this.closed) void this.#resubscribe();
      this.#subLost = false;
    });
  }

  /** The key prefix in use. */
  get prefix(): string {
    return this.#prefix;
  }

  /**
   * Runs commands for another part of patchbay (the job store) on this backend's command
   * connection, with its fault handling: fails fast while Redis is away, never resent. @internal
   */
  _command<T>(run: (client: Redis | Cluster) => Promise<T>, what: 'read' | 'write'): Promise<T> {
    if (this.closed) return Promise.reject(new ClosedError('The backend is closed'));
    return this.#call(() => run(this.#client), what);
  }

  /** Defines Lua scripts as commands on the command connection (each with one key). @internal */
  _defineScripts(scripts: Readonly<Record<string, string>>): void {
    for (const [name, lua] of Object.entries(scripts)) this.#client.defineCommand(name, { lua, numberOfKeys: 1 });
  }

  /**
   * Hears another channel on this backend's subscriber connection; `ready` resolves once it is
   * subscribed. After the connection comes back the channel is subscribed again and listeners are
   * told to resync. @internal
   */
  _listen(channel: string, listener: ChannelListener): { ready: Promise<void>; stop: () => void } {
    let listeners = this.#channels.get(channel);
    let ready: Promise<void>;
    if (listeners === undefined) {
      listeners = new Set();
      this.#channels.set(channel, listeners);
      ready = this.#sub.subscribe(channel).then(
        () => undefined,
        (error: unknown) => {
          throw this.#mapError(error, 'read');
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
        if (this.#sub.status === 'ready') this.#sub.unsubscribe(channel).catch(() => {});
      },
    };
  }

  async #resubscribe(): Promise<void> {
    const channels = [...this.#channels.keys()];
    try {
      await this.#sub.subscribe(...channels);
    } catch (error) {
      this.#reportError(error);
      return;
    }
    for (const channel of channels) {
      const listeners = this.#channels.get(channel);
      if (listeners !== undefined) for (const listener of listeners) listener.resync();
    }
  }

  /**
   * Resolves once the command connection is ready and the feed is live (subscribed and caught
   * up), or rejects after `connectTimeoutMs`.
   */
  async ready(): Promise<void> {
    await this.#whenConnected();
    const deadline = this.#clock.now() + this.#connectTimeoutMs;
    while (!this.#live && this.#attachStarted && !this.closed) {
      if (this.#clock.now() > deadline) throw this.#unavailable('The Redis feed did not come up in time');
      await (this.#resyncing ?? new Promise<void>((r) => this.#clock.setTimer(r, 10)));
    }
  }

  attach(deliver: (message: Message) => void): void {
    this.#deliver = deliver;
    if (this.#attachStarted || this.closed) return;
    this.#attachStarted = true;
    // Publishes wait for the feed to be subscribed (up to connectTimeoutMs), so every message
    // published here after attach() comes back through it.
    this.#startup = this.#resync().finally(() => {
      this.#startup = undefined;
    });
  }

  publish(record: PublishRecord): Promise<Message> {
    if (this.closed) return Promise.reject(new ClosedError('The backend is closed'));
    let data: string;
    let headers: string;
    try {
      data = encodeData(record.data);
      headers = encodeHeaders(record.headers);
    } catch (error) {
      return Promise.reject(error);
    }
    const store = record.store ? '1' : '0';
    const startup = this.#startup;
    if (startup !== undefined) return this.#bounded(startup).then(() => this.#publish(record, data, headers, store));
    return this.#publish(record, data, headers, store);
  }

  #publish(record: PublishRecord, data: string, headers: string, store: string): Promise<Message> {
    return this.#call(async () => {
      const topic = record.topic;
      const key = this.#streamKey(topic);
      let reply: Reply;
      const evicted: string[] = [];
      try {
        for (let attempt = 0; ; attempt++) {
          if (!this.#cluster) {
            const args = [this.#maxCount, this.#maxAge, this.#channel, store, this.#maxTotalBytes, this.#maxTopics];
            reply = await this.#client.pbPublishOne(4, this.#meta, this.#index, key, this.#bytesKey, newEpoch(), topic, data, headers, ...args);
            evicted.push(...((reply[0] === 'retry' ? reply.slice(1) : reply.slice(3)) as string[]));
          } else {
            reply = await this.#publishCluster(topic, key, data, headers, store, evicted);
          }
          if (reply[0] !== 'retry') break;
          if (attempt > 100) throw this.#unavailable(`Could not append to ${JSON.stringify(topic)}: 100 later ids got there first`);
        }
      } finally {
        // Best effort: the message is published whatever happens here. A stream left behind
        // expires by its TTL (its bytes are no longer counted).
        if (evicted.length > 0) await this.#dropEvicted(evicted).catch(this.#reportError);
      }
      const epoch = reply[0] as string;
      const seq = Number(reply[1]);
      const len = Number(reply[2]);
      this.#see(epoch, seq);
      if (epoch !== this.#ownEpoch) {
        this.#ownEpoch = epoch;
        this.#ownMax = seq;
      } else if (seq > this.#ownMax) this.#ownMax = seq;
      this.#published++;
      if (record.store) this.#countTopic(topic, len, record.size);
      return new Message(formatId(epoch, seq), seq, topic, record.data, record.headers, record.size, this.#clock.now());
    }, 'publish');
  }

  /**
   * Cluster: step 1 on the meta slot (the seq, the counts, what leaves), then step 2 on the
   * topic's slot (append, trim). Evicted topics (topic, score pairs) are added to `evicted`.
   */
  async #publishCluster(topic: string, key: string, data: string, headers: string, store: string, evicted: string[]): Promise<Reply> {
    const size = store === '1' && this.#maxCount > 0 ? Buffer.byteLength(data) + Buffer.byteLength(headers) : 0;
    const trimmed: (string | number)[] = [];
    for (const [t, bytes] of this.#trimmed) trimmed.push(t, bytes);
    this.#trimmed.clear();
    const next = await this.#client.pbPublishNext(3, this.#meta, this.#index, this.#bytesKey, newEpoch(), topic, this.#maxAge, store, size, this.#maxTotalBytes, this.#maxTopics, ...trimmed);
    evicted.push(...(next.slice(6) as string[]));
    const [epoch, seq, now, over, prev, counted] = next as string[];
    const reply = await this.#client.pbPublishAppend(1, key, epoch!, seq!, now!, topic, data, headers, this.#maxCount, this.#maxAge, this.#channel, store, over!, prev!, counted!);
    // Counted in step 1 but not appended (a retry): take it off again with the next publish.
    if (reply[0] === 'retry') this.#noteTrimmed(topic, size);
    else {
      // The stream was gone (expired, deleted): what step 1 counted of it before this entry goes too.
      this.#noteTrimmed(topic, Number(reply[3]) + (Number(reply[4]) === 1 ? Number(counted) : 0));
    }
    return reply;
  }

  /** Drops evicted topics' streams (what each eviction covered): one script on one server, one per key on a cluster. */
  async #dropEvicted(pairs: readonly string[]): Promise<void> {
    const keys: string[] = [];
    const scores: string[] = [];
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      keys.push(this.#streamKey(pairs[i]!));
      scores.push(pairs[i + 1]!);
    }
    if (!this.#cluster) await this.#client.pbDropEvicted(keys.length, ...keys, ...scores);
    else await Promise.all(keys.map((k, i) => this.#client.pbDropEvicted(1, k, scores[i]!)));
  }

  #noteTrimmed(topic: string, bytes: number): void {
    if (!(bytes > 0)) return;
    // Bounded: a correction dropped leaves the count high, so more is trimmed, never less.
    if (this.#trimmed.size >= 10_000 && !this.#trimmed.has(topic)) return;
    this.#trimmed.set(topic, (this.#trimmed.get(topic) ?? 0) + bytes);
  }

  read(topics: string | readonly (readonly string[])[], cursor: Cursor | null, limit: number): Promise<BackendRead> {
    if (this.closed) return Promise.reject(new ClosedError('The backend is closed'));
    const local = this.#readLocal(topics, cursor, limit);
    if (local !== undefined) {
      this.#localReadCount++;
      return Promise.resolve(local);
    }
    this.#redisReadCount++;
    return this.#call(() => this.#readRedis(topics, cursor, limit), 'read');
  }

  head(): Promise<string> {
    if (this.closed) return Promise.reject(new ClosedError('The backend is closed'));
    return this.#call(async () => {
      const reply = await this.#client.pbHead(1, this.#meta, newEpoch());
      return formatId(reply[0] as string, Number(reply[1]));
    }, 'read');
  }

  /**
   * Counters. `topics`, `messages` and `bytes` are this process's view: the logs it published to,
   * their length after its last publish, and their size estimated from what it published.
   */
  stats(): BackendStats {
    let messages = 0;
    let bytes = 0;
    for (const t of this.#topicStats.values()) {
      messages += t.messages;
      bytes += t.bytes;
    }
    return { topics: this.#topicStats.size, messages, bytes };
  }

  /** Counters, with the connection's state and the feed's. */
  redisStats(): RedisBackendStats {
    return {
      ...this.stats(),
      connected: this.#client.status === 'ready',
      live: this.#live,
      epoch: this.#epoch,
      published: this.#published,
      delivered: this.#delivered,
      localReads: this.#localReadCount,
      redisReads: this.#redisReadCount,
      resyncs: this.#resyncs,
      caughtUp: this.#caughtUp,
      late: this.#late,
      undecodable: this.#undecodable,
    };
  }

  // --- calls ---------------------------------------------------------------------------------

  /** Runs a command sequence: waits for the first connection, fails fast after it, maps errors. */
  #call<T>(run: () => Promise<T>, what: Work): Promise<T> {
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
        if (this.closed) return fail(new ClosedError('The backend is closed'));
        if (this.#client.status !== 'ready') {
          return fail(this.#unavailable(`Redis is unreachable (connection ${this.#client.status}): nothing was ${what === 'publish' ? 'published' : what === 'write' ? 'written' : 'read'}`));
        }
        this.#inflight.add(fail);
        run().then(
          (value) => {
            if (settled) return;
            settled = true;
            this.#inflight.delete(fail);
            resolve(value);
          },
          (error: unknown) => fail(this.#mapError(error, what)),
        );
      };
      if (this.#everReady || this.#client.status === 'ready') start();
      else this.#whenConnected().then(start, fail);
    });
  }

  /** Waits for `promise`, at most `connectTimeoutMs`; never rejects. */
  #bounded(promise: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.#clock.setTimer(resolve, this.#connectTimeoutMs);
      void promise.then(() => {
        timer.cancel();
        resolve();
      });
    });
  }

  #whenConnected(): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('The backend is closed'));
    if (this.#client.status === 'ready') return Promise.resolve();
    if (this.#everReady) return Promise.reject(this.#unavailable(`Redis is unreachable (connection ${this.#client.status})`));
    return new Promise<void>((resolve, reject) => {
      const timer = this.#clock.setTimer(() => {
        this.#readyWaiters.delete(waiter);
        reject(this.#unavailable(`Could not connect to Redis within ${this.#connectTimeoutMs} ms`));
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

  #mapError(error: unknown, what: Work): unknown {
    if (error instanceof InvalidCursorError || error instanceof ClosedError || error instanceof UnavailableError) return error;
    const text = error instanceof Error ? error.message : String(error);
    if (/timed out/i.test(text)) {
      return this.#unavailable(
        `Redis did not answer within ${this.#commandTimeoutMs} ms: the ${what} ${what === 'read' ? 'failed' : 'may or may not have been stored'}`,
        error,
      );
    }
    if (/writeable|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE/i.test(text)) {
      return this.#unavailable(`Redis is unreachable: ${what === 'publish' ? 'the message was not published' : what === 'write' ? 'nothing was written' : 'nothing was read'} (${text})`, error);
    }
    return this.#unavailable(`Redis answered the ${what} with an error: ${text}`, error);
  }

  #unavailable(message: string, cause?: unknown): UnavailableError {
    return new UnavailableError(message, { cause, retryAfterSeconds: this.#retryAfter });
  }

  readonly #reportError = (error: unknown): void => {
    if (redisChannels.error.hasSubscribers) redisChannels.error.publish({ backend: this, error });
    this.#onError?.(error);
  };

  // --- reads ---------------------------------------------------------------------------------

  async #readRedis(topics: string | readonly (readonly string[])[], cursor: Cursor | null, limit: number): Promise<BackendRead> {
    const exact = exactTopics(topics);
    const cEpoch = cursor === null ? '' : cursor.epoch;
    const cSeq = cursor === null ? '0' : String(cursor.seq);
    let epoch: string;
    let top: number;
    let gapAll: boolean;
    let after: number;
    let streams: { topic: string; gap: boolean; entries: StreamEntry[] }[] = [];
    if (!this.#cluster && exact !== undefined) {
      const keys = exact.map((t) => this.#streamKey(t));
      const reply = await this.#client.pbReadOne(2 + keys.length, this.#meta, this.#index, ...keys, newEpoch(), cEpoch, cSeq, limit, this.#maxAge, '', ...exact);
      if (reply[0] === 'ahead') throw aheadError(cursor!);
      epoch = reply[0] as string;
      top = Number(reply[1]);
      gapAll = Number(reply[2]) === 1;
      for (let i = 0; i < exact.length; i++) {
        streams.push({ topic: exact[i]!, gap: Number(reply[3 + 2 * i]) === 1, entries: reply[4 + 2 * i] as unknown as StreamEntry[] });
      }
      after = cursor !== null && cursor.epoch === epoch ? cursor.seq : -1;
    } else {
      const meta = await this.#client.pbReadMeta(2, this.#meta, this.#index, newEpoch(), cEpoch, cSeq, exact === undefined ? '1' : '0');
      epoch = meta[0] as string;
      top = Number(meta[1]);
      const dropped = Number(meta[2]);
      gapAll = false;
      after = -1;
      if (cursor !== null) {
        if (cursor.epoch !== epoch) gapAll = true;
        else if (cursor.seq > top) throw aheadError(cursor);
        else {
          after = cursor.seq;
          if (after < dropped) gapAll = true;
        }
      }
      let names = exact;
      if (names === undefined) {
        const patterns = topics as readonly (readonly string[])[];
        names = (meta[3] as string[]).filter((t) => patterns.some((p) => matchTokens(p, t.split('.'))));
      }
      streams = await this.#readStreams(names, after, top, limit);
    }
    // Merge by seq and keep the `limit` oldest. An entry that does not decode keeps its place
    // (so the cursor moves past it) but is not returned: the read says gap instead.
    let entries: (Message | number)[] = [];
    let more = false;
    let gap = gapAll;
    const now = this.#clock.now();
    for (const s of streams) {
      gap ||= s.gap;
      if (s.entries.length > limit) more = true;
      const n = Math.min(limit, s.entries.length);
      for (let i = 0; i < n; i++) entries.push(this.#fromEntry(epoch, s.topic, s.entries[i]!, now));
    }
    const seqOf = (e: Message | number): number => (typeof e === 'number' ? e : e._seq);
    if (streams.length > 1) entries.sort((a, b) => seqOf(a) - seqOf(b));
    if (entries.length > limit) {
      entries.length = limit;
      more = true;
    }
    const lastEntry = entries[entries.length - 1];
    if (entries.some((e) => typeof e === 'number')) {
      gap = true;
      entries = entries.filter((e) => typeof e !== 'number');
    }
    const messages = entries as Message[];
    this.#see(epoch, top);
    const next = lastEntry !== undefined ? formatId(epoch, seqOf(lastEntry)) : formatId(epoch, more ? Math.max(after, 0) : top);
    return { messages, gap, more, cursor: next };
  }

  /** Reads streams after `after` up to `last`: one script on one server, one per key on a cluster. */
  async #readStreams(names: readonly string[], after: number, last: number, limit: number): Promise<{ topic: string; gap: boolean; entries: StreamEntry[] }[]> {
    if (names.length === 0) return [];
    const run = async (chunk: readonly string[]): Promise<{ topic: string; gap: boolean; entries: StreamEntry[] }[]> => {
      const keys = chunk.map((t) => this.#streamKey(t));
      const reply = await this.#client.pbReadStreams(keys.length, ...keys, after, last, limit, this.#maxAge, ...chunk);
      return chunk.map((topic, i) => ({ topic, gap: Number(reply[2 * i]) === 1, entries: reply[2 * i + 1] as unknown as StreamEntry[] }));
    };
    const chunks: string[][] = [];
    const size = this.#cluster ? 1 : 256;
    for (let i = 0; i < names.length; i += size) chunks.push(names.slice(i, i + size));
    return (await Promise.all(chunks.map(run))).flat();
  }

  /** A stream entry as a message, or its sequence number when it does not decode (counted). */
  #fromEntry(epoch: string, topic: string, entry: StreamEntry, now: number): Message | number {
    const seq = seqOfStreamId(entry[0]);
    const fields = entry[1];
    let data = '';
    let headers: string | undefined;
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i] === 'd') data = fields[i + 1]!;
      else if (fields[i] === 'h') headers = fields[i + 1];
    }
    try {
      return new Message(formatId(epoch, seq), seq, topic, decodeData(data), decodeHeaders(headers), data.length - 1, now);
    } catch (error) {
      this.#badRecord(epoch, seq, error);
      return seq;
    }
  }

  /** A read answered from the messages this process received, or `undefined` when it cannot be sure. */
  #readLocal(topics: string | readonly (readonly string[])[], cursor: Cursor | null, limit: number): BackendRead | undefined {
    if (!this.#localReads || cursor === null || !this.#live || cursor.epoch !== this.#epoch) return undefined;
    const after = cursor.seq;
    // Read-your-writes: until this process's own publishes are back through the feed, ask Redis.
    const own = this.#ownEpoch;
    if (after < this.#coveredFrom || after > this.#lastSeq || (own !== undefined && (own !== this.#epoch || this.#ownMax > this.#lastSeq))) return undefined;
    const { messages, more, gap, trimmedBytes } = readTopics(this.#logs, topics, after, limit, this.#clock.now());
    this.#localBytes -= trimmedBytes;
    if (gap) return undefined; // trimmed here: Redis may still have it, and knows the truth
    const last = messages[messages.length - 1];
    return { messages, gap: false, more, cursor: last !== undefined ? last.id : formatId(this.#epoch, more ? after : this.#lastSeq) };
  }

  // --- the feed ------------------------------------------------------------------------------

  #onFeed(payload: string): void {
    const entry = parseFeed(payload);
    if (entry === undefined) {
      this.#undecodable++;
      return;
    }
    if (this.#held !== null) {
      this.#held.push(entry);
      if (this.#held.length > 1_000_000) this.#held = []; // stored ones are read again by the catch-up
      return;
    }
    if (this.#reorderMs > 0) this.#reorder(entry);
    else this.#deliverEntry(entry, true);
  }

  /**
   * Cluster mode: a publish on another node reaches this one's subscriber through the cluster
   * bus, later than one published on its own node, so the feed may arrive out of order. Entries
   * wait `reorderWindowMs` and leave in sequence order.
   */
  #reorder(entry: FeedEntry): void {
    const waiting = this.#reorderQueue;
    let i = waiting.length;
    while (i > 0 && waiting[i - 1]!.entry.seq > entry.seq) i--;
    waiting.splice(i, 0, { entry, due: this.#clock.now() + this.#reorderMs });
    this.#reorderTimer ??= this.#clock.setTimer(() => this.#flushReorder(), this.#reorderMs);
  }

  #flushReorder(): void {
    this.#reorderTimer = undefined;
    const now = this.#clock.now();
    const waiting = this.#reorderQueue;
    // Release the oldest entries whose window has passed, and any older ones queued before them.
    let last = -1;
    for (let i = 0; i < waiting.length; i++) if (waiting[i]!.due <= now) last = i;
    const out = waiting.splice(0, last + 1);
    for (const { entry } of out) {
      if (entry.epoch === this.#epoch && entry.seq <= this.#lastSeq) this.#late++;
      this.#deliverEntry(entry, true);
    }
    if (waiting.length > 0) {
      let next = Infinity;
      for (const w of waiting) next = Math.min(next, w.due);
      this.#reorderTimer = this.#clock.setTimer(() => this.#flushReorder(), Math.max(1, next - now));
    }
  }

  #deliverEntry(entry: FeedEntry, live: boolean): void {
    let data: unknown;
    let headers;
    try {
      data = decodeData(entry.data);
      headers = decodeHeaders(entry.headers);
    } catch (error) {
      // Dropped, counted, and nothing else believed of it (its epoch and seq may be as bad).
      // Local reads no longer cover what came before it: those go to Redis, which reports the gap.
      if (entry.epoch === this.#epoch && this.#coveredFrom !== Infinity) {
        this.#coveredFrom = Math.max(this.#coveredFrom, Math.min(entry.seq, this.#lastSeq + 1));
      }
      this.#badRecord(entry.epoch, entry.seq, error);
      return;
    }
    if (entry.epoch !== this.#epoch) {
      // A new epoch (Redis lost its data, or a process noticed it did): local reads start over.
      this.#epoch = entry.epoch;
      if (this.#ownEpoch !== entry.epoch) this.#ownEpoch = undefined;
      this.#seen = 0;
      this.#lastSeq = entry.seq;
      this.#clearLocal();
      this.#coveredFrom = live ? entry.seq - 1 : Infinity;
    }
    if (entry.seq > this.#lastSeq) this.#lastSeq = entry.seq;
    if (entry.seq > this.#seen) this.#seen = entry.seq;
    const message = new Message(formatId(entry.epoch, entry.seq), entry.seq, entry.topic, data, headers, entry.data.length - 1, this.#clock.now());
    if (this.#localReads && entry.seq > this.#coveredFrom && !entry.topic.startsWith('_INBOX.') && this.#maxCount > 0) this.#keepLocal(message);
    this.#delivered++;
    this.#deliver?.(message);
  }

  /**
   * Counts a record that does not decode and reports it, once per record: it is skipped by every
   * read after a cursor before it, and comes on the feed too. The ids remembered are bounded
   * (past 10,000, the oldest are forgotten and may be counted again).
   */
  #badRecord(epoch: string, seq: number, error: unknown): void {
    const id = formatId(epoch, seq);
    if (this.#badSeen.has(id)) return;
    if (this.#badSeen.size >= 10_000) this.#badSeen.delete(this.#badSeen.values().next().value!);
    this.#badSeen.add(id);
    this.#undecodable++;
    this.#reportError(error);
  }

  #keepLocal(message: Message): void {
    let log = this.#logs.get(message.topic);
    if (log === undefined) {
      if (this.#logs.size >= this.#localTopics) this.#dropLocalTopic();
      log = new MessageLog({ maxCount: this.#localCount, maxBytes: Number.MAX_SAFE_INTEGER, maxAgeMs: this.#maxAge < 0 ? Infinity : this.#maxAge });
      this.#logs.set(message.topic, log);
    }
    const bytes = log.bytes;
    log.append(message, message._time);
    this.#localBytes += log.bytes - bytes;
    // The local copies are bounded by the same byte budget as Redis: the oldest topics go first.
    while (this.#localBytes > this.#maxTotalBytes && this.#logs.size > 0) this.#dropLocalTopic();
  }

  /** Drops the oldest topic's local log: reads after what it held go to Redis from now on. */
  #dropLocalTopic(): void {
    for (const [topic, old] of this.#logs) {
      this.#logs.delete(topic);
      this.#localBytes -= old.bytes;
      this.#coveredFrom = Math.max(this.#coveredFrom, old.lastSeq);
      return;
    }
  }

  /** Forgets every local log. */
  #clearLocal(): void {
    this.#logs.clear();
    this.#localBytes = 0;
  }

  #onFeedLost(): void {
    this.#feedGen++;
    // From now on live messages wait for the catch-up (see #doResync).
    if (this.#epoch !== undefined && this.#attachStarted) this.#held ??= [];
    this.#live = false;
    this.#coveredFrom = Infinity;
    this.#clearLocal();
  }

  /**
   * (Re)subscribes to the feed and catches up: delivers every stored message after the last one
   * delivered, then what arrived meanwhile, then goes live. Retries until it succeeds or the
   * backend closes.
   */
  #resync(): Promise<void> {
    this.#resyncing ??= this.#doResync().finally(() => {
      this.#resyncing = undefined;
    });
    return this.#resyncing;
  }

  async #doResync(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      if (attempt > 0) await new Promise<void>((r) => this.#clock.setTimer(r, Math.min(50 * attempt, 1000)));
      if (this.closed) return;
      const first = this.#epoch === undefined;
      this.#live = false;
      // At the start every message is new; after a loss, live ones wait behind the catch-up, and
      // keep waiting across failed attempts (delivering one early would move the catch-up's
      // starting point past messages it has not read yet).
      if (!first) this.#held ??= [];
      try {
        await this.#sub.subscribe(this.#channel);
        const gen = this.#feedGen;
        await this.#whenConnected();
        let count = 0;
        let gap = false;
        if (first) {
          const head = await this.#client.pbHead(1, this.#meta, newEpoch());
          if (this.#epoch === undefined) this.#epoch = head[0] as string;
          if (this.#epoch === head[0]) this.#lastSeq = Math.max(this.#lastSeq, Number(head[1]));
          this.#see(head[0] as string, Number(head[1]));
        } else {
          ({ count, gap } = await this.#catchUp());
        }
        if (gen !== this.#feedGen) continue; // lost again meanwhile: once more
        // What arrived while catching up, without what the catch-up delivered.
        const held = this.#held ?? [];
        this.#held = null;
        for (const entry of held) {
          if (entry.epoch === this.#epoch && entry.seq <= this.#lastSeq) continue;
          this.#deliverEntry(entry, true);
        }
        this.#clearLocal();
        this.#coveredFrom = this.#lastSeq;
        this.#live = true;
        if (!first) {
          this.#resyncs++;
          this.#caughtUp += count;
          if (redisChannels.resync.hasSubscribers) redisChannels.resync.publish({ backend: this, caughtUp: count, gap, epoch: this.#epoch });
        }
        return;
      } catch (error) {
        if (this.closed) {
          this.#held = null;
          return;
        }
        this.#reportError(error);
      }
    }
  }

  /** Delivers every stored message published after the last one delivered, oldest first. */
  async #catchUp(): Promise<{ count: number; gap: boolean }> {
    const known = this.#epoch!;
    // Did Redis lose writes? Then a new epoch (the counter goes on), and cursors see a gap.
    const rec = await this.#client.pbRecover(1, this.#meta, newEpoch(), known, this.#seen);
    const epoch = rec[0] as string;
    const top = Number(rec[1]);
    let cursor: Cursor | null;
    if (epoch === known) cursor = { epoch, seq: Math.min(this.#lastSeq, top) };
    else if (Number(rec[2]) === 1) cursor = { epoch, seq: Math.min(this.#lastSeq, top) }; // rotated here: seqs go on
    else cursor = null; // a fresh Redis: everything in it is new to us
    let count = 0;
    let gap = epoch !== known;
    for (;;) {
      const page = await this.#readRedis(ALL, cursor, 1000);
      gap ||= page.gap;
      for (const m of page.messages) {
        if (m._seq <= this.#lastSeq && m.id.startsWith(`${this.#epoch}-`)) continue;
        this.#deliverCaughtUp(m);
        count++;
      }
      if (!page.more) break;
      if (count >= this.#catchUpLimit) {
        // Past the limit: skip to the head; cursors still read the rest from the logs.
        const head = await this.#client.pbHead(1, this.#meta, newEpoch());
        this.#epoch = head[0] as string;
        this.#lastSeq = Math.max(this.#lastSeq, Number(head[1]));
        break;
      }
      cursor = parseCursor(page.cursor);
    }
    if (this.#epoch !== epoch) {
      this.#epoch = epoch;
      this.#seen = 0;
    }
    return { count, gap };
  }

  #deliverCaughtUp(m: Message): void {
    const epoch = epochOf(m.id);
    if (epoch !== this.#epoch) {
      this.#epoch = epoch;
      if (this.#ownEpoch !== epoch) this.#ownEpoch = undefined;
      this.#seen = 0;
      this.#lastSeq = m._seq;
      this.#clearLocal();
    }
    if (m._seq > this.#lastSeq) this.#lastSeq = m._seq;
    if (m._seq > this.#seen) this.#seen = m._seq;
    this.#delivered++;
    this.#deliver?.(m);
  }

  // --- bookkeeping ---------------------------------------------------------------------------

  #streamKey(topic: string): string {
    return `${this.#prefix}{t:${topic}}`;
  }

  #see(epoch: string, seq: number): void {
    if (this.#epoch === undefined) this.#epoch = epoch;
    if (epoch === this.#epoch && seq > this.#seen) this.#seen = seq;
  }

  #countTopic(topic: string, len: number, size: number): void {
    let t = this.#topicStats.get(topic);
    if (t === undefined) {
      if (this.#topicStats.size >= 10_000) {
        for (const key of this.#topicStats.keys()) {
          this.#topicStats.delete(key);
          break;
        }
      }
      t = { messages: 0, bytes: 0 };
      this.#topicStats.set(topic, t);
    }
    const mean = t.messages > 0 ? t.bytes / t.messages : size;
    t.bytes = len * ((mean * 7 + size) / 8);
    t.messages = len;
  }

  /** Calls in flight finish first (QUIT is answered after them); new calls reject with ClosedError. */
  protected async onClose(): Promise<void> {
    this.#shutdown(false);
    await Promise.all([quit(this.#client), quit(this.#sub)]);
  }

  /** Calls in flight reject with ClosedError (or `reason`) at once; they may still have run. */
  protected onDestroy(reason: unknown): void {
    this.#shutdown(true, reason);
    this.#client.disconnect();
    this.#sub.disconnect();
  }

  #shutdown(hard: boolean, reason?: unknown): void {
    this.#reorderTimer?.cancel();
    this.#reorderQueue.length = 0;
    this.#live = false;
    this.#deliver = null;
    this.#clearLocal();
    const closed = new ClosedError('The backend is closed');
    if (hard) for (const reject of [...this.#inflight]) reject(reason ?? closed);
    for (const w of this.#readyWaiters) w.reject(closed);
    this.#readyWaiters.clear();
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

/** Exact topic names when `topics` names topics (no wildcard), else `undefined`. */
function exactTopics(topics: string | readonly (readonly string[])[]): string[] | undefined {
  if (typeof topics === 'string') return [topics];
  if (topics.some((p) => p.includes('*') || p.includes('>'))) return undefined;
  return [...new Set(topics.map((p) => p.join('.')))];
}

