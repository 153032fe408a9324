/**
 * SseHandler against hostile and unlucky input (issue 15):
 *
 * - a message the handler cannot serialize is contained (no crash through the broker's error
 *   path, no poisoned "serialize once" memo, no 400 on a resume before it): it is skipped and
 *   announced with a gap event whose id moves the client past it;
 * - a fresh client cut before its first message (a burst past maxBufferedBytes) resumes from the
 *   id of its opening event and loses nothing; `eventsSent` counts only what was written;
 * - a replay is read page by page as the client takes bytes: a client that never reads costs
 *   about maxBufferedBytes, not the log, until the stall timeout closes it; a replay larger than
 *   the bound goes out paced, never cut by the overflow policy;
 * - property: whatever the log holds and wherever the connection is cut, a client that resumes
 *   with its last id gets every message exactly once, in order, with gap events exactly where a
 *   message could not be carried.
 */
import { connect } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Clock,
  ManualClock,
  MemoryBackend,
  type Message,
  PubSubBroker,
  type PubSubBrokerOptions,
  pubsubChannels,
  type PublishRecord,
  realClock,
  sseChannels,
  SseHandler,
  type SseHandlerOptions,
} from '../../src/index.js';
import { perTest, readSse, type SseReader, serveRig, until } from '../helpers.js';

/**
 * A backend that stores, in place of `{ bad: true }`, a value no JSON can carry (a BigInt): what
 * a custom backend or a record from another version could hand the handler, since
 * `broker.publish` itself refuses such data.
 */
class PoisonBackend extends MemoryBackend {
  override publish(record: PublishRecord): Promise<Message> {
    const bad = typeof record.data === 'object' && record.data !== null && (record.data as { bad?: unknown }).bad === true;
    return super.publish(bad ? { ...record, data: { n: 10n } } : record);
  }
}

async function rig(options: Partial<SseHandlerOptions> = {}, brokerOptions: PubSubBrokerOptions = {}) {
  const broker = new PubSubBroker({ backend: new PoisonBackend({ history: { maxCount: 100_000, maxBytes: 64 * 1024 * 1024 } }), ...brokerOptions });
  const sse = new SseHandler({ broker, ...options });
  perTest.defer(async () => {
    await sse.close();
    await broker.close();
    await broker.backend.close();
  });
  const { url: base } = await serveRig((req, res) => {
    const m = /^\/sse\/([^/?]+)/.exec(req.url ?? '');
    void sse.handle(req, res, m ? { topics: [decodeURIComponent(m[1]!)] } : undefined);
  });
  return { broker, sse, base };
}

/** One connection as an EventSource would make it: every event parsed, the last id kept. */
/** A stream as the tests see it: readSse's reader, with the status and the gap header at hand. */
interface Connection extends SseReader {
  readonly status: number;
  readonly gapHeader: string | null;
}

/**
 * Opens a stream. With `stopAfter`, the client takes that many events (opening event excluded)
 * and cuts the connection: events parsed after them are not taken, as if never received.
 */
async function connectSse(url: string, lastId: string | undefined, stopAfter = Infinity): Promise<Connection> {
  const reader = await readSse(url, { headers: lastId === undefined ? {} : { 'last-event-id': lastId }, limit: stopAfter });
  return Object.assign(reader, { status: reader.res.status, gapHeader: reader.res.headers.get('patchbay-gap') });
}

