/**
 * The backend conformance kit: one suite every `Backend` must pass (MemoryBackend now, the Redis
 * backend later), in the spirit of mqemitter's abstract tests.
 *
 * Usage: `backendConformance('MyBackend', async () => ({ backend, trim, restart }))`.
 */
import { describe, expect, it } from 'vitest';
import { InvalidCursorError, type Backend, type Message, parseCursor } from '../../src/index.js';
import { mulberry32 } from '../../bench/src/lib/random.js';

/** What a kit run needs from the backend under test. */
export interface KitSubject {
  /** A fresh, empty backend with a history bound of at least 5 messages per topic and at most 50. */
  readonly backend: Backend;
  /** The history bound (messages per topic) the backend was made with. */
  readonly maxCount: number;
  /** A second backend over the same storage after a restart, if the backend persists (else undefined). */
  readonly restarted?: () => Promise<Backend>;
  /** Releases what the subject holds (servers, connections). */
  readonly dispose: () => Promise<void>;
  /**
   * Another fresh, empty backend over its own storage with bounds across topics (the history
   * bound per topic as `backend`'s), if the backend has them. The test closes it.
   */
  readonly bounded?: (bounds: { maxTotalBytes: number; maxTopics: number }) => Backend;
}

const record = (topic: string, data: unknown, store = true) => ({ topic, data, headers: undefined, size: JSON.stringify(data).length, store });

