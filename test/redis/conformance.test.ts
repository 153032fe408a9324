import { afterAll, beforeAll, describe } from 'vitest';
import { RedisBackend } from '../../src/redis/index.js';
import { backendConformance } from '../conformance/backend-kit.js';
import { redisUnavailableReason, testRedis, type TestRedis, uniquePrefix } from './redis-server.js';

describe.skipIf(redisUnavailableReason !== undefined)('RedisBackend', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await testRedis();
  });
  afterAll(async () => {
    await redis?.dispose();
  });

  backendConformance('RedisBackend', () =>
    Promise.resolve({
      backend: new RedisBackend({ url: redis.url, prefix: uniquePrefix('kit'), history: { maxCount: 10 } }),
      maxCount: 10,
      dispose: () => Promise.resolve(),
      bounded: (bounds) => new RedisBackend({ url: redis.url, prefix: uniquePrefix('kitb'), history: { maxCount: 10 }, ...bounds }),
    }),
  );

  backendConformance('RedisBackend without local reads', () =>
    Promise.resolve({
      backend: new RedisBackend({ url: redis.url, prefix: uniquePrefix('kitr'), history: { maxCount: 10 }, localReads: false }),
      maxCount: 10,
      dispose: () => Promise.resolve(),
      bounded: (bounds) => new RedisBackend({ url: redis.url, prefix: uniquePrefix('kitrb'), history: { maxCount: 10 }, localReads: false, ...bounds }),
    }),
  );
});
