/**
 * Disconnect storms and slow consumers against the demo server (demo/server.js `createDemo`, on
 * 127.0.0.1:0, without sidecars):
 * - bursts of long polls, SSE streams, WebSockets and `Prefer: wait` reads opened and abandoned
 *   (raw sockets destroyed); afterwards every primitive's `stats()` shows nothing waiting, parked,
 *   held, streaming or subscribed, and the heap returns near its baseline after a forced GC;
 * - an SSE and a WebSocket client that stop reading while a publisher floods: the server's queued
 *   bytes stay under the bound, the `close` policy acts (on the stalled client only: a healthy one
 *   on the same topic gets the whole flood), and the stalled client that reconnects with its
 *   cursor gets everything the log still holds.
 *
 * `STORM_N` sets how many of each the storm opens (default 2,000, in bursts of 200).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import net, { type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { LongPollHandler, PollHandle, PollHandler, PubSubBroker, SseHandler } from '../../src/index.js';
import type { WsHandler } from '../../src/ws/index.js';
import { readSse, serveRig, TestResources, until } from '../helpers.js';

interface Demo {
  server: Server;
  broker: PubSubBroker;
  longPoll: LongPollHandler;
  sse: SseHandler;
  jobs: PollHandle;
  poll: PollHandler<unknown>;
  ws: WsHandler;
}

const N = Number(process.env['STORM_N'] ?? 2_000);
const BURST = 200;
let demo: Demo;
let port = 0;
let dir = '';
/** Whether the long poll handler's feed subscription exists (after its first poll). */
let feed = false;

const resources = new TestResources();
beforeAll(() =>
  resources.setup(async (r) => {
    dir = mkdtempSync(join(tmpdir(), 'patchbay-storms-'));
    r.defer(() => rmSync(dir, { recursive: true, force: true }));
    demo = createDemo({ uploadsDir: dir, sidecars: undefined }) as Demo;
    ({ port } = await serveRig(demo.server, { resources: r }));
  }),
);
afterAll(() => resources.teardown());

/** A raw socket that sends `head` and never reads (it stays paused: no 'data' listener). */
function raw(head: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      socket.write(head);
      resolve(socket);
    });
    socket.once('error', reject);
    socket.on('error', () => {});
  });
}

const get = (path: string, headers: Record<string, string> = {}) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;

/** Everything that holds a client must be back to zero. */
function idle(): Record<string, number> {
  return {
    parked: demo.longPoll.stats().parked,
    interests: demo.longPoll.stats().interests,
    sseConnections: demo.sse.stats().connections,
    sseQueued: demo.sse.stats().bytesQueued,
    wsConnections: demo.ws.stats().connections,
    wsSubscriptions: demo.ws.stats().subscriptions,
    wsQueued: demo.ws.stats().bytesQueued,
    held: demo.poll.stats().held,
    jobWaiting: demo.jobs.stats().waiting,
    // The long poll handler keeps one feed subscription on the broker once it served a poll.
    brokerSubscriptions: demo.broker.stats().subscriptions - (feed ? 1 : 0),
  };
}
const ZERO = { parked: 0, interests: 0, sseConnections: 0, sseQueued: 0, wsConnections: 0, wsSubscriptions: 0, wsQueued: 0, held: 0, jobWaiting: 0, brokerSubscriptions: 0 };
const isIdle = () => Object.values(idle()).every((v) => v === 0);

