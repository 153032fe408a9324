import { createParser, type EventSourceMessage } from 'eventsource-parser';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getEventListeners } from 'node:events';
import { ClosedError, InvalidArgumentError, ManualClock, Resource, serializeEvent, SseHub, type SseHubOptions, type SseSink, sseResponse, type SseStream } from '../../src/index.js';

/** An in-memory transport: records what is written; `buffered` is set by the test. */
class FakeSink implements SseSink {
  status = 0;
  headers: Record<string, string> = {};
  writes: Buffer[] = [];
  ended = false;
  destroyed = false;
  buffered = 0;
  #onClose: (() => void) | undefined;
  start(status: number, headers: Readonly<Record<string, string>>): void {
    this.status = status;
    this.headers = { ...headers };
  }
  write(chunk: Buffer): void {
    this.writes.push(chunk);
  }
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  onClose(callback: () => void): void {
    this.#onClose = callback;
  }
  clientLeaves(): void {
    this.#onClose?.();
  }
  text(): string {
    return Buffer.concat(this.writes).toString('utf8');
  }
  events(): EventSourceMessage[] {
    const out: EventSourceMessage[] = [];
    const p = createParser({ onEvent: (e) => out.push(e) });
    p.feed(this.text());
    return out;
  }
}

function setup(options: SseHubOptions = {}): { clock: ManualClock; hub: SseHub } {
  const clock = new ManualClock();
  return { clock, hub: new SseHub({ clock, ...options }) };
}

