import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { ClosedError, ManualClock, PubSubBroker } from '../../src/index.js';
import { WsHandler } from '../../src/ws/index.js';
import { perTest, serveRig, until } from '../helpers.js';
import { Client, heartbeatClock, rig } from './helpers.js';

const pad = 'x'.repeat(500);

describe('WsHandler: slow consumers', () => {
  it('"close": a burst past maxBufferedBytes closes with 1013; resuming from the last id loses nothing', async () => {
    const r = await rig({ maxBufferedBytes: 6000 });
    const c = await Client.open(r);
    const sub = await c.subscribe('s', { pattern: 'burst' });
    const ids: string[] = [];
    // One event-loop turn: every message is queued before the first flush.
    const burst = Array.from({ length: 30 }, (_, i) => r.broker.publish('burst', { i, pad }));
    for (const m of await Promise.all(burst)) ids.push(m.id);
    const closed = await c.waitClosed();
    expect(closed.code).toBe(1013);
    expect(closed.reason).toContain('PB_ERR_OVERFLOW');
    expect(r.ws.stats()).toMatchObject({ overflowCloses: 1, connections: 0, subscriptions: 0 });
    expect(r.broker.stats().subscriptions).toBe(0);
    // The replay of all 30 is larger than the buffer: it still goes out whole.
    const seen = c.messages('s').map((f) => f.id as string);
    const again = await Client.open(r);
    await again.subscribe('s', { pattern: 'burst' }, seen.at(-1) ?? (sub.cursor as string));
    await until(() => seen.length + again.messages('s').length === 30, 'the replay');
    expect([...seen, ...again.messages('s').map((f) => f.id as string)]).toEqual(ids);
    // And the connection goes on live.
    const live = await r.broker.publish('burst', 'live');
    await until(() => again.messages('s').at(-1)?.id === live.id, 'the live message');
    expect(again.closed).toBeUndefined();
  });

  it('"close": a client that stops reading is closed once the socket and the queue are full', async () => {
    const r = await rig({ maxBufferedBytes: 64 * 1024 });
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'flood' });
    c.socket.pause(); // the client stops reading: the kernel buffers fill, then ours
    const chunk = 'y'.repeat(16 * 1024);
    let sent = 0;
    await until(() => {
      if (r.ws.stats().connections === 1 && sent < 20_000) {
        void r.broker.publish('flood', chunk);
        sent++;
      }
      return r.ws.stats().connections === 0;
    }, 'the overflow close');
    expect(r.ws.stats().overflowCloses).toBe(1);
    expect(r.broker.stats().subscriptions).toBe(0);
    c.socket.resume();
    expect((await c.waitClosed()).code).toBe(1013);
  });

  it('"drop-oldest": drops the oldest queued messages and announces how many, before the next one', async () => {
    const r = await rig({ maxBufferedBytes: 6000, overflow: 'drop-oldest' });
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'burst' });
    const ms = await Promise.all(Array.from({ length: 30 }, (_, i) => r.broker.publish('burst', { i, pad })));
    await until(() => c.messages('s').at(-1)?.id === ms[29]!.id, 'the newest message');
    const frames = c.frames.slice(1);
    expect(frames[0]).toMatchObject({ type: 'gap', sid: 's', reason: 'overflow' });
    const dropped = frames[0]!.dropped as number;
    expect(dropped).toBeGreaterThan(0);
    expect(c.messages('s').map((f) => f.id)).toEqual(ms.slice(dropped).map((m) => m.id));
    expect(r.ws.stats()).toMatchObject({ drops: dropped, overflowCloses: 0, connections: 1 });
    expect(c.closed).toBeUndefined();
  });

  it('"coalesce": the latest message per subscription and topic replaces a queued one, announced as a gap', async () => {
    const r = await rig({ overflow: 'coalesce' });
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'price.*' });
    const ms = await Promise.all(['a', 'b', 'a', 'a', 'b'].map((t, i) => r.broker.publish(`price.${t}`, i)));
    await until(() => c.messages('s').length === 2, 'the two latest');
    expect(c.frames.slice(1).map((f) => f.type)).toEqual(['gap', 'message', 'message']);
    expect(c.frames[1]).toMatchObject({ reason: 'overflow', dropped: 3 });
    expect(c.messages('s').map((f) => [f.topic, f.data])).toEqual([
      ['price.a', 3],
      ['price.b', 4],
    ]);
    expect(ms).toHaveLength(5);
  });

  it('every drop is counted and published on patchbay:ws:drop with its connection, sid and policy', async () => {
    const seen: { connection: unknown; sid: string; policy: string }[] = [];
    const onDrop = (m: unknown): void => void seen.push(m as (typeof seen)[number]);
    diagnostics.subscribe('patchbay:ws:drop', onDrop);
    try {
      const r = await rig({ overflow: 'coalesce' });
      const c = await Client.open(r);
      await c.subscribe('s', { pattern: 'price.*' });
      await Promise.all(['a', 'b', 'a', 'a', 'b'].map((t, i) => r.broker.publish(`price.${t}`, i)));
      await until(() => c.messages('s').length === 2, 'the two latest');
      const [connection] = r.ws.connections();
      expect(seen).toEqual([0, 1, 2].map(() => ({ connection, sid: 's', policy: 'coalesce' })));
      expect(r.ws.stats().drops).toBe(3);
      expect(connection!.stats().drops).toBe(3);
    } finally {
      diagnostics.unsubscribe('patchbay:ws:drop', onDrop);
    }
  });
});