describe('SSE: a message the handler cannot serialize is contained', () => {
  it('never reaches the broker error path, and every reader gets a gap event that moves it past the message', async () => {
    const { broker, sse, base } = await rig();
    const errors: unknown[] = [];
    const onError = (m: unknown): void => void errors.push(m);
    pubsubChannels.error.subscribe(onError);
    perTest.defer(async () => void pubsubChannels.error.unsubscribe(onError));
    const a = await connectSse(`${base}/sse/poison`, undefined);
    const b = await connectSse(`${base}/sse/poison`, undefined);
    await until(() => a.opens.length === 1 && b.opens.length === 1, 'both streams open');
    const good1 = await broker.publish('poison', 'one');
    const bad = await broker.publish('poison', { bad: true });
    const good2 = await broker.publish('poison', 'two');
    await until(() => a.events.length === 3 && b.events.length === 3, 'three events on each stream');
    const gap = { event: 'gap', id: bad.id, data: JSON.stringify({ skipped: bad.id, topic: 'poison' }) };
    for (const c of [a, b]) {
      // Not the previous event's bytes again (the memo was set before serializing), not a crash.
      expect(c.events.map((e) => ({ event: e.event ?? 'message', id: e.id, data: e.data }))).toEqual([
        { event: 'message', id: good1.id, data: 'one' },
        gap,
        { event: 'message', id: good2.id, data: 'two' },
      ]);
    }
    expect(errors).toEqual([]);
    expect(sse.stats()).toMatchObject({ skipped: 1, connections: 2 });
    a.close();
    b.close();
  });

  it('a resume whose Last-Event-ID is before the bad message answers 200, skips it with a gap event, and goes on', async () => {
    const { broker, base } = await rig();
    const before = await broker.publish('poison2', 'before');
    const bad = await broker.publish('poison2', { bad: true });
    const after = await broker.publish('poison2', 'after');
    const c = await connectSse(`${base}/sse/poison2`, before.id);
    expect(c.status).toBe(200);
    expect(c.gapHeader).toBeNull(); // nothing was trimmed: the log still holds every message
    await until(() => c.events.length === 2, 'the gap and the message after it');
    expect(c.events.map((e) => [e.event, e.id])).toEqual([
      ['gap', bad.id],
      [undefined, after.id],
    ]);
    // The client's id moved past the bad message: resuming from the gap's id does not meet it again.
    c.close();
    const again = await connectSse(`${base}/sse/poison2`, bad.id);
    await until(() => again.events.length === 1, 'the message after the bad one');
    expect(again.events[0]!.id).toBe(after.id);
    again.close();
  });

  it('a message whose toJSON throws from its second call on: live readers get it, a later replay gets a gap, nothing stale', async () => {
    const { broker, sse, base } = await rig();
    let armed = false;
    const live = await connectSse(`${base}/sse/flaky`, undefined);
    await until(() => live.opens.length === 1, 'the stream');
    const cursor = await broker.head();
    const flaky = await broker.publish('flaky', {
      toJSON() {
        if (armed) throw new Error('not twice');
        return { ok: true };
      },
    });
    armed = true; // the live broadcast happened inside publish: from now on it throws
    await until(() => live.events.length === 1, 'the live event');
    expect(live.events[0]).toMatchObject({ id: flaky.id, data: '{"ok":true}' });
    const next = await broker.publish('flaky', 'next');
    const resumed = await connectSse(`${base}/sse/flaky`, cursor);
    await until(() => resumed.events.length === 2, 'the replay');
    expect(resumed.events.map((e) => [e.event, e.id])).toEqual([
      ['gap', flaky.id],
      [undefined, next.id],
    ]);
    expect(sse.stats().skipped).toBe(1);
    live.close();
    resumed.close();
  });
});

describe('SSE: a fresh client cut before its first message loses nothing', () => {
  it('a burst of 1,100 x 1 KB past maxBufferedBytes: the cut client resumes from its opening id and gets every message; eventsSent counts only what was written', async () => {
    const { broker, sse, base } = await rig();
    const first = await connectSse(`${base}/sse/burst`, undefined);
    await until(() => first.opens.length === 1, 'the opening event');
    expect(first.lastId).toBe(first.opens[0]!.id);
    const ids: string[] = [];
    const publishing: Promise<Message>[] = [];
    for (let i = 0; i < 1100; i++) publishing.push(broker.publish('burst', `${i}:${'k'.repeat(1024)}`)); // in one turn: 1.1 MiB queued
    for (const p of publishing) ids.push((await p).id);
    await first.ended; // cut by the overflow policy, before any of the burst was written
    expect(first.events).toEqual([]);
    expect(sse.stats()).toMatchObject({ drops: 1, eventsSent: 0 });
    const resumed = await connectSse(`${base}/sse/burst`, first.lastId);
    await until(() => resumed.events.length === 1100, 'the whole burst, replayed');
    expect(resumed.events.map((e) => e.id)).toEqual(ids);
    expect(sse.stats()).toMatchObject({ eventsSent: 1100, replayedMessages: 1100, drops: 1 });
    resumed.close();
  });

  it('one message larger than maxBufferedBytes: cut live, it still arrives on the resume, alone', async () => {
    const { broker, base } = await rig();
    const first = await connectSse(`${base}/sse/huge`, undefined);
    await until(() => first.opens.length === 1, 'the opening event');
    const huge = await broker.publish('huge', 'h'.repeat(1024 * 1024 + 1));
    await first.ended;
    expect(first.events).toEqual([]);
    const resumed = await connectSse(`${base}/sse/huge`, first.lastId);
    await until(() => resumed.events.length === 1, 'the huge message');
    expect(resumed.events[0]!.id).toBe(huge.id);
    expect(resumed.events[0]!.data).toHaveLength(1024 * 1024 + 1);
    resumed.close();
  });

  it('the opening event takes the head before subscribing: what is published in between is not lost', async () => {
    const { broker, sse, base } = await rig();
    const c = await connectSse(`${base}/sse/head`, undefined);
    await until(() => c.opens.length === 1, 'the opening event');
    expect(c.opens[0]).toMatchObject({ event: 'patchbay-open', data: '' });
    expect(c.opens[0]!.id).toBe(await broker.head());
    const m = await broker.publish('head', 'after');
    await until(() => c.events.length === 1, 'the live message');
    expect(c.events[0]!.id).toBe(m.id);
    expect(sse.stats().replays).toBe(0);
    c.close();
  });
});

