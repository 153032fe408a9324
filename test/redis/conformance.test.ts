import { describe } from 'vitest';
import { RedisBackend } from '../../src/redis/index.js';
import { backendConformance } from '../conformance/backend-kit.js';
import { redisUnavailableReason, uniquePrefix } from './redis-server.js';
import { redisSuite } from './helpers.js';

describe.skipIf(redisUnavailableReason !== undefined)('RedisBackend', () => {
  const suite = redisSuite();

  backendConformance('RedisBackend', () =>
    Promise.resolve({
      backend: new RedisBackend({ url: suite.redis.url, prefix: uniquePrefix('kit'), history: { maxCount: 10 } }),
      maxCount: 10,
      dispose: () => Promise.resolve(),
      bounded: (bounds) => new RedisBackend({ url: suite.redis.url, prefix: uniquePrefix('kitb'), history: { maxCount: 10 }, ...bounds }),
    }),
  );

  backendConformance('RedisBackend without local reads', () =>
    Promise.resolve({
      backend: new RedisBackend({ url: suite.redis.url, prefix: uniquePrefix('kitr'), history: { maxCount: 10 }, localReads: false }),
      maxCount: 10,
      dispose: () => Promise.resolve(),
      bounded: (bounds) => new RedisBackend({ url: suite.redis.url, prefix: uniquePrefix('kitrb'), history: { maxCount: 10 }, localReads: false, ...bounds }),
    }),
  );
});
