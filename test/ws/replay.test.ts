/**
 * Replays from a cursor: read page by page as the socket drains, bounded per connection, never
 * cut by the overflow policy, and seamless into live delivery.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { perTest, until } from '../helpers.js';
import { Client, rig } from './helpers.js';

describe('WsHandler: replays are bounded', () => {
  it('a never-reading client cannot make the server hold more than maxBufferedBytes of replay, and gets everything once it reads', async () => {
    const BOUND = 256 * 1024;
    const SUBS = 100;
    const COUNT = 1000;
    const payload = 'x'.repeat(2000);
    const r = await rig({ maxBufferedBytes: BOUND }, { history: { maxCount: COUNT, maxBytes: 16 * 1024 * 1024 } });
    const ids: string[] = [];
    for (let i = 0; i < COUNT; i++) ids.push((await r.broker.publish('big', `${i}:${payload}`)).id); // ~2 MB of log

    // A client that parses as it goes and keeps only what it checks.
    const socket = new WebSocket(r.url);
    perTest.defer(() => socket.terminate()); // it answers no close frame while paused
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('open', resolve));
    const next = new Map<string, number>(); // sid -> index of the next id expected
    const wrong: string[] = [];
    let messages = 0;
    let subscribed = 0;
    socket.on('message', (data) => {
      const f = JSON.parse(String(data)) as { type: string; sid: string; id: string };
      if (f.type === 'subscribed') subscribed++;
      else if (f.type === 'message') {
        messages++;
        const i = next.get(f.sid) ?? 0;
        if (ids[i] !== f.id) wrong.push(`${f.sid}: got ${f.id} at ${i}`);
        next.set(f.sid, i + 1);
      } else wrong.push(String(data).slice(0, 200));
    });
    socket.pause(); // reads nothing from here on
    for (let i = 0; i < SUBS; i++) socket.send(JSON.stringify({ type: 'subscribe', sid: `s${i}`, topics: ['big'], cursor: 'oldest' }));
    await until(() => r.ws.connections().length === 1, 'the connection');
    const connection = r.ws.connections()[0]!;

    // The server fills what the kernel takes, then its own replay budget, and stops there.
    let maxHeld = 0;
    let maxReplaying = 0;
    const sample = (): void => {
      const s = connection.stats();
      maxHeld = Math.max(maxHeld, s.bytesQueued + s.bytesBuffered);
      maxReplaying = Math.max(maxReplaying, s.bytesReplaying);
    };
    await until(() => {
      sample();
      return connection.stats().bytesReplaying > BOUND - 4096;
    }, 'the replay budget to fill');
    for (let turn = 0; turn < 2000; turn++) {
      sample();
      await new Promise((resolve) => setImmediate(resolve));
    }
    // What the kernel's socket buffers took is all that left: most of the 200 MB is still in the log.
    expect(connection.stats().messagesSent).toBeLessThan((SUBS * COUNT) / 4);
    expect(maxReplaying).toBeLessThanOrEqual(BOUND);
    expect(maxHeld).toBeLessThanOrEqual(BOUND + 4096); // no live traffic: all of it is replay and replies
    expect(r.ws.stats().bytesQueued).toBeLessThanOrEqual(BOUND);

    socket.resume();
    await until(() => messages === SUBS * COUNT || wrong.length > 0, 'every replay, whole', 2_000_000);
    expect(wrong).toEqual([]);
    expect(subscribed).toBe(SUBS);
    for (let i = 0; i < SUBS; i++) expect(next.get(`s${i}`), `s${i}`).toBe(COUNT);
    // Never cut or dropped by the overflow policy ("close"), and live afterwards.
    expect(r.ws.stats()).toMatchObject({ overflowCloses: 0, drops: 0, subscriptions: SUBS });
    await until(() => connection.stats().replaying === 0 && r.broker.stats().subscriptions === SUBS, 'every subscription live');
    const live = await r.broker.publish('big', 'live');
    ids.push(live.id);
    await until(() => messages === SUBS * (COUNT + 1), 'the live message on every subscription');
    expect(wrong).toEqual([]);
    expect(connection.stats().bytesReplaying).toBe(0);
    socket.terminate();
  });

  it('live messages of another subscription keep their own budget while a replay waits for the client', async () => {
    const BOUND = 64 * 1024;
    const r = await rig({ maxBufferedBytes: BOUND });
    for (let i = 0; i < 500; i++) await r.broker.publish('log', 'y'.repeat(1000));
    const c = await Client.open(r);
    await c.subscribe('live', { topics: ['now'] });
    c.socket.pause();
    c.send({ type: 'subscribe', sid: 'old', topics: ['log'], cursor: 'oldest' });
    await until(() => r.ws.connections()[0]!.stats().bytesReplaying > BOUND - 2048, 'the replay budget to fill');
    // The replay fills its budget; a few live messages still fit in theirs: no overflow close.
    for (let i = 0; i < 10; i++) await r.broker.publish('now', i);
    expect(r.ws.stats().overflowCloses).toBe(0);
    c.socket.resume();
    await until(() => c.messages('old').length === 500 && c.messages('live').length === 10, 'both');
    expect(c.messages('live').map((f) => f.data)).toEqual([...Array(10).keys()]);
    expect(r.ws.stats().overflowCloses).toBe(0);
  });
});

describe('WsHandler: resuming is exact', () => {
  it('resubscribing with the last id after any cut yields every message exactly once, in publish order (property)', async () => {
    // Small enough that replays take many pages, and that a live burst may cut the first connection.
    const r = await rig({ maxBufferedBytes: 4096 }, { history: { maxCount: 10_000 } });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 120 }), // published before the first subscribe
        fc.integer({ min: 0, max: 60 }), // published while it is replaying and live
        fc.integer({ min: 0, max: 200 }), // messages received before the cut
        fc.constantFrom<'oldest' | 'head'>('oldest', 'head'),
        async (before, during, cutAt, start) => {
          const n = run++;
          const [a, b, other] = [`a${n}`, `b${n}`, `o${n}`];
          const head = await r.broker.head();
          const published: { id: string; topic: string }[] = [];
          const publish = async (i: number): Promise<void> => {
            const topic = [a, b, other][i % 3]!;
            published.push(await r.broker.publish(topic, `${i}:${'z'.repeat(i % 7 === 0 ? 900 : 40)}`));
          };
          for (let i = 0; i < before; i++) await publish(i);
          const first = await Client.open(r);
          const sub = await first.subscribe('s', { topics: [a, b] }, start === 'oldest' ? 'oldest' : head);
          expect(sub.type).toBe('subscribed');
          for (let i = before; i < before + during; i++) await publish(i);
          const want = () => published.filter((m) => m.topic !== other).map((m) => m.id);
          const cut = Math.min(cutAt, want().length);
          // The cut: the client goes, or the server closes it first (a live burst past the bound).
          await until(() => first.messages('s').length >= cut || first.closed !== undefined, `${cut} messages before the cut`);
          first.socket.terminate();
          const seen = first.messages('s').map((f) => f.id as string);
          const cursor = seen.at(-1) ?? (sub.cursor as string);
          const second = await Client.open(r);
          const resumed = await second.subscribe('s', { topics: [b, a] }, cursor === 'oldest' ? 'oldest' : cursor);
          expect(resumed.type).toBe('subscribed');
          await publish(before + during); // one more, live (or an 'other', not for this subscription)
          await until(() => seen.length + second.messages('s').length >= want().length, 'the rest');
          await second.request({ type: 'ping' });
          const all = [...seen, ...second.messages('s').map((f) => f.id as string)];
          expect(all).toEqual(want());
          expect(second.frames.some((f) => f.type === 'gap' || f.type === 'error')).toBe(false);
          second.socket.terminate();
        },
      ),
      { numRuns: 25, seed: 15 },
    );
    await until(() => r.ws.stats().connections === 0 && r.broker.stats().subscriptions === 0, 'cleanup');
  });
});