describe('SSE replays are bounded by bytes', () => {
  it('a replay larger than maxBufferedBytes goes out paced (never cut), then live messages follow', async () => {
    const { broker, sse, base } = await rig({ maxBufferedBytes: 64 * 1024 });
    const cursor = (await broker.publish('t', 'seen')).id;
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await broker.publish('t', `${i}:${'x'.repeat(16 * 1024)}`)).id); // 640 KiB: 10x the bound
    const c = await connectSse(`${base}/sse/t`, cursor);
    expect(c.status).toBe(200);
    await until(() => c.events.length >= ids.length, 'the whole replay');
    ids.push((await broker.publish('t', 'live')).id);
    await until(() => c.events.length === ids.length, 'the live message after the replay');
    expect(c.events.map((e) => e.id)).toEqual(ids);
    expect(sse.stats()).toMatchObject({ connections: 1, drops: 0, replays: 1, replayedMessages: 40, eventsSent: 41, replaying: 0, replayBytesHeld: 0 });
    c.close();
    await until(() => sse.stats().connections === 0 && broker.stats().subscriptions === 0, 'cleanup');
  });

  it.each([
    { MESSAGE: 64 * 1024, COUNT: 512, what: 'messages smaller than the bound' },
    { MESSAGE: 320 * 1024, COUNT: 100, what: 'messages larger than the bound (one at a time goes, alone)' },
  ])('a never-reading client cannot make the server hold more than maxBufferedBytes of replay, and the stall timeout closes it ($what)', async ({ MESSAGE, COUNT }) => {
    // Timers on a manual clock (the stall check), flushes real.
    const manual = new ManualClock();
    const clock: Clock = {
      now: () => manual.now(),
      setTimer: (callback, delayMs, options) => manual.setTimer(callback, delayMs, options),
      defer: (callback) => realClock.defer(callback),
    };
    const BOUND = 256 * 1024;
    const STALL = 10_000;
    // Heartbeats come due before the stall check ends it: paced like the replay, they never trip the overflow policy.
    const { broker, sse, base } = await rig({ maxBufferedBytes: BOUND, stallTimeoutMs: STALL, heartbeatMs: 2_000, clock });
    const reasons: string[] = [];
    const onClose = (m: unknown): void => void reasons.push((m as { reason: string }).reason);
    sseChannels.close.subscribe(onClose);
    perTest.defer(async () => void sseChannels.close.unsubscribe(onClose));
    const cursor = (await broker.publish('big', 'seen')).id;
    // 32 MiB: far more than the bound and the kernel's socket buffers.
    for (let i = 0; i < COUNT; i++) await broker.publish('big', `${i}:${'b'.repeat(MESSAGE)}`);
    const { port } = new URL(base);
    const socket = connect(Number(port), '127.0.0.1');
    perTest.defer(async () => void socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`GET /sse/big HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${cursor}\r\n\r\n`);
    socket.pause(); // and never read
    const held = (): number => {
      const s = sse.stats();
      return s.bytesQueued + s.bytesBuffered + s.replayBytesHeld;
    };
    // The kernel's buffers fill first; then the transport holds bytes and the replay waits.
    await until(() => sse.stats().replaying === 1 && sse.stats().bytesBuffered > 0, 'the transport to fill');
    let peak = 0;
    let replayed = sse.stats().replayedMessages;
    for (let turn = 0; turn < 500; turn++) {
      peak = Math.max(peak, held());
      await new Promise((resolve) => setImmediate(resolve));
    }
    // It stopped reading the log: what it holds is the bound plus at most about one message.
    expect(sse.stats().replayedMessages).toBe(replayed);
    expect(replayed).toBeLessThan(COUNT);
    expect(peak).toBeLessThanOrEqual(BOUND + MESSAGE + 1024);
    expect(sse.stats()).toMatchObject({ drops: 0, connections: 1 });
    // The stall check closes it, and the replay lets go of everything.
    for (let i = 0; i < 30 && sse.stats().connections > 0; i++) {
      manual.advance(1_000);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await until(() => sse.stats().connections === 0 && sse.stats().replaying === 0, 'the stalled stream to close');
    replayed = sse.stats().replayedMessages;
    expect(sse.stats()).toMatchObject({ replayBytesHeld: 0, bytesQueued: 0, bytesBuffered: 0, drops: 0 });
    expect(reasons).toEqual(['stall']);
    expect(broker.stats().subscriptions).toBe(0);
  });
});

