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
 * ## The pieces
 *
 * This file holds the backend itself: publishing, the feed (fan-out to the broker, local
 * reads, catching up after a loss) and the bookkeeping that ties them together. Apart from it:
 * `redis-options.ts` (the options, their checks, the key names), `connection.ts` (the two
 * connections and the fault rules above), `redis-reads.ts` (reads answered by Redis),
 * `scripts.ts` (the Lua) and `codec.ts` (what travels through Redis).
 *
 * @module
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import type { Cluster, Redis } from 'ioredis';
import type { Clock, ClockTimer } from '../core/clock.js';
import { ClosedError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import { type Backend, type BackendRead, type BackendStats, type Cursor, Message, MessageLog, type PublishRecord } from '../pubsub/index.js';
import { epochOf, formatId, newEpoch, parseCursor } from '../pubsub/message.js';
import { readTopics } from '../pubsub/message-log.js';
import { decodeData, decodeHeaders, encodeData, encodeHeaders, type FeedEntry, parseFeed } from './codec.js';
import { type ChannelListener, type Client, RedisConnection, type Reply, type Scripted } from './connection.js';
import { RedisReader } from './redis-reads.js';
import { RedisKeys, type RedisBackendOptions, type RedisBackendStats, resolveRedisOptions } from './redis-options.js';

// The job store reaches these through this module.

/** What `patchbay:redis:*` diagnostics channels carry. */
export const redisChannels = {
  /** `{ backend, error }`: a connection error. */
  error: diagnosticsChannel.channel('patchbay:redis:error'),
  /** `{ backend, caughtUp, gap, epoch }`: the feed came back and caught up. */
  resync: diagnosticsChannel.channel('patchbay:redis:resync'),
} as const;

/** All topics, for catching up. */
const ALL: readonly (readonly string[])[] = [['>']];

/** Most publishes sent in one script call (see `#flush`). */
const BATCH_MAX = 128;
/** Most bytes of data and headers sent in one script call. */
const BATCH_MAX_BYTES = 512 * 1024;

/** A publish waiting to go in the next batch. */
interface Pending {
  readonly record: PublishRecord;
  readonly data: string;
  readonly headers: string;
  readonly store: string;
  readonly resolve: (message: Message) => void;
  readonly reject: (error: unknown) => void;
}

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
  readonly #conn: RedisConnection;
  readonly #client: Client & Scripted;
  readonly #cluster: boolean;
  readonly #keys: RedisKeys;
  readonly #reader: RedisReader;
  readonly #prefix: string;
  readonly #maxCount: number;
  readonly #maxAge: number;
  readonly #maxTotalBytes: number;
  readonly #maxTopics: number;
  /** Cluster: bytes that appends trimmed per topic, taken off the count by the next publish. */
  readonly #trimmed = new Map<string, number>();
  readonly #connectTimeoutMs: number;
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

  /** One server: publishes waiting for the batch in flight to be answered (see `#flush`). */
  #batch: Pending[] = [];
  #batchBytes = 0;
  #flushQueued = false;
  /** Publish script calls sent and not yet answered. */
  #sending = 0;
  /** Set while `close()` sends what was queued before it: those calls still go out. */
  #draining = false;

  #deliver: ((message: Message) => void) | null = null;
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

  #publishedCount = 0;
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
    const o = resolveRedisOptions(options);
    this.#prefix = o.prefix;
    this.#keys = new RedisKeys(o.prefix);
    this.#maxCount = o.maxCount;
    this.#maxAge = o.maxAge;
    this.#maxTotalBytes = o.maxTotalBytes;
    this.#maxTopics = o.maxTopics;
    this.#connectTimeoutMs = o.connectTimeoutMs;
    this.#cluster = o.cluster;
    this.#localReads = o.localReads;
    this.#localTopics = o.localTopics;
    this.#localCount = o.localCount;
    this.#catchUpLimit = o.catchUpLimit;
    this.#reorderMs = o.reorderWindowMs;
    this.#clock = o.clock;
    this.#onError = o.onError;
    this.#conn = new RedisConnection(
      { options: o.options, commandTimeoutMs: o.commandTimeoutMs, connectTimeoutMs: o.connectTimeoutMs, retryAfterSeconds: o.retryAfterSeconds, feedChannel: this.#keys.feed, clock: o.clock },
      {
        feed: (payload) => this.#onFeed(payload),
        subscriberLost: () => this.#onFeedLost(),
        subscriberReady: () => {
          if (this.#attachStarted && !this.#live && this.#resyncing === undefined && !this.closed) void this.#resync();
        },
        error: this.#reportError,
        closed: () => this.closed && !this.#draining,
      },
    );
    this.#client = this.#conn.client;
    this.#reader = new RedisReader(this.#client, this.#keys, o, {
      badRecord: (epoch, seq, error) => this.#badRecord(epoch, seq, error),
      see: (epoch, seq) => this.#see(epoch, seq),
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
    return this.#conn.call(() => run(this.#client), what);
  }

  /** Defines Lua scripts as commands on the command connection (each with one key). @internal */
  _defineScripts(scripts: Readonly<Record<string, string>>): void {
    this.#conn.defineScripts(scripts);
  }

  /**
   * Hears another channel on this backend's subscriber connection; `ready` resolves once it is
   * subscribed. After the connection comes back the channel is subscribed again and listeners are
   * told to resync. @internal
   */
  _listen(channel: string, listener: ChannelListener): { ready: Promise<void>; stop: () => void } {
    return this.#conn.listen(channel, listener);
  }

  /**
   * Resolves once the command connection is ready and the feed is live (subscribed and caught
   * up), or rejects after `connectTimeoutMs`.
   */
  async ready(): Promise<void> {
    await this.#conn.whenConnected();
    const deadline = this.#clock.now() + this.#connectTimeoutMs;
    while (!this.#live && this.#attachStarted && !this.closed) {
      if (this.#clock.now() > deadline) throw this.#conn.unavailable('The Redis feed did not come up in time');
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
    if (startup !== undefined) return this.#conn.bounded(startup).then(() => this.#enqueue(record, data, headers, store));
    return this.#enqueue(record, data, headers, store);
  }

  /**
   * One server: a publish goes out at once when no publish script is waiting for its answer;
   * while one is, publishes queue and leave together, in order, as one script call (at most
   * {@link BATCH_MAX} messages and {@link BATCH_MAX_BYTES} bytes), once this turn of the event
   * loop has queued what it will. One call per batch instead of one per message is what lets a
   * burst keep up: the meta hash, the clock and each stream's length are read once, and the
   * client writes one command. Ids are taken in the order of the calls to `publish`.
   */
  #enqueue(record: PublishRecord, data: string, headers: string, store: string): Promise<Message> {
    if (this.#cluster) return this.#publish(record, data, headers, store);
    if (this.closed && !this.#draining) return Promise.reject(new ClosedError('The backend is closed'));
    return new Promise<Message>((resolve, reject) => {
      this.#batch.push({ record, data, headers, store, resolve, reject });
      this.#batchBytes += data.length + headers.length;
      if (this.#sending === 0 || this.#batch.length >= BATCH_MAX || this.#batchBytes >= BATCH_MAX_BYTES) this.#flush();
      else if (!this.#flushQueued) {
        this.#flushQueued = true;
        setImmediate(this.#flushLater);
      }
    });
  }

  readonly #flushLater = (): void => {
    this.#flushQueued = false;
    this.#flush();
  };

  /** Sends what is queued: one message as one publish, more as one batch. */
  #flush(): void {
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
    this.#batchBytes = 0;
    this.#sending++;
    const done = (): void => {
      this.#sending--;
      if (this.#sending === 0 && this.#batch.length > 0 && !this.#flushQueued) this.#flush();
    };
    if (batch.length === 1) {
      const p = batch[0]!;
      this.#publish(p.record, p.data, p.headers, p.store).then(
        (m) => {
          done();
          p.resolve(m);
        },
        (error: unknown) => {
          done();
          p.reject(error);
        },
      );
      return;
    }
    this.#publishMany(batch).then(done, done);
  }

  /** One server: publishes a batch with one script call, and settles each of its publishes. */
  async #publishMany(batch: readonly Pending[]): Promise<void> {
    let reply: Reply;
    try {
      reply = await this.#conn.call(async () => {
        const keys = this.#keys;
        const streamKeys: string[] = [];
        const topics: string[] = [];
        const numbers = new Map<string, number>();
        const args: (string | number)[] = [];
        for (const p of batch) {
          const topic = p.record.topic;
          let k = numbers.get(topic);
          if (k === undefined) {
            topics.push(topic);
            streamKeys.push(keys.stream(topic));
            k = topics.length;
            numbers.set(topic, k);
          }
          args.push(k, p.store, p.data, p.headers);
        }
        const evicted: string[] = [];
        try {
          const r = await this.#client.pbPublishMany(
            3 + streamKeys.length,
            keys.meta,
            keys.index,
            keys.bytes,
            ...streamKeys,
            newEpoch(),
            this.#maxCount,
            this.#maxAge,
            keys.feed,
            this.#maxTotalBytes,
            this.#maxTopics,
            batch.length,
            ...args,
            ...topics,
          );
          for (let i = 2 + 2 * batch.length; i < r.length; i++) evicted.push(r[i] as string);
          return r;
        } finally {
          if (evicted.length > 0) await this.#dropEvicted(evicted).catch(this.#reportError);
        }
      }, 'publish');
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    const epoch = reply[0] as string;
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      const seq = reply[2 + 2 * i] as string;
      // The stream held a later id (written by hand): nothing was written for it; once more alone.
      if (seq === 'retry') this.#publish(p.record, p.data, p.headers, p.store).then(p.resolve, p.reject);
      else p.resolve(this.#published(p.record, epoch, Number(seq), Number(reply[3 + 2 * i])));
    }
  }

  /** Notes a publish Redis answered, and makes its message. */
  #published(record: PublishRecord, epoch: string, seq: number, len: number): Message {
    this.#see(epoch, seq);
    if (epoch !== this.#ownEpoch) {
      this.#ownEpoch = epoch;
      this.#ownMax = seq;
    } else if (seq > this.#ownMax) this.#ownMax = seq;
    this.#publishedCount++;
    if (record.store) this.#countTopic(record.topic, len, record.size);
    return new Message(formatId(epoch, seq), seq, record.topic, record.data, record.headers, record.size, this.#clock.now());
  }

  #publish(record: PublishRecord, data: string, headers: string, store: string): Promise<Message> {
    return this.#conn.call(async () => {
      const topic = record.topic;
      const key = this.#keys.stream(topic);
      let reply: Reply;
      const evicted: string[] = [];
      try {
        for (let attempt = 0; ; attempt++) {
          if (!this.#cluster) {
            const keys = this.#keys;
            reply = await this.#client.pbPublishOne(4, keys.meta, keys.index, key, keys.bytes, newEpoch(), topic, data, headers, this.#maxCount, this.#maxAge, keys.feed, store, this.#maxTotalBytes, this.#maxTopics);
            // Evicted (topic, score) pairs follow the answer: rarely any, so no copy per publish.
            for (let i = reply[0] === 'retry' ? 1 : 3; i < reply.length; i++) evicted.push(reply[i] as string);
          } else {
            reply = await this.#publishCluster(topic, key, data, headers, store, evicted);
          }
          if (reply[0] !== 'retry') break;
          if (attempt > 100) throw this.#conn.unavailable(`Could not append to ${JSON.stringify(topic)}: 100 later ids got there first`);
        }
      } finally {
        // Best effort: the message is published whatever happens here. A stream left behind
        // expires by its TTL (its bytes are no longer counted).
        if (evicted.length > 0) await this.#dropEvicted(evicted).catch(this.#reportError);
      }
      return this.#published(record, reply[0] as string, Number(reply[1]), Number(reply[2]));
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
    const next = await this.#client.pbPublishNext(3, this.#keys.meta, this.#keys.index, this.#keys.bytes, newEpoch(), topic, this.#maxAge, store, size, this.#maxTotalBytes, this.#maxTopics, ...trimmed);
    evicted.push(...(next.slice(6) as string[]));
    const [epoch, seq, now, over, prev, counted] = next as string[];
    const reply = await this.#client.pbPublishAppend(1, key, epoch!, seq!, now!, topic, data, headers, this.#maxCount, this.#maxAge, this.#keys.feed, store, over!, prev!, counted!);
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
      keys.push(this.#keys.stream(pairs[i]!));
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
    return this.#conn.call(() => this.#reader.read(topics, cursor, limit), 'read');
  }

  head(): Promise<string> {
    if (this.closed) return Promise.reject(new ClosedError('The backend is closed'));
    return this.#conn.call(async () => {
      const reply = await this.#client.pbHead(1, this.#keys.meta, newEpoch());
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
      published: this.#publishedCount,
      delivered: this.#delivered,
      localReads: this.#localReadCount,
      redisReads: this.#redisReadCount,
      resyncs: this.#resyncs,
      caughtUp: this.#caughtUp,
      late: this.#late,
      undecodable: this.#undecodable,
    };
  }

  readonly #reportError = (error: unknown): void => {
    if (redisChannels.error.hasSubscribers) redisChannels.error.publish({ backend: this, error });
    this.#onError?.(error);
  };

  // --- reads ---------------------------------------------------------------------------------

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
        await this.#conn.sub.subscribe(this.#keys.feed);
        const gen = this.#feedGen;
        await this.#conn.whenConnected();
        let count = 0;
        let gap = false;
        if (first) {
          const head = await this.#client.pbHead(1, this.#keys.meta, newEpoch());
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
    const rec = await this.#client.pbRecover(1, this.#keys.meta, newEpoch(), known, this.#seen);
    const epoch = rec[0] as string;
    const top = Number(rec[1]);
    let cursor: Cursor | null;
    if (epoch === known) cursor = { epoch, seq: Math.min(this.#lastSeq, top) };
    else if (Number(rec[2]) === 1) cursor = { epoch, seq: Math.min(this.#lastSeq, top) }; // rotated here: seqs go on
    else cursor = null; // a fresh Redis: everything in it is new to us
    let count = 0;
    let gap = epoch !== known;
    for (;;) {
      const page = await this.#reader.read(ALL, cursor, 1000);
      gap ||= page.gap;
      for (const m of page.messages) {
        if (m._seq <= this.#lastSeq && m.id.startsWith(`${this.#epoch}-`)) continue;
        this.#deliverCaughtUp(m);
        count++;
      }
      if (!page.more) break;
      if (count >= this.#catchUpLimit) {
        // Past the limit: skip to the head; cursors still read the rest from the logs.
        const head = await this.#client.pbHead(1, this.#keys.meta, newEpoch());
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
    // Publishes queued before close() still go out, ahead of QUIT.
    this.#draining = true;
    try {
      this.#flush();
    } finally {
      this.#draining = false;
    }
    this.#shutdown(false);
    await this.#conn.quit();
  }

  /** Calls in flight reject with ClosedError (or `reason`) at once; they may still have run. */
  protected onDestroy(reason: unknown): void {
    this.#shutdown(true, reason);
    this.#conn.disconnect();
  }

  #shutdown(hard: boolean, reason?: unknown): void {
    this.#reorderTimer?.cancel();
    this.#reorderQueue.length = 0;
    const queued = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    for (const p of queued) p.reject(reason ?? new ClosedError('The backend is closed'));
    this.#live = false;
    this.#deliver = null;
    this.#clearLocal();
    this.#conn.shutdown(hard, reason);
  }
}
