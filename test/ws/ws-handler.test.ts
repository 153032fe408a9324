import http from 'node:http';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PubSubBroker } from '../../src/index.js';
import { WS_SUBPROTOCOL } from '../../src/ws/index.js';
import { until } from '../helpers.js';
import { Client, PoisonBackend, rig } from './helpers.js';

describe('WsHandler: subscribe, publish, unsubscribe', () => {
  it('delivers published messages with their broker ids to a subscription, and stops after unsubscribe', async () => {
    const r = await rig();
    const c = await Client.open(r);
    const sub = await c.subscribe('s1', { pattern: 'news' });
    expect(sub).toMatchObject({ type: 'subscribed', sid: 's1', replayed: 0 });
    expect(sub.cursor).toBe(await r.broker.head());
    expect(r.broker.stats().subscriptions).toBe(1);
    expect(r.ws.stats()).toMatchObject({ connections: 1, subscriptions: 1 });

    const a = await r.broker.publish('news', 'hello');
    const b = await r.broker.publish('news', { n: 2, nested: [1, 'x'] });
    await until(() => c.messages('s1').length === 2, 'two messages');
    expect(c.messages('s1')).toEqual([
      { type: 'message', sid: 's1', id: a.id, topic: 'news', data: 'hello' },
      { type: 'message', sid: 's1', id: b.id, topic: 'news', data: { n: 2, nested: [1, 'x'] } },
    ]);

    expect(await c.request({ type: 'unsubscribe', sid: 's1' })).toMatchObject({ type: 'unsubscribed', sid: 's1' });
    expect(r.broker.stats().subscriptions).toBe(0);
    await r.broker.publish('news', 'after');
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(c.messages('s1')).toHaveLength(2);
    expect(r.ws.stats()).toMatchObject({ subscriptions: 0, messagesSent: 2 });
  });

  it('carries message headers', async () => {
    const r = await rig();
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'h' });
    await r.broker.publish('h', 1, { headers: { kind: 'x' } });
    const m = await c.next((f) => f.type === 'message', 'the message');
    expect(m).toMatchObject({ data: 1, headers: { kind: 'x' } });
  });

  it('refuses publishing unless authorize.publish allows it', async () => {
    const r = await rig();
    const c = await Client.open(r);
    const reply = await c.request({ type: 'publish', topic: 't', data: 1 });
    expect(reply).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN' });
    expect(r.broker.stats().published).toBe(0);
  });

  it('publishes for an authorized client, acks with the broker id, and delivers to every subscriber', async () => {
    const r = await rig({ authorize: { publish: () => true } });
    const pub = await Client.open(r);
    const sub = await Client.open(r);
    await sub.subscribe('x', { pattern: 'room.*' });
    await pub.subscribe('mine', { pattern: 'room.a' });
    const ack = await pub.request({ type: 'publish', topic: 'room.a', data: { text: 'hi' } });
    expect(ack).toMatchObject({ type: 'published', topic: 'room.a' });
    const stored = await r.broker.read('room.a', null, 10);
    expect(stored.messages.map((m) => [m.id, m.data])).toEqual([[ack.id, { text: 'hi' }]]);
    const got = await sub.next((f) => f.type === 'message', 'the delivery');
    expect(got).toMatchObject({ sid: 'x', id: ack.id, topic: 'room.a', data: { text: 'hi' } });
    // The publisher's own subscription gets it too.
    expect((await pub.next((f) => f.type === 'message', 'its own message')).id).toBe(ack.id);
    expect(r.ws.stats().published).toBe(1);
  });

  it('keeps a connection\'s publishes in the order sent, even with a slow, uneven async hook', async () => {
    let n = 0;
    const r = await rig({
      authorize: {
        publish: async () => {
          // Alternate one and five event-loop turns: a concurrent design would reorder them.
          for (let i = 0; i < (n++ % 2 === 0 ? 5 : 1); i++) await new Promise((resolve) => setImmediate(resolve));
          return true;
        },
      },
    });
    const c = await Client.open(r);
    for (let i = 0; i < 20; i++) c.send({ type: 'publish', topic: 'seq', data: i, ref: i });
    await until(() => c.frames.filter((f) => f.type === 'published').length === 20, 'twenty acks');
    const acks = c.frames.filter((f) => f.type === 'published');
    expect(acks.map((f) => f.ref)).toEqual([...Array(20).keys()]);
    const stored = await r.broker.read('seq', null, 100);
    expect(stored.messages.map((m) => m.data)).toEqual([...Array(20).keys()]);
    expect(stored.messages.map((m) => m.id)).toEqual(acks.map((f) => f.id));
  });

  it('routes by pattern: * one token, > the rest, and a list of topics merged in publish order', async () => {
    const r = await rig();
    const c = await Client.open(r);
    await c.subscribe('star', { pattern: 'a.*' });
    await c.subscribe('rest', { pattern: 'a.>' });
    await c.subscribe('list', { topics: ['x', 'a.b', 'x'] });
    const published = [];
    for (const topic of ['a', 'a.b', 'a.b.c', 'x', 'y', 'a.z', 'x']) published.push(await r.broker.publish(topic, topic));
    await until(() => c.messages('list').length === 3 && c.messages('rest').length === 3, 'the deliveries');
    const topics = (sid: string) => c.messages(sid).map((f) => f.topic);
    expect(topics('star')).toEqual(['a.b', 'a.z']);
    expect(topics('rest')).toEqual(['a.b', 'a.b.c', 'a.z']);
    expect(topics('list')).toEqual(['a.b', 'x', 'x']);
    // One subscription's messages come in publish order, across its topics.
    const ids = c.messages('list').map((f) => f.id as string);
    expect(ids).toEqual(published.filter((m) => m.topic === 'x' || m.topic === 'a.b').map((m) => m.id));
    expect(r.broker.stats().subscriptions).toBe(4); // two for the list
  });

  it('answers the subprotocol when the client offers it', async () => {
    const r = await rig();
    const c = await Client.open(r, {}, r.url, ['other', WS_SUBPROTOCOL]);
    expect(c.socket.protocol).toBe(WS_SUBPROTOCOL);
  });

  it('skips, with an error frame for its sid, a message it cannot frame, live or replayed, and goes on (never the broker\'s error path)', async () => {
    const brokerErrors: unknown[] = [];
    const handlerErrors: unknown[] = [];
    const r = await rig({ onError: (e) => handlerErrors.push(e) }, { backend: new PoisonBackend(), onError: (e) => brokerErrors.push(e) });
    const c = await Client.open(r);
    await c.subscribe('live', { topics: ['b'] });
    const bad = await r.broker.publish('b', 'poison');
    const good = await r.broker.publish('b', 'fine');
    await until(() => c.messages('live').length === 1, 'the good message');
    expect(c.messages('live')[0]!.id).toBe(good.id);
    const error = c.frames.find((f) => f.type === 'error')!;
    expect(error).toMatchObject({ code: 'PB_ERR_INVALID_ARGUMENT', sid: 'live' });
    expect(String(error.message)).toContain(bad.id);
    // The same in a replay: the poisoned message is skipped with an error frame, the rest follows in order.
    const after = await r.broker.publish('b', 'after');
    await c.subscribe('replay', { topics: ['b'] }, 'oldest');
    await until(() => c.messages('replay').length === 2, 'the replay');
    expect(c.messages('replay').map((f) => f.id)).toEqual([good.id, after.id]);
    expect(c.frames.filter((f) => f.type === 'error' && f.sid === 'replay')).toHaveLength(1);
    await until(() => c.messages('live').length === 2, 'the live one');
    expect(brokerErrors).toEqual([]);
    expect(handlerErrors).toEqual([]);
    expect(c.closed).toBeUndefined();
  });
});

