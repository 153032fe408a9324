import { fc } from '@fast-check/vitest';
import { afterEach, describe, expect, it } from 'vitest';
import { LongPollHandler, type Message, parseCursor, SseHandler, UnavailableError } from '../../src/index.js';
import { RedisBackend, type RedisBackendOptions } from '../../src/redis/index.js';
import { eventually, perTest, readSse, serveRig } from '../helpers.js';
import { backendPair, redisSuite } from './helpers.js';
import { REDIS_BINARY, redisUnavailableReason, startRedis, type TestRedis } from './redis-server.js';

const cleanups = perTest;

/** Two backends ("processes" A and B) on one Redis and prefix, each with its broker. */
function pair(url: string, options: Partial<RedisBackendOptions> = {}, optionsB: Partial<RedisBackendOptions> = {}) {
  return backendPair(url, cleanups, options, optionsB);
}

describe.skipIf(redisUnavailableReason !== undefined)('RedisBackend: processes sharing one Redis', () => {
  const suite = redisSuite();

  it('delivers every publish on A to subscribers on B, once each, in publish order', async () => {
    const { brokerA, brokerB } = await pair(suite.redis.url);
    const got: Message[] = [];
    await brokerB.subscribe('room.>', { onMessage: (m) => got.push(m) });
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push((await brokerA.publish(`room.${i % 3}`, { i })).id);
    // A burst of concurrent publishes: delivery order is the order ids were issued in.
    const burst = await Promise.all(Array.from({ length: 100 }, (_, i) => brokerA.publish('room.burst', i)));
    const burstIds = burst.map((m) => m.id).sort((x, y) => parseCursor(x).seq - parseCursor(y).seq);
    await eventually(() => got.length >= 200, '200 deliveries on B');
    expect(got.map((m) => m.id)).toEqual([...ids, ...burstIds]);
    expect(new Set(got.map((m) => m.id)).size).toBe(200);
    expect(got[4]!.data).toEqual({ i: 4 });
  });

  it('wakes a long poll held on B with a publish on A, and resumes SSE on B after an id A issued', async () => {
    const { brokerA, brokerB } = await pair(suite.redis.url);
    const longPoll = new LongPollHandler({ broker: brokerB, maxHoldMs: 10_000 });
    const sse = new SseHandler({ broker: brokerB, heartbeatMs: 60_000 });
    const server = await serveRig((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/lp') void longPoll.handle(req, res, { topics: ['news'] });
      else void sse.handle(req, res, { topics: ['news'] });
    });
    cleanups.defer(async () => {
      await longPoll.close();
      await sse.close();
      await server.close();
    });

    const waiting = fetch(`${server.url}/lp`);
    await eventually(() => longPoll.stats().parked === 1, 'the poll to park on B');
    const first = await brokerA.publish('news', 'one');
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { messages: { id: string }[] }).messages.map((m) => m.id)).toEqual([first.id]);

    const second = await brokerA.publish('news', { n: 2 });
    const stream = await readSse(`${server.url}/sse`, { headers: { 'last-event-id': first.id } });
    const events = stream.events;
    cleanups.defer(() => stream.close());
    expect(stream.res.status).toBe(200);
    await eventually(() => events.length === 1, 'the replayed event');
    const third = await brokerA.publish('news', 'three');
    await eventually(() => events.length === 2, 'the live event');
    expect(events).toEqual([
      { id: second.id, event: undefined, data: '{"n":2}' },
      { id: third.id, event: undefined, data: 'three' },
    ]);
  });

  it('answers a request from A with a reply from B', async () => {
    const { brokerA, brokerB } = await pair(suite.redis.url);
    await brokerB.subscribe('math.double', { onMessage: (m) => void brokerB.reply(m, (m.data as number) * 2) });
    const reply = await brokerA.request('math.double', 21, { timeoutMs: 5000 });
    expect(reply.data).toBe(42);
  });

  it('carries strings verbatim, JSON values, bytes and headers', async () => {
    const { brokerA, brokerB } = await pair(suite.redis.url);
    const got: Message[] = [];
    await brokerB.subscribe('kinds', { onMessage: (m) => got.push(m) });
    const values: unknown[] = ['line 1\nline 2\n\n', '{"not":"parsed"}', { a: [1, null, 'x'] }, 0, null, true, 'üñí©ødé 🎉'];
    for (const v of values) await brokerA.publish('kinds', v, { headers: { 'x-kind': typeof v } });
    await brokerA.publish('kinds', new Uint8Array([0, 1, 255]));
    await eventually(() => got.length === values.length + 1, 'every kind');
    expect(got.slice(0, values.length).map((m) => m.data)).toEqual(values);
    expect(got[0]!.headers).toEqual({ 'x-kind': 'string' });
    expect([...(got[values.length]!.data as Uint8Array)]).toEqual([0, 1, 255]);
    const read = await brokerB.read('kinds', null, 100);
    expect(read.messages.map((m) => m.data).slice(0, values.length)).toEqual(values);
    await expect(brokerA.publish('kinds', { n: 1n })).rejects.toMatchObject({ code: 'PB_ERR_INVALID_ARGUMENT' });
  });

  it('answers reads after a recent cursor from local memory, the same as Redis answers them', async () => {
    // One case may rightly read nothing locally (every cursor behind the local window, or the
    // feed not continuous yet under load): the local path must be taken across the runs, not in each.
    let localReads = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ on: fc.constantFrom('A', 'B'), topic: fc.constantFrom('p.a', 'p.b', 'q') }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.record({ at: fc.nat(), limit: fc.integer({ min: 1, max: 8 }), target: fc.constantFrom<'one' | 'list' | 'pattern'>('one', 'list', 'pattern') }), { minLength: 1, maxLength: 10 }),
        async (publishes, reads) => {
          const { a, brokerA, brokerB, prefix } = await pair(suite.redis.url, { history: { maxCount: 6 }, localCount: 4 });
          const plain = new RedisBackend({ url: suite.redis.url, prefix, localReads: false, history: { maxCount: 6 } });
          try {
            const ids: string[] = [await a.head()];
            for (const p of publishes) ids.push((await (p.on === 'A' ? brokerA : brokerB).publish(p.topic, p.topic)).id);
            await eventually(() => a.redisStats().delivered >= publishes.length, 'every message on A');
            for (const r of reads) {
              const cursor = parseCursor(ids[r.at % ids.length]!);
              const spec = r.target === 'one' ? 'p.a' : r.target === 'list' ? [['p', 'a'], ['q']] : [['p', '*']];
              const local = await a.read(spec, cursor, r.limit);
              const remote = await plain.read(spec, cursor, r.limit);
              const shape = (x: typeof local) => ({ ids: x.messages.map((m) => m.id), data: x.messages.map((m) => m.data), gap: x.gap, more: x.more, cursor: x.cursor });
              expect(shape(local)).toEqual(shape(remote));
            }
            localReads += a.redisStats().localReads;
          } finally {
            await plain.close();
            await cleanups.teardown();
          }
        },
      ),
      { numRuns: 15 },
    );
    expect(localReads).toBeGreaterThan(0);
  });

  it('trims by age (Redis time): older messages leave the log and a cursor before them reads as a gap', async () => {
    const { a, brokerA, brokerB } = await pair(suite.redis.url, { history: { maxAgeMs: 300 } });
    const start = await brokerA.head();
    const old = await brokerA.publish('aged', 'old');
    await brokerA.publish('idle', 'alone');
    await new Promise((r) => setTimeout(r, 450));
    const fresh = await brokerA.publish('aged', 'fresh');
    // Local reads (A's memory) and Redis reads (B has seen nothing recent of its own) agree.
    await eventually(() => a.redisStats().delivered >= 3, 'the feed on A');
    for (const broker of [brokerA, brokerB]) {
      const read = await broker.read('aged', start, 10);
      expect(read.gap).toBe(true);
      expect(read.messages.map((m) => m.id)).toEqual([fresh.id]);
      expect((await broker.read('aged', old.id, 10)).gap).toBe(false); // nothing after `old` was lost
      expect((await broker.read('aged', null, 10)).messages.map((m) => m.data)).toEqual(['fresh']);
      // A topic whose whole log aged out: empty, and a gap for a cursor from before.
      const idle = await broker.read('idle', start, 10);
      expect(idle.messages).toEqual([]);
      expect(idle.gap).toBe(true);
    }
  });

  it('keeps keys under the prefix, with a hash tag per topic', async () => {
    const { brokerA, prefix } = await pair(suite.redis.url);
    await brokerA.publish('tag.me', 1);
    const { Redis } = await import('ioredis');
    const client = new Redis(suite.redis.url);
    cleanups.defer(() => client.quit());
    const keys = (await client.keys(`${prefix}*`)).sort();
    expect(keys).toEqual([`${prefix}{m}:bytes`, `${prefix}{m}:meta`, `${prefix}{m}:topics`, `${prefix}{t:tag.me}`].sort());
    expect(await client.type(`${prefix}{t:tag.me}`)).toBe('stream');
    // The idle topic's key goes away with its age limit.
    expect(await client.pttl(`${prefix}{t:tag.me}`)).toBeGreaterThan(3_600_000);
  });

  it('validates its options', () => {
    expect(() => new RedisBackend({ history: { maxCount: -1 } })).toThrow(/history.maxCount/);
    expect(() => new RedisBackend({ history: { maxAgeMs: 0 } })).toThrow(/history.maxAgeMs/);
    expect(() => new RedisBackend({ prefix: 'a b' })).toThrow(/prefix/);
    expect(() => new RedisBackend({ url: 'redis://127.0.0.1:1', cluster: { nodes: [] } })).toThrow(/cluster/);
    expect(() => new RedisBackend({ commandTimeoutMs: 0 })).toThrow(/commandTimeoutMs/);
  });
});