describe('WsHandler: heartbeat', () => {
  it('pings from one shared timer and terminates a peer that did not answer the previous ping', async () => {
    const r = await rig({ heartbeatMs: 1000 });
    const live = await Client.open(r);
    const dead = await Client.open(r, { autoPong: false });
    await dead.subscribe('s', { pattern: 'hb' });
    await live.subscribe('s', { pattern: 'hb' });
    expect(r.manual.pendingTimers).toBe(1); // one timer for every connection

    r.manual.advance(1000);
    await until(() => live.pings === 1 && dead.pings === 1, 'the first pings');
    // The live client's automatic pong was written before this frame: once it is answered, the
    // server has seen the pong.
    await live.request({ type: 'ping' });
    r.manual.advance(1000);
    expect((await dead.waitClosed('the dead peer to be terminated')).code).toBe(1006);
    expect(r.ws.stats()).toMatchObject({ reaped: 1, connections: 1, subscriptions: 1 });
    expect(r.broker.stats().subscriptions).toBe(1);
    await until(() => live.pings === 2, 'the second ping');
    expect(live.closed).toBeUndefined();

    live.socket.close();
    await until(() => r.ws.stats().connections === 0, 'the last connection to go');
    expect(r.manual.pendingTimers).toBe(0); // no connection, no timer
  });

  it('counts any frame as an answer, and heartbeats can be turned off', async () => {
    const r = await rig({ heartbeatMs: 1000 });
    const quiet = await Client.open(r, { autoPong: false });
    r.manual.advance(1000);
    await until(() => quiet.pings === 1, 'the ping');
    await quiet.request({ type: 'ping' }); // an application frame instead of a pong
    r.manual.advance(1000);
    await quiet.request({ type: 'ping' });
    expect(r.ws.stats().reaped).toBe(0);

    const off = await rig({ heartbeatMs: 0 });
    await Client.open(off, { autoPong: false });
    expect(off.manual.pendingTimers).toBe(0);
  });

  it('tells a client when the broker ended its subscription', async () => {
    const r = await rig({ heartbeatMs: 1000 });
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'b' });
    await r.broker.close();
    r.manual.advance(1000);
    expect(await c.next((f) => f.type === 'unsubscribed', 'the end of the subscription')).toMatchObject({ sid: 's', code: 'PB_ERR_CLOSED' });
    expect(r.ws.stats().subscriptions).toBe(0);
  });
});

