/**
 * The pre-built raw answer (`http/raw-response.ts`): a woken herd on plain `node:http` gets one
 * Buffer per response, byte for byte what `writeHead` + `end` would have sent, and everything
 * else (HTTP/2, headers the app set, a pipelined response that is not the socket's current one,
 * `Connection: close`) is answered the old way. Read off the wire with raw sockets.
 */
import http, { type Server } from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { LongPollHandler, type LongPollHandlerOptions, ManualClock, PubSubBroker } from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';
import { fakeExchange } from './fake-http.js';

interface Rig {
  port: number;
  broker: PubSubBroker;
  handler: LongPollHandler;
  /** Every chunk the server wrote to any socket, in order. */
  writes: Buffer[];
}

/**
 * A server whose requests with `app=1` in the query get an app header set before `handle` (as
 * CORS middleware would), and `pattern=` polls go by the query.
 */
async function rig(options: Partial<LongPollHandlerOptions> = {}): Promise<Rig> {
  const clock = new ManualClock();
  const broker = new PubSubBroker({ clock });
  const handler = new LongPollHandler({ broker, clock, queryTarget: true, allowPatterns: true, ...options });
  const writes: Buffer[] = [];
  const server: Server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.searchParams.get('app') === '1') res.setHeader('Access-Control-Allow-Origin', '*');
    const m = /^\/lp\/([^/]+)$/.exec(url.pathname);
    void handler.handle(req, res, m ? { topics: [decodeURIComponent(m[1]!)] } : undefined);
  });
  server.on('connection', (socket: net.Socket) => {
    // Records what reaches the socket, chunk by chunk (writev included), without changing it.
    const write = socket.write.bind(socket) as (chunk: unknown, ...rest: unknown[]) => boolean;
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      writes.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : Buffer.from(chunk as Uint8Array));
      return write(chunk, ...rest);
    }) as typeof socket.write;
  });
  const { url } = await serveRig(server);
  perTest.defer(() => broker.close());
  perTest.defer(() => handler.close());
  return { port: Number(new URL(url).port), broker, handler, writes };
}

interface Wire {
  status: number;
  /** Header lines as sent, `Name: value`, in order. */
  lines: string[];
  headers: Record<string, string>;
  body: string;
  /** The whole response as it came off the wire. */
  raw: Buffer;
}

