/**
 * Records read back from Redis are untrusted input: a stream entry or feed notification written
 * by another version, a bug or by hand (garbage, JSON nested too deep, a `__proto__` key, headers
 * that are not an object of strings) never throws into the feed or a read. It is skipped and
 * counted; a read says gap and moves on; subscribers keep receiving what comes next.
 */
import { describe, expect, it } from 'vitest';
import { type Message, parseCursor, ProtocolError, PubSubBroker } from '../../src/index.js';
import { eventually } from '../helpers.js';
import { backendPair, redisSuite } from './helpers.js';
import { redisUnavailableReason, uniquePrefix } from './redis-server.js';

/** Deeper than any broker accepts (maxDataDepth is at most 1000). */
const deep = `j${'['.repeat(1001)}${']'.repeat(1001)}`;
/** Stream entries another process might have written: [data, headers?]. */
const BAD: [string, string?][] = [
  ['zgarbage'],
  ['j{"a":'],
  [deep],
  ['j{"x":{"__proto__":{"polluted":true}}}'],
  ['sfine', '[1,2]'],
  ['sfine', '{"a":1}'],
  ['sfine', '{"__proto__":"x"}'],
  ['sfine', '{"a":{"b":"c"}}'],
  [''],
];

const sid = (seq: number): string => `${Math.floor(seq / 1024)}-${seq % 1024}`;

