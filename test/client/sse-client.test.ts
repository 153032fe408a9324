import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  ClosedError,
  HttpStatusError,
  InvalidArgumentError,
  InvalidStateError,
  ManualClock,
  OverflowError,
  ProtocolError,
  SseClient,
  type SseClientOptions,
  type SseGap,
  type SseMessage,
  type SseRetry,
} from '../../src/client/index.js';
import { PubSubBroker, type PubSubBrokerOptions, SseHandler, type SseStream } from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';

// SseClient against the real SseHandler on 127.0.0.1, and against a hand-written node:http SSE
// server that is not patchbay's. The client runs on a ManualClock: its reconnect waits pass only
// when a test advances it (each wait is announced through onRetry first).

interface Watch {
  retries: SseRetry[];
  gaps: SseGap[];
}

function client(options: SseClientOptions & { clock: ManualClock }): { c: SseClient; w: Watch } {
  const w: Watch = { retries: [], gaps: [] };
  const c = new SseClient({
    random: () => 0.5,
    ...options,
    onRetry: (r) => {
      w.retries.push(r);
      options.onRetry?.(r);
    },
    onGap: (g) => {
      w.gaps.push(g);
      options.onGap?.(g);
    },
  });
  perTest.defer(() => c.close());
  return { c, w };
}

/** Takes `n` events from the iterator. */
async function take(it: AsyncIterator<SseMessage>, n: number): Promise<SseMessage[]> {
  const out: SseMessage[] = [];
  while (out.length < n) {
    const step = await it.next();
    if (step.done === true) break;
    out.push(step.value);
  }
  return out;
}

async function patchbay(brokerOptions: PubSubBrokerOptions = {}): Promise<{ base: string; broker: PubSubBroker; sse: SseHandler; live: SseStream[]; lastIds: (string | undefined)[] }> {
  const broker = new PubSubBroker(brokerOptions);
  const sse = new SseHandler({ broker, retryMs: 1000 });
  const live: SseStream[] = [];
  const lastIds: (string | undefined)[] = [];
  const { url: base } = await serveRig((req, res) => {
    lastIds.push(req.headers['last-event-id'] as string | undefined);
    const m = /^\/sse\/([^/?]+)/.exec(req.url ?? '');
    void sse.handle(req, res, { topics: [decodeURIComponent(m![1]!)] }).then((s) => s && live.push(s));
  });
  perTest.defer(() => broker.close());
  perTest.defer(() => sse.close());
  return { base, broker, sse, live, lastIds };
}

describe('SseClient against SseHandler', () => {
  it('follows a topic, and resumes with Last-Event-ID after a server-side drop: no loss, no duplicate', async () => {
    const r = await patchbay();
    const clock = new ManualClock();
    const { c, w } = client({ url: `${r.base}/sse/news`, clock });
    const it = c.events();
    const first = take(it, 2);
    await until(() => r.broker.stats().subscriptions === 1, 'the subscription');
    const a = await r.broker.publish('news', 'one');
    const b = await r.broker.publish('news', { n: 2 });
    expect((await first).map((e) => [e.lastEventId, e.type, e.data])).toEqual([
      [a.id, 'message', 'one'],
      [b.id, 'message', '{"n":2}'],
    ]);
    expect(c.retryMs).toBe(1000); // the server's retry field
    r.sse.hub.closeAll(); // the server drops every stream
    const next = take(it, 2);
    await until(() => w.retries.length === 1, 'the reconnect wait');
    expect(w.retries[0]).toMatchObject({ attempt: 0, delayMs: 1000 });
    const missed = await r.broker.publish('news', 'while away');
    clock.advance(1000);
    await until(() => r.broker.stats().subscriptions === 1, 'the resumed subscription');
    const after = await r.broker.publish('news', 'live again');
    expect((await next).map((e) => [e.lastEventId, e.data])).toEqual([
      [missed.id, 'while away'],
      [after.id, 'live again'],
    ]);
    expect(r.lastIds).toEqual([undefined, b.id]);
    expect(c.connections).toBe(2);
    await it.return?.();
    await until(() => r.sse.stats().connections === 0, 'the connection closed by the client');
  });

  it('surfaces a gap when the log lost messages after its id, then yields what is left', async () => {
    const r = await patchbay({ history: { maxCount: 2 } });
    const old = await r.broker.publish('t', 'old');
    for (let i = 0; i < 3; i++) await r.broker.publish('t', `new${i}`);
    const { c, w } = client({ url: `${r.base}/sse/t`, clock: new ManualClock(), lastEventId: old.id });
    expect((await take(c.events(), 2)).map((e) => e.data)).toEqual(['new1', 'new2']);
    expect(w.gaps).toEqual([{ after: old.id, data: JSON.stringify({ lastEventId: old.id }), lastEventId: old.id }]);
    expect(c.gaps).toBe(1);
    expect(r.lastIds).toEqual([old.id]);
  });

  it('stops on patchbay-stop, and a later client resuming from it is answered 204', async () => {
    const r = await patchbay();
    const stops: string[] = [];
    const { c } = client({ url: `${r.base}/sse/t`, clock: new ManualClock(), onStop: (s) => stops.push(s) });
    const it = c.events();
    const got = take(it, 5);
    await until(() => r.live.length === 1, 'the stream');
    await r.broker.publish('t', 'last words');
    await until(() => r.sse.stats().eventsSent === 1, 'the event sent');
    r.live[0]!.close({ reconnect: false });
    expect((await got).map((e) => e.data)).toEqual(['last words']); // ended, no reconnect
    expect(c.stopped).toBe('stop-event');
    expect(c.lastEventId).toMatch(/^stop-/);
    const { c: again } = client({ url: `${r.base}/sse/t`, clock: new ManualClock(), lastEventId: c.lastEventId, onStop: (s) => stops.push(s) });
    expect(await take(again.events(), 1)).toEqual([]);
    expect(again.stopped).toBe('no-content');
    expect(stops).toEqual(['stop-event', 'no-content']);
  });
});

