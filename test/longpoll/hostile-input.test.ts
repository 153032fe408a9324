/**
 * Issue 15 against LongPollHandler: nothing one client sends (or one stored message) can stall a
 * cursor, leave state behind, grow memory past the documented bounds, or read a topic its grant
 * hides. Most tests drive `handle()` with the fake request and response of `fake-http.ts`, so
 * interleavings are exact; the never-reading clients use real sockets.
 */
import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_ANSWER_BYTES,
  DEFAULT_MAX_CACHED_BYTES,
  type LongPollHandlerOptions,
  LongPollHandler,
  ManualClock,
  type BackendRead,
  MemoryBackend,
  PubSubBroker,
  type PubSubBrokerOptions,
  targetOverlaps,
} from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';
import { type FakeResponse, fakeExchange, settle } from './fake-http.js';

interface PollBody {
  messages: { id: string; topic: string; data: unknown }[];
  cursor: string;
  gap: boolean;
  more: boolean;
}
interface ErrorBody {
  error: { code: string; message: string };
}

function setup(options: Partial<LongPollHandlerOptions> = {}, brokerOptions: PubSubBrokerOptions = {}): { broker: PubSubBroker; handler: LongPollHandler; clock: ManualClock } {
  const clock = new ManualClock();
  const broker = new PubSubBroker({ clock, ...brokerOptions });
  const handler = new LongPollHandler({ broker, clock, maxHoldMs: 1000, ...options });
  perTest.defer(async () => {
    await handler.close();
    await broker.close();
  });
  return { broker, handler, clock };
}

/** Starts one poll on the fake transport; resolves once it is answered or parked. */
async function poll(handler: LongPollHandler, url: string, target?: { topics?: string[]; pattern?: string }): Promise<FakeResponse> {
  const { req, res, fake } = fakeExchange(url);
  await handler.handle(req, res, target);
  return fake;
}

/** A value that serializes while it is published, then throws (as a `toJSON` reading a closed resource would). */
function turnsBad(): { value: object; arm: () => void } {
  let armed = false;
  return {
    value: {
      toJSON() {
        if (armed) throw new Error('gone');
        return 'fine';
      },
    },
    arm: () => void (armed = true),
  };
}

const empty = { interests: 0, parked: 0, cachedAnswers: 0, cachedBytes: 0, readsInFlight: 0 };