describe.skipIf(REDIS_BINARY === undefined)('RedisBackend faults: a redis-server of our own, stopped and started by PID', () => {
  let redis: TestRedis;
  afterEach(async () => {
    await redis?.dispose();
  });

  it('fails publishes at once while Redis is down, and catches subscribers up from the log when it returns', async () => {
    redis = await startRedis({ persist: true });
    // B reconnects slowly, so A publishes while B's feed is still away.
    const { a, b, brokerA, brokerB } = await pair(redis.url, {}, { redis: { retryStrategy: () => 700 } });
    const got: Message[] = [];
    await brokerB.subscribe('f', { onMessage: (m) => got.push(m) });
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) sent.push((await brokerA.publish('f', i)).id);
    await eventually(() => got.length === 20, 'the first 20 on B');

    await redis.stop();
    await eventually(() => !a.redisStats().connected, 'A to notice');
    const t0 = Date.now();
    const refused = await brokerA.publish('f', 'lost').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - t0).toBeLessThan(500);
    expect(refused).toBeInstanceOf(UnavailableError);
    expect(refused).toMatchObject({ code: 'PB_ERR_UNAVAILABLE', retryAfterSeconds: 1 });
    expect((refused as Error).message).toMatch(/nothing was published/);
    await expect(brokerA.read('f', null, 10)).rejects.toBeInstanceOf(UnavailableError);
    await expect(brokerA.head()).rejects.toBeInstanceOf(UnavailableError);

    await redis.start();
    await eventually(() => a.redisStats().connected, 'A to reconnect');
    for (let i = 20; i < 40; i++) sent.push((await brokerA.publish('f', i)).id);
    expect(b.redisStats().live).toBe(false); // B's feed is still away: these come from the log
    await eventually(() => got.length >= 40, 'all 40 on B', { timeoutMs: 15_000 });
    expect(got.map((m) => m.id)).toEqual(sent);
    expect(got.map((m) => m.data)).toEqual([...Array(40).keys()]);
    expect(b.redisStats().caughtUp).toBeGreaterThanOrEqual(1);
    expect(b.redisStats().resyncs).toBe(1);
  });

  it('answers a long poll held while Redis goes away with 204 at its hold end, and a new one with 503 and Retry-After', async () => {
    redis = await startRedis();
    const { brokerB } = await pair(redis.url);
    const longPoll = new LongPollHandler({ broker: brokerB, maxHoldMs: 800 });
    const server = await serveRig((req, res) => void longPoll.handle(req, res, { topics: ['held'] }));
    cleanups.defer(async () => {
      await longPoll.close();
      await server.close();
    });
    const cursor = await brokerB.head();
    const held = fetch(`${server.url}/?cursor=${cursor}`);
    await eventually(() => longPoll.stats().parked === 1, 'the poll to park');
    await redis.stop();
    const t0 = Date.now();
    const res = await held;
    expect(res.status).toBe(204);
    expect(res.headers.get('patchbay-cursor')).toBe(cursor);
    expect(Date.now() - t0).toBeLessThan(2000);
    const again = await fetch(`${server.url}/?cursor=${cursor}`);
    expect(again.status).toBe(503);
    expect(again.headers.get('retry-after')).toBe('1');
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_UNAVAILABLE');
  });

  it('treats a Redis that came back empty as a new epoch: older cursors read as a gap', async () => {
    redis = await startRedis();
    const { a, b, brokerA, brokerB } = await pair(redis.url);
    const before = await brokerA.publish('e', 'before');
    await redis.stop();
    await redis.start();
    await eventually(() => a.redisStats().connected && b.redisStats().connected, 'A and B to reconnect');
    const after = await brokerA.publish('e', 'after');
    expect(parseCursor(after.id).epoch).not.toBe(parseCursor(before.id).epoch);
    expect(parseCursor(after.id).seq).toBeGreaterThan(parseCursor(before.id).seq);
    const read = await brokerB.read('e', before.id, 10);
    expect(read.gap).toBe(true);
    expect(read.messages.map((m) => m.data)).toEqual(['after']);
  });

  it('gives a Redis that lost its last writes a new epoch once a process notices, so cursors read as a gap', async () => {
    redis = await startRedis();
    const { b, brokerA, brokerB, prefix } = await pair(redis.url);
    const got: Message[] = [];
    await brokerB.subscribe('w', { onMessage: (m) => got.push(m) });
    const first = await brokerA.publish('w', 1);
    const second = await brokerA.publish('w', 2);
    await eventually(() => got.length === 2, 'both on B');
    const { Redis } = await import('ioredis');
    const admin = new Redis(redis.url);
    cleanups.defer(() => admin.quit());
    // As if Redis restarted from a snapshot taken before the second publish.
    await admin.xdel(`${prefix}{t:w}`, `${Math.floor(parseCursor(second.id).seq / 1024)}-${parseCursor(second.id).seq % 1024}`);
    await admin.hset(`${prefix}{m}:meta`, 's', String(parseCursor(first.id).seq));
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await eventually(() => b.redisStats().resyncs === 1, 'B to resync');
    const read = await brokerB.read('w', second.id, 10);
    expect(read.gap).toBe(true);
    expect(parseCursor(read.cursor).epoch).not.toBe(parseCursor(second.id).epoch);
    const third = await brokerA.publish('w', 3);
    expect(parseCursor(third.id).seq).toBeGreaterThan(parseCursor(second.id).seq);
  });

  it('rejects a publish that Redis does not answer within commandTimeoutMs as "may or may not", and recovers', async () => {
    redis = await startRedis();
    const { brokerA, brokerB } = await pair(redis.url, { commandTimeoutMs: 300 });
    const got: Message[] = [];
    await brokerB.subscribe('h', { onMessage: (m) => got.push(m) });
    process.kill(redis.pid()!, 'SIGSTOP');
    try {
      const error = await brokerA.publish('h', 'hung').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UnavailableError);
      expect((error as Error).message).toMatch(/may or may not/);
    } finally {
      process.kill(redis.pid()!, 'SIGCONT');
    }
    // The hung publish ran once Redis woke (it was sent): it is delivered, not lost or doubled.
    const next = await brokerA.publish('h', 'next');
    await eventually(() => got.some((m) => m.id === next.id), 'the next publish on B');
    expect(got.map((m) => m.data)).toEqual(['hung', 'next']);
  });
});
