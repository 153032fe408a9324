import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { PubSubBroker } from '../../src/index.js';
import type { WsHandler } from '../../src/ws/index.js';
import { serveRig, TestResources, until } from '../helpers.js';

let base = '';
let demo: { server: Server; broker: PubSubBroker; ws: WsHandler };

const suite = new TestResources();
beforeAll(() =>
  suite.setup(async () => {
    demo = createDemo({ maxBodyBytes: 1024 });
    base = new URL((await serveRig(demo.server, { resources: suite })).url).host;
  }),
);
afterAll(async () => {
  await demo.ws.close();
  await suite.teardown();
});

interface Frame {
  type: string;
  [key: string]: unknown;
}

async function connect(): Promise<{ socket: WebSocket; frames: Frame[]; next: (type: string, from?: number) => Promise<Frame> }> {
  const socket = new WebSocket(`ws://${base}/ws`, 'patchbay.v1');
  const frames: Frame[] = [];
  socket.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const next = async (type: string, from = 0): Promise<Frame> => {
    await until(() => frames.slice(from).some((f) => f.type === type), `a ${type} frame`);
    return frames.slice(from).find((f) => f.type === type)!;
  };
  return { socket, frames, next };
}

describe('demo server: GET /ws', () => {
  it('pushes what POST /pub/:topic publishes, with the id the publish answered', async () => {
    const c = await connect();
    expect(c.socket.protocol).toBe('patchbay.v1');
    c.socket.send(JSON.stringify({ type: 'subscribe', sid: 'demo', pattern: 'room.*' }));
    const subscribed = await c.next('subscribed');
    const res = await fetch(`http://${base}/pub/room.a`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"hi"}' });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    expect(await c.next('message')).toEqual({ type: 'message', sid: 'demo', id, topic: 'room.a', data: { text: 'hi' } });

    // A cut, then a resume from the last id: what was published meanwhile arrives, once.
    c.socket.terminate();
    const missed = await fetch(`http://${base}/pub/room.b`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'while away' });
    const again = await connect();
    again.socket.send(JSON.stringify({ type: 'subscribe', sid: 'demo', pattern: 'room.*', cursor: id }));
    expect(await again.next('message')).toMatchObject({ id: ((await missed.json()) as { id: string }).id, data: 'while away' });
    expect(subscribed.cursor).toMatch(/^[0-9a-z]+-[0-9a-z]+$/);
    again.socket.close();
  });

  it('lets a client publish, acked with the broker id, and shows the connections in GET /stats', async () => {
    const c = await connect();
    c.socket.send(JSON.stringify({ type: 'publish', topic: 'from-ws', data: [1, 2], ref: 'p1' }));
    const ack = await c.next('published');
    expect(ack).toMatchObject({ topic: 'from-ws', ref: 'p1' });
    const stored = await demo.broker.read('from-ws', null, 10);
    expect(stored.messages.map((m) => [m.id, m.data])).toEqual([[ack.id, [1, 2]]]);
    const stats = (await (await fetch(`http://${base}/stats`)).json()) as { ws: { connections: number; published: number } };
    expect(stats.ws.connections).toBeGreaterThanOrEqual(1);
    expect(stats.ws.published).toBeGreaterThanOrEqual(1);
    c.socket.close();
  });

  it('answers bad frames with an error frame and keeps the socket', async () => {
    const c = await connect();
    c.socket.send('{"type":"subscribe","sid":"x","pattern":"a\\r\\nb"}');
    expect(await c.next('error')).toMatchObject({ code: 'PB_ERR_INVALID_ARGUMENT', sid: 'x' });
    c.socket.send(JSON.stringify({ type: 'ping', ref: 1 }));
    expect(await c.next('pong')).toEqual({ type: 'pong', ref: 1 });
    c.socket.close();
  });

  it('answers a plain GET /ws (no upgrade) with 426 and a JSON body', async () => {
    const res = await fetch(`http://${base}/ws`);
    expect(res.status).toBe(426);
    expect(res.headers.get('upgrade')).toBe('websocket');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_PROTOCOL');
  });

  it('answers an upgrade on another path with 404', async () => {
    const status = await new Promise<number>((resolve) => {
      const socket = new WebSocket(`ws://${base}/nope`);
      socket.on('error', () => {});
      socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    });
    expect(status).toBe(404);
  });
});