describe('LongPollHandler: a message it cannot carry', () => {
  it('a message the handler cannot serialize is skipped as an announced gap, with a cursor past it', async () => {
    const { broker, handler } = setup();
    const before = await broker.head();
    const a = await broker.publish('t', 'a');
    const bad = turnsBad();
    const b = await broker.publish('t', bad.value);
    bad.arm();
    const c = await broker.publish('t', 'c');
    const first = await poll(handler, `/?cursor=${before}`, { topics: ['t'] });
    expect(first.answer.status).toBe(200);
    expect(first.answer.headers['patchbay-gap']).toBe('1');
    expect(first.json<PollBody>()).toEqual({ messages: [{ id: a.id, topic: 't', data: 'a' }, { id: c.id, topic: 't', data: 'c' }], cursor: c.id, gap: true, more: false });
    // The same cursor answers the same, every time: nothing is stuck and nothing is left behind.
    for (let i = 0; i < 3; i++) expect((await poll(handler, `/?cursor=${before}`, { topics: ['t'] })).json<PollBody>().cursor).toBe(c.id);
    expect((await poll(handler, `/?cursor=${b.id}`, { topics: ['t'] })).json<PollBody>()).toMatchObject({ gap: false, cursor: c.id });
    expect(handler.stats()).toMatchObject(empty);
  });

  it('a bad message that is the last one answers an empty gap with its id as the cursor, and the next poll parks', async () => {
    const { broker, handler, clock } = setup();
    const head = await broker.head();
    const bad = turnsBad();
    const b = await broker.publish('t', bad.value);
    bad.arm();
    const res = await poll(handler, `/?cursor=${head}`, { topics: ['t'] });
    expect(res.json<PollBody>()).toEqual({ messages: [], cursor: b.id, gap: true, more: false });
    const next = await poll(handler, `/?cursor=${b.id}`, { topics: ['t'] });
    expect(handler.stats().parked).toBe(1);
    clock.advance(1000);
    expect(next.answer.status).toBe(204);
    expect(handler.stats()).toMatchObject(empty);
  });

  it('a parked herd woken by a message it cannot carry is told of the gap, and keeps nothing', async () => {
    const { broker, handler } = setup();
    const head = await broker.head();
    const herd = await Promise.all(Array.from({ length: 20 }, () => poll(handler, `/?cursor=${head}`, { topics: ['t'] })));
    expect(handler.stats().parked).toBe(20);
    // The broker refuses a BigInt; a record from a backend that does not check (another process,
    // another version) still gets through.
    const m = await broker.backend.publish({ topic: 't', data: { big: 1n }, headers: undefined, size: 8, store: true });
    await settle();
    for (const res of herd) expect(res.json<PollBody>()).toEqual({ messages: [], cursor: m.id, gap: true, more: false });
    expect(new Set(herd.map((r) => r.answer.body)).size).toBe(1);
    expect(handler.stats()).toMatchObject(empty);
  });

  it('a read that fails unexpectedly answers its polls with a JSON error and leaves no read, interest or kept answer behind', async () => {
    class FlakyBackend extends MemoryBackend {
      failures = 0;
      override read(...args: Parameters<MemoryBackend['read']>): Promise<BackendRead> {
        if (this.failures > 0) {
          this.failures--;
          return Promise.reject(new TypeError('disk on fire'));
        }
        return super.read(...args);
      }
    }
    const backend = new FlakyBackend();
    const { broker, handler } = setup({}, { backend });
    const head = await broker.head();
    const herd = await Promise.all(Array.from({ length: 5 }, () => poll(handler, `/?cursor=${head}`, { topics: ['t'] })));
    const other = await poll(handler, `/?cursor=${head}`, { topics: ['u'] });
    backend.failures = 1;
    const m = await broker.publish('t', 'x');
    await settle();
    for (const res of herd) {
      expect(res.answer.status).toBe(500);
      expect(res.json<ErrorBody>().error.code).toBe('PB_ERR_INTERNAL');
    }
    expect(other.answered).toBe(false); // the other topic's poll is untouched
    // Only the other topic's poll is left (with the quiet answer that parked it).
    expect(handler.stats()).toMatchObject({ interests: 1, parked: 1, readsInFlight: 0 });
    // The same cursor reads again, and succeeds.
    expect((await poll(handler, `/?cursor=${head}`, { topics: ['t'] })).json<PollBody>().messages.map((x) => x.id)).toEqual([m.id]);
    other.disconnect();
    expect(handler.stats()).toMatchObject(empty);
  });

  it('property: any interleaving of polls, disconnects and publishes (some unserializable) settles with every poll answered once and nothing kept', async () => {
    type Cmd =
      | { kind: 'poll'; topic: 0 | 1 | 'both' | 'pattern'; cursor: number; limit: number | undefined }
      | { kind: 'disconnect'; which: number }
      | { kind: 'publish'; topic: 0 | 1 | 2; bad: boolean }
      | { kind: 'advance'; ms: number }
      | { kind: 'flush' };
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant('poll' as const),
          topic: fc.constantFrom(0 as const, 1 as const, 'both' as const, 'pattern' as const),
          cursor: fc.nat(8),
          limit: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
        }),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('disconnect' as const), which: fc.nat() }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('publish' as const), topic: fc.constantFrom(0 as const, 1 as const, 2 as const), bad: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 600 }) }) },
      { weight: 2, arbitrary: fc.constant({ kind: 'flush' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 10, maxLength: 60, size: '+1' }), fc.integer({ min: 0, max: 2048 }), async (cmds, maxCachedBytes) => {
        const clock = new ManualClock();
        const broker = new PubSubBroker({ clock, history: { maxCount: 4 } });
        const handler = new LongPollHandler({ broker, clock, maxHoldMs: 1000, maxBatchMessages: 3, maxAnswerBytes: 120, maxCachedBytes, queryTarget: true, allowPatterns: true });
        const epoch = (await broker.head()).split('-')[0]!;
        const ids: string[] = [];
        const polls: { fake: FakeResponse; done: Promise<void>; gone: boolean }[] = [];
        const topics = ['a', 'b', 'c'];
        const cursorOf = (n: number): string => {
          if (n === 0) return '';
          if (n === 1) return `zzzzzzzz-${n}`; // another epoch: a gap from the oldest
          if (n === 2) return `${epoch}-zzzz`; // ahead of everything: 400
          if (n === 3) return 'not a cursor';
          return ids[ids.length - (n - 3)] ?? `${epoch}-0`;
        };
        for (const c of cmds) {
          if (c.kind === 'poll') {
            const topicQuery = c.topic === 'both' ? 'topic=a&topic=b' : c.topic === 'pattern' ? 'pattern=%3E' : `topic=${topics[c.topic]}`;
            const limit = c.limit === undefined ? '' : `&limit=${c.limit}`;
            const { req, res, fake } = fakeExchange(`/?${topicQuery}&cursor=${encodeURIComponent(cursorOf(c.cursor))}${limit}`);
            polls.push({ fake, done: handler.handle(req, res), gone: false });
          } else if (c.kind === 'disconnect') {
            const p = polls[c.which % Math.max(1, polls.length)];
            if (p !== undefined && !p.gone) {
              p.gone = true;
              p.fake.disconnect();
            }
          } else if (c.kind === 'publish') {
            const bad = turnsBad();
            void broker.publish(topics[c.topic]!, c.bad ? bad.value : 'x'.repeat(c.topic * 40)).then((m) => void ids.push(m.id), () => undefined);
            bad.arm();
          } else if (c.kind === 'advance') clock.advance(c.ms);
          else await settle(1);
        }
        await Promise.all(polls.map((p) => p.done));
        for (let round = 0; round < 4; round++) {
          clock.advance(1000); // ends every hold, including polls re-parked by a late wake
          await settle(1);
        }
        for (const p of polls) {
          expect(p.fake.heads).toBeLessThanOrEqual(1);
          expect(p.fake.ends).toBeLessThanOrEqual(1);
          if (!p.gone) {
            expect(p.fake.answered).toBe(true);
            expect(p.fake.answer.status).toBeLessThan(500);
            if (p.fake.answer.status >= 400) expect(typeof p.fake.json<ErrorBody>().error.code).toBe('string');
          }
        }
        expect(handler.stats()).toMatchObject(empty);
        await handler.close();
        await broker.close();
      }),
      { numRuns: 150 },
    );
  });
});

