/**
 * RedisJobStore through the job store kit (two registries, each with its own connections, on one
 * redis-server), plus what is particular to Redis: keys under the prefix with one hash tag, key
 * TTLs that clean up, and a store that cannot reach Redis answering 503.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, PollHandler, type PollJobContext, pollChannels, SharedPollHandle, UnavailableError } from '../../src/index.js';
import { RedisBackend, RedisJobStore } from '../../src/redis/index.js';
import { jobStoreConformance } from '../conformance/job-store-kit.js';
import { eventually, serveRig } from '../helpers.js';
import { freePort, REDIS_BINARY, redisUnavailableReason, startRedis, uniquePrefix } from './redis-server.js';
import { redisSuite } from './helpers.js';

describe.skipIf(redisUnavailableReason !== undefined)('RedisJobStore', () => {
  const suite = redisSuite();

  jobStoreConformance('RedisJobStore', (clock) => {
    const prefix = uniquePrefix('jobs');
    const a = new RedisJobStore({ url: suite.redis.url, prefix, clock });
    const b = new RedisJobStore({ url: suite.redis.url, prefix, clock });
    return Promise.resolve({
      a,
      b,
      sever: () => a.destroy(),
      dispose: async () => {
        a.destroy();
        await b.close();
      },
    });
  });

  it('keeps every key under the prefix on one hash tag, and key TTLs clean up finished jobs', async () => {
    const prefix = uniquePrefix('keys');
    const backend = new RedisBackend({ url: suite.redis.url, prefix });
    const store = new RedisJobStore({ backend });
    const jobs = new SharedPollHandle({ store, ttlMs: 200, goneMs: 200 });
    const probe = new RedisBackend({ url: suite.redis.url, prefix: uniquePrefix('probe') });
    try {
      await store.ready();
      const job = await jobs.submit(() => ({ ok: true }), { idempotencyKey: 'a key of any length '.repeat(50) });
      expect((await job.done()).state).toBe('succeeded');
      const keys = await probe._command((client) => (client as unknown as { keys(p: string): Promise<string[]> }).keys(`${prefix}*`), 'read');
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) expect(key.startsWith(`${prefix}{j}:`)).toBe(true);
      // Without a reader, Redis's own TTLs remove the job and its key (the tombstone after goneMs).
      await jobs.close();
      let left = keys;
      await eventually(
        async () => {
          left = await probe._command((client) => (client as unknown as { keys(p: string): Promise<string[]> }).keys(`${prefix}*`), 'read');
          return left.every((k) => !k.includes(':job:') && !k.includes(':key:') && !k.includes(':gone:'));
        },
        "Redis's TTLs to remove the job's keys",
        { timeoutMs: 5000 },
      );
      expect(left.filter((k) => k.includes(':job:') || k.includes(':key:') || k.includes(':gone:'))).toEqual([]);
    } finally {
      await jobs.close();
      await store.close();
      await backend.close();
      await probe.close();
    }
  });

  it('a lease released with live jobs left runs out at once: the next reap fails them', async () => {
    const store = new RedisJobStore({ url: suite.redis.url, prefix: uniquePrefix('release') });
    try {
      const lost = { name: 'WorkerLostError', code: 'PB_ERR_WORKER_LOST', message: 'gone' };
      await store.create({ id: 'job1', owner: 'o1', ttlMs: 60_000, goneMs: 60_000, leaseMs: 60_000 });
      await store.update('job1', { kind: 'running' });
      await store.create({ id: 'job2', owner: 'o2', ttlMs: 60_000, goneMs: 60_000, leaseMs: 60_000 });
      await store.update('job2', { kind: 'canceled' });
      await store.release('o1');
      await store.release('o2');
      expect(await store.reap(lost)).toBe(1);
      expect(await store.read('job1')).toMatchObject({ state: 'failed', error: lost, version: 3 });
      expect(await store.read('job2')).toMatchObject({ state: 'canceled' });
      expect(await store.reap(lost)).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('remembers at most maxTombstones ended ids as gone: the oldest answer 404 early, the newest 410', async () => {
    const clock = new ManualClock(1_000_000);
    const prefix = uniquePrefix('gone');
    const store = new RedisJobStore({ url: suite.redis.url, prefix, clock, maxTombstones: 5 });
    const jobs = new SharedPollHandle({ clock, store, ttlMs: 1000, goneMs: 60_000 });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        const job = await jobs.submit(() => i);
        await job.done();
        ids.push(job.id);
        clock.advance(10); // each ends a little later than the one before
      }
      clock.advance(1000); // every outcome past its TTL
      await eventually(() => jobs.stats().expired === 12, 'the outcomes to expire');
      const other = new SharedPollHandle({ clock, store });
      try {
        for (const id of ids.slice(0, 7)) await expect(other.lookup(id)).rejects.toMatchObject({ code: 'PB_ERR_NOT_FOUND' });
        for (const id of ids.slice(7)) await expect(other.lookup(id)).rejects.toMatchObject({ code: 'PB_ERR_GONE' });
      } finally {
        await other.close();
      }
      const card = await store.backend._command((c) => (c as unknown as { zcard(k: string): Promise<number> }).zcard(`${prefix}{j}:gone`), 'read');
      expect(card).toBe(5);
    } finally {
      await jobs.close();
      await store.close();
    }
  });

  it('refuses a backend together with connection options, and a bad clock', () => {
    const backend = new RedisBackend({ url: suite.redis.url, prefix: uniquePrefix('bad') });
    expect(() => new RedisJobStore({ backend, url: suite.redis.url })).toThrow(/either `backend`/);
    expect(() => new RedisJobStore({ backend, clock: {} as never })).toThrow(/Clock/);
    backend.destroy();
  });

  it('answers 503 with Retry-After when Redis cannot be reached, and a start creates nothing', async () => {
    const port = await freePort();
    const clock = new ManualClock();
    const store = new RedisJobStore({ url: `redis://127.0.0.1:${port}`, prefix: uniquePrefix('down'), connectTimeoutMs: 200, retryAfterSeconds: 3, redis: { retryStrategy: () => 50 } });
    const jobs = new SharedPollHandle({ clock, store });
    const handler = new PollHandler({ jobs, run: () => 1 });
    const server = await serveRig((req, res) => void handler.handle(req, res));
    try {
      await expect(jobs.lookup('AAAAAAAAAAAAAAAA')).rejects.toBeInstanceOf(UnavailableError);
      const start = await fetch(`${server.url}/jobs`, { method: 'POST' });
      expect(start.status).toBe(503);
      expect(start.headers.get('retry-after')).toBe('3');
      expect(((await start.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_UNAVAILABLE');
      const read = await fetch(`${server.url}/jobs/AAAAAAAAAAAAAAAA`);
      expect(read.status).toBe(503);
      expect(jobs.stats()).toMatchObject({ pending: 0, started: 0 });
    } finally {
      await server.close();
      await handler.close();
      await jobs.close();
      store.destroy();
    }
  });

  it.skipIf(REDIS_BINARY === undefined)('writes an outcome reached while redis-server was down once it is back; the other registry hears it', async () => {
    const own = await startRedis({ persist: true });
    const prefix = uniquePrefix('restart');
    const storeA = new RedisJobStore({ url: own.url, prefix, commandTimeoutMs: 1000, redis: { retryStrategy: () => 50 } });
    const storeB = new RedisJobStore({ url: own.url, prefix, commandTimeoutMs: 1000, redis: { retryStrategy: () => 50 } });
    const A = new SharedPollHandle({ store: storeA, leaseMs: 60_000 });
    const B = new SharedPollHandle({ store: storeB, leaseMs: 60_000 });
    try {
      await Promise.all([storeA.ready(), storeB.ready()]);
      let ctx: PollJobContext | undefined;
      let finish!: (value: string) => void;
      const job = await A.submit((c) => {
        ctx = c;
        return new Promise<string>((r) => {
          finish = r;
        });
      });
      await eventually(() => ctx !== undefined && job.state === 'running', 'the job to run');
      const onB = await B.lookup(job.id);
      const outcome = onB.done();
      await own.stop();
      const failures: { what: string }[] = [];
      const onFailure = (message: unknown): void => void failures.push(message as { what: string });
      pollChannels.storeError.subscribe(onFailure);
      finish('made it');
      try {
        await eventually(() => failures.some((f) => f.what === 'write'), 'the outcome write to fail'); // while Redis is down...
      } finally {
        pollChannels.storeError.unsubscribe(onFailure);
      }
      expect(job.state).toBe('running'); // ...and the outcome is not claimed before the store has it
      await own.start();
      // ...and is retried (every second) until Redis takes it; B re-reads what it holds when its
      // subscriber connection is back.
      expect(await outcome).toMatchObject({ state: 'succeeded', result: 'made it' });
      expect(job.state).toBe('succeeded');
    } finally {
      await A.close();
      await B.close();
      await storeA.close();
      await storeB.close();
      await own.dispose();
    }
  }, 30_000);
});
