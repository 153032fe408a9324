/**
 * What a {@link RedisBackend} takes, checked in one place, and the names of what it keeps in
 * Redis. The options are many (connections, bounds, the feed's local reads, cluster ordering),
 * so they, their defaults and their validation live apart from the backend that uses them: the
 * backend reads a {@link ResolvedRedisOptions} where every value is set and checked.
 *
 * @module
 */
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import type { Clock } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import * as check from '../core/validate.js';
import type { BackendStats } from '../pubsub/index.js';
import { DEFAULT_MAX_TOTAL_BYTES } from '../pubsub/backend.js';

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
   * {@link patchbay!UnavailableError} (the command may still have run).
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
   * The `Retry-After` (seconds) carried by {@link patchbay!UnavailableError}s, so HTTP answers say when to
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

/** {@link RedisBackendOptions} with every value set and checked. @internal */
export interface ResolvedRedisOptions {
  /** The options as given (connection settings are passed through to ioredis). */
  readonly options: RedisBackendOptions;
  readonly prefix: string;
  readonly maxCount: number;
  /** `history.maxAgeMs` rounded up, or `-1` for none. */
  readonly maxAge: number;
  readonly maxTotalBytes: number;
  readonly maxTopics: number;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retryAfterSeconds: number;
  readonly cluster: boolean;
  readonly localReads: boolean;
  readonly localTopics: number;
  readonly localCount: number;
  readonly catchUpLimit: number;
  readonly reorderWindowMs: number;
  readonly clock: Clock;
  readonly onError: ((error: unknown) => void) | undefined;
}

/**
 * Fills in and checks a {@link RedisBackend}'s options.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option.
 * @internal
 */
export function resolveRedisOptions(options: RedisBackendOptions | undefined): ResolvedRedisOptions {
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
  const maxCount = check.integerInRange('history.maxCount', history.maxCount ?? 1000, 0, 2 ** 31 - 1);
  const maxAge = history.maxAgeMs ?? 3_600_000;
  const cluster = opts.cluster !== undefined;
  return {
    options: opts,
    prefix,
    maxCount,
    maxAge: maxAge === Infinity ? -1 : Math.ceil(check.positiveNumber('history.maxAgeMs', maxAge)),
    maxTotalBytes: check.integerInRange('maxTotalBytes', opts.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES, 0, Number.MAX_SAFE_INTEGER),
    maxTopics: check.integerInRange('maxTopics', opts.maxTopics ?? 100_000, 1, 2 ** 31 - 1),
    commandTimeoutMs: check.integerInRange('commandTimeoutMs', opts.commandTimeoutMs ?? 5000, 1, 2 ** 31 - 1),
    connectTimeoutMs: check.integerInRange('connectTimeoutMs', opts.connectTimeoutMs ?? 10_000, 0, 2 ** 31 - 1),
    retryAfterSeconds: check.integerInRange('retryAfterSeconds', opts.retryAfterSeconds ?? 1, 0, 86_400),
    cluster,
    localReads: (opts.localReads ?? true) && !cluster,
    localTopics: check.integerInRange('localTopics', opts.localTopics ?? 10_000, 1, 10_000_000),
    localCount: Math.min(check.integerInRange('localCount', opts.localCount ?? 256, 1, 1_000_000), Math.max(maxCount, 1)),
    catchUpLimit: check.integerInRange('catchUpLimit', opts.catchUpLimit ?? 100_000, 0, 2 ** 31 - 1),
    reorderWindowMs: check.integerInRange('reorderWindowMs', opts.reorderWindowMs ?? (cluster ? 50 : 0), 0, 60_000),
    clock: check.optionalClock('clock', opts.clock),
    onError: check.optionalFunction('onError', opts.onError),
  };
}

/**
 * The keys and the channel of one prefix: a stream per topic (`<prefix>{t:<topic>}`, the hash
 * tag keeps a topic on one cluster slot), and the meta hash, topic index and byte counts on the
 * `{m}` slot. @internal
 */
export class RedisKeys {
  /** The meta hash: the epoch, the sequence counter, the bytes kept. */
  readonly meta: string;
  /** The sorted set of topics by their newest sequence number. */
  readonly index: string;
  /** The hash of bytes kept per topic. */
  readonly bytes: string;
  /** The feed channel. */
  readonly feed: string;
  readonly #prefix: string;

  constructor(prefix: string) {
    this.#prefix = prefix;
    this.meta = `${prefix}{m}:meta`;
    this.index = `${prefix}{m}:topics`;
    this.bytes = `${prefix}{m}:bytes`;
    this.feed = `${prefix}feed`;
  }

  /** The stream key of `topic`. */
  stream(topic: string): string {
    return `${this.#prefix}{t:${topic}}`;
  }
}
