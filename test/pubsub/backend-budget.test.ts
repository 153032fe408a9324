/**
 * MemoryBackend's bounds across topics (`maxTotalBytes`, `maxTopics`) on top of each log's own:
 * the bytes kept never pass the budget, the counters are exact, and every read after a cursor
 * returns exactly what was published after it on the topic, or says `gap: true`.
 */
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { ManualClock, MemoryBackend, type Message, parseCursor } from '../../src/index.js';

const record = (topic: string, size: number, store = true) => ({ topic, data: 'x'.repeat(size), headers: undefined, size, store });

type Op =
  | { kind: 'publish'; topic: number; size: number; store: boolean }
  | { kind: 'advance'; ms: number }
  | { kind: 'read'; topic: number; at: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('publish' as const), topic: fc.nat(7), size: fc.nat(300), store: fc.nat(9).map((n) => n > 0) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.nat(400) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('read' as const), topic: fc.nat(7), at: fc.nat() }) },
);

/** Checks one read after `cursor` on `topic` against what was published there. */
function checkRead(published: readonly Message[], topic: string, cursorSeq: number | null, r: { messages: Message[]; gap: boolean }): void {
  const after = published.filter((m) => m.topic === topic && (cursorSeq === null || m._seq > cursorSeq)).map((m) => m.id);
  const got = r.messages.map((m) => m.id);
  if (r.gap || cursorSeq === null) {
    // What is left, in order (a message larger than a log's bound leaves a hole, not only a cut).
    let i = 0;
    for (const id of after) if (id === got[i]) i++;
    expect(i).toBe(got.length);
  } else expect(got).toEqual(after);
}

