/**
 * Real EventSource clients against SseHandler on a real node:http server (127.0.0.1:0), mirroring
 * the server-facing behaviours of web-platform-tests `eventsource/resources/*` (see
 * shared/research/sse.md, 2.1-2.2, tier 2). Two independent parsers must agree:
 *
 * - `eventsource`: the npm client, in this process;
 * - `node`: Node's own EventSource (undici's), in a child process run with
 *   `node --experimental-eventsource` (clients-node-eventsource.mjs).
 *
 * Every wait is on a condition with a bound. The only real delays are the clients' own reconnect
 * timers, which the server sets to RETRY_MS with `retry:`.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Clock, ManualClock, type Message, PubSubBroker, realClock, SseHandler, type SseStream } from '../../src/index.js';
import { eventually, serveRig, TestResources } from '../helpers.js';
import { CLOSED, type ClientName, openClient, OPEN, type SseClient } from './clients-harness.js';

const RETRY_MS = 20;

/** One request the server saw. */
interface Seen {
  readonly path: string;
  readonly lastEventId: string | undefined;
  readonly accept: string | undefined;
  status?: number;
}

const broker = new PubSubBroker();
const small = new PubSubBroker({ history: { maxCount: 3 } });
// Heartbeats on a clock whose timers move only when the test says so; flushes stay real.
const manual = new ManualClock();
const heartbeatClock: Clock = {
  now: () => manual.now(),
  setTimer: (callback, delayMs, options) => manual.setTimer(callback, delayMs, options),
  defer: (callback) => realClock.defer(callback),
};
const HEARTBEAT_MS = 1000;
const handlers = {
  sse: new SseHandler({
    broker,
    retryMs: RETRY_MS,
    lastEventIdQuery: 'lastEventId',
    authorize: (target) => target.topics?.[0]?.startsWith('forbidden') !== true,
  }),
  small: new SseHandler({ broker: small, retryMs: RETRY_MS, lastEventIdQuery: 'lastEventId' }),
  hb: new SseHandler({ broker, retryMs: RETRY_MS, heartbeatMs: HEARTBEAT_MS, clock: heartbeatClock }),
};
const brokers = { sse: broker, small, hb: broker };

const seen: Seen[] = [];
/** Live SSE requests, to cut them from the server side. */
const live = new Map<IncomingMessage, { path: string; socket: Socket }>();
/** While set, SSE requests carrying `Last-Event-ID` (reconnects) wait here. */
let gate: (() => void)[] | null = null;

const server = http.createServer((req, res) => {
  void route(req, res);
});
let base = '';

async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const m = /^\/(sse|small|hb)\/([^/]+)$/.exec(url.pathname);
  if (m === null) {
    res.writeHead(404).end();
    return;
  }
  const entry: Seen = { path: url.pathname, lastEventId: header(req, 'last-event-id'), accept: header(req, 'accept') };
  seen.push(entry);
  if (gate !== null && entry.lastEventId !== undefined) {
    const held = gate;
    await new Promise<void>((resolve) => held.push(resolve));
  }
  live.set(req, { path: url.pathname, socket: req.socket });
  res.once('close', () => live.delete(req));
  await handlers[m[1] as keyof typeof handlers].handle(req, res, { topics: [decodeURIComponent(m[2]!)] });
  entry.status = res.statusCode;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const requests = (path: string): Seen[] => seen.filter((s) => s.path === path);

/** Destroys the sockets of the live SSE requests on `path`: a network error for the client. */
function cut(path: string): number {
  let n = 0;
  for (const { path: p, socket } of live.values()) {
    if (p === path) {
      socket.destroy();
      n++;
    }
  }
  return n;
}

function closeGate(): void {
  gate = [];
}

function openGate(): void {
  const held = gate ?? [];
  gate = null;
  for (const release of held) release();
}