describe('LongPollHandler: memory bounded by bytes', () => {
  /** A topic with a large log: 600 messages of 2 KiB (1.2 MB). */
  async function bigLog(broker: PubSubBroker, topic = 'big'): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < 600; i++) ids.push((await broker.publish(topic, { i, pad: 'p'.repeat(2048) })).id);
    return ids;
  }

  it('documents its defaults: answers of at most 1 MiB, kept answers of at most 8 MiB', () => {
    expect(DEFAULT_MAX_ANSWER_BYTES).toBe(1024 * 1024);
    expect(DEFAULT_MAX_CACHED_BYTES).toBe(8 * 1024 * 1024);
    expect(() => setup({ maxAnswerBytes: 0 })).toThrow(/maxAnswerBytes/);
    expect(() => setup({ maxCachedBytes: -1 })).toThrow(/maxCachedBytes/);
    expect(() => setup({ queryTarget: 'yes' as unknown as boolean })).toThrow(/queryTarget/);
  });

  it('an answer body stops at maxAnswerBytes with more: true, yet always carries one message', async () => {
    const { broker, handler } = setup({ maxAnswerBytes: 10_000, maxBatchMessages: 1000 });
    const head = await broker.head();
    const ids = await bigLog(broker);
    const res = await poll(handler, `/?cursor=${head}`, { topics: ['big'] });
    const body = res.json<PollBody>();
    expect(res.answer.body.length).toBeLessThanOrEqual(10_000 + 200);
    expect(body.messages.length).toBe(4);
    expect(body).toMatchObject({ more: true, gap: false, cursor: ids[3] });
    expect(res.answer.headers['patchbay-cursor']).toBe(ids[3]);
    // Read on from there: the next four, and so on; nothing is skipped.
    expect((await poll(handler, `/?cursor=${body.cursor}`, { topics: ['big'] })).json<PollBody>().messages[0]!.id).toBe(ids[4]);
    const tiny = setup({ maxAnswerBytes: 1 });
    const huge = await tiny.broker.publish('h', 'x'.repeat(100_000));
    const one = (await poll(tiny.handler, `/?cursor=${head.replace(/-.*/, '')}-0`, { topics: ['h'] })).json<PollBody>();
    expect(one.messages.map((m) => m.id)).toEqual([huge.id]);
  });

  it('a thousand distinct cursors while a poll is parked keep at most maxCachedBytes, and every answer is still right', async () => {
    const maxCachedBytes = 200_000;
    const maxAnswerBytes = 20_000;
    const { broker, handler } = setup({ maxCachedBytes, maxAnswerBytes });
    const ids = await bigLog(broker);
    const head = await broker.head();
    const parked = await poll(handler, `/?cursor=${head}`, { topics: ['big'] });
    expect(handler.stats().parked).toBe(1);
    let peak = 0;
    let maxAnswer = 0;
    for (let i = 0; i < 1000; i++) {
      // Half made-up epochs (each reads as a gap from the oldest), half real ids; three polls per
      // cursor at once, so their answer is shared and worth keeping.
      const cursor = i % 2 === 0 ? `${(1e9 + i).toString(36)}-5` : ids[i % (ids.length - 1)]!;
      const trio = [0, 1, 2].map(() => fakeExchange(`/?cursor=${cursor}`));
      await Promise.all(trio.map((x) => handler.handle(x.req, x.res, { topics: ['big'] })));
      peak = Math.max(peak, handler.stats().cachedBytes);
      const bodies = trio.map((x) => x.fake.answer.body);
      expect(new Set(bodies).size).toBe(1);
      maxAnswer = Math.max(maxAnswer, bodies[0]!.length);
      const body = JSON.parse(bodies[0]!) as PollBody;
      const from = i % 2 === 0 ? 0 : (i % (ids.length - 1)) + 1;
      expect(body.gap).toBe(i % 2 === 0);
      expect(body.messages.map((m) => m.id)).toEqual(ids.slice(from, from + body.messages.length));
      expect(body.more).toBe(from + body.messages.length < ids.length);
      if (body.messages.length > 0) expect(body.cursor).toBe(body.messages.at(-1)!.id);
    }
    expect(peak).toBeGreaterThan(maxCachedBytes / 2); // the cache was used...
    expect(peak).toBeLessThanOrEqual(maxCachedBytes); // ...and never past its bound
    expect(maxAnswer).toBeLessThanOrEqual(maxAnswerBytes + 200);
    expect(handler.stats()).toMatchObject({ parked: 1, readsInFlight: 0 });
    // The parked poll still wakes with the right message, and then nothing is kept.
    const m = await broker.publish('big', 'wake');
    await settle();
    expect(parked.json<PollBody>().messages.map((x) => x.id)).toEqual([m.id]);
    expect(handler.stats()).toMatchObject(empty);
  });

  it('with the defaults, shared distinct cursors keep at most 8 MiB and answers stay under 1 MiB', async () => {
    const { broker, handler } = setup({ maxBatchMessages: 10_000 });
    const ids = await bigLog(broker);
    const head = await broker.head();
    await poll(handler, `/?cursor=${head}`, { topics: ['big'] });
    let peak = 0;
    for (let i = 0; i < 40; i++) {
      const cursor = i % 2 === 0 ? `${(1e9 + i).toString(36)}-5` : ids[i]!;
      const pair = [0, 1].map(() => fakeExchange(`/?cursor=${cursor}`));
      await Promise.all(pair.map((x) => handler.handle(x.req, x.res, { topics: ['big'] })));
      expect(pair[0]!.fake.answer.body.length).toBeLessThanOrEqual(DEFAULT_MAX_ANSWER_BYTES + 4096);
      peak = Math.max(peak, handler.stats().cachedBytes);
    }
    expect(peak).toBeGreaterThan(DEFAULT_MAX_CACHED_BYTES / 2);
    expect(peak).toBeLessThanOrEqual(DEFAULT_MAX_CACHED_BYTES);
  }, 60_000);

  it('a thousand never-reading clients with distinct cursors over real sockets leave nothing kept or in flight', async () => {
    const { broker, handler } = setup({ maxCachedBytes: 100_000, maxAnswerBytes: 50_000 });
    const ids = await bigLog(broker);
    const { port } = await serveRig((req, res) => void handler.handle(req, res, { topics: ['big'] }), { backlog: 2048 });
    const head = await broker.head();
    const reader = fakeExchange(`/?cursor=${head}`);
    await handler.handle(reader.req, reader.res, { topics: ['big'] });
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 1000; i++) {
      const cursor = i % 2 === 0 ? `${(2e9 + i).toString(36)}-9` : ids[i % (ids.length - 1)]!;
      const socket = net.connect(port, '127.0.0.1');
      socket.pause(); // never reads
      socket.on('error', () => undefined);
      socket.write(`GET /?cursor=${cursor} HTTP/1.1\r\nHost: x\r\n\r\n`);
      sockets.push(socket);
      if ((i + 1) % 100 === 0) {
        await until(() => handler.stats().answered >= i + 1, `${i + 1} answers`);
        expect(handler.stats().cachedBytes).toBeLessThanOrEqual(100_000);
      }
    }
    expect(handler.stats()).toMatchObject({ parked: 1, readsInFlight: 0, interests: 1 });
    for (const s of sockets) s.destroy();
    // A reading client still gets exactly what follows its cursor.
    const res = await fetch(`http://127.0.0.1:${port}/?cursor=${ids[100]}`);
    const body = (await res.json()) as PollBody;
    expect(body.messages.map((m) => m.id)).toEqual(ids.slice(101, 101 + body.messages.length));
    expect(body.more).toBe(true);
    reader.fake.disconnect();
    expect(handler.stats()).toMatchObject(empty);
  }, 60_000);
});

