/**
 * `subscribe` makes a plain live subscription without an async function: it must still reject
 * (never throw) on bad input and after close, and behave as one made the full way.
 */
import { describe, expect, it } from 'vitest';
import { ClosedError, InvalidArgumentError, PubSubBroker } from '../../src/index.js';

describe('subscribe without options beyond onMessage', () => {
  it('rejects, never throws, on a bad pattern, a bad onMessage and after close', async () => {
    const broker = new PubSubBroker();
    const bad = [
      () => broker.subscribe('a..b', { onMessage: () => {} }),
      () => broker.subscribe('a.b', { onMessage: 'no' as unknown as () => void }),
      () => broker.subscribe('a.b', 'no' as never),
    ];
    for (const call of bad) {
      let promise: Promise<unknown> | undefined;
      expect(() => (promise = call())).not.toThrow();
      await expect(promise).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await broker.close();
    let closed: Promise<unknown> | undefined;
    expect(() => (closed = broker.subscribe('a.b'))).not.toThrow();
    await expect(closed).rejects.toBeInstanceOf(ClosedError);
  });

  it('delivers, counts and unsubscribes as a subscription made the full way', async () => {
    const broker = new PubSubBroker();
    const fast: unknown[] = [];
    const full: unknown[] = [];
    const a = await broker.subscribe('room.*', { onMessage: (m) => fast.push(m.data) });
    const b = await broker.subscribe('room.*', { onMessage: (m) => full.push(m.data), from: 'now', maxQueuedMessages: 5 });
    await broker.publish('room.1', 1);
    await broker.publish('room.2', { n: 2 });
    a.close();
    await broker.publish('room.3', 3);
    expect(fast).toEqual([1, { n: 2 }]);
    expect(full).toEqual([1, { n: 2 }, 3]);
    expect(a.stats()).toEqual({ delivered: 2, dropped: 0, queued: 0 });
    expect(b.stats()).toEqual({ delivered: 3, dropped: 0, queued: 0 });
    expect(broker.stats().subscriptions).toBe(1);
    await broker.close();
    expect(b.closed).toBe(true);
  });
});

describe('the broker counts its subscriptions without holding a set of them', () => {
  it('counts subscribe and close, and its close ends every subscription, queue-group members and iterators included', async () => {
    const broker = new PubSubBroker();
    const subs = [
      await broker.subscribe('a.b', { onMessage: () => {} }),
      await broker.subscribe('a.*'),
      await broker.subscribe('a.>', { group: 'g' }),
      await broker.subscribe('a.>', { group: 'g' }),
      await broker.subscribe('*.b', { maxQueuedMessages: 3 }),
      await broker.subscribe('a.b', { onMessage: () => {} }),
    ];
    expect(broker.stats().subscriptions).toBe(6);
    subs[5]!.close();
    subs[5]!.close(); // idempotent: counted once
    expect(broker.stats().subscriptions).toBe(5);
    const iterating = subs[1]![Symbol.asyncIterator]().next();
    await broker.close();
    expect(subs.map((s) => s.closed)).toEqual([true, true, true, true, true, true]);
    expect(broker.stats().subscriptions).toBe(0);
    await expect(iterating).resolves.toEqual({ value: undefined, done: true });
  });
});