describe.skipIf(redisUnavailableReason !== undefined)('RedisBackend: records read back from Redis are untrusted', () => {
  const suite = redisSuite();
  const cleanups = suite.cleanups;

  async function setup(options: { localReads?: boolean } = {}) {
    const errors: unknown[] = [];
    const onError = (e: unknown): void => void errors.push(e);
    const pair = await backendPair(suite.redis.url, cleanups, { onError }, options, uniquePrefix('hostile'));
    return { ...pair, errors };
  }

  /** Writes entries by hand after the newest seq, as another process would (counter, stream, feed). */
  async function writeByHand(prefix: string, topic: string, records: readonly [string, string?][], feed: boolean): Promise<number[]> {
    const meta = `${prefix}{m}:meta`;
    const [epoch, top] = (await suite.raw.hmget(meta, 'e', 's')) as [string, string];
    const seqs: number[] = [];
    let seq = Number(top);
    for (const [data, headers] of records) {
      seq++;
      seqs.push(seq);
      const fields = headers === undefined ? ['d', data] : ['d', data, 'h', headers];
      await suite.raw.xadd(`${prefix}{t:${topic}}`, sid(seq), ...fields);
      await suite.raw.hset(meta, 's', String(seq));
      await suite.raw.zadd(`${prefix}{m}:topics`, seq, topic);
      if (feed) await suite.raw.publish(`${prefix}feed`, `${epoch}\n${seq}\n${topic}\n${headers ?? ''}\n${data}`);
    }
    return seqs;
  }

  it('data as deep as the broker accepted (maxDataDepth 300) is read back and delivered, not refused as a gap', async () => {
    // B reads from Redis only (no local reads), so the read below is a stream read.
    const { a, b } = await backendPair(suite.redis.url, cleanups, {}, { localReads: false }, uniquePrefix('deep'));
    // The pair's own brokers hold the backends' feeds: these brokers replace them.
    const deepBroker = new PubSubBroker({ backend: b, maxDataDepth: 300 });
    const plainBroker = new PubSubBroker({ backend: a });
    cleanups.defer(() => Promise.all([deepBroker.close(), plainBroker.close()]));
    const nested = JSON.parse(`${'['.repeat(299)}1${']'.repeat(299)}`) as unknown;
    const got: Message[] = [];
    await deepBroker.subscribe('deep', { onMessage: (m) => got.push(m) });
    const start = await deepBroker.head();
    const sent = await deepBroker.publish('deep', nested);
    await eventually(() => got.length === 1, 'the deep message on the feed');
    expect(got[0]!.data).toEqual(nested);
    expect(await deepBroker.read('deep', start, 10)).toMatchObject({ gap: false, messages: [{ id: sent.id, data: nested }] });
    expect(b.redisStats().undecodable).toBe(0);
    // Another broker on the same Redis reads it back too (it only decodes; its own depth policy is for publishing).
    expect(await plainBroker.read('deep', start, 10)).toMatchObject({ gap: false, messages: [{ id: sent.id }] });
  });

  it('a read skips entries that do not decode, says gap, and pages past them', async () => {
    const { prefix, brokerA, brokerB, b, errors } = await setup({ localReads: false });
    const m1 = await brokerA.publish('room', 'before');
    await writeByHand(prefix, 'room', BAD, false);
    const m2 = await brokerA.publish('room', { after: true });
    const r = await brokerB.read('room', m1.id, 100);
    expect(r.messages.map((m) => m.data)).toEqual([{ after: true }]);
    expect(r.gap).toBe(true);
    expect(b.redisStats().undecodable).toBe(BAD.length);
    // From the oldest too: what decodes, and the gap.
    const all = await brokerB.read('room', null, 100);
    expect(all.messages.map((m) => m.id)).toEqual([m1.id, m2.id]);
    expect(all.gap).toBe(true);
    // Page by page, one at a time: the cursor moves past the bad entries, never stuck on them.
    let cursor = m1.id;
    const got: unknown[] = [];
    for (let turn = 0; turn < BAD.length + 2; turn++) {
      const page = await brokerB.read('room', cursor, 1);
      got.push(...page.messages.map((m) => m.data));
      expect(parseCursor(page.cursor).seq).toBeGreaterThan(parseCursor(cursor).seq);
      cursor = page.cursor;
      if (!page.more) break;
    }
    expect(got).toEqual([{ after: true }]);
    expect(cursor).toBe(m2.id);
    // A pattern read too.
    const byPattern = await brokerB.read({ pattern: '>' }, m1.id, 100);
    expect(byPattern).toMatchObject({ gap: true, messages: [{ data: { after: true } }] });
    // Read five times over, each bad record still counts (and reaches onError) once.
    expect(b.redisStats().undecodable).toBe(BAD.length);
    expect(errors.filter((e) => e instanceof ProtocolError)).toHaveLength(BAD.length);
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('the live feed drops notifications that do not decode, counts them, and delivers what comes next', async () => {
    const { prefix, brokerA, brokerB, b, errors } = await setup();
    const got: Message[] = [];
    // No onError on the broker: a throw reaching it would be rethrown and fail this test run.
    await brokerB.subscribe('feed.t', { onMessage: (m) => got.push(m) });
    const m1 = await brokerA.publish('feed.t', 1);
    await eventually(() => got.length === 1, 'the first message on B');
    await writeByHand(prefix, 'feed.t', BAD, true);
    for (const garbage of ['garbage', '', '\n\n\n\n', 'ZZ\n1\nfeed.t\n\nsx', 'e\n-1\nfeed.t\n\nsx', 'e\n1e5\nfeed.t\n\nsx', 'e\n1\n\n\nsx']) {
      await suite.raw.publish(`${prefix}feed`, garbage);
    }
    const m2 = await brokerA.publish('feed.t', 2);
    await eventually(() => got.length === 2, 'the next good message on B');
    expect(got.map((m) => m.id)).toEqual([m1.id, m2.id]);
    expect(b.redisStats().undecodable).toBe(BAD.length + 7);
    expect(errors.length).toBeGreaterThanOrEqual(BAD.length);
    // B's local view has a hole where the bad ones were: a read after m1 goes to Redis and says gap.
    const r = await brokerB.read('feed.t', m1.id, 100);
    expect(r.messages.map((m) => m.id)).toEqual([m2.id]);
    expect(r.gap).toBe(true);
    // The read met the bad records again, in the stream: they were counted already, from the feed.
    expect(b.redisStats().undecodable).toBe(BAD.length + 7);
    // After m2 all is well again, and the local reads answer.
    const m3 = await brokerA.publish('feed.t', 3);
    await eventually(() => got.length === 3, 'the third message on B');
    const local = b.redisStats().localReads;
    expect(await brokerB.read('feed.t', m2.id, 100)).toMatchObject({ gap: false, messages: [{ id: m3.id }] });
    expect(b.redisStats().localReads).toBe(local + 1);
    expect(Object.prototype).not.toHaveProperty('polluted');
  });
});
