/**
 * SidecarChannel over in-memory stream pairs, with a manual clock for every deadline.
 */
import net from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  acceptSidecarStream,
  ClosedError,
  InvalidArgumentError,
  ManualClock,
  OverflowError,
  ProtocolError,
  RemoteError,
  serveSidecar,
  SidecarChannel,
  TimeoutError,
  UnavailableError,
  type SidecarHandler,
  type SidecarMessage,
} from '../../src/index.js';
import { encodeFrame } from '../../src/sidecar/framing.js';
import { perTest, until } from '../helpers.js';
import { streamPair, tempDir } from './helpers.js';

/** An app channel and a sidecar end that records what it gets, joined by `connect()`. */
function setup(options: ConstructorParameters<typeof SidecarChannel>[0] = {}, handler?: SidecarHandler) {
  const clock = new ManualClock();
  const seen: SidecarMessage[] = [];
  const sessions = new Map<string, { last: number }>();
  const app = new SidecarChannel({ clock, ...options });
  const sidecars: SidecarChannel[] = [];
  let cut = (): void => undefined;
  const connect = (lastHandled?: (session: string) => number | undefined): SidecarChannel => {
    const pair = streamPair();
    cut = pair.cut;
    app.attach(pair.app);
    const side = acceptSidecarStream(
      pair.sidecar,
      handler ??
        ((m) => {
          seen.push(m);
          if (m.kind === 'request') return { echo: m.data };
          return undefined;
        }),
      { clock, sessions, ...(lastHandled ? { lastHandled } : {}) },
    );
    sidecars.push(side);
    return side;
  };
  perTest.defer(() => {
    app.destroy();
    for (const s of sidecars) s.destroy();
  });
  return { clock, app, seen, connect, cutNow: () => cut(), sessions };
}

const seqsOf = (seen: readonly SidecarMessage[]): number[] => seen.filter((m) => m.kind === 'send').map((m) => m.data as number);

