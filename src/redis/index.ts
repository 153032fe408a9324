/**
 * The Redis backend (`patchbay/redis`): topics, logs and wake-ups shared by every process that
 * uses one Redis (7.0 or later), through ioredis, an optional peer dependency. Give a
 * {@link RedisBackend} to a `PubSubBroker`; long polls, SSE streams and subscriptions on any
 * process then see every publish, and replay after a cursor works whichever process a client
 * reconnects to. Give a {@link RedisJobStore} to every process's `SharedPollHandle` and they share
 * jobs: any process reads, awaits and cancels a job another started.
 *
 * @module patchbay/redis
 */
export { RedisBackend, redisChannels } from './redis-backend.js';
export { type RedisBackendOptions, type RedisBackendStats, type RedisClusterConfig, type RedisHistoryLimits } from './redis-options.js';
export { RedisJobStore, type RedisJobStoreOptions } from './job-store.js';