export function backendConformance(name: string, make: () => Promise<KitSubject>): void {
  describe(`Backend conformance: ${name}`, () => {
    async function withSubject(fn: (s: KitSubject, delivered: Message[]) => Promise<void>): Promise<void> {
      const subject = await make();
      const delivered: Message[] = [];
      subject.backend.attach((m) => delivered.push(m));
      try {
        await fn(subject, delivered);
      } finally {
        await subject.backend.close();
        await subject.dispose();
      }
    }

    /** Waits until `n` messages were delivered (a remote backend delivers asynchronously). */
    async function deliveredCount(delivered: Message[], n: number): Promise<void> {
      // Bounded by time, not turns: a cluster backend holds feed messages for its reorder window.
      const deadline = performance.now() + 10_000;
      while (delivered.length < n && performance.now() < deadline) await new Promise((r) => setImmediate(r));
      expect(delivered.length).toBe(n);
    }

    it('assigns ids that are URL-safe, short, and strictly ordered within a topic', async () => {
      await withSubject(async ({ backend }) => {
        const ids: string[] = [];
        for (let i = 0; i < 20; i++) ids.push((await backend.publish(record(i % 2 ? 'a' : 'b', i))).id);
        for (const id of ids) {
          expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
          expect(id.length).toBeLessThanOrEqual(32);
        }
        const seqs = ids.map((id) => parseCursor(id).seq);
        for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]!);
        expect(new Set(ids).size).toBe(ids.length);
      });
    });

    it('delivers every published message once, in publish order, to the attached listener', async () => {
      await withSubject(async ({ backend }, delivered) => {
        const published: Message[] = [];
        for (let i = 0; i < 30; i++) published.push(await backend.publish(record(`t.${i % 3}`, { i })));
        await deliveredCount(delivered, 30);
        expect(delivered.map((m) => m.id)).toEqual(published.map((m) => m.id));
        expect(delivered.map((m) => (m.data as { i: number }).i)).toEqual([...Array(30).keys()]);
        expect(delivered[4]!.topic).toBe('t.1');
      });
    });

    it('reads after a cursor, from the oldest, and pages with `more`', async () => {
      await withSubject(async ({ backend }) => {
        const start = await backend.head();
        const ms: Message[] = [];
        for (let i = 0; i < 5; i++) ms.push(await backend.publish(record('x', i)));
        const all = await backend.read('x', null, 100);
        expect(all.messages.map((m) => m.data)).toEqual([0, 1, 2, 3, 4]);
        expect(all.gap).toBe(false);
        expect(all.more).toBe(false);
        const after2 = await backend.read('x', parseCursor(ms[1]!.id), 100);
        expect(after2.messages.map((m) => m.data)).toEqual([2, 3, 4]);
        const page = await backend.read('x', parseCursor(start), 2);
        expect(page.messages.map((m) => m.data)).toEqual([0, 1]);
        expect(page.more).toBe(true);
        const next = await backend.read('x', parseCursor(page.cursor), 2);
        expect(next.messages.map((m) => m.data)).toEqual([2, 3]);
        const none = await backend.read('x', parseCursor(ms[4]!.id), 10);
        expect(none.messages).toEqual([]);
        expect(none.gap).toBe(false);
        // Reading on from the returned cursor sees only later messages.
        await backend.publish(record('x', 5));
        expect((await backend.read('x', parseCursor(none.cursor), 10)).messages.map((m) => m.data)).toEqual([5]);
      });
    });

    it('reads several topics by pattern, merged in publish order', async () => {
      await withSubject(async ({ backend }) => {
        const start = parseCursor(await backend.head());
        await backend.publish(record('room.a', 1));
        await backend.publish(record('room.b', 2));
        await backend.publish(record('other', 3));
        await backend.publish(record('room.a', 4));
        const r = await backend.read([['room', '*']], start, 10);
        expect(r.messages.map((m) => m.data)).toEqual([1, 2, 4]);
        const limited = await backend.read([['room', '>']], start, 2);
        expect(limited.messages.map((m) => m.data)).toEqual([1, 2]);
        expect(limited.more).toBe(true);
      });
    });

    it('reports a gap when messages after the cursor were trimmed, and returns what is left', async ({ skip }) => {
      await withSubject(async ({ backend, maxCount }) => {
        if (maxCount > 50) skip();
        const first = await backend.publish(record('g', 0));
        for (let i = 1; i < maxCount + 3; i++) await backend.publish(record('g', i));
        const r = await backend.read('g', parseCursor(first.id), 1000);
        expect(r.gap).toBe(true);
        expect(r.messages.length).toBe(maxCount);
        expect(r.messages[r.messages.length - 1]!.data).toBe(maxCount + 2);
        const fromOldest = await backend.read('g', null, 1000);
        expect(fromOldest.gap).toBe(false);
        const fresh = await backend.read('g', parseCursor(r.messages[0]!.id), 1000);
        expect(fresh.gap).toBe(false);
      });
    });

    it('does not keep messages published with store: false, but delivers them', async () => {
      await withSubject(async ({ backend }, delivered) => {
        await backend.publish(record('_INBOX.abc', 'reply', false));
        await deliveredCount(delivered, 1);
        expect((await backend.read('_INBOX.abc', null, 10)).messages).toEqual([]);
      });
    });

    it('rejects a cursor ahead of everything published, and a cursor of another epoch is a gap', async () => {
      await withSubject(async ({ backend }) => {
        const m = await backend.publish(record('c', 1));
        const { epoch, seq } = parseCursor(m.id);
        await expect(backend.read('c', { epoch, seq: seq + 1000 }, 10)).rejects.toBeInstanceOf(InvalidCursorError);
        const foreign = await backend.read('c', { epoch: epoch === 'zzzzzzzz' ? 'yyyyyyyy' : 'zzzzzzzz', seq: 1 }, 10);
        expect(foreign.gap).toBe(true);
        expect(foreign.messages.map((x) => x.data)).toEqual([1]);
      });
    });

    it('treats __proto__ and constructor as ordinary topics', async () => {
      await withSubject(async ({ backend }) => {
        await backend.publish(record('__proto__', 1));
        await backend.publish(record('constructor.prototype', 2));
        expect((await backend.read('__proto__', null, 10)).messages.map((m) => m.data)).toEqual([1]);
        expect((await backend.read([['constructor', '>']], null, 10)).messages.map((m) => m.data)).toEqual([2]);
        expect((await backend.read('toString', null, 10)).messages).toEqual([]);
      });
    });

    it('reports counters', async () => {
      await withSubject(async ({ backend }) => {
        await backend.publish(record('s1', 'ab'));
        await backend.publish(record('s2', 'cd'));
        const stats = backend.stats();
        expect(stats.topics).toBe(2);
        expect(stats.messages).toBe(2);
        expect(stats.bytes).toBeGreaterThan(0);
      });
    });

    it('keeps at most maxTotalBytes across topics: the oldest history goes, and every read after a cursor is exact or says gap', async ({ skip }) => {
      await withSubject(async ({ bounded }) => {
        if (bounded === undefined) return skip();
        const maxTotalBytes = 2000;
        const backend = bounded({ maxTotalBytes, maxTopics: 1000 });
        backend.attach(() => {});
        try {
          const next = mulberry32(15); // deterministic, so a failure replays
          const published: Message[] = [];
          let largest = 0;
          for (let i = 0; i < 120; i++) {
            const topic = `b.${Math.floor(next() * next() * 8)}`; // some topics hot, some cold
            const data = `${i}:${'x'.repeat(Math.floor(next() * 150))}`;
            const r = record(topic, data);
            largest = Math.max(largest, r.size);
            published.push(await backend.publish(r));
          }
          const topics = [...new Set(published.map((m) => m.topic))];
          let kept = 0;
          for (const topic of topics) {
            const mine = published.filter((m) => m.topic === topic);
            const all = await backend.read(topic, null, 1000);
            kept += all.messages.reduce((n, m) => n + JSON.stringify(m.data).length, 0);
            for (const from of [null, ...mine.map((m) => m.id), ...published.filter((_, i) => i % 7 === 0).map((m) => m.id)]) {
              const cursor = from === null ? null : parseCursor(from);
              const r = await backend.read(topic, cursor, 1000);
              const after = mine.filter((m) => cursor === null || parseCursor(m.id).seq > cursor.seq).map((m) => m.id);
              const got = r.messages.map((m) => m.id);
              if (r.gap) expect(after.slice(after.length - got.length)).toEqual(got); // what is left: the newest
              else if (cursor !== null) expect(got).toEqual(after);
              else expect(after.slice(after.length - got.length)).toEqual(got); // from the oldest kept
            }
          }
          expect(kept).toBeLessThanOrEqual(maxTotalBytes + largest);
          // The newest message is always kept, and read from just before it, without a gap.
          const last = published[published.length - 1]!;
          const before = published[published.length - 2]!;
          const r = await backend.read(last.topic, parseCursor(before.id), 10);
          expect(r.messages.map((m) => m.id)).toEqual([last.id]);
          expect(r.gap).toBe(false);
          // The oldest went: the first message is gone, and a read after a cursor before it says so.
          const first = await backend.read(published[0]!.topic, null, 1000);
          expect(first.messages.map((m) => m.id)).not.toContain(published[0]!.id);
          const start = await backend.read(published[1]!.topic, parseCursor(published[0]!.id), 1000);
          expect(start.messages.map((m) => m.id)).not.toContain(published[1]!.id);
          expect(start.gap).toBe(true);
        } finally {
          await backend.close();
        }
      });
    });

    it('keeps at most maxTopics logs: the oldest go, and a read after a cursor older than what they held says gap', async ({ skip }) => {
      await withSubject(async ({ bounded }) => {
        if (bounded === undefined) return skip();
        const backend = bounded({ maxTotalBytes: 1_000_000, maxTopics: 5 });
        backend.attach(() => {});
        try {
          const ids: string[] = [];
          for (let i = 0; i < 12; i++) ids.push((await backend.publish(record(`cap.${i}`, i))).id);
          const all = await backend.read([['cap', '*']], null, 1000);
          expect(new Set(all.messages.map((m) => m.topic)).size).toBeLessThanOrEqual(5);
          expect(all.messages.map((m) => m.data)).toEqual([7, 8, 9, 10, 11]);
          const old = await backend.read('cap.0', parseCursor(ids[0]!), 10);
          expect(old.messages).toEqual([]);
          expect((await backend.read('cap.0', null, 10)).messages).toEqual([]);
          // Behind the dropped logs: a gap, or (a backend that still has them at hand) exactly what followed.
          const behind = await backend.read('cap.3', parseCursor(ids[2]!), 10);
          if (!behind.gap) expect(behind.messages.map((m) => m.data)).toEqual([3]);
          // Recent topics are intact.
          expect(await backend.read('cap.11', parseCursor(ids[10]!), 10)).toMatchObject({ gap: false, messages: [{ data: 11 }] });
        } finally {
          await backend.close();
        }
      });
    });

    it('rejects publish and read after close', async () => {
      const subject = await make();
      await subject.backend.close();
      await expect(subject.backend.publish(record('a', 1))).rejects.toThrow(/closed/);
      await expect(subject.backend.read('a', null, 1)).rejects.toThrow(/closed/);
      await subject.dispose();
    });
  });
}
