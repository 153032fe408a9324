/**
 * RedisBackend's bounds across topics (`maxTotalBytes`, `maxTopics`), on a real redis-server:
 * the bytes the scripts count are the bytes the streams hold (count and age trims taken off),
 * they never pass the budget, evicted topics leave no stream behind, and readers behind what
 * went see a gap.
 */
import { fc } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { parseCursor } from '../../src/index.js';
import { RedisBackend, type RedisBackendOptions } from '../../src/redis/index.js';
import { DROP_EVICTED } from '../../src/redis/scripts.js';
import { eventually } from '../helpers.js';
import { backendWithBroker, heldBytes, redisSuite } from './helpers.js';
import { redisUnavailableReason, uniquePrefix } from './redis-server.js';

describe.skipIf(redisUnavailableReason !== undefined)('RedisBackend: bounds across topics', () => {
  const suite = redisSuite();
  const cleanups = suite.cleanups;

  const make = (options: Partial<RedisBackendOptions>) => backendWithBroker(suite.redis.url, cleanups, options, uniquePrefix('bounds'));
  const held = (prefix: string) => heldBytes(suite.raw, prefix);

  async function counted(prefix: string): Promise<{ total: number; perTopic: Map<string, number>; topics: number }> {
    const total = Number((await suite.raw.hget(`${prefix}{m}:meta`, 'b')) ?? 0);
    const perTopic = new Map(Object.entries(await suite.raw.hgetall(`${prefix}{m}:bytes`)).map(([t, b]) => [t, Number(b)]));
    const topics = await suite.raw.zcard(`${prefix}{m}:topics`);
    return { total, perTopic, topics };
  }

  const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

  it('counts exactly the bytes the streams hold, across count trims, and never more than maxTotalBytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ topic: fc.nat(5), size: fc.nat(400), headers: fc.boolean() }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 4000 }),
        fc.integer({ min: 1, max: 6 }),
        async (ops, maxTotalBytes, maxTopics) => {
          const { prefix, backend } = await make({ maxTotalBytes, maxTopics, history: { maxCount: 4 } });
          for (const op of ops) {
            await backend.publish({ topic: `p.${op.topic}`, data: 'x'.repeat(op.size), headers: op.headers ? { k: 'v' } : undefined, size: op.size, store: true });
          }
          const really = await held(prefix);
          const { total, perTopic, topics } = await counted(prefix);
          expect(total).toBe(sum(really));
          expect(total).toBeLessThanOrEqual(maxTotalBytes);
          for (const [topic, bytes] of really) if (bytes > 0) expect(perTopic.get(topic)).toBe(bytes);
          expect(topics).toBeLessThanOrEqual(maxTopics);
          expect(really.size).toBeLessThanOrEqual(maxTopics); // evicted topics leave no stream behind
          await cleanups.teardown();
        },
      ),
      { numRuns: 25 },
    );
  });

  it('1 MB to each of 200 topics keeps at most maxTotalBytes: the least recently published go, readers behind see gap', async () => {
    const { prefix, broker } = await make({ maxTotalBytes: 1_000_000 });
    const first: string[] = [];
    const chunk = 'y'.repeat(25_000);
    for (let t = 0; t < 200; t++) for (let i = 0; i < 4; i++) {
      const m = await broker.publish(`room.${t}`, chunk);
      if (i === 0) first.push(m.id);
    }
    const really = await held(prefix);
    expect(sum(really)).toBeLessThanOrEqual(1_000_000);
    expect(sum(really)).toBeGreaterThan(900_000);
    expect((await counted(prefix)).total).toBe(sum(really));
    expect(really.has('room.0')).toBe(false);
    expect(really.has('room.199')).toBe(true);
    expect(await broker.read('room.0', null, 10)).toMatchObject({ messages: [] });
    expect((await broker.read('room.1', first[0]!, 10)).gap).toBe(true);
    // The newest rooms are whole, and read without a gap after a recent cursor.
    expect(await broker.read('room.199', first[199]!, 10)).toMatchObject({ gap: false, messages: [{}, {}, {}] });
  });

  it('one topic over the budget trims its own oldest messages, recorded like any trim: exact gaps for that topic only', async () => {
    const { prefix, broker } = await make({ maxTotalBytes: 1000, history: { maxCount: 1000 } });
    const other = await broker.publish('quiet', 'q'); // 2 bytes, and the least recently published
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await broker.publish('hot', `${i}`.padStart(99, '.'))).id);
    const really = await held(prefix);
    expect(sum(really)).toBeLessThanOrEqual(1000);
    expect(really.has('quiet')).toBe(false); // the other topic went first
    const all = await broker.read('hot', null, 100);
    expect(all.messages.length).toBe(10);
    expect(all.messages.map((m) => m.id)).toEqual(ids.slice(20));
    expect((await broker.read('hot', ids[18]!, 100)).gap).toBe(true);
    expect(await broker.read('hot', ids[19]!, 100)).toMatchObject({ gap: false });
    expect(parseCursor(other.id).seq).toBeLessThan(parseCursor(ids[0]!).seq);
  });

  it('takes age trims off the count, and topics that expire whole leave it too', async () => {
    const { prefix, backend } = await make({ history: { maxAgeMs: 30 } });
    const pub = (topic: string, data: string) => backend.publish({ topic, data, headers: undefined, size: data.length, store: true });
    await pub('old', 'a'.repeat(100));
    // Publish until Redis's clock has moved past the age of the first ones and a publish trimmed them.
    let n = 0;
    await eventually(async () => {
      await pub('aging', `${n++}`);
      return (await suite.raw.xlen(`${prefix}{t:aging}`)) < n;
    }, 'an age trim of "aging"');
    // And until the sweep (1 publish in 32) dropped the topic "old" whole.
    await eventually(async () => {
      for (let i = 0; i < 40; i++) await pub('aging', `${n++}`);
      return (await suite.raw.zscore(`${prefix}{m}:topics`, 'old')) === null;
    }, 'the sweep of "old"');
    const really = await held(prefix);
    const { total, perTopic } = await counted(prefix);
    expect(total).toBe(sum(really));
    expect(perTopic.has('old')).toBe(false);
    expect(perTopic.get('aging')).toBe(really.get('aging'));
  });

  it('bounds the local copies kept for local reads by maxTotalBytes too: past it, reads behind go to Redis', async () => {
    const { backend, broker } = await make({ maxTotalBytes: 1000 });
    const start = await backend.head();
    await broker.publish('a', 'a'.repeat(600));
    const b = await broker.publish('b', 'b'.repeat(600));
    await eventually(() => backend.redisStats().delivered >= 2, 'both delivered back through the feed');
    const before = backend.redisStats();
    // After `start`, the local copy of "a" is gone (over the budget): Redis answers, and it dropped "a" too.
    expect(await broker.read('b', start, 10)).toMatchObject({ gap: true, messages: [{ id: b.id }] });
    expect(backend.redisStats()).toMatchObject({ localReads: before.localReads, redisReads: before.redisReads + 1 });
    // After "a" itself, the local copies still answer.
    const a = parseCursor(b.id);
    await broker.read('b', `${a.epoch}-${(a.seq - 1).toString(36)}`, 10);
    expect(backend.redisStats().localReads).toBe(before.localReads + 1);
  });

  it('a topic whose stream went without a trim (deleted, or expired) is not counted after its next publish: the count cannot creep up and switch its history off', async () => {
    const { prefix, broker } = await make({ maxTotalBytes: 1000, localReads: false });
    const ids: string[] = [];
    for (let cycle = 0; cycle < 5; cycle++) {
      const before = await broker.head();
      const m = await broker.publish('main', `${cycle}`.padEnd(600, '.'));
      ids.push(m.id);
      // Its message stays: the count holds this one entry, not the ones whose stream went.
      expect(await broker.read('main', before, 10)).toMatchObject({ gap: false, messages: [{ id: m.id }] });
      expect((await counted(prefix)).total).toBe(sum(await held(prefix)));
      expect((await counted(prefix)).total).toBe(601);
      // As an idle topic's key expiry does (and a DEL by hand, or Redis's own eviction).
      await suite.raw.del(`${prefix}{t:main}`);
    }
    // A reader behind what went sees a gap; one at the last message before the loss does not.
    await broker.publish('main', 'after');
    expect((await broker.read('main', ids[3]!, 10)).gap).toBe(true);
    expect((await broker.read('main', ids[4]!, 10)).gap).toBe(false);
  });

  it('an idle topic whose key expired (maxAgeMs + 1 s) is not counted after its next publish, and readers behind it see a gap', async () => {
    const { prefix, broker } = await make({ history: { maxAgeMs: 100 }, localReads: false });
    const first = await broker.publish('idle', 'i'.repeat(500));
    await eventually(async () => (await suite.raw.exists(`${prefix}{t:idle}`)) === 0, 'the key expiry of "idle"', { timeoutMs: 5000 });
    const second = await broker.publish('idle', 'j');
    expect((await counted(prefix)).total).toBe(2);
    expect((await counted(prefix)).total).toBe(sum(await held(prefix)));
    const cursor = parseCursor(first.id);
    const r = await broker.read('idle', `${cursor.epoch}-${(cursor.seq - 1).toString(36)}`, 10);
    expect(r.gap).toBe(true);
    expect(parseCursor(second.id).seq).toBeGreaterThan(cursor.seq);
  });

  it('streams written before the byte counts (or by an older version) never take a count below zero', async () => {
    const { prefix, backend } = await make({ history: { maxCount: 2 } });
    const pub = (topic: string, data: string) => backend.publish({ topic, data, headers: undefined, size: data.length, store: true });
    await pub('other', 'o'.repeat(300));
    // An older process's entries: in the stream and the index, never counted.
    const meta = `${prefix}{m}:meta`;
    let seq = Number(await suite.raw.hget(meta, 's'));
    for (let i = 0; i < 3; i++) {
      seq++;
      await suite.raw.xadd(`${prefix}{t:legacy}`, `${Math.floor(seq / 1024)}-${seq % 1024}`, 'd', `s${'l'.repeat(99)}`);
      await suite.raw.hset(meta, 's', String(seq));
      await suite.raw.zadd(`${prefix}{m}:topics`, seq, 'legacy');
    }
    // Count trims take the old entries out: what they free was never counted.
    for (let i = 0; i < 4; i++) await pub('legacy', `${i}`);
    const { total, perTopic } = await counted(prefix);
    for (const bytes of perTopic.values()) expect(bytes).toBeGreaterThanOrEqual(0);
    expect(perTopic.get('other')).toBe(301);
    expect(total).toBe(sum(perTopic));
    expect(total).toBeLessThanOrEqual(sum(await held(prefix)));
  });

  it("dropping an evicted topic's stream takes only what the eviction covered: a message published to it again meanwhile stays, behind a gap", async () => {
    const { prefix, broker } = await make({ localReads: false });
    const old1 = await broker.publish('x', 'old 1');
    const old2 = await broker.publish('x', 'old 2');
    // Another process published to "x" again between the eviction (at old2's score) and the drop.
    const fresh = await broker.publish('x', 'new');
    const score = parseCursor(old2.id).seq;
    const key = `${prefix}{t:x}`;
    expect(await suite.raw.eval(DROP_EVICTED, 1, key, String(score))).toBe(0);
    expect((await broker.read('x', null, 10)).messages.map((m) => m.id)).toEqual([fresh.id]);
    expect((await broker.read('x', old1.id, 10)).gap).toBe(true);
    expect((await broker.read('x', old2.id, 10)).gap).toBe(false);
    // With nothing newer than the score, the stream goes whole.
    expect(await suite.raw.eval(DROP_EVICTED, 1, key, String(parseCursor(fresh.id).seq))).toBe(1);
    expect(await suite.raw.exists(key)).toBe(0);
  });

  it('validates maxTotalBytes and maxTopics', () => {
    expect(() => new RedisBackend({ url: suite.redis.url, maxTotalBytes: -1 })).toThrow(/maxTotalBytes/);
    expect(() => new RedisBackend({ url: suite.redis.url, maxTopics: 0 })).toThrow(/maxTopics/);
  });
});