describe('WsHandler: lifecycle and cleanup', () => {
  it('cleans up a connection the client closes or cuts: subscriptions, queue, counters', async () => {
    const r = await rig();
    const a = await Client.open(r);
    const b = await Client.open(r);
    await a.subscribe('1', { pattern: 'x' });
    await a.subscribe('2', { topics: ['y', 'z'] });
    await b.subscribe('1', { pattern: 'x' });
    expect(r.broker.stats().subscriptions).toBe(4);
    a.socket.close();
    b.socket.terminate();
    await until(() => r.ws.stats().connections === 0, 'both to go');
    expect(r.ws.stats().subscriptions).toBe(0);
    expect(r.broker.stats().subscriptions).toBe(0);
    await r.broker.publish('x', 'nobody');
  });

  it('close() sends 1001 to every client, releases every subscription and timer, and detaches from the server', async () => {
    const r = await rig({ heartbeatMs: 1000 });
    const clients = await Promise.all([Client.open(r), Client.open(r), Client.open(r)]);
    for (const c of clients) await c.subscribe('s', { pattern: 'all' });
    expect(r.server.listenerCount('upgrade')).toBe(1);
    await r.ws.close();
    for (const c of clients) expect((await c.waitClosed()).code).toBe(1001);
    expect(r.ws.stats()).toMatchObject({ connections: 0, subscriptions: 0 });
    expect(r.broker.stats().subscriptions).toBe(0);
    expect(r.manual.pendingTimers).toBe(0);
    expect(r.server.listenerCount('upgrade')).toBe(0);
    expect(() => r.ws.attach(r.server)).toThrow(ClosedError);
    await r.ws.close(); // idempotent
  });

  it('close() terminates clients that do not answer the close frame within closeTimeoutMs', async () => {
    const manual = new ManualClock();
    const r = await rig({ clock: heartbeatClock(manual), closeTimeoutMs: 2000 });
    const c = await Client.open(r);
    c.socket.pause(); // it will not read the close frame
    const closing = r.ws.close();
    let done = false;
    void closing.then(() => (done = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toBe(false);
    manual.advance(2000);
    await closing;
    expect(manual.pendingTimers).toBe(0);
  });

  it('refuses upgrades with 503 once closing, and supports await using', async () => {
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    const server = http.createServer();
    let url = '';
    {
      await using ws = new WsHandler({ broker });
      ws.attach(server);
      url = `ws://127.0.0.1:${(await serveRig(server)).port}/`;
      const c = new WebSocket(url);
      await new Promise((resolve) => c.once('open', resolve));
      c.close();
    }
    // Disposed: nothing listens for upgrades any more; a handler that is closed answers 503.
    expect(server.listenerCount('upgrade')).toBe(0);
    const closed = new WsHandler({ broker });
    await closed.close();
    server.on('upgrade', (req, socket, head) => void closed.handleUpgrade(req, socket, head));
    const status = await new Promise<number>((resolve) => {
      const c = new WebSocket(url);
      c.on('error', () => {});
      c.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    });
    expect(status).toBe(503);
  });

  it('destroy() terminates every socket at once', async () => {
    const r = await rig();
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'd' });
    r.ws.destroy();
    expect((await c.waitClosed()).code).toBe(1006);
    expect(r.broker.stats().subscriptions).toBe(0);
    expect(r.ws.destroyed).toBe(true);
  });

  it('serves sockets from an app\'s own WebSocketServer through accept()', async () => {
    const broker = new PubSubBroker();
    const ws = new WsHandler({ broker });
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => wss.once('listening', resolve));
    wss.on('connection', (socket) => ws.accept(socket, { app: 'own' }));
    const socket = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    const c = new Client(socket);
    await new Promise((resolve) => socket.once('open', resolve));
    expect(await c.subscribe('s', { topics: ['own'] })).toMatchObject({ type: 'subscribed' });
    const m = await broker.publish('own', 1);
    expect((await c.next((f) => f.type === 'message', 'the message')).id).toBe(m.id);
    expect(ws.connections()[0]!.context).toEqual({ app: 'own' });
    await ws.close();
    expect((await c.waitClosed()).code).toBe(1001);
    await new Promise((resolve) => wss.close(resolve));
    await broker.close();
  });

  it('closes one connection from the server side with a code of the app\'s choosing', async () => {
    const r = await rig();
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'k' });
    const [connection] = r.ws.connections();
    expect(connection!.subscriptions()).toEqual(['s']);
    connection!.close(4001, 'kicked');
    expect(await c.waitClosed()).toEqual({ code: 4001, reason: 'kicked' });
    expect(connection!.closed).toBe(true);
    expect(r.broker.stats().subscriptions).toBe(0);
  });

  it('validates its options', () => {
    const broker = new PubSubBroker();
    expect(() => new WsHandler({} as never)).toThrow(/broker/);
    expect(() => new WsHandler({ broker, overflow: 'drop-newest' as never })).toThrow(/overflow/);
    expect(() => new WsHandler({ broker, heartbeatMs: -1 })).toThrow(/heartbeatMs/);
    expect(() => new WsHandler({ broker, maxMessageBytes: 4096, maxPayloadBytes: 1024 })).toThrow(/maxPayloadBytes/);
    expect(() => new WsHandler({ broker, authorize: { upgrade: 'yes' as never } })).toThrow(/authorize.upgrade/);
    void broker.close();
  });
});