/** `gc` from the flag, or switched on at run time; `undefined` when neither works. */
function forcedGc(): (() => void) | undefined {
  const global = globalThis as { gc?: () => void };
  if (typeof global.gc === 'function') return global.gc;
  try {
    v8.setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
}

async function heapAfterGc(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

async function storm(open: () => Promise<Socket | WebSocket>, opened: () => number, what: string): Promise<void> {
  for (let done = 0; done < N; done += BURST) {
    const size = Math.min(BURST, N - done);
    const clients = await Promise.all(Array.from({ length: size }, open));
    await until(() => opened() >= size, `${size} ${what} to be held`);
    for (const c of clients) {
      if (c instanceof WebSocket) c.terminate();
      else c.destroy();
    }
    await until(isIdle, `every ${what} to be released (${JSON.stringify(idle())})`);
  }
}

describe('disconnect storms against the demo server', () => {
  it(`${N} each of long polls, SSE streams, WebSockets and Prefer: wait reads, abandoned: nothing held, heap back near baseline`, async () => {
    const gc = forcedGc();
    if (gc === undefined) console.warn('storms.test.ts: NO forced GC available (neither --expose-gc nor v8.setFlagsFromString): SKIPPING the heap check');
    const job = await fetch(`http://127.0.0.1:${port}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ steps: 60, stepMs: 60_000 }) });
    expect(job.status).toBe(202);
    const jobPath = job.headers.get('location')!;

    const kinds: [string, () => Promise<Socket | WebSocket>, () => number][] = [
      ['long polls', () => raw(get('/lp/storm?timeout=30000')), () => demo.longPoll.stats().parked],
      ['SSE streams', () => raw(get('/sse/storm')), () => demo.sse.stats().connections],
      [
        'WebSockets',
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`);
            socket.once('open', () => {
              socket.send(JSON.stringify({ type: 'subscribe', sid: 's', topics: ['storm'] }));
              resolve(socket);
            });
            socket.once('error', reject);
            socket.on('error', () => {});
          }),
        () => demo.ws.stats().subscriptions,
      ],
      ['Prefer: wait reads', () => raw(get(jobPath, { prefer: 'wait=30' })), () => demo.poll.stats().held],
    ];
    // A first, small round warms every path up before the baseline is taken.
    const warmN = BURST;
    for (const [what, open, opened] of kinds) {
      const clients = await Promise.all(Array.from({ length: warmN }, open));
      await until(() => opened() >= warmN, `${warmN} warm-up ${what}`);
      if (what === 'long polls') feed = true;
      for (const c of clients) {
      if (c instanceof WebSocket) c.terminate();
      else c.destroy();
    }
      await until(isIdle, `warm-up ${what} to be released`).catch((error: unknown) => {
        throw new Error(`${String(error)}: ${JSON.stringify(idle())}`);
      });
    }
    const baseline = gc ? await heapAfterGc(gc) : 0;
    for (const [what, open, opened] of kinds) await storm(open, opened, what);
    expect(idle()).toEqual(ZERO);
    // Publishing to the storm topic now reaches nobody and leaves nothing queued.
    await demo.broker.publish('storm', 'after the storm');
    expect(idle()).toEqual(ZERO);
    if (gc) {
      const after = await heapAfterGc(gc);
      const grownMiB = (after - baseline) / 2 ** 20;
      console.info(`storms.test.ts: heap after GC ${(baseline / 2 ** 20).toFixed(1)} MiB before the storm, ${(after / 2 ** 20).toFixed(1)} MiB after (${grownMiB.toFixed(1)} MiB)`);
      expect(grownMiB).toBeLessThan(16);
    }
    await fetch(`http://127.0.0.1:${port}${jobPath}`, { method: 'DELETE' });
  });
});