/** A hand-written SSE server: each request is answered by the next script (the last repeats). */
type Script = (res: ServerResponse, headers: IncomingHttpHeaders) => void;
async function plain(...scripts: Script[]): Promise<{ url: string; seen: IncomingHttpHeaders[] }> {
  const seen: IncomingHttpHeaders[] = [];
  const { url } = await serveRig((req, res) => {
    seen.push(req.headers);
    scripts[Math.min(seen.length - 1, scripts.length - 1)]!(res, req.headers);
  });
  return { url: `${url}/events`, seen };
}
const sse = (body: string, end = true): Script => (res) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  if (end) res.end(body);
  else res.write(body);
};
const status = (code: number, headers: Record<string, string> = {}): Script => (res) => {
  res.writeHead(code, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ error: { code: 'X_TEST', message: 'scripted' } }));
};

describe('SseClient against a plain node:http SSE server', () => {
  it('sends its headers and Last-Event-ID, honours retry, and parses CR/CRLF streams with a BOM', async () => {
    const s = await plain(sse('\uFEFFretry: 250\rid: 1\rdata: a\r\r: heartbeat\r\n'), sse('event: e\r\ndata: b\r\ndata: c\r\n\r\n', false));
    const clock = new ManualClock();
    const comments: string[] = [];
    const { c, w } = client({ url: s.url, clock, lastEventId: 'start', headers: () => ({ authorization: 'Bearer t0k' }), onComment: (t) => comments.push(t) });
    const it = c.events();
    expect(await take(it, 1)).toEqual([{ type: 'message', data: 'a', lastEventId: '1' }]);
    const second = take(it, 1);
    await until(() => w.retries.length === 1, 'the reconnect wait');
    expect(w.retries[0]!.delayMs).toBe(250);
    clock.advance(250);
    expect(await second).toEqual([{ type: 'e', data: 'b\nc', lastEventId: '1' }]);
    expect(comments).toEqual([' heartbeat']);
    expect(s.seen.map((h) => [h['authorization'], h['last-event-id'], h['accept']])).toEqual([
      ['Bearer t0k', 'start', 'text/event-stream'],
      ['Bearer t0k', '1', 'text/event-stream'],
    ]);
  });

  it('sends a non-ASCII last event id as its UTF-8 bytes', async () => {
    const s = await plain(sse('id: caf\u00e9 \u2026\ndata: a\n\n'), sse('data: b\n\n', false));
    const clock = new ManualClock();
    const { c, w } = client({ url: s.url, clock, retryMs: 1 });
    const got = take(c.events(), 2);
    await until(() => w.retries.length === 1, 'the reconnect wait');
    clock.advance(1);
    expect((await got).map((e) => e.lastEventId)).toEqual(['caf\u00e9 \u2026', 'caf\u00e9 \u2026']);
    expect(Buffer.from(s.seen[1]!['last-event-id'] as string, 'latin1').toString('utf8')).toBe('caf\u00e9 \u2026');
  });

  it('honours Retry-After on 429 and 503, backing off between attempts', async () => {
    const s = await plain(status(429, { 'retry-after': '7' }), status(503, { 'retry-after': '2' }), status(502), sse('data: ok\n\n', false));
    const clock = new ManualClock();
    const { c, w } = client({ url: s.url, clock, retryMs: 100, backoff: { initialDelayMs: 1000, jitter: 0 } });
    const got = take(c.events(), 1);
    await until(() => w.retries.length === 1, 'the first wait');
    expect(w.retries[0]).toMatchObject({ attempt: 1, delayMs: 7000 });
    expect((w.retries[0]!.error as HttpStatusError).status).toBe(429);
    clock.advance(7000);
    await until(() => w.retries.length === 2, 'the second wait');
    expect(w.retries[1]).toMatchObject({ attempt: 2, delayMs: 2000 });
    clock.advance(2000);
    await until(() => w.retries.length === 3, 'the third wait');
    expect(w.retries[2]).toMatchObject({ attempt: 3, delayMs: 4000 }); // backoff: 1000 x 2^2
    clock.advance(4000);
    expect((await got).map((e) => e.data)).toEqual(['ok']);
    expect(c.failures).toBe(0);
  });

  it('fails on a 4xx with HttpStatusError and on a wrong content type with ProtocolError, without retrying', async () => {
    const s = await plain(status(401));
    const { c } = client({ url: s.url, clock: new ManualClock() });
    const err = await take(c.events(), 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpStatusError);
    expect(err).toMatchObject({ status: 401, serverCode: 'X_TEST' });
    const t = await plain((res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('data: x\n\n'));
    const { c: c2 } = client({ url: t.url, clock: new ManualClock() });
    await expect(take(c2.events(), 1)).rejects.toThrow(ProtocolError);
    expect(s.seen.length + t.seen.length).toBe(2);
  });

  it('fails with OverflowError on an oversized line or event, after what came before it, without retrying', async () => {
    const s = await plain(sse(`data: fine\n\ndata: ${'x'.repeat(100)}\n\n`, false));
    const { c } = client({ url: s.url, clock: new ManualClock(), maxLineBytes: 64 });
    const it = c.events();
    expect((await take(it, 1)).map((e) => e.data)).toEqual(['fine']);
    await expect(it.next()).rejects.toThrow(OverflowError);
    const t = await plain(sse(`${'data: 0123456789\n'.repeat(10)}\n`, false));
    const { c: c2 } = client({ url: t.url, clock: new ManualClock(), maxEventBytes: 50 });
    await expect(take(c2.events(), 1)).rejects.toMatchObject({ code: 'PB_ERR_OVERFLOW' });
    expect(s.seen.length + t.seen.length).toBe(2);
  });

  it('backs off a server that accepts and drops at once, and gives up after maxRetries', async () => {
    const s = await plain(sse(''));
    const clock = new ManualClock();
    const { c, w } = client({ url: s.url, clock, retryMs: 10, maxRetries: 2, backoff: { initialDelayMs: 100, jitter: 0 } });
    const got = take(c.events(), 1).catch((e: unknown) => e);
    await until(() => w.retries.length === 1, 'the first wait');
    clock.advance(100);
    await until(() => w.retries.length === 2, 'the second wait');
    clock.advance(200);
    expect(await got).toBeInstanceOf(ProtocolError);
    expect(w.retries.map((r) => r.delayMs)).toEqual([100, 200]);
    expect(s.seen.length).toBe(3);
  });

  it('ends quietly on 204, on close() and on its signal, with no timer left', async () => {
    const s = await plain(status(204));
    const { c } = client({ url: s.url, clock: new ManualClock() });
    expect(await take(c[Symbol.asyncIterator](), 1)).toEqual([]);
    expect(c.stopped).toBe('no-content');

    const t = await plain(sse('data: 1\n\n', false));
    const clock = new ManualClock();
    const ac = new AbortController();
    const { c: c2 } = client({ url: t.url, clock, signal: ac.signal });
    const it = c2.events();
    expect((await take(it, 1)).map((e) => e.data)).toEqual(['1']);
    const rest = take(it, 1);
    ac.abort();
    expect(await rest).toEqual([]);
    expect(c2.closed).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    await expect(c2.events().next()).rejects.toThrow(ClosedError);

    const { c: c3 } = client({ url: t.url, clock });
    const it3 = c3.events();
    await take(it3, 1);
    await expect(c3.events().next()).rejects.toThrow(InvalidStateError);
    c3.close();
    expect(await it3.next()).toEqual({ done: true, value: undefined });
  });

  it('checks its options', () => {
    const clock = new ManualClock();
    expect(() => new SseClient({ url: 'not a url', clock })).toThrow(InvalidArgumentError);
    expect(() => new SseClient({ url: 'http://127.0.0.1/', maxLineBytes: 0 })).toThrow(InvalidArgumentError);
    expect(() => new SseClient({ url: 'http://127.0.0.1/', lastEventId: 'a\0b' })).toThrow(InvalidArgumentError);
    expect(() => new SseClient({ url: 'http://127.0.0.1/', gapEvent: '' })).toThrow(InvalidArgumentError);
    expect(() => new SseClient({ url: 'http://127.0.0.1/', retryMs: -1 })).toThrow(InvalidArgumentError);
  });
});
