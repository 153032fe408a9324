import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import {
  type Backend,
  type BackendRead,
  ClosedError,
  type Cursor,
  ForbiddenError,
  InvalidArgumentError,
  InvalidCursorError,
  ManualClock,
  MemoryBackend,
  type Message,
  OverflowError,
  PubSubBroker,
  type PubSubBrokerOptions,
  type Subscription,
  TimeoutError,
} from '../../src/index.js';
import { perTest } from '../helpers.js';

function broker(options: PubSubBrokerOptions = {}): PubSubBroker {
  const b = new PubSubBroker(options);
  perTest.defer(() => b.close());
  return b;
}

/** Takes the next `n` messages from a subscription (they must already be queued or arrive). */
async function take<T>(sub: Subscription<T>, n: number): Promise<Message<T>[]> {
  const it = sub[Symbol.asyncIterator]();
  const out: Message<T>[] = [];
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe('PubSubBroker publish/subscribe', () => {
  it('delivers to exact and wildcard subscribers, in order, the same object to each', async () => {
    const b = broker();
    const exact = await b.subscribe('chat.lobby');
    const star = await b.subscribe('chat.*');
    const rest = await b.subscribe('chat.>');
    const other = await b.subscribe('news.*');
    const m1 = await b.publish('chat.lobby', 'hi');
    const m2 = await b.publish('chat.room.deep', { n: 2 });
    expect(m1.id).not.toBe(m2.id);
    expect((await take(exact, 1)).map((m) => m.data)).toEqual(['hi']);
    expect((await take(star, 1))[0]).toBe(m1);
    expect((await take(rest, 2)).map((m) => m.id)).toEqual([m1.id, m2.id]);
    expect(other.stats().queued).toBe(0);
    expect(b.stats()).toMatchObject({ published: 2, delivered: 4, subscriptions: 4 });
  });

  it('calls onMessage for callback subscriptions', async () => {
    const b = broker();
    const seen: unknown[] = [];
    await b.subscribe('a', { onMessage: (m) => seen.push(m.data) });
    await b.publish('a', 1);
    await b.publish('a', 2);
    expect(seen).toEqual([1, 2]);
  });

  it('replays from a cursor, then goes live, with no gap and no duplicate', async () => {
    const b = broker();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await b.publish('r', i)).id);
    const sub = await b.subscribe('r', { from: ids[1] });
    await b.publish('r', 5);
    expect((await take(sub, 4)).map((m) => m.data)).toEqual([2, 3, 4, 5]);
    expect(b.replayInfo(sub)).toEqual({ gap: false, replayed: 3 });
    const all = await b.subscribe('r', { from: 'oldest' });
    expect((await take(all, 6)).map((m) => m.data)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(b.replayInfo(await b.subscribe('r'))).toBeUndefined();
  });

  it('handles the replay seam: messages published while the log is read arrive once, in order', async () => {
    // A backend whose reads wait on a gate, so publishes land in the middle of a replay.
    const inner = new MemoryBackend();
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    const slow: Backend = {
      attach: (d) => inner.attach(d),
      publish: (r) => inner.publish(r),
      read: async (t, c: Cursor | null, l): Promise<BackendRead> => {
        const result = await inner.read(t, c, l);
        await gate;
        return result;
      },
      head: () => inner.head(),
      stats: () => inner.stats(),
      close: () => inner.close(),
    };
    const b = broker({ backend: slow });
    for (let i = 0; i < 3; i++) await b.publish('s', i);
    const pending = b.subscribe('s', { from: 'oldest' });
    await b.publish('s', 3); // published after the read snapshot, before replay completes
    await b.publish('s', 4);
    open();
    const sub = await pending;
    await b.publish('s', 5);
    expect((await take(sub, 6)).map((m) => m.data)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(sub.stats().queued).toBe(0);
  });

  it('owes live messages published during a replay even when the log trimmed them before the read', async () => {
    // Regression (found by the model test): the read runs late, after five publishes trimmed the
    // first of them from a 4-message log; that message was published after subscribing, so it
    // must still arrive, first and once.
    const inner = new MemoryBackend({ history: { maxCount: 4 } });
    const lagging: Backend = {
      attach: (d) => inner.attach(d),
      publish: (r) => inner.publish(r),
      read: async (t, c, l) => {
        await new Promise((resolve) => setImmediate(resolve));
        return inner.read(t, c, l);
      },
      head: () => inner.head(),
      stats: () => inner.stats(),
      close: () => inner.close(),
    };
    const b = broker({ backend: lagging });
    const pending = b.subscribe('t', { from: 'oldest' });
    for (let i = 0; i < 5; i++) await b.publish('t', i);
    const sub = await pending;
    expect((await take(sub, 5)).map((m) => m.data)).toEqual([0, 1, 2, 3, 4]);
    expect(sub.stats().queued).toBe(0);
    await inner.close();
  });

  it('reports a gap when the cursor fell off the log, and one from before a restart', async () => {
    const b = broker({ history: { maxCount: 3 } });
    const first = await b.publish('g', 0);
    for (let i = 1; i < 6; i++) await b.publish('g', i);
    const sub = await b.subscribe('g', { from: first.id });
    expect(b.replayInfo(sub)).toEqual({ gap: true, replayed: 3 });
    expect((await take(sub, 3)).map((m) => m.data)).toEqual([3, 4, 5]);

    const restarted = broker();
    await restarted.publish('g', 'new');
    const stale = await restarted.subscribe('g', { from: first.id });
    expect(restarted.replayInfo(stale)).toEqual({ gap: true, replayed: 1 });
  });

  it('rejects a malformed cursor and one from the future with InvalidCursorError', async () => {
    const b = broker();
    const m = await b.publish('c', 1);
    await expect(b.subscribe('c', { from: 'garbage!' })).rejects.toBeInstanceOf(InvalidCursorError);
    await expect(b.subscribe('c', { from: `${m.id.split('-')[0]}-zzzz` })).rejects.toBeInstanceOf(InvalidCursorError);
    expect(b.stats().subscriptions).toBe(0);
  });

  it('treats __proto__, constructor and toString as ordinary topics', async () => {
    const b = broker();
    const sub = await b.subscribe('__proto__.>');
    const all = await b.subscribe('>');
    await b.publish('__proto__.constructor', 'x');
    await b.publish('toString', 'y');
    expect((await take(sub, 1)).map((m) => m.topic)).toEqual(['__proto__.constructor']);
    expect((await take(all, 2)).map((m) => m.topic)).toEqual(['__proto__.constructor', 'toString']);
    expect(({} as Record<string, unknown>)['constructor']).toBe(Object);
  });
});

describe('PubSubBroker queue groups', () => {
  it('splits messages between members, each message to exactly one', async () => {
    const b = broker();
    const got: Record<string, number[]> = { a: [], b: [], c: [] };
    for (const name of ['a', 'b', 'c']) await b.subscribe('jobs.*', { group: 'workers', onMessage: (m) => got[name]!.push(m.data as number) });
    const plain: number[] = [];
    await b.subscribe('jobs.*', { onMessage: (m) => plain.push(m.data as number) });
    for (let i = 0; i < 9; i++) await b.publish('jobs.x', i);
    const all = [...got['a']!, ...got['b']!, ...got['c']!].sort((x, y) => x - y);
    expect(all).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(got['a']!.length).toBe(3);
    expect(plain).toHaveLength(9);
  });

  it('keeps delivering to the remaining members when one leaves', async () => {
    const b = broker();
    const a: number[] = [];
    const bb: number[] = [];
    const subA = await b.subscribe('q', { group: 'g', onMessage: (m) => a.push(m.data as number) });
    await b.subscribe('q', { group: 'g', onMessage: (m) => bb.push(m.data as number) });
    await b.publish('q', 1);
    subA.close();
    for (let i = 2; i <= 4; i++) await b.publish('q', i);
    expect([...a, ...bb].sort()).toEqual([1, 2, 3, 4]);
    expect(a.length).toBeLessThanOrEqual(1);
  });

  it('refuses replay in a queue group, and a malformed group name', async () => {
    const b = broker();
    await expect(b.subscribe('q', { group: 'g', from: 'oldest' })).rejects.toThrow(/starts from "now"/);
    await expect(b.subscribe('q', { group: 'bad group' })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('PubSubBroker request/reply', () => {
  it('resolves with the first reply, on a private inbox no wildcard subscriber sees', async () => {
    const b = broker();
    const everything: string[] = [];
    await b.subscribe('>', { onMessage: (m) => everything.push(m.topic) });
    await b.subscribe('math.double', { onMessage: (m) => void b.reply(m, (m.data as number) * 2) });
    await b.subscribe('math.double', { onMessage: (m) => void b.reply(m, -1) });
    const reply = await b.request('math.double', 21, { timeoutMs: 1000 });
    expect(reply.data).toBe(42);
    expect(everything).toEqual(['math.double']);
    expect(b.stats().pendingRequests).toBe(0);
    expect(b.stats().backend.topics).toBe(1); // the inbox was not logged
  });

  it('times out with TimeoutError on the injected clock', async () => {
    const clock = new ManualClock();
    const b = broker({ clock });
    const pending = b.request('nobody', 1, { timeoutMs: 500 });
    clock.advance(499);
    expect(b.stats().pendingRequests).toBe(1);
    clock.advance(1);
    await expect(pending).rejects.toBeInstanceOf(TimeoutError);
    expect(b.stats().pendingRequests).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects on abort and on close, and refuses reply to a non-request', async () => {
    const b = broker();
    const ac = new AbortController();
    const aborted = b.request('x', 1, { timeoutMs: 10_000, signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    const closing = b.request('x', 1, { timeoutMs: 10_000 });
    await b.close();
    await expect(closing).rejects.toBeInstanceOf(ClosedError);
    const b2 = broker();
    const plain = await b2.publish('x', 1);
    await expect(b2.reply(plain, 2)).rejects.toThrow(/not a request/);
    await expect(b2.request('x', 1, { timeoutMs: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('PubSubBroker slow subscribers', () => {
  it('drop-oldest keeps the newest maxQueuedMessages messages and counts drops', async () => {
    const b = broker();
    const drops: unknown[] = [];
    const listener = (m: unknown): number => drops.push(m);
    diagnosticsChannel.subscribe('patchbay:pubsub:drop', listener);
    try {
      const sub = await b.subscribe('s', { maxQueuedMessages: 3, overflow: 'drop-oldest' });
      for (let i = 0; i < 5; i++) await b.publish('s', i);
      expect(sub.stats()).toMatchObject({ dropped: 2, queued: 3 });
      expect((await take(sub, 3)).map((m) => m.data)).toEqual([2, 3, 4]);
      expect(b.stats().dropped).toBe(2);
      expect(drops).toHaveLength(2);
      expect((drops[0] as { message: Message }).message.data).toBe(0);
    } finally {
      diagnosticsChannel.unsubscribe('patchbay:pubsub:drop', listener);
    }
  });

  it('drop-newest keeps the oldest maxQueuedMessages messages', async () => {
    const b = broker();
    const sub = await b.subscribe('s', { maxQueuedMessages: 2, overflow: 'drop-newest' });
    for (let i = 0; i < 4; i++) await b.publish('s', i);
    expect((await take(sub, 2)).map((m) => m.data)).toEqual([0, 1]);
    expect(sub.stats().dropped).toBe(2);
  });

  it('close (the default) ends the iterator with OverflowError after the queued messages', async () => {
    const b = broker({ maxQueuedMessages: 2 });
    const sub = await b.subscribe('s');
    for (let i = 0; i < 3; i++) await b.publish('s', i);
    expect(sub.closed).toBe(true);
    const it = sub[Symbol.asyncIterator]();
    expect((await it.next()).value?.data).toBe(0);
    expect((await it.next()).value?.data).toBe(1);
    await expect(it.next()).rejects.toBeInstanceOf(OverflowError);
    expect(await it.next()).toEqual({ value: undefined, done: true });
    expect(b.stats().subscriptions).toBe(0);
  });

  it('a live consumer never overflows: waiting next() calls take messages directly', async () => {
    const b = broker({ maxQueuedMessages: 1 });
    const sub = await b.subscribe('s');
    const it = sub[Symbol.asyncIterator]();
    for (let i = 0; i < 100; i++) {
      const next = it.next();
      await b.publish('s', i);
      expect((await next).value?.data).toBe(i);
    }
    expect(sub.stats()).toMatchObject({ dropped: 0, delivered: 100 });
  });
});

describe('PubSubBroker authorization and lifecycle', () => {
  it('asks authorize hooks and refuses with ForbiddenError, publishing nothing', async () => {
    const b = broker({
      authorize: {
        publish: (target, ctx) => target.topics![0]!.startsWith('public.') || ctx === 'admin',
        subscribe: async (target) => target.pattern !== '>',
      },
    });
    await expect(b.publish('secret', 1)).rejects.toBeInstanceOf(ForbiddenError);
    await expect(b.publish('secret', 1, { context: 'admin' })).resolves.toMatchObject({ data: 1 });
    await expect(b.subscribe('>')).rejects.toBeInstanceOf(ForbiddenError);
    await expect(b.subscribe('public.*')).resolves.toBeDefined();
    expect(b.stats().published).toBe(1);
  });

  it('rejects bad input with typed errors', async () => {
    const b = broker();
    await expect(b.publish('a..b', 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(b.publish('a.*', 1)).rejects.toThrow(/wildcards/);
    await expect(b.publish('a', undefined)).rejects.toThrow(/`data`/);
    await expect(b.publish('a', 1, { headers: { x: 5 as unknown as string } })).rejects.toThrow(/header "x"/);
    // A header named __proto__ is refused at publish (Redis would read it back as undecodable: a gap for every reader).
    await expect(b.publish('a', 1, { headers: JSON.parse('{"__proto__":"x"}') as Record<string, string> })).rejects.toThrow(/"__proto__" is refused/);
    expect(b.stats().published).toBe(0);
    await expect(b.subscribe('a.>.b')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(b.subscribe('a', { overflow: 'explode' as 'close' })).rejects.toThrow(/overflow/);
    await expect(b.subscribe('a', { maxQueuedMessages: 0 })).rejects.toThrow(/maxQueuedMessages/);
    expect(() => new PubSubBroker({ maxQueuedMessages: -1 })).toThrow(InvalidArgumentError);
    expect(b.stats()).toMatchObject({ published: 0, subscriptions: 0 });
  });

  it('unsubscribes on abort, on close, and when the loop is left early', async () => {
    const b = broker();
    const ac = new AbortController();
    const s1 = await b.subscribe('x', { signal: ac.signal });
    ac.abort();
    expect(s1.closed).toBe(true);
    const s2 = await b.subscribe('x');
    await b.publish('x', 1);
    for await (const m of s2) {
      expect(m.data).toBe(1);
      break;
    }
    expect(s2.closed).toBe(true);
    await expect(b.subscribe('x', { signal: AbortSignal.abort('no') })).rejects.toBe('no');
    expect(b.stats().subscriptions).toBe(0);
  });

  it('close() ends every iterator and later calls reject with ClosedError', async () => {
    const b = broker();
    const sub = await b.subscribe('x');
    const next = sub[Symbol.asyncIterator]().next();
    await b.close();
    expect(await next).toEqual({ value: undefined, done: true });
    await expect(b.publish('x', 1)).rejects.toBeInstanceOf(ClosedError);
    await expect(b.subscribe('x')).rejects.toBeInstanceOf(ClosedError);
  });

  it('sends a throwing callback subscriber to onError and keeps delivering to others', async () => {
    const errors: unknown[] = [];
    const b = broker({ onError: (e) => errors.push(e) });
    const ok: unknown[] = [];
    await b.subscribe('e', {
      onMessage: () => {
        throw new Error('bad handler');
      },
    });
    await b.subscribe('e', { onMessage: (m) => ok.push(m.data) });
    await b.publish('e', 1);
    expect(errors).toHaveLength(1);
    expect(ok).toEqual([1]);
  });
});

describe('PubSubBroker refuses data no transport can carry, and authorizes patterns safely', () => {
  it('publish refuses deep, cyclic, BigInt and lone-surrogate data with InvalidArgumentError, storing nothing', async () => {
    const b = broker();
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = [deep];
    const cycle: Record<string, unknown> = {};
    cycle['me'] = cycle;
    for (const data of [deep, cycle, 10n, '\ud800', { s: 'x\udc00' }, () => 1]) {
      await expect(b.publish('t', data)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect(b.stats().published).toBe(0);
    expect((await b.read('t', null, 10)).messages).toHaveLength(0);
    const tight = broker({ maxDataDepth: 2 });
    await expect(tight.publish('t', [[1]])).resolves.toBeDefined();
    await expect(tight.publish('t', [[[1]]])).rejects.toThrow(/deeper than 2/);
    expect(() => broker({ maxDataDepth: 0 })).toThrow(InvalidArgumentError);
  });

  it('a grant with canRead keeps a pattern subscription from ever delivering a hidden topic, replayed or live', async () => {
    const b = broker({
      authorize: { subscribe: (_target, ctx) => ({ identity: String(ctx), canRead: (topic) => !topic.startsWith('admin.') }) },
    });
    await b.publish('admin.secret', 'old secret');
    await b.publish('chat.x', 'old chat');
    for (const pattern of ['>', 'admin.*', '*.secret', 'admin.>']) {
      const got: string[] = [];
      const sub = await b.subscribe(pattern, { from: 'oldest', context: 'ann', onMessage: (m) => got.push(m.topic) });
      expect(sub.identity).toBe('ann');
      await b.publish('admin.secret', 'new secret');
      await b.publish('chat.secret', 'chat');
      expect(got.filter((t) => t.startsWith('admin.')), pattern).toEqual([]);
      sub.close();
    }
  });

  it('canRead on read() and subscribe() filters by topic, and a throwing check refuses', async () => {
    const b = broker();
    await b.publish('a.1', 1);
    await b.publish('b.1', 2);
    const page = await b.read({ pattern: '>' }, null, 10, { canRead: (t) => t.startsWith('a.') });
    expect(page.messages.map((m) => m.topic)).toEqual(['a.1']);
    const got: string[] = [];
    await b.subscribe('>', {
      from: 'oldest',
      canRead: (t) => {
        if (t === 'b.1') throw new Error('boom');
        return true;
      },
      onMessage: (m) => got.push(m.topic),
    });
    expect(got).toEqual(['a.1']);
  });
});

describe('PubSubBroker.read with a context asks authorize.subscribe, as a subscription would', () => {
  it('refuses with ForbiddenError and filters by the grant; without a context it asks no hook', async () => {
    const b = broker({
      authorize: { subscribe: (target, ctx) => (ctx === 'guest' ? { canRead: (t) => !t.startsWith('admin.') } : ctx !== 'nobody') },
    });
    await b.publish('admin.x', 1);
    await b.publish('chat.x', 2);
    expect((await b.read({ pattern: '>' }, null, 10, { context: 'guest' })).messages.map((m) => m.topic)).toEqual(['chat.x']);
    await expect(b.read('chat.x', null, 10, { context: 'nobody' })).rejects.toBeInstanceOf(ForbiddenError);
    expect((await b.read({ pattern: '>' }, null, 10)).messages).toHaveLength(2);
  });
});