const publish = (path: string, data: unknown): Promise<Message> => {
  const [, kind, topic] = path.split('/') as [string, keyof typeof brokers, string];
  return brokers[kind].publish(topic, data);
};

const clients: SseClient[] = [];
function open(name: ClientName, path: string, types: readonly string[] = []): SseClient {
  const client = openClient(name, `${base}${path}`, types);
  clients.push(client);
  return client;
}

/** The file's server, closed in afterAll. */
const resources = new TestResources();
beforeAll(() =>
  resources.setup(async (r) => {
    base = (await serveRig(server, { resources: r })).url;
  }),
);

afterEach(async () => {
  openGate();
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  for (const h of Object.values(handlers)) await h.close();
  await resources.teardown();
  await broker.close();
  await small.close();
});

const opened = (c: SseClient): Promise<void> => eventually(() => c.events.some((e) => e.kind === 'open'), `${c.name} to open`);
const messagesReach = (c: SseClient, n: number): Promise<void> =>
  eventually(() => c.messages().length >= n, `${c.name} to receive ${n} events (has ${c.messages().length})`);

/**
 * Moves the heartbeat clock on by one period and waits until the heartbeat went out (counted and
 * flushed: the flush runs on the real event loop, and a stream whose last write is still queued
 * would be sent another heartbeat at every sweep of a clock moved this fast).
 */
async function heartbeat(): Promise<void> {
  const before = handlers.hb.stats().heartbeats;
  manual.advance(HEARTBEAT_MS);
  await eventually(() => handlers.hb.stats().heartbeats > before && handlers.hb.stats().bytesQueued === 0, 'a heartbeat to go out');
}

