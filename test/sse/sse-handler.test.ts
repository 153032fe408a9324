import type { Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import { PubSubBroker, type PubSubBrokerOptions, SseHandler, type SseHandlerOptions, type SseStream, targetOverlaps } from '../../src/index.js';
import { perTest, readSse, serveRig, type SseReader, until } from '../helpers.js';

interface Rig {
  base: string;
  broker: PubSubBroker;
  sse: SseHandler;
  server: Server;
  live: SseStream[];
}
async function rig(options: Partial<SseHandlerOptions> = {}, brokerOptions: PubSubBrokerOptions = {}): Promise<Rig> {
  const broker = new PubSubBroker(brokerOptions);
  const sse = new SseHandler({ broker, ...options });
  const live: SseStream[] = [];
  const { url: base, server } = await serveRig((req, res) => {
    const m = /^\/sse\/([^/?]+)/.exec(req.url ?? '');
    void sse.handle(req, res, m ? { topics: [decodeURIComponent(m[1]!)] } : undefined).then((s) => s && live.push(s));
  });
  // Closed after the test, last registered first: the handler, the broker, then the server.
  perTest.defer(() => broker.close());
  perTest.defer(() => sse.close());
  return { base, broker, sse, server, live };
}

/**
 * Opens a stream with fetch and collects parsed events: the opening `patchbay-open` event apart
 * (`opens`), everything else in `events`.
 */
const open = (url: string, headers: Record<string, string> = {}): Promise<SseReader> => readSse(url, { headers });

describe('SseHandler', () => {
  it('streams published messages with their ids; strings verbatim, other values as JSON', async () => {
    const r = await rig();
    const s = await open(`${r.base}/sse/news`);
    expect(s.res.status).toBe(200);
    expect(s.res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(s.res.headers.get('cache-control')).toBe('no-cache, no-transform');
    await until(() => r.broker.stats().subscriptions === 1, 'the subscription');
    const a = await r.broker.publish('news', 'line 1\nline 2');
    const b = await r.broker.publish('news', { n: 2 });
    await until(() => s.events.length === 2, 'two events');
    expect(s.events.map((e) => [e.id, e.data])).toEqual([
      [a.id, 'line 1\nline 2'],
      [b.id, '{"n":2}'],
    ]);
    s.close();
    await until(() => r.broker.stats().subscriptions === 0 && r.sse.stats().connections === 0, 'cleanup after disconnect');
  });

  it('resumes after Last-Event-ID with no gap and no duplicate', async () => {
    const r = await rig();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await r.broker.publish('t', `m${i}`)).id);
    const s = await open(`${r.base}/sse/t`, { 'last-event-id': ids[1]! });
    await until(() => s.events.length === 3, 'the replay');
    const live = await r.broker.publish('t', 'm5');
    await until(() => s.events.length === 4, 'the live event');
    expect(s.events.map((e) => e.id)).toEqual([ids[2], ids[3], ids[4], live.id]);
    expect(s.res.headers.get('patchbay-gap')).toBeNull();
    expect(r.sse.stats()).toMatchObject({ replays: 1, replayedMessages: 3, gaps: 0 });
    s.close();
  });

  it('announces a gap (event and header) when the id fell off the log, then sends what is left', async () => {
    const r = await rig({}, { history: { maxCount: 2 } });
    const first = await r.broker.publish('t', 'old');
    for (let i = 0; i < 3; i++) await r.broker.publish('t', `new${i}`);
    const s = await open(`${r.base}/sse/t`, { 'last-event-id': first.id });
    await until(() => s.events.length === 3, 'gap + replay');
    expect(s.res.headers.get('patchbay-gap')).toBe('1');
    expect(s.events[0]).toMatchObject({ event: 'gap', data: JSON.stringify({ lastEventId: first.id }) });
    expect(s.events.slice(1).map((e) => e.data)).toEqual(['new1', 'new2']);
    s.close();
  });

  it('takes the resume id from a query parameter only when configured', async () => {
    const r = await rig({ lastEventIdQuery: 'lastEventId' });
    const a = await r.broker.publish('t', 'a');
    await r.broker.publish('t', 'b');
    const s = await open(`${r.base}/sse/t?lastEventId=${a.id}`);
    await until(() => s.events.length === 1, 'the replay');
    expect(s.events[0]!.data).toBe('b');
    s.close();
  });

  it('answers a garbage Last-Event-ID with 400 JSON, before any stream starts', async () => {
    const r = await rig();
    for (const bad of ['garbage!', '"><script>', 'a'.repeat(300)]) {
      const res = await fetch(`${r.base}/sse/t`, { headers: { 'last-event-id': bad } });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_INVALID_CURSOR');
    }
    expect(r.broker.stats().subscriptions).toBe(0);
  });

  it('answers other methods 405, a bad topic 400, a refused authorize 403', async () => {
    const r = await rig({ authorize: (t) => t.topics?.[0] !== 'secret' });
    expect((await fetch(`${r.base}/sse/t`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${r.base}/sse/a..b`)).status).toBe(400);
    expect((await fetch(`${r.base}/sse/secret`)).status).toBe(403);
    expect((await fetch(`${r.base}/other`)).status).toBe(400);
  });

  it('answers the reconnect after close({ reconnect: false }) with 204', async () => {
    const r = await rig();
    const s = await open(`${r.base}/sse/t`);
    await until(() => r.live.length === 1, 'the stream');
    const m = await r.broker.publish('t', 'bye');
    await until(() => s.events.length === 1, 'the event');
    r.live[0]!.close({ reconnect: false });
    await s.ended; // the server ended the response
    // The last thing the client saw is a `patchbay-stop` event carrying the stop token as its id.
    expect(s.events).toHaveLength(2);
    const stop = s.events[1]!.id ?? '';
    expect(s.events[1]!.event).toBe('patchbay-stop');
    expect(stop).not.toBe(m.id);
    expect(stop).toMatch(/^stop-/);
    const again = await fetch(`${r.base}/sse/t`, { headers: { 'last-event-id': stop } });
    expect(again.status).toBe(204);
    // An ordinary resume still works.
    const resumed = await open(`${r.base}/sse/t`, { 'last-event-id': m.id });
    expect(resumed.res.status).toBe(200);
    resumed.close();
  });

  it('answers CORS preflights that ask for Last-Event-ID', async () => {
    const r = await rig({ cors: { origin: ['https://app.example'], credentials: true } });
    const res = await fetch(`${r.base}/sse/t`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'last-event-id' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-headers')).toBe('Last-Event-ID');
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
  });

  it('serializes each message once for all connections', async () => {
    const r = await rig();
    const streams = await Promise.all(Array.from({ length: 20 }, () => open(`${r.base}/sse/fan`)));
    await until(() => r.broker.stats().subscriptions === 20, '20 subscriptions');
    for (let i = 0; i < 10; i++) await r.broker.publish('fan', `e${i}`);
    await until(() => streams.every((s) => s.events.length === 10), 'every event everywhere');
    for (const s of streams) expect(s.events.map((e) => e.data)).toEqual(Array.from({ length: 10 }, (_, i) => `e${i}`));
    expect(r.sse.stats().eventsSent).toBe(200);
    streams.forEach((s) => s.close());
  });
});

describe('SseHandler: secure by default, authorize in one shape', () => {
  const HOSTILE = ['admin.*', '>', '*.secrets', 'admin.>'];

  it('without a target and without queryTarget, answers 400 telling the developer what to do', async () => {
    const r = await rig();
    const res = await fetch(`${r.base}/other?topic=news`);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('PB_ERR_INVALID_ARGUMENT');
    expect(body.error.message).toMatch(/queryTarget/);
    expect(r.broker.stats().subscriptions).toBe(0);
  });

  it('with queryTarget, a client pattern is refused 403 unless allowPatterns; a topic from the query works', async () => {
    const r = await rig({ queryTarget: true });
    for (const pattern of HOSTILE) {
      const res = await fetch(`${r.base}/other?pattern=${encodeURIComponent(pattern)}`);
      expect(res.status, pattern).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_FORBIDDEN');
    }
    const s = await open(`${r.base}/other?topic=news`);
    expect(s.res.status).toBe(200);
    s.close();
    expect(r.broker.stats().subscriptions).toBeLessThanOrEqual(1);
  });

  it('a hook refusing with targetOverlaps answers 403 to every pattern that can reach admin.>', async () => {
    const seen: unknown[] = [];
    const r = await rig({
      queryTarget: true,
      allowPatterns: true,
      authorize: (target, req) => {
        seen.push([target, typeof req.headers]);
        return !targetOverlaps(target, 'admin.>');
      },
    });
    for (const pattern of HOSTILE) expect((await fetch(`${r.base}/other?pattern=${encodeURIComponent(pattern)}`)).status, pattern).toBe(403);
    expect(seen[0]).toEqual([{ pattern: 'admin.*' }, 'object']); // (target, req)
    const ok = await open(`${r.base}/other?pattern=${encodeURIComponent('public.*')}`);
    expect(ok.res.status).toBe(200);
    ok.close();
  });

  it("a grant's canRead is applied to replay and live: nothing published on admin.secrets reaches the client; identity is on the stream", async () => {
    const r = await rig({
      queryTarget: true,
      allowPatterns: true,
      authorize: () => ({ identity: 'alice', canRead: (topic) => !topic.startsWith('admin.') }),
    });
    const cursor = await r.broker.head();
    await r.broker.publish('admin.secrets', 'replayed secret');
    const publicBefore = await r.broker.publish('public.secrets', 'replayed public');
    const streams: Awaited<ReturnType<typeof open>>[] = [];
    for (const pattern of HOSTILE) {
      streams.push(await open(`${r.base}/other?pattern=${encodeURIComponent(pattern)}`, { 'last-event-id': cursor }));
    }
    await until(() => r.live.length === HOSTILE.length && r.broker.stats().subscriptions === HOSTILE.length, 'every stream live');
    expect(r.live.map((s) => s.identity)).toEqual(HOSTILE.map(() => 'alice'));
    await r.broker.publish('admin.secrets', 'live secret');
    const publicLive = await r.broker.publish('public.secrets', 'live public');
    const end = await r.broker.publish('admin.x', 'end'); // readable by none: only a marker that live delivery went past it
    // '>' and '*.secrets' match public.secrets; 'admin.*' and 'admin.>' match nothing readable.
    const reach = { 'admin.*': [], '>': [publicBefore.id, publicLive.id], '*.secrets': [publicBefore.id, publicLive.id], 'admin.>': [] } as Record<string, string[]>;
    await until(() => streams.every((s, i) => s.events.length === reach[HOSTILE[i]!]!.length), 'the readable messages');
    for (const [i, s] of streams.entries()) {
      expect(s.events.map((e) => e.id), HOSTILE[i]).toEqual(reach[HOSTILE[i]!]);
      expect(s.events.some((e) => e.data.includes('secret') && !e.data.includes('public'))).toBe(false);
      expect(s.events.some((e) => e.id === end.id)).toBe(false);
      s.close();
    }
  });
});
