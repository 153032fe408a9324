/**
 * The backend conformance kit: one suite every `Backend` must pass (MemoryBackend now, the Redis
 * backend later), in the spirit of mqemitter's abstract tests.
 *
 * Usage: `backendConformance('MyBackend', async () => ({ backend, trim, restart }))`.
 */
import { describe, expect, it } from 'vitest';
import { InvalidCursorError, type Backend, type Message, parseCursor } from '../../src/index.js';

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

    it('rejects publish and read after close', async () => {
      const subject = await make();
      await subject.backend.close();
      await expect(subject.backend.publish(record('a', 1))).rejects.toThrow(/closed/);
      await expect(subject.backend.read('a', null, 1)).rejects.toThrow(/closed/);
      await subject.dispose();
    });
  });
}