describe('SseStream', () => {
  it('sends spec headers and a first comment at once', () => {
    const { hub } = setup();
    const sink = new FakeSink();
    const stream = hub.stream(sink, { headers: { 'x-extra': '1' } });
    expect(sink.status).toBe(0);
    stream.start({ 'patchbay-gap': '1' });
    expect(sink.status).toBe(200);
    expect(sink.headers).toMatchObject({
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      'x-extra': '1',
      'patchbay-gap': '1',
    });
    expect(sink.headers['connection']).toBeUndefined();
    expect(sink.headers['transfer-encoding']).toBeUndefined();
    expect(sink.text()).toBe(':\n');
  });

  it('holds events sent before start and writes them after the first bytes, in order', () => {
    const { hub } = setup();
    const sink = new FakeSink();
    const stream = hub.stream(sink, { retryMs: 2000 });
    stream.send({ id: '1', data: 'early' });
    stream.start({}, serializeEvent({ event: 'gap', data: '{}' }));
    expect(sink.text()).toBe(':\nretry: 2000\n\nevent: gap\ndata: {}\n\nid: 1\ndata: early\n\n');
  });

  it('coalesces one turn of events into one write per connection', () => {
    const { hub, clock } = setup();
    const sinks = [new FakeSink(), new FakeSink()];
    const streams = sinks.map((s) => hub.stream(s));
    streams.forEach((s) => s.start());
    const shared = serializeEvent({ id: 'a', data: 'x' });
    for (const s of streams) {
      s.send(shared);
      s.send({ id: 'b', data: 'y' });
    }
    expect(sinks[0]!.writes).toHaveLength(1); // only the first comment so far
    clock.runDeferred();
    for (const sink of sinks) {
      expect(sink.writes).toHaveLength(2);
      expect(sink.events().map((e) => e.data)).toEqual(['x', 'y']);
    }
  });

  it('a turn of the same events to many connections is joined once and shared, and a reused Buffer is joined anew in a later turn', () => {
    const { hub, clock } = setup();
    const sinks = [new FakeSink(), new FakeSink(), new FakeSink()];
    const streams = sinks.map((s) => hub.stream(s));
    streams.forEach((s) => s.start());
    const a = serializeEvent({ id: 'a', data: 'x' });
    const b = serializeEvent({ id: 'b', data: 'y' });
    for (const s of streams.slice(0, 2)) {
      s.send(a);
      s.send(b);
    }
    streams[2]!.send(b); // other events: its own chunk
    streams[2]!.send(a);
    clock.runDeferred();
    expect(sinks[0]!.writes[1]).toBe(sinks[1]!.writes[1]);
    expect(sinks[2]!.events().map((e) => e.data)).toEqual(['y', 'x']);
    a.write('z', a.indexOf('x')); // the caller reuses its Buffer for new bytes
    for (const s of streams.slice(0, 2)) {
      s.send(a);
      s.send(b);
    }
    clock.runDeferred();
    for (const sink of sinks.slice(0, 2)) expect(sink.events().map((e) => e.data)).toEqual(['x', 'y', 'z', 'y']);
  });

  it('flushes a huge fan-out in slices across turns', () => {
    const { hub, clock } = setup({ flushSliceSize: 10 });
    const sinks = Array.from({ length: 25 }, () => new FakeSink());
    const streams = sinks.map((s) => hub.stream(s));
    streams.forEach((s) => s.start());
    const bytes = serializeEvent({ data: 'x' });
    streams.forEach((s) => s.send(bytes));
    let flushedInFirstTurn = -1;
    clock.defer(() => (flushedInFirstTurn = sinks.filter((s) => s.writes.length === 2).length));
    clock.runDeferred();
    expect(flushedInFirstTurn).toBe(10);
    expect(sinks.every((s) => s.writes.length === 2)).toBe(true);
  });

  it('sends heartbeats from one shared timer, pushed back by real traffic', () => {
    const { hub, clock } = setup({ heartbeatMs: 1000 });
    const quiet = new FakeSink();
    const busy = new FakeSink();
    const q = hub.stream(quiet);
    const b = hub.stream(busy);
    q.start();
    b.start();
    expect(clock.pendingTimers).toBe(1);
    for (let t = 0; t < 10; t++) {
      clock.advance(250);
      b.send({ data: String(t) });
      clock.runDeferred();
    }
    expect(quiet.text().match(/^:\n/gm)?.length).toBeGreaterThanOrEqual(3); // first comment + heartbeats
    expect(busy.text().match(/^:\n/gm)?.length).toBe(1); // only the first comment
    expect(hub.stats().heartbeats).toBeGreaterThanOrEqual(2);
    q.close();
    b.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('overflow "close" (default) closes the connection past maxBufferedBytes', () => {
    const { hub } = setup();
    const sink = new FakeSink();
    const stream = hub.stream(sink, { maxBufferedBytes: 100 });
    stream.start();
    sink.buffered = 90;
    expect(stream.send({ data: 'x'.repeat(20) })).toBe(false);
    expect(sink.destroyed).toBe(true);
    expect(stream.closed).toBe(true);
    expect(stream.stats().drops).toBe(1);
    expect(hub.stats()).toMatchObject({ connections: 0, drops: 1 });
  });

  it('overflow "drop-oldest" drops queued events to make room and counts them', () => {
    const { hub, clock } = setup();
    const sink = new FakeSink();
    const stream = hub.stream(sink, { maxBufferedBytes: 60, overflow: 'drop-oldest' });
    stream.start();
    clock.runDeferred();
    for (let i = 0; i < 6; i++) stream.send({ data: `event-${i}` }); // 15 bytes each: 4 fit in 60
    clock.runDeferred();
    expect(sink.events().map((e) => e.data)).toEqual(['event-2', 'event-3', 'event-4', 'event-5']);
    expect(stream.stats().drops).toBe(2);
    expect(stream.closed).toBe(false);
  });

  it('overflow "coalesce" replaces a queued event with the same key', () => {
    const { hub, clock } = setup();
    const sink = new FakeSink();
    const stream = hub.stream(sink, { maxBufferedBytes: 1000, overflow: 'coalesce' });
    stream.start();
    clock.runDeferred();
    stream.send({ data: 'price 1' }, 'AAPL');
    stream.send({ data: 'other' }, 'MSFT');
    stream.send({ data: 'price 2' }, 'AAPL');
    clock.runDeferred();
    expect(sink.events().map((e) => e.data)).toEqual(['price 2', 'other']);
  });

  it('closes a connection whose transport takes no bytes for stallTimeoutMs', () => {
    const { hub, clock } = setup({ stallTimeoutMs: 1000, heartbeatMs: 0 });
    const sink = new FakeSink();
    const stream = hub.stream(sink);
    stream.start();
    stream.send({ data: 'x' });
    clock.runDeferred();
    sink.buffered = 500; // the client stopped reading
    clock.advance(999);
    expect(stream.closed).toBe(false);
    clock.advance(1000);
    expect(stream.closed).toBe(true);
    expect(sink.destroyed).toBe(true);
  });

  it('a client that leaves ends the stream once; later sends are refused', () => {
    const { hub } = setup();
    const sink = new FakeSink();
    const stream = hub.stream(sink);
    const reasons: string[] = [];
    stream._onClose((r) => reasons.push(r));
    stream.start();
    sink.clientLeaves();
    sink.clientLeaves();
    expect(reasons).toEqual(['client']);
    expect(stream.send({ data: 'x' })).toBe(false);
    expect(hub.stats().connections).toBe(0);
  });

  it('close({ reconnect: false }) ends with a stop token the hub answers with 204', () => {
    const { hub, clock } = setup();
    const sink = new FakeSink();
    const stream = hub.stream(sink);
    stream.start();
    stream.send({ id: '5', data: 'last' });
    stream.close({ reconnect: false });
    expect(sink.ended).toBe(true);
    const events = sink.events();
    expect(events.map((e) => [e.event, e.data])).toEqual([
      [undefined, 'last'],
      ['patchbay-stop', ''],
    ]);
    // The stop event moves the client's Last-Event-ID to the stop token.
    const token = events[1]!.id;
    expect(token).toMatch(/^stop-[a-z0-9]+$/);
    expect(token).toBeDefined();
    expect(hub.isStopped(token)).toBe(true);
    expect(hub.isStopped('5')).toBe(false);
    expect(hub.isStopped(undefined)).toBe(false);
    clock.runDeferred();
  });

  it('refuses invalid options and events with typed errors', () => {
    expect(() => new SseHub({ overflow: 'explode' as 'close' })).toThrow(InvalidArgumentError);
    expect(() => new SseHub({ heartbeatMs: -1 })).toThrow(/heartbeatMs/);
    const { hub } = setup();
    expect(() => hub.stream(new FakeSink(), { retryMs: 100, retryJitter: 2 })).toThrow(/retryJitter/);
    const stream = hub.stream(new FakeSink());
    expect(() => stream.send({ id: 'a\nb', data: 'x' })).toThrow(InvalidArgumentError);
  });

  it('send throws only InvalidArgumentError for data JSON.stringify cannot handle, never a bare TypeError or RangeError', () => {
    const { hub } = setup();
    const stream = hub.stream(new FakeSink());
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    let deep: unknown = 0;
    for (let i = 0; i < 200_000; i++) deep = [deep]; // past the stack of JSON.stringify: a RangeError
    const hostile = fc.oneof(
      fc.bigInt().map((n) => ({ n })),
      fc.constant(cycle),
      fc.constant(deep),
      fc.string().map((m) => ({ toJSON: () => { throw new TypeError(m); } })),
      fc.constant(() => 1),
      fc.constant(Symbol('s')),
      fc.constant('\ud800 lone'),
    );
    fc.assert(
      fc.property(hostile, (data) => {
        let thrown: unknown;
        try {
          stream.send({ data });
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeInstanceOf(InvalidArgumentError);
        expect((thrown as InvalidArgumentError).code).toBe('PB_ERR_INVALID_ARGUMENT');
      }),
      { numRuns: 60 },
    );
    expect(stream.stats()).toMatchObject({ bytesQueued: 0, eventsSent: 0 }); // nothing was queued
    expect(stream.closed).toBe(false);
  });

  it('counts in eventsSent only events handed to the transport, not those discarded by a cut', () => {
    const { hub, clock } = setup({ maxBufferedBytes: 100 });
    const sink = new FakeSink();
    const stream = hub.stream(sink);
    stream.start();
    stream.send({ data: 'a' });
    clock.runDeferred();
    expect(stream.stats().eventsSent).toBe(1);
    stream.send({ data: 'b' });
    stream.send({ data: 'x'.repeat(200) }); // past the bound: the default policy cuts, 'b' never goes
    expect(stream.closed).toBe(true);
    expect(stream.stats().eventsSent).toBe(1);
    expect(hub.stats().eventsSent).toBe(1);
    expect(sink.events().map((e) => e.data)).toEqual(['a']);
  });
});

describe('sseResponse (web-standard form)', () => {
  it('returns a Response with the SSE headers and a byte-capped, pull-based body', async () => {
    const { hub, clock } = setup();
    const res = await sseResponse(hub, { maxBufferedBytes: 64 }, (stream) => {
      stream.send({ id: '1', data: 'hello' });
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe(':\nid: 1\ndata: hello\n\n');
    await reader.cancel();
    clock.runDeferred();
    expect(hub.stats().connections).toBe(0);
  });

  it('the cap is real: an unread body stops taking bytes, and the policy applies', async () => {
    const { hub, clock } = setup();
    let s!: SseStream;
    await sseResponse(hub, { maxBufferedBytes: 100, overflow: 'drop-oldest' }, (stream) => {
      s = stream;
    });
    for (let i = 0; i < 20; i++) {
      s.send({ data: `msg-${i}` });
      clock.runDeferred();
    }
    // Nobody reads: the ReadableStream holds at most the cap; the rest was dropped and counted.
    expect(s.stats().drops).toBeGreaterThan(0);
    expect(s.closed).toBe(false);
  });

  it('ends the stream when the request signal aborts', async () => {
    const { hub } = setup();
    const ac = new AbortController();
    let s!: SseStream;
    await sseResponse(hub, { signal: ac.signal }, (stream) => {
      s = stream;
    });
    ac.abort();
    expect(s.closed).toBe(true);
  });

  it('removes its abort listener from the request signal once the stream ends', async () => {
    const { hub } = setup();
    const ac = new AbortController();
    let s!: SseStream;
    const res = await sseResponse(hub, { signal: ac.signal }, (stream) => {
      s = stream;
    });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    await res.body!.cancel();
    expect(s.closed).toBe(true);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('ends the stream at once for a signal that already aborted, with no listener left', async () => {
    const { hub } = setup();
    let s!: SseStream;
    await sseResponse(hub, { signal: AbortSignal.abort() }, (stream) => {
      s = stream;
    });
    expect(s.closed).toBe(true);
    expect(hub.stats().connections).toBe(0);
  });
});

describe('SseHub lifecycle', () => {
  it('is a Resource: close() closes its streams and refuses later ones with ClosedError', async () => {
    const { hub } = setup();
    expect(hub).toBeInstanceOf(Resource);
    const sink = new FakeSink();
    const stream = hub.stream(sink);
    stream.start();
    await hub.close();
    expect(hub.closed).toBe(true);
    expect(stream.closed).toBe(true);
    expect(sink.ended).toBe(true);
    expect(hub.stats().connections).toBe(0);
    expect(() => hub.stream(new FakeSink())).toThrow(ClosedError);
    await expect(sseResponse(hub, {}, () => {})).rejects.toThrow(ClosedError);
    await hub.close(); // idempotent
  });

  it('destroy() closes its streams as well; closeAll() keeps the hub open', () => {
    const { hub } = setup();
    const a = hub.stream(new FakeSink());
    hub.closeAll();
    expect(a.closed).toBe(true);
    const b = hub.stream(new FakeSink());
    hub.destroy();
    expect(b.closed).toBe(true);
    expect(hub.destroyed).toBe(true);
    expect(() => hub.stream(new FakeSink())).toThrow(ClosedError);
  });
});
