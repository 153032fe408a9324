import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { PubSubBroker } from '../../src/index.js';
import { RedisBackend, type RedisBackendOptions } from '../../src/redis/index.js';
import { perTest, type TestResources } from '../helpers.js';
import { testRedis, type TestRedis, uniquePrefix } from './redis-server.js';

/** What {@link redisSuite} gives a suite: the test Redis, a raw client on it, and per-test cleanups. */
export interface RedisSuite {
  readonly redis: TestRedis;
  /** A plain ioredis client, for writing and reading keys by hand. */
  readonly raw: Redis;
  /** What the running test started, closed after it ({@link perTest}). */
  readonly cleanups: TestResources;
}

/**
 * Registers, in the calling `describe`, the hooks that start (or share) the test Redis with a raw
 * client before the suite and let go of both after the suite.
 */
export function redisSuite(): RedisSuite {
  let redis: TestRedis | undefined;
  let raw: Redis | undefined;
  beforeAll(async () => {
    redis = await testRedis();
    raw = new Redis(redis.url);
  });
  afterAll(async () => {
    raw?.disconnect();
    await redis?.dispose();
  });
  return {
    get redis() {
      return redis!;
    },
    get raw() {
      return raw!;
    },
    cleanups: perTest,
  };
}

/** Two backends ("processes" A and B) on one Redis and a fresh prefix, each with its broker; closed by `cleanups`. */
export async function backendPair(
  url: string,
  cleanups: TestResources,
  options: Partial<RedisBackendOptions> = {},
  optionsB: Partial<RedisBackendOptions> = {},
  prefix = uniquePrefix(),
) {
  const a = new RedisBackend({ url, prefix, ...options });
  const b = new RedisBackend({ url, prefix, ...options, ...optionsB });
  const brokerA = new PubSubBroker({ backend: a });
  const brokerB = new PubSubBroker({ backend: b });
  cleanups.defer(async () => {
    await brokerA.close();
    await brokerB.close();
    await a.close();
    await b.close();
  });
  await Promise.all([a.ready(), b.ready()]);
  return { prefix, a, b, brokerA, brokerB };
}

/** One backend with its broker on a fresh (or given) prefix, ready; closed by `cleanups`. */
export async function backendWithBroker(url: string, cleanups: TestResources, options: Partial<RedisBackendOptions> = {}, prefix = uniquePrefix()) {
  const backend = new RedisBackend({ url, prefix, ...options });
  const broker = new PubSubBroker({ backend });
  cleanups.defer(async () => {
    await broker.close();
    await backend.close();
  });
  await backend.ready();
  return { prefix, backend, broker };
}

/** What the streams under `prefix` really hold: bytes per topic (field values, as stored). */
export async function heldBytes(raw: Redis, prefix: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}{t:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      let bytes = 0;
      for (const [, fields] of await raw.xrange(key, '-', '+')) for (let i = 1; i < fields.length; i += 2) bytes += Buffer.byteLength(fields[i]!);
      out.set(key.slice(prefix.length + 3, -1), bytes);
    }
  } while (cursor !== '0');
  return out;
}
