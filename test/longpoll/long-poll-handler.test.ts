import http, { type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import { LongPollHandler, type LongPollHandlerOptions, ManualClock, PubSubBroker, type PubSubBrokerOptions } from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';

interface Rig {
  base: string;
  broker: PubSubBroker;
  handler: LongPollHandler;
  clock: ManualClock;
  server: Server;
}

async function rig(options: Partial<LongPollHandlerOptions> = {}, brokerOptions: PubSubBrokerOptions = {}): Promise<Rig> {
  const clock = new ManualClock();
  const broker = new PubSubBroker({ clock, ...brokerOptions });
  const handler = new LongPollHandler({ broker, clock, queryTarget: true, allowPatterns: true, ...options });
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const m = /^\/lp\/([^/]+)$/.exec(path);
    if (m) void handler.handle(req, res, { topics: [decodeURIComponent(m[1]!)] });
    else void handler.handle(req, res); // topics from the query
  });
  server.keepAliveTimeout = 1;
  const { url } = await serveRig(server, { backlog: 4096 });
  // Closed after the test, last registered first: the handler, the broker, then the server.
  perTest.defer(() => broker.close());
  perTest.defer(() => handler.close());
  return { base: url, broker, handler, clock, server };
}

interface PollBody {
  messages: { id: string; topic: string; data: unknown }[];
  cursor: string;
  gap: boolean;
  more: boolean;
}
const json = async (res: Response): Promise<PollBody> => (await res.json()) as PollBody;
const parked = (r: Rig, n: number): Promise<void> => until(() => r.handler.stats().parked === n, `${n} parked polls`);

/** Opens `n` raw long polls in waves of 200 (so the listen backlog never overflows), all parked on return. */
async function openPolls(r: Rig, n: number, path: (i: number) => string, agent: http.Agent): Promise<{ req: http.ClientRequest; body: Promise<string> }[]> {
  const out: { req: http.ClientRequest; body: Promise<string> }[] = [];
  const start = r.handler.stats().parked;
  for (let i = 0; i < n; i++) {
    let req!: http.ClientRequest;
    const body = new Promise<string>((resolve) => {
      req = http.get(`${r.base}${path(i)}`, { agent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(text));
        res.on('error', () => resolve('aborted'));
      });
      req.on('error', () => resolve('aborted'));
    });
    out.push({ req, body });
    if ((i + 1) % 200 === 0 || i === n - 1) await parked(r, start + i + 1);
  }
  return out;
}