describe.each<ClientName>(['eventsource', 'node'])('%s client', (name) => {
  it('receives data exactly as published: multi-line, CR/LF/CRLF as LF, empty, leading spaces, unicode, NUL, field-like text, JSON', async () => {
    const path = `/sse/format-${name}`;
    const client = open(name, path);
    await opened(client);
    const cases: [unknown, string][] = [
      ['plain', 'plain'],
      ['two\nlines', 'two\nlines'],
      ['crlf\r\nand cr\rand lf\nend', 'crlf\nand cr\nand lf\nend'],
      ['', ''],
      ['\n', '\n'],
      ['trailing newline\n', 'trailing newline\n'],
      ['  two leading spaces', '  two leading spaces'],
      [' one', ' one'],
      ['\ttab', '\ttab'],
      ['héllo … 日本語 🎉 \u2028', 'héllo … 日本語 🎉 \u2028'],
      ['nul\0inside', 'nul\0inside'],
      [':not a comment', ':not a comment'],
      ['id: forged\nevent: spoof\nretry: 1\n\ndata: injected', 'id: forged\nevent: spoof\nretry: 1\n\ndata: injected'],
      [{ json: ['value', 1] }, '{"json":["value",1]}'],
    ];
    const ids: string[] = [];
    for (const [data] of cases) ids.push((await publish(path, data)).id);
    await messagesReach(client, cases.length);
    const got = client.messages();
    expect(got.map((e) => e.data)).toEqual(cases.map(([, expected]) => expected));
    expect(got.map((e) => e.type)).toEqual(cases.map(() => 'message'));
    expect(got.map((e) => e.lastEventId)).toEqual(ids);
    expect(client.events.filter((e) => e.kind === 'error')).toEqual([]);
    expect(requests(path)).toHaveLength(1);
  });

  it('resumes with Last-Event-ID after the server destroys the socket: exactly the missed events, no duplicate', async () => {
    const path = `/sse/resume-${name}`;
    const client = open(name, path);
    await opened(client);
    const before: Message[] = [];
    for (let i = 0; i < 3; i++) before.push(await publish(path, `before ${i}`));
    await messagesReach(client, 3);

    closeGate();
    expect(cut(path)).toBe(1);
    await eventually(() => gate!.length === 1, 'the reconnect to arrive (held at the gate)');
    const during: Message[] = [];
    for (let i = 0; i < 4; i++) during.push(await publish(path, `during ${i}`));
    openGate();
    await messagesReach(client, 7);
    const after = await publish(path, 'after');
    await messagesReach(client, 8);

    const all = [...before, ...during, after];
    expect(client.messages().map((e) => [e.lastEventId, e.data])).toEqual(all.map((m) => [m.id, m.data]));
    const reqs = requests(path);
    expect(reqs.map((r) => r.lastEventId)).toEqual([undefined, before[2]!.id]);
    expect(reqs.map((r) => r.status)).toEqual([200, 200]);
    for (const r of reqs) expect(r.accept).toContain('text/event-stream'); // WPT request-accept
    expect(await client.readyState()).toBe(OPEN);
  });

  it('loses and duplicates nothing when cut mid-burst, by a destroyed socket and by a clean end', async () => {
    const path = `/sse/burst-${name}`;
    const client = open(name, path);
    await opened(client);
    const sent: Message[] = [];
    for (let i = 0; i < 20; i++) sent.push(await publish(path, `m${i}`));
    await messagesReach(client, 1);
    cut(path); // wherever the client is in the burst
    for (let i = 20; i < 40; i++) sent.push(await publish(path, `m${i}`));
    await messagesReach(client, 40);
    await eventually(() => live.size > 0 && [...live.values()].some((l) => l.path === path), 'the reconnected stream');
    handlers.sse.hub.closeAll(); // a clean end of a 200 stream: the client reconnects too
    for (let i = 40; i < 50; i++) sent.push(await publish(path, `m${i}`));
    await messagesReach(client, 50);
    const tail = await publish(path, 'tail');
    sent.push(tail);
    await messagesReach(client, 51);

    expect(client.messages().map((e) => [e.lastEventId, e.data])).toEqual(sent.map((m) => [m.id, m.data]));
    const reqs = requests(path);
    expect(reqs.length).toBeGreaterThanOrEqual(3);
    expect(reqs[0]!.lastEventId).toBeUndefined();
    for (const r of reqs.slice(1)) expect(sent.map((m) => m.id)).toContain(r.lastEventId);
  });

  it('honours retry: after a cut it reconnects long before its own 3 s default', async () => {
    const path = `/sse/retry-${name}`;
    const client = open(name, path);
    await opened(client);
    const m = await publish(path, 'x');
    await messagesReach(client, 1);
    cut(path);
    // Both clients default to 3000 ms. The server sent `retry: 20`; a reconnect within 2 s can
    // only come from it (this is a deadline on the reconnect, not a measurement of it).
    await eventually(() => requests(path).length === 2, 'the reconnect', { timeoutMs: 2000 });
    expect(requests(path)[1]!.lastEventId).toBe(m.id);
  });

  // Regression: the stop token once went out as an id-only checkpoint, which eventsource@4
  // (eventsource-parser 3.x) drops along with its id, so that client never stopped. It now goes
  // out as a `patchbay-stop` event with empty data, which every client applies.
  it('stops for good on the 204 answered after close({ reconnect: false })', async () => {
    const spy = vi.spyOn(handlers.sse.hub, 'stream');
    try {
      const path = `/sse/stop-${name}`;
      const client = open(name, path);
      await opened(client);
      const stream = spy.mock.results.at(-1)!.value as SseStream;
      const m = await publish(path, 'last words');
      await messagesReach(client, 1);
      stream.close({ reconnect: false });
      await eventually(() => requests(path).length >= 2, 'the reconnect', { timeoutMs: name === 'eventsource' ? 1000 : 10_000 });
      await eventually(async () => (await client.readyState()) === CLOSED, `${name} to be CLOSED`, { timeoutMs: name === 'eventsource' ? 1000 : 10_000 });
      const reqs = requests(path);
      expect(reqs[1]!.lastEventId).toMatch(/^stop-/);
      expect(reqs[1]!.status).toBe(204);
      // A client that would come back does so after RETRY_MS: give it 15 of those.
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS * 15));
      expect(requests(path)).toHaveLength(2);
      expect(client.messages().map((e) => [e.lastEventId, e.data])).toEqual([[m.id, 'last words']]);
      expect(client.events.at(-1)).toMatchObject({ kind: 'error', readyState: CLOSED });
    } finally {
      spy.mockRestore();
    }
  });

  it('gives up on a 403 from authorize: CLOSED, one request, no message', async () => {
    const path = `/sse/forbidden-${name}`;
    const client = open(name, path);
    await eventually(() => client.events.some((e) => e.kind === 'error'), 'the error event');
    expect(await client.readyState()).toBe(CLOSED);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS * 15));
    expect(requests(path).map((r) => r.status)).toEqual([403]);
    expect(client.events.map((e) => e.kind)).toEqual(['error']);
  });

  it('gives up on a 400 for a garbage lastEventId: CLOSED, no message', async () => {
    const path = `/sse/garbage-${name}`;
    const client = open(name, `${path}?lastEventId=${encodeURIComponent('not-an-id!')}`);
    await eventually(() => client.events.some((e) => e.kind === 'error'), 'the error event');
    expect(await client.readyState()).toBe(CLOSED);
    expect(requests(path).map((r) => r.status)).toEqual([400]);
    expect(client.messages()).toEqual([]);
  });

  it('announces a gap when the Last-Event-ID fell off the log, then sends what is left', async () => {
    const path = `/small/gap-${name}`;
    const client = open(name, path, ['gap']);
    await opened(client);
    const first = await publish(path, 'first');
    await messagesReach(client, 1);
    closeGate();
    cut(path);
    await eventually(() => gate!.length === 1, 'the reconnect to arrive (held at the gate)');
    const later: Message[] = [];
    for (let i = 0; i < 5; i++) later.push(await publish(path, `later ${i}`)); // the log keeps the last 3
    openGate();
    await messagesReach(client, 5);
    const got = client.messages();
    expect(got[0]).toMatchObject({ type: 'message', data: 'first', lastEventId: first.id });
    expect(got[1]).toMatchObject({ type: 'gap' });
    expect(JSON.parse(got[1]!.data!)).toEqual({ lastEventId: first.id });
    expect(got.slice(2).map((e) => [e.type, e.lastEventId, e.data])).toEqual(later.slice(2).map((m) => ['message', m.id, m.data]));
    expect(requests(path).map((r) => r.lastEventId)).toEqual([undefined, first.id]);
  });

  it('resumes from ?lastEventId= on a first connection (no header possible)', async () => {
    const path = `/sse/query-${name}`;
    const old: Message[] = [];
    for (let i = 0; i < 4; i++) old.push(await publish(path, `old ${i}`));
    const client = open(name, `${path}?lastEventId=${old[1]!.id}`);
    await messagesReach(client, 2);
    expect(client.messages().map((e) => [e.lastEventId, e.data])).toEqual(old.slice(2).map((m) => [m.id, m.data]));
  });

  it('dispatches nothing for heartbeat comments', async () => {
    const path = `/hb/heartbeat-${name}`;
    const client = open(name, path);
    await opened(client);
    const beats = handlers.hb.stats().heartbeats;
    for (let i = 0; i < 3; i++) {
      await heartbeat();
    }
    expect(handlers.hb.stats().heartbeats - beats).toBeGreaterThanOrEqual(3);
    const m = await publish(path, 'real');
    await messagesReach(client, 1);
    expect(client.events.map((e) => e.kind)).toEqual(['open', 'message']);
    expect(client.messages().map((e) => [e.lastEventId, e.data])).toEqual([[m.id, 'real']]);
    expect(requests(path)).toHaveLength(1);
  });
});