describe('slow consumers against the demo server', () => {
  const MESSAGE = 'x'.repeat(16 * 1024);
  const FLOOD = 450; // ~7.2 MiB: more than the 1 MiB send bound and the kernel's buffers, less than the log's 8 MiB
  const BOUND = 1024 * 1024; // the demo's default maxBufferedBytes for SSE and WebSocket

  it('SSE: a client that stops reading is closed at the bound, and resuming with its cursor gets everything the log holds', async () => {
    const topic = 'flood-sse';
    const cursor = (await demo.broker.publish(topic, 'before')).id;
    const dropsBefore = demo.sse.stats().drops;
    const stalled = await raw(get(`/sse/${topic}`, { 'last-event-id': cursor }));
    await until(() => demo.sse.stats().connections === 1, 'the stalled stream');
    // A healthy reader on the same topic, which must not be slowed or cut by the stalled one.
    const healthy = await readSse(`http://127.0.0.1:${port}/sse/${topic}`);
    await until(() => demo.sse.stats().connections === 2, 'the healthy stream');
    let maxQueued = 0;
    const ids: string[] = [];
    for (let i = 0; i < FLOOD; i++) {
      ids.push((await demo.broker.publish(topic, `${i}:${MESSAGE}`)).id);
      maxQueued = Math.max(maxQueued, demo.sse.stats().bytesQueued);
      await new Promise((resolve) => setImmediate(resolve)); // a publisher that lets sockets drain
    }
    // Queued bytes over both connections: each stays under the bound (plus the event that tips it).
    expect(maxQueued).toBeLessThanOrEqual(2 * (BOUND + MESSAGE.length + 64));
    await until(() => demo.sse.stats().connections === 1, 'the close policy to end the stalled stream');
    expect(demo.sse.stats().drops).toBe(dropsBefore + 1); // the 'close' policy refused one event and closed
    await until(() => healthy.events.length === FLOOD, 'the healthy reader to get the whole flood');
    expect(healthy.events.map((e) => e.id)).toEqual(ids);
    await healthy.close();
    stalled.destroy();

    // It comes back with the last id it processed and gets every message since, in order.
    const { res, events, close } = await readSse(`http://127.0.0.1:${port}/sse/${topic}`, { headers: { 'last-event-id': cursor } });
    await until(() => events.length >= FLOOD, `${FLOOD} replayed events`);
    await close();
    expect(res.headers.get('patchbay-gap')).toBeNull();
    expect(events.map((e) => e.id)).toEqual(ids);
    expect(events.every((e, i) => e.data.startsWith(`${i}:`))).toBe(true);
    await until(isIdle, 'everything released');
  });

  it('WebSocket: a client that stops reading is closed at the bound, and resuming with its cursor gets everything the log holds', async () => {
    const topic = 'flood-ws';
    const cursor = (await demo.broker.publish(topic, 'before')).id;
    const closesBefore = demo.ws.stats().overflowCloses;
    const stalled = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    stalled.on('error', () => {});
    await new Promise((resolve) => stalled.once('open', resolve));
    stalled.send(JSON.stringify({ type: 'subscribe', sid: 's', topics: [topic], cursor }));
    await until(() => demo.ws.stats().subscriptions === 1, 'the stalled subscription');
    stalled.pause();
    // A healthy subscriber on the same topic, which must not be slowed or cut by the stalled one.
    const healthy = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const healthyGot: string[] = [];
    healthy.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string; id: string };
      if (frame.type === 'message') healthyGot.push(frame.id);
    });
    await new Promise((resolve) => healthy.once('open', resolve));
    healthy.send(JSON.stringify({ type: 'subscribe', sid: 'h', topics: [topic] }));
    await until(() => demo.ws.stats().subscriptions === 2, 'the healthy subscription');
    let maxQueued = 0;
    const ids: string[] = [];
    for (let i = 0; i < FLOOD; i++) {
      ids.push((await demo.broker.publish(topic, `${i}:${MESSAGE}`)).id);
      maxQueued = Math.max(maxQueued, demo.ws.stats().bytesQueued);
      await new Promise((resolve) => setImmediate(resolve)); // a publisher that lets sockets drain
    }
    expect(maxQueued).toBeLessThanOrEqual(2 * (BOUND + MESSAGE.length + 256));
    await until(() => demo.ws.stats().overflowCloses === closesBefore + 1, 'the close policy to act');
    stalled.terminate();
    await until(() => healthyGot.length === FLOOD, 'the healthy subscriber to get the whole flood');
    expect(healthyGot).toEqual(ids);
    healthy.terminate();
    await until(() => demo.ws.stats().connections === 0, 'the connections to go');
    expect(demo.ws.stats().overflowCloses).toBe(closesBefore + 1); // the stalled one only

    const again = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const got: { id: string; data: string }[] = [];
    again.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string; id: string; data: string };
      if (frame.type === 'message') got.push(frame);
    });
    await new Promise((resolve) => again.once('open', resolve));
    again.send(JSON.stringify({ type: 'subscribe', sid: 's', topics: [topic], cursor }));
    await until(() => got.length >= FLOOD, `${FLOOD} replayed messages`);
    expect(got.map((m) => m.id)).toEqual(ids);
    again.terminate();
    await until(isIdle, 'everything released');
  });
});
