import http, { type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  ClosedError,
  HttpStatusError,
  InvalidArgumentError,
  LongPollClient,
  type LongPollMessage,
  ManualClock,
  ProtocolError,
  TimeoutError,
} from '../../src/client/index.js';
import { LongPollHandler, PubSubBroker, type PubSubBrokerOptions } from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';

// The client against the real LongPollHandler on a real 127.0.0.1 server. Server and client each
// run on a ManualClock, so holds, client timeouts and backoff happen only when a test says so.

interface Rig {
  url: string;
  base: string;
  broker: PubSubBroker;
  handler: LongPollHandler;
  serverClock: ManualClock;
  server: Server;
  /** Requests seen by the server, in order (method and URL). */
  seen: string[];
  /** Makes the next n requests answer this status (with a JSON error body) instead of polling. */
  failNext(n: number, status: number, headers?: Record<string, string>): void;
}

async function rig(brokerOptions: PubSubBrokerOptions = {}): Promise<Rig> {
  const serverClock = new ManualClock();
  const broker = new PubSubBroker({ clock: serverClock, ...brokerOptions });
  const handler = new LongPollHandler({ broker, clock: serverClock, maxHoldMs: 30_000 });
  const seen: string[] = [];
  let failures: { n: number; status: number; headers: Record<string, string> } = { n: 0, status: 0, headers: {} };
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (failures.n > 0) {
      failures.n--;
      res.writeHead(failures.status, { 'content-type': 'application/json', ...failures.headers });
      res.end(JSON.stringify({ error: { code: 'PB_ERR_TEST', message: 'injected by the test server' } }));
      return;
    }
    const m = /^\/lp\/([^/?]+)/.exec(req.url ?? '');
    if (m) void handler.handle(req, res, { topics: [decodeURIComponent(m[1]!)] });
    else if (req.url === '/garbage') res.writeHead(200, { 'content-type': 'application/json' }).end('{"messages": "nope"}');
    else res.writeHead(404).end();
  });
  server.keepAliveTimeout = 1;
  const { url: base } = await serveRig(server);
  // Closed after the test, last registered first: the handler, the broker, then the server.
  perTest.defer(() => broker.close());
  perTest.defer(() => handler.close());
  return {
    url: `${base}/lp/news`,
    base,
    broker,
    handler,
    serverClock,
    server,
    seen,
    failNext: (n, status, headers = {}) => {
      failures = { n, status, headers };
    },
  };
}

function client<T = unknown>(options: ConstructorParameters<typeof LongPollClient<T>>[0]): LongPollClient<T> {
  const c = new LongPollClient<T>(options);
  perTest.defer(() => c.close());
  return c;
}

const parked = (r: Rig, n: number): Promise<void> => until(() => r.handler.stats().parked === n, `${n} parked polls`);

/** Collects `n` messages from an iterator. */
async function take<T>(it: AsyncIterator<LongPollMessage<T>>, n: number): Promise<LongPollMessage<T>[]> {
  const out: LongPollMessage<T>[] = [];
  while (out.length < n) {
    const step = await it.next();
    if (step.done === true) break;
    out.push(step.value);
  }
  return out;
}