describe('the wire, read raw', () => {
  /** Opens a raw stream; it is aborted after 10 s whatever happens, so no read can hang. */
  const get = (path: string, headers?: Record<string, string>): Promise<Response> =>
    fetch(`${base}${path}`, { headers, signal: AbortSignal.timeout(10_000) });

  /** Reads a streaming response until `done(text)` holds, then cancels it. */
  async function readUntil(res: Response, done: (text: string) => boolean, what: string): Promise<string> {
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    try {
      while (!done(text)) {
        const { value, done: end } = await reader.read();
        if (end) throw new Error(`The stream ended before ${what}: ${JSON.stringify(text)}`);
        text += decoder.decode(value, { stream: true });
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
    return text;
  }

  it('answers 200 text/event-stream, uncached, then a comment and retry at once', async () => {
    const res = await get('/sse/raw-headers');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream(;|$)/);
    expect(res.headers.get('cache-control')).toContain('no-cache');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    const text = await readUntil(res, (t) => t.includes('data: \n\n'), 'the opening event');
    // The opening event carries the head the stream starts after, so even a cut before any
    // message resumes without loss; its own type keeps `onmessage` from firing.
    expect(text).toBe(`:\nretry: ${RETRY_MS}\n\nevent: patchbay-open\nid: ${await brokers.sse.head()}\ndata: \n\n`);
  });

  it('answers a garbage Last-Event-ID with 400 and a JSON error, header or query', async () => {
    const bad = ['garbage', 'zzzz', '../../etc/passwd', `${'a'.repeat(20)}-1`, 'x'.repeat(2000), '日本'];
    for (const value of bad) {
      const viaHeader = await fetch(`${base}/sse/raw-garbage`, { headers: { 'last-event-id': encodeURIComponent(value) } });
      const viaQuery = await fetch(`${base}/sse/raw-garbage?lastEventId=${encodeURIComponent(value)}`);
      for (const res of [viaHeader, viaQuery]) {
        expect(res.status, value).toBe(400);
        expect(res.headers.get('content-type'), value).toMatch(/^application\/json/);
        expect(((await res.json()) as { error: { code: string } }).error.code, value).toBe('PB_ERR_INVALID_CURSOR');
      }
    }
  });

  it('marks a gap with the Patchbay-Gap header and a first gap event', async () => {
    const path = '/small/raw-gap';
    const ms: Message[] = [];
    for (let i = 0; i < 6; i++) ms.push(await publish(path, `n${i}`));
    const res = await get(path, { 'last-event-id': ms[0]!.id });
    expect(res.status).toBe(200);
    expect(res.headers.get('patchbay-gap')).toBe('1');
    const text = await readUntil(res, (t) => t.includes(`id: ${ms[5]!.id}\n`), 'the last replayed event');
    const gapEvent = `event: gap\ndata: ${JSON.stringify({ lastEventId: ms[0]!.id })}\n\n`;
    const replay = ms.slice(3).map((m) => `id: ${m.id}\ndata: ${m.data as string}\n\n`).join('');
    expect(text).toBe(`:\nretry: ${RETRY_MS}\n\nevent: patchbay-open\nid: ${ms[0]!.id}\ndata: \n\n${gapEvent}${replay}`);

    const noGap = await get(path, { 'last-event-id': ms[4]!.id });
    expect(noGap.headers.get('patchbay-gap')).toBeNull();
    await noGap.body!.cancel();
  });

  it('sends heartbeat comments on an idle stream', async () => {
    const res = await get('/hb/raw-heartbeat'); // the headers are in: the stream is live
    const reading = readUntil(res, (t) => t.split(':\n').length - 1 >= 3, 'three comment lines');
    for (let i = 0; i < 2; i++) {
      await heartbeat();
    }
    expect(await reading).toMatch(new RegExp(`^:\nretry: ${RETRY_MS}\n\nevent: patchbay-open\nid: [^\n]+\ndata: \n\n:\n:\n$`));
  });

});