describe('SidecarChannel', () => {
  it('sends, requests with replies, and error replies carrying the code', async () => {
    const { app, connect } = setup({}, (m) => {
      if (m.type === 'fail') throw Object.assign(new Error('no way'), { code: 'E_NO' });
      if (m.type === 'async') return Promise.resolve(42);
      return m.data;
    });
    connect();
    app.send('hello', { a: 1 });
    expect(await app.request('echo', [1, 'x'])).toEqual([1, 'x']);
    expect(await app.request('async')).toBe(42);
    const err = await app.request('fail').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err).toMatchObject({ code: 'PB_ERR_REMOTE', remoteCode: 'E_NO', message: 'no way' });
    expect(app.stats()).toMatchObject({ connected: true, connections: 1, pendingRequests: 0 });
  });

  it('lets the sidecar send and request back to the app', async () => {
    const got: SidecarMessage[] = [];
    const { app, connect } = setup({ handler: (m) => (got.push(m), m.kind === 'request' ? `app saw ${String(m.data)}` : undefined) }, (m, ctx) => {
      if (m.type === 'ask-back') return ctx.channel.request('question', m.data);
      ctx.channel.send('note', 'from the sidecar');
      return undefined;
    });
    connect();
    app.send('poke');
    expect(await app.request('ask-back', 7)).toBe('app saw 7');
    await until(() => got.length === 2, 'the sidecar messages');
    expect(got.map((m) => [m.kind, m.type, m.data])).toEqual([
      ['send', 'note', 'from the sidecar'],
      ['request', 'question', 7],
    ]);
  });

  it('queues while disconnected and delivers everything in order once connected', async () => {
    const { app, seen, connect } = setup();
    for (let i = 1; i <= 500; i++) app.send('n', i);
    expect(app.stats()).toMatchObject({ connected: false, queuedMessages: 500 });
    connect();
    await until(() => app.stats().queuedMessages === 0, 'the acknowledgements');
    expect(seqsOf(seen)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(seen.map((m) => m.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(app.stats().delivered).toBe(500);
  });

  it('replays unacknowledged sends after a cut, with no loss and no duplicate, wherever the cut falls', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 5 }), async (total, turnsBeforeCut) => {
        const { app, seen, connect, cutNow } = setup();
        connect();
        for (let i = 1; i <= total; i++) app.send('n', i);
        for (let t = 0; t < turnsBeforeCut; t++) await new Promise((r) => setImmediate(r));
        cutNow();
        await until(() => !app.connected, 'the loss');
        connect();
        await until(() => app.stats().queuedMessages === 0, 'the acknowledgements');
        expect(seqsOf(seen)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
        app.destroy();
      }),
      { numRuns: 40 },
    );
  });

  it('resumes after the lastHandled the sidecar reports, so a restarted sidecar gets no duplicate', async () => {
    const { app, seen, connect, cutNow, sessions } = setup();
    for (let i = 1; i <= 10; i++) app.send('n', i);
    // Nothing connected yet: all ten wait. A "restarted" sidecar says it already has up to 6.
    connect();
    await until(() => app.stats().queuedMessages === 0, 'delivery');
    cutNow();
    await until(() => !app.connected, 'the loss');
    sessions.clear(); // a new process remembers nothing...
    for (let i = 11; i <= 20; i++) app.send('n', i);
    seen.length = 0;
    connect((session) => (session === app.session ? 15 : undefined)); // ...but its own records say 15
    await until(() => app.stats().queuedMessages === 0, 'delivery');
    expect(seqsOf(seen)).toEqual([16, 17, 18, 19, 20]);
    expect(app.stats().delivered).toBe(20);
  });

  it('drop-oldest: keeps the newest within the bound and counts the drops', async () => {
    const { app, seen, connect } = setup({ maxQueuedMessages: 5, overflow: 'drop-oldest' });
    const drops: number[] = [];
    app.on('drop', (d) => drops.push(d.seq));
    for (let i = 1; i <= 8; i++) app.send('n', i);
    expect(drops).toEqual([1, 2, 3]);
    connect();
    await until(() => app.stats().queuedMessages === 0, 'delivery');
    expect(seqsOf(seen)).toEqual([4, 5, 6, 7, 8]);
    expect(app.stats().dropped).toEqual({ oldest: 3, newest: 0, rejected: 0 });
  });

  it('drop-newest: refuses new messages while full', async () => {
    const { app, seen, connect } = setup({ maxQueuedMessages: 5, highWaterMark: 5, overflow: 'drop-newest' });
    const results = Array.from({ length: 8 }, (_, i) => app.send('n', i + 1));
    expect(results).toEqual([true, true, true, true, false, false, false, false]);
    connect();
    await until(() => app.stats().queuedMessages === 0, 'delivery');
    expect(seqsOf(seen)).toEqual([1, 2, 3, 4, 5]);
    expect(seen.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(app.stats().dropped).toEqual({ oldest: 0, newest: 3, rejected: 0 });
  });

  it('reject: throws OverflowError while full; also bounds bytes', () => {
    const { app } = setup({ maxQueuedMessages: 100, maxQueuedBytes: 200, overflow: 'reject' });
    app.send('n', 'x'.repeat(100));
    expect(() => app.send('n', 'x'.repeat(100))).toThrow(OverflowError);
    expect(app.stats().dropped.rejected).toBe(1);
    expect(app.stats().queuedMessages).toBe(1);
  });

  it('send returns false past the high-water mark, and drain() waits for room', async () => {
    const { app, connect } = setup({ maxQueuedMessages: 10, highWaterMark: 4 });
    expect([1, 2, 3, 4].map((i) => app.send('n', i))).toEqual([true, true, true, false]);
    let drained = false;
    const waiting = app.drain().then(() => (drained = true));
    await Promise.resolve();
    expect(drained).toBe(false);
    connect();
    await waiting;
    expect(app.queuedMessages).toBeLessThan(4);
  });

  it('times a request out by the injected clock, and cancels it on the sidecar', async () => {
    let aborted: unknown;
    const { app, clock, connect } = setup({ requestTimeoutMs: 1000 }, (_m, ctx) => {
      return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve((aborted = ctx.signal.reason))));
    });
    connect();
    const result = app.request('slow').catch((e: unknown) => e);
    await until(() => app.stats().queuedMessages === 0, 'the write');
    clock.advance(999);
    await new Promise((r) => setImmediate(r));
    expect(app.stats().pendingRequests).toBe(1);
    clock.advance(1);
    expect(await result).toBeInstanceOf(TimeoutError);
    await until(() => aborted !== undefined, 'the CANCEL');
    expect(app.stats().pendingRequests).toBe(0);
  });

  it('removes a queued request when its signal aborts; rejects at once for an aborted signal', async () => {
    const { app } = setup();
    const controller = new AbortController();
    const result = app.request('x', 1, { signal: controller.signal }).catch((e: unknown) => e);
    expect(app.queuedMessages).toBe(1);
    controller.abort(new Error('changed my mind'));
    expect(await result).toMatchObject({ message: 'changed my mind' });
    expect(app.queuedMessages).toBe(0);
    await expect(app.request('x', 1, { signal: AbortSignal.abort('gone') })).rejects.toBe('gone');
  });

  it('fails a request in flight with UnavailableError when the connection is lost; queued ones go on the next', async () => {
    const { app, connect, cutNow } = setup({}, () => new Promise(() => undefined));
    connect();
    const inFlight = app.request('hangs').catch((e: unknown) => e);
    await until(() => app.stats().queuedMessages === 0, 'the write');
    cutNow();
    expect(await inFlight).toBeInstanceOf(UnavailableError);
  });

  it('closes the connection on a malformed frame with a ProtocolError, and goes on on the next one', async () => {
    const errors: unknown[] = [];
    const { app, connect, seen } = setup({ onError: (e) => errors.push(e) });
    const { app: appSide, sidecar } = streamPair();
    app.attach(appSide);
    (sidecar as { writable: NodeJS.WritableStream }).writable.write(Buffer.from([0, 0, 0, 3, 0x7b, 0x7b, 0x7b])); // "{{{"
    await until(() => errors.length === 1, 'the protocol error');
    expect(errors[0]).toBeInstanceOf(ProtocolError);
    expect(app.stats()).toMatchObject({ connected: false, protocolErrors: 1 });
    app.send('n', 1);
    connect();
    await until(() => seen.length === 1, 'delivery on the next connection');
  });

  it('refuses an oversized frame from the peer without buffering it', async () => {
    const errors: unknown[] = [];
    const { app } = setup({ onError: (e) => errors.push(e), maxFrameBytes: 1024 });
    const { app: appSide, sidecar } = streamPair();
    app.attach(appSide);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(10 * 1024 * 1024, 0);
    (sidecar as { writable: NodeJS.WritableStream }).writable.write(header);
    await until(() => errors.length === 1, 'the protocol error');
    expect((errors[0] as Error).message).toMatch(/more than the limit of 1024/);
  });

  it('refuses to send a message larger than maxFrameBytes, or one that does not serialize', () => {
    const { app } = setup({ maxFrameBytes: 100 });
    expect(() => app.send('n', 'x'.repeat(200))).toThrow(/more than maxFrameBytes/);
    expect(() => app.send('n', 10n)).toThrow(/JSON-serializable/);
    expect(app.stats().accepted).toBe(0);
  });

  it('refuses data with a __proto__ key at send time (InvalidArgumentError), instead of the peer closing the connection', async () => {
    const errors: unknown[] = [];
    const seen: unknown[] = [];
    const { app, connect } = setup({ onError: (e) => errors.push(e) }, (m) => (seen.push(m.data), m.type === 'poison' ? JSON.parse('{"a":{"__proto__":1}}') : m.data));
    connect();
    const poisoned = JSON.parse('{"x":[{"__proto__":{}}]}') as unknown;
    expect(() => app.send('n', poisoned)).toThrow(InvalidArgumentError);
    await expect(app.request('n', poisoned)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(app.stats()).toMatchObject({ accepted: 0, queuedMessages: 0 });
    // The name as a value, or inside a string, is fine.
    app.send('n', { key: '__proto__', text: '"__proto__":' });
    // A handler's reply with such a key is an error reply, not a dead connection.
    const reply = await app.request('poison').catch((e: unknown) => e);
    expect(reply).toBeInstanceOf(RemoteError);
    expect(reply).toMatchObject({ remoteCode: 'PB_ERR_INVALID_ARGUMENT' });
    await until(() => seen.length === 2 && app.stats().queuedMessages === 0, 'delivery');
    expect(errors).toEqual([]);
    expect(app.stats()).toMatchObject({ connected: true, connections: 1, protocolErrors: 0 });
  });

  it('never lets a sent value close the connection: any JSON value is delivered or refused at send time', async () => {
    const { app, connect, seen } = setup({ maxFrameBytes: 1024 * 1024 });
    connect();
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (data) => {
        const before = seen.length;
        let sent = true;
        try {
          app.send('n', data);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidArgumentError);
          sent = false;
        }
        await until(() => app.stats().queuedMessages === 0, 'the acknowledgement');
        expect(seen.length).toBe(before + (sent ? 1 : 0));
        expect(app.stats()).toMatchObject({ connected: true, connections: 1, protocolErrors: 0 });
      }),
      { numRuns: 200 },
    );
  });

  it('delivers bursts of ASCII and non-ASCII messages of any size intact, in order (both write paths)', async () => {
    const { app, connect, seen } = setup({ maxFrameBytes: 1024 * 1024 });
    connect();
    // Sizes around the cached length prefixes (4096) and prefixes with bytes of 0x80 and above.
    const sized = (units: string[]) =>
      fc.tuple(fc.oneof(fc.integer({ min: 100, max: 5_000 }), fc.integer({ min: 5_000, max: 70_000 })), fc.constantFrom(...units)).map(([n, unit]) => unit.repeat(Math.ceil(n / unit.length)));
    const ascii = fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 50 }), sized(['a', '"\\']));
    const any = fc.oneof(ascii, fc.string({ unit: 'grapheme', maxLength: 50 }), sized(['é', '😀']));
    // Mostly all-ASCII bursts (one Latin-1 string), some with a non-ASCII message (UTF-8 per frame).
    const burstOf = fc.oneof(fc.array(ascii, { minLength: 1, maxLength: 20 }), fc.array(any, { minLength: 1, maxLength: 20 }));
    await fc.assert(
      fc.asyncProperty(burstOf, async (burst) => {
        const before = seen.length;
        for (const data of burst) app.send('t', data); // one synchronous run: one coalesced write
        await until(() => app.stats().queuedMessages === 0, 'the acknowledgements');
        expect(seen.slice(before).map((m) => m.data)).toEqual(burst);
      }),
      { numRuns: 100 },
    );
    expect(app.stats()).toMatchObject({ connections: 1, protocolErrors: 0 });
  });

  it('ping measures the round trip by the clock, and times out when no PONG comes', async () => {
    const { app, clock, connect } = setup();
    await expect(app.ping()).rejects.toBeInstanceOf(UnavailableError);
    connect();
    await until(() => app.connected, 'the handshake');
    expect(await app.ping()).toBe(0);
    // A peer that never answers: a raw stream.
    const { app: appSide } = streamPair();
    app.attach(appSide);
    // Not connected until a WELCOME: give it one by hand.
    (appSide as unknown as { readable: NodeJS.ReadWriteStream }).readable.write(encodeFrame('[1,1,0]'));
    await until(() => app.connected, 'the handshake');
    const ping = app.ping({ timeoutMs: 500 }).catch((e: unknown) => e);
    clock.advance(500);
    expect(await ping).toBeInstanceOf(TimeoutError);
  });

  it('close() drains what is queued, says BYE, and refuses calls afterwards', async () => {
    const { app, seen, connect } = setup();
    const side = connect();
    let bye = false;
    side.on('bye', () => (bye = true));
    for (let i = 1; i <= 100; i++) app.send('n', i);
    await app.close();
    expect(seqsOf(seen)).toHaveLength(100);
    await until(() => bye, 'the BYE');
    expect(app.stats()).toMatchObject({ undelivered: 0, delivered: 100 });
    expect(() => app.send('n', 1)).toThrow(ClosedError);
    await expect(app.request('x')).rejects.toBeInstanceOf(ClosedError);
  });

  it('close() gives up after drainTimeoutMs when the peer is away, and counts what is left', async () => {
    const { app, clock } = setup({ drainTimeoutMs: 2000 });
    for (let i = 1; i <= 7; i++) app.send('n', i);
    const pending = app.request('x').catch((e: unknown) => e);
    const closing = app.close();
    clock.advance(2000);
    await closing;
    expect(await pending).toBeInstanceOf(ClosedError);
    expect(app.stats()).toMatchObject({ undelivered: 7, queuedMessages: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('destroy() rejects everything at once and releases every timer; asyncDispose closes', async () => {
    const { app, clock } = setup();
    const pending = app.request('x').catch((e: unknown) => e);
    app.destroy(new Error('boom'));
    expect(await pending).toMatchObject({ message: 'boom' });
    expect(clock.pendingTimers).toBe(0);
    const other = new SidecarChannel({ clock });
    {
      await using _channel = other;
    }
    expect(other.state).toBe('closed');
  });

  it('validates its options', () => {
    expect(() => new SidecarChannel({ maxQueuedMessages: 0 })).toThrow(/maxQueuedMessages/);
    expect(() => new SidecarChannel({ overflow: 'nope' as never })).toThrow(/overflow/);
    expect(() => new SidecarChannel({ requestTimeoutMs: -1 })).toThrow(/requestTimeoutMs/);
    expect(() => new SidecarChannel({ connect: { port: 0 } })).toThrow(/port/);
  });
});

describe('SidecarChannel over real sockets', () => {
  it('connects by itself to a Unix socket and to loopback TCP, and reconnects to a restarted server', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const path = join(tmp.dir, 'x.sock');
    const seen: number[] = [];
    const handler: SidecarHandler = (m) => {
      if (m.kind === 'send') seen.push(m.data as number);
      return 'pong';
    };
    let server = await serveSidecar(handler, { socketPath: path });
    const app = new SidecarChannel({ connect: path, reconnect: { initialDelayMs: 5, maxDelayMs: 20 } });
    perTest.defer(() => app.destroy());
    expect(await app.request('hi')).toBe('pong');
    app.send('n', 1);
    // Acknowledged: a new server (which remembers nothing and has no lastHandled) gets no replay of it.
    await until(() => app.stats().delivered === 1, 'the first');
    server.destroy(); // the sidecar goes away
    await until(() => !app.connected, 'the loss');
    app.send('n', 2);
    server = await serveSidecar(handler, { socketPath: path });
    perTest.defer(() => server.destroy());
    await until(() => seen.length === 2, 'delivery after the reconnection', 2_000_000);
    expect(seen).toEqual([1, 2]);

    const tcp = await serveSidecar(handler, { port: 0 });
    perTest.defer(() => tcp.destroy());
    const address = tcp.address as { port: number };
    const overTcp = new SidecarChannel({ connect: { port: address.port } });
    perTest.defer(() => overTcp.destroy());
    expect(await overTcp.request('hi')).toBe('pong');
  });

  it('serveSidecar closes a connection that sends a malformed or oversized frame, and goes on serving others', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const path = join(tmp.dir, 'z.sock');
    const errors: unknown[] = [];
    const server = await serveSidecar((m) => m.data, { socketPath: path, maxFrameBytes: 1024, onError: (e) => errors.push(e) });
    perTest.defer(() => server.destroy());
    for (const garbage of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0x6e, 0x75, 0x6c, 0x6c]), Buffer.from([0x7f, 0xff, 0xff, 0xff])]) {
      const raw = net.createConnection({ path });
      const closed = new Promise<void>((resolve) => raw.on('close', () => resolve()));
      raw.on('error', () => undefined);
      raw.write(garbage);
      await closed; // the server hung up: no hang, no crash
    }
    expect(errors).toHaveLength(3);
    expect(errors.every((e) => e instanceof ProtocolError)).toBe(true);
    expect(server.stats()).toMatchObject({ protocolErrors: 3, connections: 0 });
    const app = new SidecarChannel({ connect: path });
    perTest.defer(() => app.destroy());
    expect(await app.request('echo', 'still here')).toBe('still here');
  });

  it('serveSidecar refuses a socket path someone listens on, and replaces a stale one', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const path = join(tmp.dir, 'y.sock');
    const first = await serveSidecar(() => undefined, { socketPath: path });
    await expect(serveSidecar(() => undefined, { socketPath: path })).rejects.toThrow(/already listens/);
    first.destroy();
    // A stale file: a socket bound by a server that is gone without unlinking it.
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(path, r));
    await new Promise<void>((r) => {
      // close() unlinks; keep the file by closing the handle without the unlink
      (stale as unknown as { _handle: { close(): void } | null })._handle?.close();
      r();
    });
    const second = await serveSidecar(() => 'ok', { socketPath: path });
    perTest.defer(() => second.destroy());
    const app = new SidecarChannel({ connect: path });
    perTest.defer(() => app.destroy());
    expect(await app.request('x')).toBe('ok');
  });
});