describe('LongPollHandler: who may read what', () => {
  const HOSTILE = ['admin.*', '>', '*.secrets', 'admin.>'];

  it('authorize is asked (target, req) before anything is read, and the grant identity is accepted', async () => {
    const seen: unknown[] = [];
    const { broker, handler } = setup({
      authorize: (target, req) => {
        seen.push([target, req.headers['x-user']]);
        return { identity: 'ann' };
      },
    });
    const head = await broker.head();
    const { req, res, fake } = fakeExchange(`/?cursor=${head}&timeout=0`, { 'x-user': 'ann' });
    await handler.handle(req, res, { topics: ['t'] });
    expect(seen).toEqual([[{ topics: ['t'] }, 'ann']]);
    expect(fake.answer.status).toBe(204);
  });

  it('a route without a target refuses with 400 unless queryTarget is set, and says how to fix it', async () => {
    const { handler } = setup();
    const res = await poll(handler, '/?topic=admin.secrets');
    expect(res.answer.status).toBe(400);
    expect(res.json<ErrorBody>().error).toMatchObject({ code: 'PB_ERR_INVALID_ARGUMENT', message: expect.stringContaining('queryTarget') });
    expect(handler.stats()).toMatchObject(empty);
  });

  it('a client pattern is refused with 403 unless allowPatterns is set; a pattern the app passes is allowed', async () => {
    const { handler } = setup({ queryTarget: true });
    for (const pattern of HOSTILE) {
      const res = await poll(handler, `/?pattern=${encodeURIComponent(pattern)}&timeout=0`);
      expect(res.answer.status, pattern).toBe(403);
      expect(res.json<ErrorBody>().error.code).toBe('PB_ERR_FORBIDDEN');
    }
    expect((await poll(handler, '/?topic=t&timeout=0')).answer.status).toBe(204);
    expect((await poll(handler, '/?timeout=0', { pattern: 'room.*' })).answer.status).toBe(204);
  });

  it('hostile patterns against a hook that refuses any target reaching admin.> are all refused', async () => {
    const { broker, handler } = setup({ queryTarget: true, allowPatterns: true, authorize: (target) => !targetOverlaps(target, 'admin.>') });
    await broker.publish('admin.secrets', 'the plans');
    for (const pattern of HOSTILE) {
      const res = await poll(handler, `/?pattern=${encodeURIComponent(pattern)}&cursor=zzzzzzzz-0`);
      expect(res.answer.status, pattern).toBe(403);
      expect(res.answer.body).not.toContain('the plans');
    }
    expect((await poll(handler, '/?topic=admin.secrets&cursor=zzzzzzzz-0')).answer.status).toBe(403);
    expect(handler.stats()).toMatchObject(empty);
  });

  it('hostile patterns allowed with a grant’s canRead never answer a message published on admin.secrets, read or woken', async () => {
    const { broker, handler, clock } = setup({
      queryTarget: true,
      allowPatterns: true,
      maxBatchMessages: 2,
      authorize: () => ({ canRead: (topic) => !topic.startsWith('admin.') }),
    });
    const head = await broker.head();
    for (let i = 0; i < 7; i++) await broker.publish('admin.secrets', `the plans ${i}`);
    const pub = await broker.publish('news.secrets', 'hello');
    // From the oldest: pages of admin messages are filtered out, and the poll reads on.
    const fromOldest = await Promise.all(HOSTILE.map((p) => poll(handler, `/?pattern=${encodeURIComponent(p)}&cursor=${head}`)));
    clock.advance(1000); // the admin-only patterns found nothing and parked: their hold ends
    await settle();
    for (const [i, res] of fromOldest.entries()) {
      expect(res.answer.body).not.toContain('plans');
      if (HOSTILE[i]!.startsWith('admin')) expect(res.answer.status).toBe(204);
      else expect(res.json<PollBody>().messages.map((m) => m.id)).toEqual([pub.id]);
    }
    // Parked at the head: admin messages wake the polls but are never answered.
    const now = await broker.head();
    const parked = await Promise.all(HOSTILE.map((p) => poll(handler, `/?pattern=${encodeURIComponent(p)}&cursor=${now}`)));
    for (let i = 0; i < 5; i++) await broker.publish('admin.secrets', `more plans ${i}`);
    await settle();
    expect(handler.stats().parked).toBe(4);
    const late = await broker.publish('ops.secrets', 'visible');
    await settle();
    clock.advance(1000);
    for (const [i, res] of parked.entries()) {
      expect(res.answer.body).not.toContain('plans');
      if (HOSTILE[i]!.startsWith('admin')) expect(res.answer.status).toBe(204);
      else expect(res.json<PollBody>().messages.map((m) => m.id)).toEqual([late.id]);
    }
    expect(handler.stats()).toMatchObject(empty);
  });

  it('an answer filtered for one caller is never served to another through the cache, either way', async () => {
    const users = new Map<string, (topic: string) => boolean>([['admin', () => true], ['guest', (t) => !t.startsWith('admin.')]]);
    const { broker, handler } = setup({
      queryTarget: true,
      allowPatterns: true,
      authorize: (_target, req) => {
        const user = String(req.headers['x-user']);
        return user === 'admin' ? true : { canRead: users.get(user)! };
      },
    });
    const head = await broker.head();
    const start = (user: string): Promise<FakeResponse> => {
      const { req, res, fake } = fakeExchange(`/?pattern=%3E&cursor=${head}`, { 'x-user': user });
      return handler.handle(req, res).then(() => fake);
    };
    const polls = await Promise.all(['guest', 'admin', 'guest', 'admin'].map(start));
    const secret = await broker.publish('admin.secrets', 'the plans');
    await settle();
    const later = await Promise.all(['admin', 'guest'].map(start)); // same cursor, after the wake
    await settle();
    for (const [i, res] of [...polls, ...later].entries()) {
      const user = [...['guest', 'admin', 'guest', 'admin'], ...['admin', 'guest']][i];
      if (user === 'admin') expect(res.json<PollBody>().messages.map((m) => m.id)).toEqual([secret.id]);
      else expect(res.answered).toBe(false); // parked at the admin message's id, answered nothing
    }
    for (const res of [...polls, ...later]) if (!res.answered) res.disconnect();
    expect(handler.stats()).toMatchObject(empty);
  });
});