describe('WsHandler: resume from a cursor', () => {
  it('resumes after a cut connection with no loss and no duplicate, whatever the cut point', async () => {
    const r = await rig();
    const total = 120;
    for (const cutAt of [0, 1, 37, 119]) {
      const topic = `t${cutAt}`;
      const first = await Client.open(r);
      const sub = await first.subscribe('s', { pattern: topic });
      const ids: string[] = [];
      let cut = false;
      // Publish all while cutting the first connection after it has `cutAt` messages.
      const publishing = (async () => {
        for (let i = 0; i < total; i++) {
          ids.push((await r.broker.publish(topic, i)).id);
          if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      await until(() => first.messages('s').length >= cutAt, `message ${cutAt}`);
      first.socket.terminate();
      cut = true;
      const seen = first.messages('s').map((f) => f.id as string);
      const cursor = seen.length > 0 ? seen[seen.length - 1]! : (sub.cursor as string);
      const second = await Client.open(r);
      const resumed = await second.subscribe('s', { pattern: topic }, cursor);
      expect(resumed).toMatchObject({ type: 'subscribed', cursor });
      await publishing;
      await until(() => seen.length + second.messages('s').length >= total, `the rest after cut ${cutAt}`);
      const all = [...seen, ...second.messages('s').map((f) => f.id as string)];
      expect(all, `cut at ${cutAt}`).toEqual(ids);
      expect(second.frames.some((f) => f.type === 'gap')).toBe(false);
      expect(cut).toBe(true);
      second.socket.terminate();
    }
    await until(() => r.ws.stats().connections === 0 && r.broker.stats().subscriptions === 0, 'cleanup');
  });

  it('resumes from the subscribed cursor when nothing arrived before the cut', async () => {
    const r = await rig();
    const c = await Client.open(r);
    const sub = await c.subscribe('s', { pattern: 'quiet' });
    c.socket.terminate();
    const missed = [await r.broker.publish('quiet', 1), await r.broker.publish('quiet', 2)];
    const again = await Client.open(r);
    const resumed = await again.subscribe('s', { pattern: 'quiet' }, sub.cursor as string);
    expect(resumed.replayed).toBe(2);
    await until(() => again.messages('s').length === 2, 'the replay');
    expect(again.messages('s').map((f) => f.id)).toEqual(missed.map((m) => m.id));
  });

  it('replays a list of topics from one cursor in publish order, then goes live', async () => {
    const r = await rig();
    const head = await r.broker.head();
    const ms = [];
    for (const t of ['p', 'q', 'p', 'other', 'q']) ms.push(await r.broker.publish(t, t));
    const c = await Client.open(r);
    const sub = await c.subscribe('l', { topics: ['q', 'p'] }, head);
    expect(sub.replayed).toBe(4);
    const live = await r.broker.publish('p', 'live');
    await until(() => c.messages('l').length === 5, 'replay and live');
    expect(c.messages('l').map((f) => f.id)).toEqual([...ms.filter((m) => m.topic !== 'other').map((m) => m.id), live.id]);
    // `subscribed` comes before any message of its sid.
    expect(c.frames.findIndex((f) => f.type === 'subscribed')).toBeLessThan(c.frames.findIndex((f) => f.type === 'message'));
  });

  it('cursor "oldest" replays everything the log holds', async () => {
    const r = await rig();
    await r.broker.publish('o', 1);
    await r.broker.publish('o', 2);
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'o' }, 'oldest');
    await until(() => c.messages('s').length === 2, 'the log');
    expect(c.messages('s').map((f) => f.data)).toEqual([1, 2]);
  });

  it('announces a gap when the cursor fell off the log, then sends what is left', async () => {
    const r = await rig({}, { history: { maxCount: 2 } });
    const first = await r.broker.publish('g', 'old');
    for (let i = 0; i < 3; i++) await r.broker.publish('g', `new${i}`);
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'g' }, first.id);
    await until(() => c.messages('s').length === 2, 'what is left');
    const kinds = c.frames.map((f) => f.type);
    expect(kinds).toEqual(['subscribed', 'gap', 'message', 'message']);
    expect(c.frames[1]).toEqual({ type: 'gap', sid: 's', reason: 'log', cursor: first.id });
    expect(c.messages('s').map((f) => f.data)).toEqual(['new1', 'new2']);
    expect(r.ws.stats()).toMatchObject({ replays: 1, replayedMessages: 2, gaps: 1 });
  });

  it('announces a gap for a cursor from before a restart (another epoch)', async () => {
    const before = new PubSubBroker();
    const old = await before.publish('e', 'gone');
    await before.close();
    const r = await rig();
    await r.broker.publish('e', 'new');
    const c = await Client.open(r);
    await c.subscribe('s', { pattern: 'e' }, old.id);
    await c.next((f) => f.type === 'gap', 'the gap');
    await until(() => c.messages('s').length === 1, 'what the log has');
  });

  it('refuses a malformed cursor, a cursor ahead of the log, and a second subscription on one sid', async () => {
    const r = await rig();
    const c = await Client.open(r);
    expect(await c.subscribe('s', { pattern: 'c' }, 'garbage!')).toMatchObject({ type: 'error', code: 'PB_ERR_INVALID_CURSOR', sid: 's' });
    const head = await r.broker.head();
    const ahead = head.replace(/-[0-9a-z]+$/, '-zzzz');
    expect(await c.subscribe('s', { pattern: 'c' }, ahead)).toMatchObject({ type: 'error', code: 'PB_ERR_INVALID_CURSOR', sid: 's' });
    expect(r.broker.stats().subscriptions).toBe(0);
    await c.subscribe('s', { pattern: 'c' });
    expect(await c.subscribe('s', { pattern: 'd' })).toMatchObject({ type: 'error', code: 'PB_ERR_INVALID_STATE', sid: 's' });
    expect(await c.request({ type: 'unsubscribe', sid: 'nope' })).toMatchObject({ type: 'error', code: 'PB_ERR_NOT_FOUND', sid: 'nope' });
    expect(r.broker.stats().subscriptions).toBe(1);
  });

  it('bounds subscriptions per connection and topics per subscription', async () => {
    const r = await rig({ maxSubscriptions: 2, maxTopics: 2 });
    const c = await Client.open(r);
    expect(await c.subscribe('l', { topics: ['a', 'b', 'c'] })).toMatchObject({ type: 'error', code: 'PB_ERR_INVALID_ARGUMENT' });
    await c.subscribe('1', { pattern: 'a' });
    await c.subscribe('2', { pattern: 'b' });
    expect(await c.subscribe('3', { pattern: 'c' })).toMatchObject({ type: 'error', code: 'PB_ERR_OVERFLOW', sid: '3' });
  });
});

describe('WsHandler: the upgrade', () => {
  it('answers a plain request to another path with 404 JSON when it is the only upgrade listener', async () => {
    const r = await rig();
    const socket = new WebSocket(r.url.replace('/ws', '/elsewhere'));
    socket.on('error', () => {});
    const status = await new Promise<{ status: number; body: string }>((resolve) => {
      socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
    });
    expect(status.status).toBe(404);
    expect(JSON.parse(status.body)).toMatchObject({ error: { code: 'PB_ERR_NOT_FOUND' } });
  });

  it('answers a broken handshake with 400 JSON', async () => {
    const r = await rig();
    const url = new URL(r.url);
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: '/ws', headers: { connection: 'Upgrade', upgrade: 'websocket' } });
      req.on('response', (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'PB_ERR_PROTOCOL' } });
    expect(r.ws.stats().refusedUpgrades).toBe(1);
  });
});