describe('MemoryBackend: bounds across topics', () => {
  test.prop(
    [
      fc.array(op, { maxLength: 150 }),
      fc.integer({ min: 0, max: 3000 }),
      fc.integer({ min: 1, max: 9 }),
      fc.record({ maxCount: fc.integer({ min: 0, max: 20 }), maxBytes: fc.integer({ min: 0, max: 2000 }), maxAgeMs: fc.integer({ min: 1, max: 1000 }) }),
    ],
    { numRuns: 200 },
  )('bytes kept never pass maxTotalBytes, the counters are exact, and every read is exact or says gap', async (ops, maxTotalBytes, maxTopics, history) => {
    const clock = new ManualClock();
    const backend = new MemoryBackend({ maxTotalBytes, maxTopics, history, clock });
    const published: Message[] = [];
    const stored: Message[] = [];
    for (const o of ops) {
      if (o.kind === 'publish') {
        const m = await backend.publish(record(`t.${o.topic}`, o.size, o.store));
        published.push(m);
        if (o.store) stored.push(m);
        expect(backend.stats().bytes).toBeLessThanOrEqual(maxTotalBytes);
      } else if (o.kind === 'advance') {
        clock.advance(o.ms);
      } else {
        const from = stored.length === 0 || o.at % 5 === 0 ? null : stored[o.at % stored.length]!;
        const topic = `t.${o.topic}`;
        const r = await backend.read(topic, from === null ? null : parseCursor(from.id), 1000);
        checkRead(stored, topic, from === null ? null : from._seq, r);
      }
    }
    // The counters are what the logs hold: read every topic from the oldest.
    let messages = 0;
    let bytes = 0;
    const topics = new Set<string>();
    for (let t = 0; t < 8; t++) {
      const r = await backend.read(`t.${t}`, null, 100_000);
      messages += r.messages.length;
      bytes += r.messages.reduce((n, m) => n + m._size, 0);
      if (stored.some((m) => m.topic === `t.${t}`)) topics.add(`t.${t}`);
      checkRead(stored, `t.${t}`, null, r);
      // After every cursor published, on every topic.
      for (const from of stored) checkRead(stored, `t.${t}`, from._seq, await backend.read(`t.${t}`, parseCursor(from.id), 100_000));
    }
    const stats = backend.stats();
    expect(stats.messages).toBe(messages);
    expect(stats.bytes).toBe(bytes);
    expect(bytes).toBeLessThanOrEqual(maxTotalBytes);
    expect(stats.topics).toBeLessThanOrEqual(Math.min(maxTopics, topics.size));
    await backend.close();
  });

  it('1 MB to each of 200 topics keeps at most maxTotalBytes, not 200 MB', async () => {
    const backend = new MemoryBackend({ maxTotalBytes: 16 * 1024 * 1024 });
    const first: Message[] = [];
    for (let t = 0; t < 200; t++) for (let i = 0; i < 16; i++) {
      const m = await backend.publish(record(`room.${t}`, 64 * 1024));
      if (i === 0) first.push(m);
    }
    const stats = backend.stats();
    expect(stats.bytes).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(stats.bytes).toBeGreaterThan(15 * 1024 * 1024);
    expect(stats.topics).toBe(200);
    // The oldest went first: the first rooms are empty, and a reader behind says gap.
    expect((await backend.read('room.0', null, 100)).messages).toEqual([]);
    expect((await backend.read('room.0', parseCursor(first[0]!.id), 100)).gap).toBe(true);
    // The newest rooms are whole.
    const last = await backend.read('room.199', parseCursor(first[199]!.id), 100);
    expect(last).toMatchObject({ gap: false });
    expect(last.messages.length).toBe(15);
    await backend.close();
  });

  it('keeps the default budget of 64 MiB', async () => {
    const backend = new MemoryBackend();
    for (let t = 0; t < 100; t++) for (let i = 0; i < 8; i++) await backend.publish(record(`big.${t}`, 1024 * 1024));
    expect(backend.stats().bytes).toBe(64 * 1024 * 1024);
    await backend.close();
  });

  it('maxTotalBytes 0 keeps nothing and a reader after a cursor sees the gap', async () => {
    const backend = new MemoryBackend({ maxTotalBytes: 0 });
    const a = await backend.publish(record('z', 10));
    await backend.publish(record('z', 10));
    expect(backend.stats()).toMatchObject({ messages: 0, bytes: 0 });
    expect(await backend.read('z', parseCursor(a.id), 10)).toMatchObject({ gap: true, messages: [] });
    await backend.close();
  });

  it('keeps the counters exact across many trims by the logs themselves and by the budget (queue compaction)', async () => {
    // One hot topic trimmed by its own count bound: the budget queue must not grow with it.
    const backend = new MemoryBackend({ history: { maxCount: 100 }, maxTotalBytes: 1_000_000 });
    for (let i = 0; i < 50_000; i++) await backend.publish(record('hot', 10));
    expect(backend.stats()).toMatchObject({ messages: 100, bytes: 1000 });
    for (let i = 0; i < 50_000; i++) await backend.publish(record(`many.${i % 500}`, 100));
    expect(backend.stats()).toMatchObject({ topics: 501, bytes: 1_000_000, messages: 10_000 });
    const hot = await backend.read('hot', null, 10);
    expect(hot.messages).toEqual([]); // the oldest of all: trimmed by the budget
    const recent = await backend.read([['many', '*']], null, 100_000);
    expect(recent.messages.length).toBe(10_000);
    expect(recent.messages[0]!._seq).toBe(50_000 + 40_001);
    await backend.close();
  });

  it('past maxTopics the oldest topic goes, and a reader behind what it held sees the gap', async () => {
    const backend = new MemoryBackend({ maxTopics: 2 });
    const start = await backend.head();
    const a = await backend.publish(record('a', 1));
    const b = await backend.publish(record('b', 1));
    await backend.publish(record('c', 1));
    expect(backend.stats()).toMatchObject({ topics: 2, messages: 2, bytes: 2 });
    expect(await backend.read('b', parseCursor(start), 10)).toMatchObject({ gap: true, messages: [{ id: b.id }] });
    expect(await backend.read('b', parseCursor(a.id), 10)).toMatchObject({ gap: false, messages: [{ id: b.id }] });
    expect(await backend.read('b', parseCursor(b.id), 10)).toMatchObject({ gap: false, messages: [] });
    await backend.close();
  });

  it('a message dropped on entry stays a gap after the budget trims an older one (seed counterexample)', async () => {
    // [publish t.6 size 0, publish t.6 size 2, publish t.0 size 1]: the second message is larger
    // than history.maxBytes and is dropped on entry; the budget then trims the first. The log's
    // trimmed-up-to mark must still cover the second, so a read after the first says gap.
    const clock = new ManualClock();
    const backend = new MemoryBackend({ maxTotalBytes: 0, maxTopics: 2, history: { maxCount: 1, maxBytes: 1, maxAgeMs: 1 }, clock });
    const first = await backend.publish(record('t.6', 0));
    await backend.publish(record('t.6', 2));
    await backend.publish(record('t.0', 1));
    expect(await backend.read('t.6', parseCursor(first.id), 1000)).toMatchObject({ gap: true, messages: [] });
    await backend.close();
  });

  it('validates maxTotalBytes', () => {
    expect(() => new MemoryBackend({ maxTotalBytes: -1 })).toThrow(/maxTotalBytes/);
    expect(() => new MemoryBackend({ maxTotalBytes: 1.5 })).toThrow(/maxTotalBytes/);
  });
});