describe('SSE resume property', () => {
  it('after any cuts, a client resuming with its last id gets every message exactly once, in order, with gaps only where a message could not be carried', async () => {
    // A small bound, so bursts are also cut by the server (overflow "close"), not only by the client.
    const { broker, sse, base } = await rig({ maxBufferedBytes: 4096 });
    let run = 0;
    const entry = fc.record({ bad: fc.boolean(), size: fc.integer({ min: 0, max: 3000 }) }, { requiredKeys: ['bad', 'size'] });
    await fc.assert(
      fc.asyncProperty(
        fc.array(entry, { minLength: 1, maxLength: 30 }),
        fc.array(entry, { maxLength: 30 }),
        fc.array(fc.nat({ max: 12 }), { maxLength: 6 }),
        async (before, after, cuts) => {
          const topic = `prop${run++}`;
          const expected: { event: string; id: string; data: string }[] = [];
          const publish = async (entries: { bad: boolean; size: number }[], tag: string): Promise<void> => {
            for (const [i, e] of entries.entries()) {
              if (e.bad) {
                const m = await broker.publish(topic, { bad: true });
                expected.push({ event: 'gap', id: m.id, data: JSON.stringify({ skipped: m.id, topic }) });
              } else {
                const data = `${tag}${i}:${'p'.repeat(e.size)}`;
                const m = await broker.publish(topic, data);
                expected.push({ event: 'message', id: m.id, data });
              }
            }
          };
          const got: { event: string; id: string; data: string }[] = [];
          const take = (c: Connection): void => {
            for (const e of c.events) got.push({ event: e.event ?? 'message', id: e.id ?? '', data: e.data });
          };
          // A fresh client: what it is owed starts after its opening event.
          let c = await connectSse(`${base}/sse/${topic}`, undefined, cuts[0] ?? Infinity);
          await until(() => c.opens.length === 1, 'the opening event');
          await publish(before, 'a');
          let lastId = c.lastId;
          for (const [i, cut] of cuts.entries()) {
            if (i > 0) c = await connectSse(`${base}/sse/${topic}`, lastId, cut);
            await until(() => c.done || c.events.length >= cut || got.length + c.events.length >= expected.length, 'the cut point');
            c.close();
            await c.ended;
            take(c);
            lastId = c.lastId;
            if (i === 0) await publish(after, 'b');
          }
          if (cuts.length === 0) {
            c.close();
            await c.ended;
            take(c);
            lastId = c.lastId;
            await publish(after, 'b');
          }
          // Resume until everything came (a server-side cut ends a stream early: resume again).
          for (let attempt = 0; got.length < expected.length; attempt++) {
            if (attempt > 50) throw new Error('no progress');
            const last = await connectSse(`${base}/sse/${topic}`, lastId);
            expect(last.status).toBe(200);
            expect(last.gapHeader).toBeNull();
            await until(() => last.done || got.length + last.events.length >= expected.length, 'the rest');
            last.close();
            await last.ended;
            take(last);
            lastId = last.lastId;
          }
          expect(got).toEqual(expected);
        },
      ),
      { numRuns: 25 },
    );
    expect(sse.stats()).toMatchObject({ gaps: 0, replaying: 0, replayBytesHeld: 0 }); // no log was trimmed: no gap but the skipped ones
  });
});