describe('SidecarChannel request deadlines', () => {
  it('times out requests with mixed deadlines in deadline order, on one timer', async () => {
    const clock = new ManualClock();
    const app = new SidecarChannel({ clock, requestTimeoutMs: 1000 });
    perTest.defer(() => app.destroy());
    const order: string[] = [];
    const track = (name: string, p: Promise<unknown>) => p.catch((e: unknown) => order.push(`${name}:${(e as Error).name}`));
    const all = [
      track('a1000', app.request('a')),
      track('b300', app.request('b', undefined, { timeoutMs: 300 })),
      track('c5000', app.request('c', undefined, { timeoutMs: 5000 })),
      track('d300', app.request('d', undefined, { timeoutMs: 300 })),
    ];
    expect(clock.pendingTimers).toBe(1);
    clock.advance(299);
    await Promise.resolve();
    expect(order).toEqual([]);
    clock.advance(1);
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['b300:TimeoutError', 'd300:TimeoutError']);
    clock.advance(700);
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['b300:TimeoutError', 'd300:TimeoutError', 'a1000:TimeoutError']);
    clock.advance(4000);
    await Promise.all(all);
    expect(order.at(-1)).toBe('c5000:TimeoutError');
    expect(clock.pendingTimers).toBe(0);
  });

  it('keeps many settled requests from piling up in the deadline heap', async () => {
    const { app, connect } = setup({}, (m) => m.data);
    connect();
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 1000 }, (_, i) => app.request('echo', i)));
    }
    expect(app.stats().pendingRequests).toBe(0);
  });
});