describe('LongPollClient', () => {
  it('yields every message in order, across quiet holds answered 204, and keeps the cursor', async () => {
    const r = await rig();
    const c = client<string>({ url: r.url, holdMs: 1000, clock: new ManualClock() });
    const it = c[Symbol.asyncIterator]();
    const first = take(it, 3);
    await parked(r, 1);
    // A quiet hold ends with 204; the client polls again at once, with the cursor the 204 gave.
    r.serverClock.advance(1000);
    await until(() => c.polls === 1 && r.handler.stats().parked === 1, 'the re-poll after a 204');
    const a = await r.broker.publish('news', 'a');
    const b = await r.broker.publish('news', 'b');
    const cc = await r.broker.publish('news', 'c');
    const got = await first;
    expect(got.map((m) => [m.id, m.topic, m.data])).toEqual([
      [a.id, 'news', 'a'],
      [b.id, 'news', 'b'],
      [cc.id, 'news', 'c'],
    ]);
    expect(c.cursor).toBe(cc.id);
    expect(r.seen[0]).toBe('GET /lp/news?timeout=1000');
    expect(r.seen[1]).toMatch(/^GET \/lp\/news\?cursor=[^&]+&timeout=1000$/); // the 204's cursor
  });

  it('resumes after a given cursor with nothing skipped or repeated, in batches up to the limit', async () => {
    const r = await rig();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await r.broker.publish('news', i)).id);
    const c = client<number>({ url: r.url, cursor: ids[1], limit: 2, clock: new ManualClock() });
    const batches = c.batches();
    const sizes: number[] = [];
    const data: number[] = [];
    while (data.length < 5) {
      const step = await batches.next();
      if (step.done === true) break;
      sizes.push(step.value.messages.length);
      data.push(...step.value.messages.map((m) => m.data));
    }
    expect(data).toEqual([2, 3, 4, 5, 6]);
    expect(sizes).toEqual([2, 2, 1]);
    expect(c.cursor).toBe(ids[6]);
  });

  it('reports a gap when the server lost messages after its cursor, and goes on with what is left', async () => {
    const r = await rig({ history: { maxCount: 3 } });
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await r.broker.publish('news', i)).id);
    const gaps: unknown[] = [];
    const c = client<number>({ url: r.url, cursor: ids[0], clock: new ManualClock(), onGap: (g) => gaps.push(g) });
    const got = await take(c.messages(), 3);
    expect(got.map((m) => m.data)).toEqual([7, 8, 9]);
    expect(c.gaps).toBe(1);
    expect(gaps).toEqual([{ after: ids[0], cursor: ids[9] }]);
  });

  it('retries 503s with backoff no shorter than Retry-After, then delivers', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const retries: { attempt: number; delayMs: number; status: number }[] = [];
    const c = client<string>({
      url: r.url,
      clock,
      random: () => 0.5,
      backoff: { initialDelayMs: 100, maxDelayMs: 1000 },
      onRetry: (x) => retries.push({ attempt: x.attempt, delayMs: x.delayMs, status: (x.error as HttpStatusError).status }),
    });
    r.failNext(2, 503, { 'retry-after': '2' });
    const got = take(c.messages(), 1);
    await until(() => retries.length === 1 && clock.pendingTimers === 1, 'the first backoff');
    expect(retries[0]).toEqual({ attempt: 1, delayMs: 2000, status: 503 });
    clock.advance(1999);
    expect(retries.length).toBe(1); // not a millisecond early
    clock.advance(1);
    await until(() => retries.length === 2 && clock.pendingTimers === 1, 'the second backoff');
    clock.advance(2000);
    await parked(r, 1);
    const m = await r.broker.publish('news', 'after the outage');
    expect((await got).map((x) => x.id)).toEqual([m.id]);
    expect(c.failures).toBe(0);
  });

  it('uses full-jitter exponential backoff for network errors, reset after a success', async () => {
    const r = await rig();
    const clock = new ManualClock();
    let failuresLeft = 3;
    const delays: number[] = [];
    const c = client<string>({
      url: r.url,
      clock,
      random: () => 1,
      backoff: { initialDelayMs: 100, maxDelayMs: 300, factor: 2 },
      fetch: (input, init) => {
        if (failuresLeft-- > 0) return Promise.reject(new TypeError('fetch failed (injected: connection refused)'));
        return fetch(input, init);
      },
      onRetry: (x) => delays.push(x.delayMs),
    });
    const got = take(c.messages(), 1);
    for (let i = 0; i < 3; i++) {
      await until(() => clock.pendingTimers === 1 && delays.length === i + 1, `backoff ${i + 1}`);
      clock.advance(delays[i]!);
    }
    expect(delays).toEqual([100, 200, 300]); // capped at maxDelayMs
    await parked(r, 1);
    await r.broker.publish('news', 'x');
    expect((await got).map((m) => m.data)).toEqual(['x']);
    expect(c.failures).toBe(0);
  });

  it('gives up a poll that outlives the client timeout and polls again', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const errors: unknown[] = [];
    const c = client<string>({ url: r.url, holdMs: 5000, clock, random: () => 0, onRetry: (x) => errors.push(x.error) });
    const got = take(c.messages(), 1);
    await parked(r, 1);
    // The server never answers (its clock stands still): the client's 15 s deadline ends the poll.
    expect(clock.timers()).toEqual([{ at: 15_000, ref: false }]);
    clock.advance(15_000);
    await until(() => errors.length === 1, 'the client timeout');
    expect(errors[0]).toBeInstanceOf(TimeoutError);
    expect(clock.timers()).toEqual([{ at: 15_000, ref: false }]); // the backoff: 0 ms (random() = 0)
    clock.advance(0);
    await until(() => r.seen.length === 2 && r.handler.stats().parked === 1, 'the next poll, and the old one gone');
    await r.broker.publish('news', 'late');
    expect((await got).map((m) => m.data)).toEqual(['late']);
  });

  it('does not retry a 4xx: a malformed cursor throws HttpStatusError with the server code', async () => {
    const r = await rig();
    const c = client({ url: r.url, cursor: 'not-a-cursor', clock: new ManualClock() });
    const error = await c
      .messages()
      .next()
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(HttpStatusError);
    expect(error).toMatchObject({ code: 'PB_ERR_HTTP_STATUS', status: 400, serverCode: 'PB_ERR_INVALID_CURSOR' });
    expect(r.seen.length).toBe(1);
  });

  it('gives up after maxRetries failures in a row and throws the last error', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const c = client({ url: r.url, clock, maxRetries: 2, random: () => 0 });
    r.failNext(10, 502);
    const p = c.messages().next();
    // Backoff 0: each wait is a 0 ms timer.
    for (let i = 0; i < 2; i++) {
      await until(() => c.failures === i + 1 && clock.pendingTimers === 1, `backoff ${i + 1}`);
      clock.advance(0);
    }
    await expect(p).rejects.toMatchObject({ status: 502 });
    expect(r.seen.length).toBe(3);
  });

  it('rejects a malformed answer with ProtocolError, without retrying', async () => {
    const r = await rig();
    const c = client({ url: `${r.base}/garbage`, clock: new ManualClock() });
    await expect(c.poll()).rejects.toBeInstanceOf(ProtocolError);
    await expect(c.messages().next()).rejects.toBeInstanceOf(ProtocolError);
  });

  it('close() cancels the poll in flight: the iterator ends, the server drops the poll, no timer stays', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const c = client({ url: r.url, clock });
    const next = c.messages().next();
    await parked(r, 1);
    expect(clock.pendingTimers).toBe(1); // the client timeout
    c.close();
    await expect(next).resolves.toEqual({ done: true, value: undefined });
    expect(clock.pendingTimers).toBe(0);
    await parked(r, 0);
    expect(c.closed).toBe(true);
    await expect(c.poll()).rejects.toBeInstanceOf(ClosedError);
  });

  it('an aborted signal ends the iteration during a backoff wait, leaving no timer', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const ac = new AbortController();
    const c = client({ url: r.url, clock, signal: ac.signal, backoff: { initialDelayMs: 10_000 } });
    r.failNext(1, 503);
    const next = c.messages().next();
    await until(() => clock.pendingTimers === 1 && c.failures === 1, 'the backoff wait');
    ac.abort();
    await expect(next).resolves.toEqual({ done: true, value: undefined });
    expect(clock.pendingTimers).toBe(0);
  });

  it('poll() with its own signal rejects with that reason and leaves the client usable', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const c = client<string>({ url: r.url, clock });
    const ac = new AbortController();
    const p = c.poll({ signal: ac.signal });
    await parked(r, 1);
    ac.abort(new Error('mine'));
    await expect(p).rejects.toThrow('mine');
    expect(clock.pendingTimers).toBe(0);
    await parked(r, 0);
    const p2 = c.poll();
    await parked(r, 1);
    await r.broker.publish('news', 'still works');
    expect((await p2).messages.map((m) => m.data)).toEqual(['still works']);
  });

  it('sends the configured headers, fixed or computed per request', async () => {
    const r = await rig();
    const seenAuth: (string | undefined)[] = [];
    r.server.prependListener('request', (req: http.IncomingMessage) => seenAuth.push(req.headers.authorization));
    let n = 0;
    const c = client({ url: r.url, clock: new ManualClock(), holdMs: 0, headers: () => ({ authorization: `Bearer t${++n}` }) });
    await c.poll();
    await c.poll();
    expect(seenAuth).toEqual(['Bearer t1', 'Bearer t2']);
  });

  it('rejects bad options with InvalidArgumentError', () => {
    const bad: unknown[] = [
      undefined,
      { url: 'not a url' },
      { url: 'http://x/lp/a', cursor: '' },
      { url: 'http://x/lp/a', holdMs: -1 },
      { url: 'http://x/lp/a', holdMs: Number.NaN },
      { url: 'http://x/lp/a', clientTimeoutMs: 0 },
      { url: 'http://x/lp/a', limit: 0 },
      { url: 'http://x/lp/a', limit: 1.5 },
      { url: 'http://x/lp/a', maxRetries: -1 },
      { url: 'http://x/lp/a', backoff: { initialDelayMs: 10, maxDelayMs: 5 } },
      { url: 'http://x/lp/a', backoff: { factor: 0.5 } },
    ];
    for (const options of bad) {
      expect(() => new LongPollClient(options as never), JSON.stringify(options)).toThrow(InvalidArgumentError);
    }
  });

  it('takes a relative url where there is a page URL (location.href), and says why it cannot in Node', async () => {
    expect(() => new LongPollClient({ url: '/lp/a' })).toThrow(InvalidArgumentError);
    expect(() => new LongPollClient({ url: '/lp/a' })).toThrow(/relative URL needs a base.*location\.href/);
    const r = await rig();
    const first = await r.broker.publish('news', 'first');
    await r.broker.publish('news', 'hello');
    const g = globalThis as { location?: unknown };
    // What a page has: the client resolves against it as fetch and EventSource do.
    g.location = { href: r.url.replace(/\/lp\/news$/, '/some/page.html?x=1') };
    try {
      const c = client({ url: '../lp/news', cursor: first.id, holdMs: 0, clock: new ManualClock() });
      const batch = await c.poll();
      expect(batch.messages.map((m) => m.data)).toEqual(['hello']);
      expect(r.seen.at(-1)).toMatch(/^GET \/lp\/news\?cursor=/);
    } finally {
      delete g.location;
    }
  });
});