describe('LongPollHandler', () => {
  it('answers at once with the messages after the cursor, and the next cursor', async () => {
    const r = await rig();
    const m0 = await r.broker.publish('t', 'a');
    await r.broker.publish('t', 'b');
    const m2 = await r.broker.publish('t', { c: 3 });
    const res = await fetch(`${r.base}/lp/t?cursor=${m0.id}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('patchbay-cursor')).toBe(m2.id);
    const body = await json(res);
    expect(body.messages.map((m) => m.data)).toEqual(['b', { c: 3 }]);
    expect(body).toMatchObject({ cursor: m2.id, gap: false, more: false });
  });

  it('batches up to the limit and says more follow', async () => {
    const r = await rig({ maxBatchMessages: 3 });
    const first = await r.broker.publish('t', 0);
    for (let i = 1; i < 10; i++) await r.broker.publish('t', i);
    const b1 = await json(await fetch(`${r.base}/lp/t?cursor=${first.id}`));
    expect(b1.messages.map((m) => m.data)).toEqual([1, 2, 3]);
    expect(b1.more).toBe(true);
    const b2 = await json(await fetch(`${r.base}/lp/t?cursor=${b1.cursor}&limit=2`));
    expect(b2.messages.map((m) => m.data)).toEqual([4, 5]);
    const capped = await json(await fetch(`${r.base}/lp/t?cursor=${first.id}&limit=1000`));
    expect(capped.messages).toHaveLength(3);
  });

  it('parks until a publish wakes it', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const pending = fetch(`${r.base}/lp/t?cursor=${head}`);
    await parked(r, 1);
    const m = await r.broker.publish('t', 'woken');
    const res = await pending;
    expect(res.status).toBe(200);
    expect((await json(res)).messages.map((x) => x.id)).toEqual([m.id]);
    expect(r.handler.stats().parked).toBe(0);
  });

  it('without a cursor, waits for the next message', async () => {
    const r = await rig();
    await r.broker.publish('t', 'old');
    const pending = fetch(`${r.base}/lp/t`);
    await parked(r, 1);
    await r.broker.publish('other', 'x');
    await r.broker.publish('t', 'new');
    expect((await json(await pending)).messages.map((m) => m.data)).toEqual(['new']);
  });

  it('answers 204 with the cursor to reuse when the hold ends (injected clock)', async () => {
    const r = await rig({ maxHoldMs: 30_000 });
    const head = await r.broker.head();
    const pending = fetch(`${r.base}/lp/t?cursor=${head}`);
    await parked(r, 1);
    r.clock.advance(29_999);
    expect(r.handler.stats().parked).toBe(1);
    r.clock.advance(1);
    const res = await pending;
    expect(res.status).toBe(204);
    expect(res.headers.get('patchbay-cursor')).toBe(head);
    expect(r.handler.stats().timedOut).toBe(1);
  });

  it('lets the client ask for a shorter hold, capped by the maximum', async () => {
    const r = await rig({ maxHoldMs: 1000 });
    const head = await r.broker.head();
    const short = fetch(`${r.base}/lp/t?cursor=${head}&timeout=200`);
    const long = fetch(`${r.base}/lp/t?cursor=${head}&timeout=999999`);
    await parked(r, 2);
    r.clock.advance(200);
    expect((await short).status).toBe(204);
    expect(r.handler.stats().parked).toBe(1);
    r.clock.advance(800);
    expect((await long).status).toBe(204);
    expect((await fetch(`${r.base}/lp/t?timeout=0`)).status).toBe(204);
  });

  it('marks a gap when the cursor fell off the log, with what remains', async () => {
    const r = await rig({}, { history: { maxCount: 2 } });
    const first = await r.broker.publish('t', 0);
    for (let i = 1; i < 5; i++) await r.broker.publish('t', i);
    const res = await fetch(`${r.base}/lp/t?cursor=${first.id}`);
    expect(res.headers.get('patchbay-gap')).toBe('1');
    const body = await json(res);
    expect(body.gap).toBe(true);
    expect(body.messages.map((m) => m.data)).toEqual([3, 4]);
  });

  it('answers a cursor from before a restart at once, as a gap', async () => {
    const r = await rig();
    await r.broker.publish('t', 'after restart');
    const body = await json(await fetch(`${r.base}/lp/t?cursor=zzzzzzzz-5`));
    expect(body).toMatchObject({ gap: true });
    expect(body.messages.map((m) => m.data)).toEqual(['after restart']);
  });

  it('polls several topics with one combined cursor', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const pending = fetch(`${r.base}/multi?topic=a&topic=b&cursor=${head}`);
    await parked(r, 1);
    await r.broker.publish('c', 'ignored');
    await r.broker.publish('b', 'from b');
    const b1 = await json(await pending);
    expect(b1.messages.map((m) => [m.topic, m.data])).toEqual([['b', 'from b']]);
    await r.broker.publish('a', 'from a');
    await r.broker.publish('b', 'b again');
    const b2 = await json(await fetch(`${r.base}/multi?topic=a&topic=b&cursor=${b1.cursor}`));
    expect(b2.messages.map((m) => m.data)).toEqual(['from a', 'b again']);
  });

  it('polls a pattern', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const pending = fetch(`${r.base}/multi?pattern=${encodeURIComponent('room.*')}&cursor=${head}`);
    await parked(r, 1);
    await r.broker.publish('room.a.b', 'too deep');
    await r.broker.publish('room.a', 'hit');
    expect((await json(await pending)).messages.map((m) => m.data)).toEqual(['hit']);
  });

  it('wakes a thousand parked polls with one publish, all with the same bytes', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const polls = await openPolls(r, 1000, () => `/lp/herd?cursor=${head}`, agent);
    await r.broker.publish('herd', 'go');
    const bodies = await Promise.all(polls.map((p) => p.body));
    expect(new Set(bodies).size).toBe(1);
    expect(JSON.parse(bodies[0]!).messages[0].data).toBe('go');
    agent.destroy();
  });

  it('removes a poll whose client disconnects: after 10,000 aborted polls nothing waits', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const purgatoryWatchers = (): number => r.handler.stats().interests;
    for (let round = 0; round < 10; round++) {
      const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
      const polls = await openPolls(r, 1000, (i) => `/lp/gone${i % 10}?cursor=${head}`, agent);
      for (const p of polls) p.req.destroy();
      await parked(r, 0);
      agent.destroy();
    }
    await until(() => purgatoryWatchers() === 0, 'interest to drop');
    expect(r.handler.stats()).toMatchObject({ parked: 0, interests: 0, answered: 0 });
  }, 120_000);

  it('answers bad input with 4xx and a JSON error, publishing nothing', async () => {
    const r = await rig();
    const m = await r.broker.publish('t', 1);
    const cases: [string, RequestInit | undefined, number, string][] = [
      ['/lp/t?cursor=not-a-cursor!', undefined, 400, 'PB_ERR_INVALID_CURSOR'],
      [`/lp/t?cursor=${m.id.split('-')[0]}-zzzzzz`, undefined, 400, 'PB_ERR_INVALID_CURSOR'],
      ['/lp/a..b', undefined, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/lp/t?timeout=abc', undefined, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/lp/t?limit=0', undefined, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/multi', undefined, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/multi?topic=a&pattern=b.*', undefined, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/multi?pattern=a.%3E.b', undefined, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/lp/t', { method: 'POST', body: 'x' }, 405, 'PB_ERR_METHOD_NOT_ALLOWED'],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await fetch(`${r.base}${path}`, init);
      expect(res.status, path).toBe(status);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      expect(((await res.json()) as { error: { code: string } }).error.code, path).toBe(code);
      if (status === 405) expect(res.headers.get('allow')).toBe('GET');
    }
    expect(r.broker.stats().published).toBe(1);
    expect(r.handler.stats()).toMatchObject({ parked: 0, interests: 0 });
  });

  it('refuses with 403 when authorize says no', async () => {
    const r = await rig({ authorize: (target) => !target.topics?.includes('secret') });
    const res = await fetch(`${r.base}/lp/secret?timeout=0`);
    expect(res.status).toBe(403);
    expect((await fetch(`${r.base}/lp/open?timeout=0`)).status).toBe(204);
  });

  it('answers CORS preflights and exposes the cursor header', async () => {
    const r = await rig({ cors: { origin: ['https://app.example'] } });
    const pre = await fetch(`${r.base}/lp/t`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(pre.headers.get('access-control-allow-methods')).toBe('GET');
    const res = await fetch(`${r.base}/lp/t?timeout=0`, { headers: { origin: 'https://app.example' } });
    expect(res.headers.get('access-control-expose-headers')).toContain('Patchbay-Cursor');
    const other = await fetch(`${r.base}/lp/t?timeout=0`, { headers: { origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers 503 JSON when the broker is gone, and keeps no interest behind', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const polls = [fetch(`${r.base}/lp/t?cursor=${head}&timeout=0`), fetch(`${r.base}/lp/x?cursor=${head}&timeout=0`)];
    await r.broker.close();
    for (const res of await Promise.all(polls)) expect([204, 503]).toContain(res.status);
    const after = await fetch(`${r.base}/lp/t?cursor=${head}`);
    expect(after.status).toBe(503);
    expect(((await after.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_CLOSED');
    expect(r.handler.stats()).toMatchObject({ interests: 0, parked: 0 });
  });

  it('answers parked polls 204 with their cursor on close', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const pending = fetch(`${r.base}/lp/t?cursor=${head}`);
    await parked(r, 1);
    await r.handler.close();
    const res = await pending;
    expect(res.status).toBe(204);
    expect(res.headers.get('patchbay-cursor')).toBe(head);
    const after = await fetch(`${r.base}/lp/t`);
    expect(after.status).toBe(503);
  });
});
