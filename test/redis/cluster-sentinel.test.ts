/**
 * RedisBackend on a Redis Cluster of three masters started here (the conformance kit, and two
 * backends sharing topics whose keys live on different nodes), and through Redis Sentinel.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Message, PubSubBroker } from '../../src/index.js';
import { Cluster } from 'ioredis';
import { RedisBackend, type RedisBackendOptions, RedisJobStore } from '../../src/redis/index.js';
import { backendConformance } from '../conformance/backend-kit.js';
import { jobStoreConformance } from '../conformance/job-store-kit.js';
import { eventually } from '../helpers.js';
import { REDIS_BINARY, startCluster, startSentinel, uniquePrefix } from './redis-server.js';

describe.skipIf(REDIS_BINARY === undefined)('RedisBackend on a Redis Cluster', () => {
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  beforeAll(async () => {
    cluster = await startCluster(3);
  }, 60_000);
  afterAll(async () => {
    await cluster?.dispose();
  });

  // Under CI load the cluster bus can deliver another node's publishes well past the 50 ms
  // default; these tests check ordering, not the window, so they give it room.
  const reorderWindowMs = 1000;

  backendConformance('RedisBackend (cluster)', () =>
    Promise.resolve({
      backend: new RedisBackend({ cluster: { nodes: cluster.nodes }, prefix: uniquePrefix('ckit'), history: { maxCount: 10 }, reorderWindowMs }),
      maxCount: 10,
      dispose: () => Promise.resolve(),
      bounded: (bounds) => new RedisBackend({ cluster: { nodes: cluster.nodes }, prefix: uniquePrefix('ckitb'), history: { maxCount: 10 }, reorderWindowMs, ...bounds }),
    }),
  );

  // The job store keeps every key on one slot (its hash tag): each script is routed there.
  jobStoreConformance('RedisJobStore (cluster)', (clock) => {
    const prefix = uniquePrefix('cjobs');
    const a = new RedisJobStore({ cluster: { nodes: cluster.nodes }, prefix, clock });
    const b = new RedisJobStore({ cluster: { nodes: cluster.nodes }, prefix, clock });
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

  it('shares topics spread over the nodes between two backends', async () => {
    const prefix = uniquePrefix('cl');
    const a = new RedisBackend({ cluster: { nodes: cluster.nodes }, prefix, reorderWindowMs });
    const b = new RedisBackend({ cluster: { nodes: cluster.nodes }, prefix, reorderWindowMs });
    const brokerA = new PubSubBroker({ backend: a });
    const brokerB = new PubSubBroker({ backend: b });
    try {
      await Promise.all([a.ready(), b.ready()]);
      const got: Message[] = [];
      await brokerB.subscribe('spread.*', { onMessage: (m) => got.push(m) });
      const ids: string[] = [];
      // Twenty topics: their hash tags put them on all three nodes.
      for (let i = 0; i < 60; i++) ids.push((await brokerA.publish(`spread.t${i % 20}`, i)).id);
      await eventually(() => got.length >= 60, 'all 60 on B');
      expect(got.map((m) => m.id)).toEqual(ids);
      expect(b.redisStats().late).toBe(0);
      const read = await brokerB.read({ pattern: 'spread.*' }, ids[29]!, 100);
      expect(read.messages.map((m) => m.data)).toEqual([...Array(30).keys()].map((i) => i + 30));
      expect(read.gap).toBe(false);
    } finally {
      await brokerA.close();
      await brokerB.close();
      await a.close();
      await b.close();
    }
  });

  describe('bounds across topics on a cluster', () => {
    async function make(options: Partial<RedisBackendOptions>) {
      const prefix = uniquePrefix('cb');
      const backend = new RedisBackend({ cluster: { nodes: cluster.nodes }, prefix, reorderWindowMs, ...options });
      const broker = new PubSubBroker({ backend });
      await backend.ready();
      const raw = new Cluster(cluster.nodes);
      return {
        prefix,
        backend,
        broker,
        raw,
        close: async () => {
          raw.disconnect();
          await broker.close();
          await backend.close();
        },
      };
    }

    it('step 2 trims only what the budget still asks after the count trim freed its part: a full log keeps maxCount messages', async () => {
      const { broker, raw, prefix, close } = await make({ maxTotalBytes: 250, history: { maxCount: 2 } });
      try {
        const ids: string[] = [];
        // 100 bytes each: 2 kept (200) fit 250. Every publish after the second counts 300 in step 1
        // (over by 50), and its count trim frees 100 of that already.
        for (let i = 0; i < 5; i++) {
          ids.push((await broker.publish('one', `${i}`.padEnd(99, '.'))).id);
          expect(await raw.xlen(`${prefix}{t:one}`)).toBe(Math.min(i + 1, 2));
        }
        expect((await broker.read('one', null, 10)).messages.map((m) => m.id)).toEqual(ids.slice(3));
      } finally {
        await close();
      }
    });

    it('a topic whose stream went without a trim is not counted after its next publish, and readers behind it see a gap', async () => {
      const { broker, raw, prefix, close } = await make({ maxTotalBytes: 1000 });
      try {
        const ids: string[] = [];
        for (let cycle = 0; cycle < 4; cycle++) {
          const m = await broker.publish('main', `${cycle}`.padEnd(600, '.'));
          // Its message stays: the count holds this one entry, not the ones whose stream went.
          expect((await broker.read('main', ids.at(-1) ?? null, 10)).messages.map((x) => x.id)).toEqual([m.id]);
          ids.push(m.id);
          await raw.del(`${prefix}{t:main}`); // as a key expiry does
        }
        const after = await broker.publish('main', 'after');
        expect(await broker.read('main', ids[3]!, 10)).toMatchObject({ gap: false, messages: [{ id: after.id }] });
        expect((await broker.read('main', ids[2]!, 10)).gap).toBe(true);
        // What step 1 counted of the stream that went is taken off by this process's next step 1.
        await broker.publish('other', 'o');
        expect(Number(await raw.hget(`${prefix}{m}:meta`, 'b'))).toBe('safter'.length + 'so'.length);
      } finally {
        await close();
      }
    });
  });
});

describe.skipIf(REDIS_BINARY === undefined)('RedisBackend through Redis Sentinel', () => {
  it('finds the master through the sentinel (ioredis `sentinels` + `name`) and shares topics', async () => {
    const setup = await startSentinel();
    const prefix = uniquePrefix('sen');
    const options = { redis: { sentinels: [setup.sentinel], name: setup.name }, prefix };
    const a = new RedisBackend(options);
    const b = new RedisBackend(options);
    const brokerA = new PubSubBroker({ backend: a });
    const brokerB = new PubSubBroker({ backend: b });
    try {
      await Promise.all([a.ready(), b.ready()]);
      const got: Message[] = [];
      await brokerB.subscribe('s', { onMessage: (m) => got.push(m) });
      const sent = await brokerA.publish('s', 'via sentinel');
      await eventually(() => got.length === 1, 'the message on B');
      expect(got[0]!.id).toBe(sent.id);
      expect((await brokerB.read('s', null, 10)).messages.map((m) => m.data)).toEqual(['via sentinel']);
    } finally {
      await brokerA.close();
      await brokerB.close();
      await a.close();
      await b.close();
      await setup.dispose();
    }
  });
});