describe('LongPollHandler: any query string', () => {
  it('property: arbitrary query strings and URLs answer 2xx or 4xx, errors as JSON, and leave nothing behind', async () => {
    const { broker, handler, clock } = setup({ queryTarget: true });
    const patterns = setup({ queryTarget: true, allowPatterns: true });
    await broker.publish('t', 1);
    const epoch = (await broker.head()).split('-')[0]!;
    const key = fc.constantFrom('cursor', 'limit', 'timeout', 'topic', 'pattern', 'x', '');
    const value = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.integer().map(String), fc.constantFrom('', '-1', '1e3', '0x10', '99999999999999999', `${epoch}-0`, `${epoch}-zzzzzz`, 'zz-1', '>', '*', 'a..b', '%', '%zz'));
    const structured = fc.array(fc.tuple(key, value), { maxLength: 6 }).map((pairs) => `/?${pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}`);
    const raw = fc.oneof(fc.string({ unit: 'binary' }), fc.string()).map((s) => `/?${s}`);
    // The whole request target, not even a path (`new URL` throws on several of these).
    const wild = fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom('//[', '//a b?topic=t', '//:99999?topic=t&timeout=0', 'http://[::1?topic=t', '//%?cursor=x'));
    await fc.assert(
      fc.asyncProperty(fc.oneof(structured, raw, wild), fc.boolean(), async (url, withPatterns) => {
        const h = withPatterns ? patterns.handler : handler;
        const { req, res, fake } = fakeExchange(url);
        await h.handle(req, res);
        if (!fake.answered) {
          (withPatterns ? patterns.clock : clock).advance(1000);
          await settle(1);
        }
        expect(fake.answered).toBe(true);
        expect(fake.answer.status).toBeLessThan(500);
        if (fake.answer.status >= 400) {
          expect(fake.answer.headers['content-type']).toMatch(/application\/json/);
          expect(typeof fake.json<ErrorBody>().error.code).toBe('string');
        }
      }),
      { numRuns: 500 },
    );
    expect(handler.stats()).toMatchObject(empty);
    expect(patterns.handler.stats()).toMatchObject(empty);
  });

  it('a request target that is no URL (GET //[) is read for its query, not answered 500', async () => {
    const { handler } = setup({ queryTarget: true });
    const { port } = await serveRig((req, res) => void handler.handle(req, res));
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.write('GET //[?topic=t&timeout=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await new Promise((resolve) => socket.on('close', resolve));
    expect(text).toMatch(/^HTTP\/1\.1 204 /);
  });
});
