/**
 * RedisBackend on a Redis Cluster of three masters started here (the conformance kit, and two
 * backends sharing topics whose keys live on different nodes), and through Redis Sentinel.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Message, PubSubBroker } from '../../src/index.js';
import { RedisBackend, RedisJobStore } from '../../src/redis/index.js';
import { backendConformance } from '../conformance/backend-kit.js';
import { jobStoreConformance } from '../conformance/job-store-kit.js';
import { waitFor } from './helpers.js';
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
      await waitFor(() => got.length >= 60, 'all 60 on B');
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
      await waitFor(() => got.length === 1, 'the message on B');
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