/** A raw HTTP/1.1 connection that parses the responses it receives, in order. */
class RawClient {
  readonly responses: Wire[] = [];
  ended = false;
  #buf = Buffer.alloc(0);
  readonly socket: net.Socket;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      this.#parse();
    });
    this.socket.on('end', () => (this.ended = true));
    this.socket.on('close', () => (this.ended = true));
    this.socket.on('error', () => undefined);
    perTest.defer(() => void this.socket.destroy());
  }

  send(...paths: string[]): void {
    this.socket.write(paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n${p.includes('close=1') ? 'Connection: close\r\n' : ''}\r\n`).join(''));
  }

  async next(n: number): Promise<Wire[]> {
    await until(() => this.responses.length >= n, `${n} responses`);
    return this.responses.slice(0, n);
  }

  #parse(): void {
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.#buf.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (this.#buf.length < end + 4 + length) return;
      const raw = this.#buf.subarray(0, end + 4 + length);
      this.responses.push({ status: Number(head[0]!.split(' ')[1]), lines: head.slice(1), headers, body: raw.subarray(end + 4).toString(), raw });
      this.#buf = this.#buf.subarray(end + 4 + length);
    }
  }
}

const parkedN = (r: Rig, n: number): Promise<void> => until(() => r.handler.stats().parked === n, `${n} parked polls`);
/** Header lines without the ones that differ by design: `Date` (time) and the app's own header. */
const comparable = (w: Wire): string[] => w.lines.filter((l) => !/^(date|access-control-allow-origin):/i.test(l));
/** Whether the server wrote this whole response as one chunk (the raw path). */
const oneChunk = (r: Rig, w: Wire): boolean => r.writes.some((c) => c.equals(w.raw));

describe('LongPollHandler raw answers', () => {
  it('a woken herd gets one Buffer per response, identical in status, headers and body to the writeHead path', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const plain = [0, 1, 2, 3].map(() => new RawClient(r.port));
    const app = [0, 1].map(() => new RawClient(r.port));
    for (const c of plain) c.send(`/lp/t?cursor=${head}`);
    for (const c of app) c.send(`/lp/t?cursor=${head}&app=1`);
    await parkedN(r, 6);
    const m = await r.broker.publish('t', { hello: 'world' });
    const raw = await Promise.all(plain.map(async (c) => (await c.next(1))[0]!));
    const fallback = await Promise.all(app.map(async (c) => (await c.next(1))[0]!));
    for (const w of [...raw, ...fallback]) {
      expect(w.status).toBe(200);
      expect(w.headers['patchbay-cursor']).toBe(m.id);
      expect(w.headers['connection']).toBe('keep-alive');
      expect(w.headers['date']).toMatch(/GMT$/);
      expect(JSON.parse(w.body)).toEqual({ messages: [{ id: m.id, topic: 't', data: { hello: 'world' } }], cursor: m.id, gap: false, more: false });
      expect(comparable(w)).toEqual(comparable(raw[0]!));
      expect(w.body).toBe(raw[0]!.body);
    }
    for (const w of raw) expect(oneChunk(r, w)).toBe(true);
    for (const w of fallback) {
      expect(w.headers['access-control-allow-origin']).toBe('*'); // set by the app before handle(), kept
      expect(oneChunk(r, w)).toBe(false);
    }
  });

  it('keeps the connection alive for a second request, answered from the kept raw bytes', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const [a, b] = [new RawClient(r.port), new RawClient(r.port)];
    a.send(`/lp/t?cursor=${head}`);
    b.send(`/lp/t?cursor=${head}`);
    await parkedN(r, 2);
    const m = await r.broker.publish('t', 'x');
    const [first] = await a.next(1);
    await b.next(1);
    // The same socket again, the same cursor: the kept answer, as one chunk again.
    a.send(`/lp/t?cursor=${head}`);
    const [, second] = await a.next(2);
    expect(second!.body).toBe(first!.body);
    expect(comparable(second!)).toEqual(comparable(first!));
    expect(oneChunk(r, second!)).toBe(true);
    // Then a poll that parks on the same socket, and is woken.
    a.send(`/lp/t?cursor=${m.id}`);
    await parkedN(r, 1);
    const m2 = await r.broker.publish('t', 'y');
    const third = (await a.next(3))[2]!;
    expect(JSON.parse(third.body)).toMatchObject({ cursor: m2.id });
    expect(a.ended).toBe(false);
  });

  it('a request that asks Connection: close is answered the writeHead way, and the connection closes', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const [keep, close] = [new RawClient(r.port), new RawClient(r.port)];
    keep.send(`/lp/t?cursor=${head}`);
    close.send(`/lp/t?cursor=${head}&close=1`);
    await parkedN(r, 2);
    await r.broker.publish('t', 'x');
    const [w] = await close.next(1);
    expect(w!.headers['connection']).toBe('close');
    expect(oneChunk(r, w!)).toBe(false);
    await until(() => close.ended, 'the closed connection');
    expect((await keep.next(1))[0]!.headers['connection']).toBe('keep-alive');
  });

  it('answers pipelined polls in order, even when the later one is woken first', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const c = new RawClient(r.port);
    c.send(`/lp/a?cursor=${head}`, `/lp/b?cursor=${head}`);
    // Both are handled and parked; node:http queues the second's answer behind the first's.
    await parkedN(r, 2);
    const mb = await r.broker.publish('b', 'for b');
    const ma = await r.broker.publish('a', 'for a');
    const [first, second] = await c.next(2);
    expect(JSON.parse(first!.body)).toMatchObject({ cursor: ma.id, messages: [{ topic: 'a' }] });
    expect(JSON.parse(second!.body)).toMatchObject({ messages: [{ id: mb.id, topic: 'b' }] });
  });

  it('answers pipelined requests parked together in order', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const other = new RawClient(r.port);
    other.send(`/lp/t?cursor=${head}`);
    await parkedN(r, 1);
    const c = new RawClient(r.port);
    c.send(`/lp/t?cursor=${head}`, `/lp/t?cursor=${head}&limit=1`);
    await parkedN(r, 3);
    const m = await r.broker.publish('t', 'x');
    const [first, second] = await c.next(2);
    for (const w of [first!, second!]) expect(JSON.parse(w.body)).toMatchObject({ cursor: m.id });
    expect((await other.next(1))[0]!.body).toBe(first!.body);
  });

  it('answers an HTTP/2 (compatibility API) poll through writeHead', async () => {
    const clock = new ManualClock();
    const broker = new PubSubBroker({ clock });
    const handler = new LongPollHandler({ broker, clock });
    const server = http2.createServer((req, res) => void handler.handle(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse, { topics: ['t'] }));
    perTest.defer(() => broker.close());
    perTest.defer(() => handler.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    perTest.defer(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    perTest.defer(() => void session.destroy());
    const head = await broker.head();
    const answers = [0, 1].map(
      () =>
        new Promise<{ status: number; cursor: unknown; body: string }>((resolve, reject) => {
          const stream = session.request({ ':path': `/lp/t?cursor=${head}` });
          let status = 0;
          let cursor: unknown;
          let body = '';
          stream.on('response', (h) => ((status = Number(h[':status'])), (cursor = h['patchbay-cursor'])));
          stream.setEncoding('utf8');
          stream.on('data', (c: string) => (body += c));
          stream.on('end', () => resolve({ status, cursor, body }));
          stream.on('error', reject);
        }),
    );
    await until(() => handler.stats().parked === 2, '2 parked HTTP/2 polls');
    const m = await broker.publish('t', 'h2');
    for (const a of await Promise.all(answers)) {
      expect(a.status).toBe(200);
      expect(a.cursor).toBe(m.id);
      expect(JSON.parse(a.body)).toMatchObject({ messages: [{ id: m.id, data: 'h2' }] });
    }
  });

  it('polls whose grants differ never get each other’s bytes', async () => {
    const r = await rig({
      authorize: (_target, req) => (new URL(req.url ?? '/', 'http://x').searchParams.get('who') === 'guest' ? { canRead: (topic) => topic !== 'room.secret' } : true),
    });
    const head = await r.broker.head();
    const admins = [0, 1, 2].map(() => new RawClient(r.port));
    const guests = [0, 1, 2].map(() => new RawClient(r.port));
    for (const c of admins) c.send(`/?pattern=room.*&cursor=${head}`);
    for (const c of guests) c.send(`/?pattern=room.*&cursor=${head}&who=guest`);
    await parkedN(r, 6);
    await r.broker.publish('room.secret', 'the code');
    const adminBodies = await Promise.all(admins.map(async (c) => (await c.next(1))[0]!.body));
    for (const b of adminBodies) expect(JSON.parse(b)).toMatchObject({ messages: [{ topic: 'room.secret' }] });
    await parkedN(r, 3); // the guests read past it and parked again
    const open = await r.broker.publish('room.open', 'hello');
    for (const c of guests) {
      const [w] = await c.next(1);
      expect(w!.body).not.toContain('the code');
      expect(JSON.parse(w!.body)).toMatchObject({ messages: [{ id: open.id, topic: 'room.open' }], cursor: open.id });
    }
  });

  it('a kept answer with messages counts room for its raw bytes against maxCachedBytes', async () => {
    const budget = async (maxCachedBytes: number): Promise<{ cachedAnswers: number; cachedBytes: number; body: string }> => {
      const clock = new ManualClock();
      const broker = new PubSubBroker({ clock });
      const handler = new LongPollHandler({ broker, clock, maxCachedBytes });
      perTest.defer(() => broker.close());
      perTest.defer(() => handler.close());
      const before = await broker.head();
      await broker.publish('t', 'y'.repeat(1000));
      const keeper = fakeExchange(`/?cursor=${await broker.head()}`); // parked: keeps the key's answers alive
      await handler.handle(keeper.req, keeper.res, { topics: ['t'] });
      const quiet = handler.stats(); // the keeper's own (quiet) answer, kept
      const pair = [0, 1].map(() => fakeExchange(`/?cursor=${before}`)); // one read, shared: kept
      await Promise.all(pair.map((x) => handler.handle(x.req, x.res, { topics: ['t'] })));
      expect(pair[0]!.fake.answer.body).toBe(pair[1]!.fake.answer.body);
      const after = handler.stats();
      return { cachedAnswers: after.cachedAnswers - quiet.cachedAnswers, cachedBytes: after.cachedBytes - quiet.cachedBytes, body: pair[0]!.fake.answer.body };
    };
    const kept = await budget(1_000_000);
    expect(kept.cachedAnswers).toBe(1);
    expect(kept.cachedBytes).toBeGreaterThanOrEqual(2 * Buffer.byteLength(kept.body) + 512);
    // A budget that holds the body once but not its raw copy keeps nothing; the polls are answered all the same.
    const tight = await budget(Buffer.byteLength(kept.body) + 300);
    expect(tight).toMatchObject({ cachedAnswers: 0, cachedBytes: 0 });
  });
});
