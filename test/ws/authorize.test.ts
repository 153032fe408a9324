/**
 * Who may read what over WebSocket: patterns refused unless the app opts in, and a hook that
 * protects `admin.>` holds against every pattern that can reach it, whether it refuses them or
 * grants them with `canRead`, in replays and live.
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { type AccessVerdict, targetOverlaps, type TopicTarget } from '../../src/index.js';
import { until } from '../helpers.js';
import { Client, rig } from './helpers.js';

const HOSTILE = ['admin.*', '>', '*.secret', 'admin.>'];
/** A subscription id for each hostile pattern (ids take no wildcards). */
const sid = (prefix: string, pattern: string): string => `${prefix}${HOSTILE.indexOf(pattern)}`;

describe('WsHandler: patterns from clients', () => {
  it('refuses a subscribe frame with a pattern unless allowPatterns is set', async () => {
    const r = await rig({ allowPatterns: false });
    const c = await Client.open(r);
    for (const pattern of ['news', 'news.*', '>']) {
      expect(await c.subscribe('p', { pattern })).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN', sid: 'p' });
    }
    const refusal = await c.subscribe('p', { pattern: 'x.>' });
    expect(String(refusal.message)).toContain('allowPatterns');
    expect(r.broker.stats().subscriptions).toBe(0);
    expect(await c.subscribe('t', { topics: ['news'] })).toMatchObject({ type: 'subscribed' });
  });
});

describe('WsHandler: a hook that protects admin.>', () => {
  async function publishAll(r: Awaited<ReturnType<typeof rig>>): Promise<void> {
    await r.broker.publish('admin.secret', 'no');
    await r.broker.publish('admin.secrets', 'no');
    await r.broker.publish('chat.secret', 'yes');
    await r.broker.publish('admin.x.y', 'no');
  }

  it('refusing with targetOverlaps: every pattern that can reach admin.> is refused', async () => {
    const seen: TopicTarget[] = [];
    const r = await rig({
      authorize: {
        subscribe: (target) => {
          seen.push(target);
          return !targetOverlaps(target, 'admin.>');
        },
      },
    });
    await publishAll(r);
    const c = await Client.open(r);
    for (const pattern of HOSTILE) {
      for (const cursor of [undefined, 'oldest']) {
        expect(await c.subscribe(sid('s', pattern), { pattern }, cursor), pattern).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN' });
      }
    }
    expect(await c.subscribe('t', { topics: ['chat.secret', 'admin.secrets'] }, 'oldest')).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN' });
    expect(seen).toContainEqual({ pattern: 'admin.*' });
    // What does not reach admin.> is allowed.
    expect(await c.subscribe('chat', { pattern: 'chat.*' }, 'oldest')).toMatchObject({ type: 'subscribed' });
    await r.broker.publish('admin.secrets', 'no');
    await r.broker.publish('chat.secret', 'live');
    await until(() => c.messages('chat').length === 2, 'the chat messages');
    expect(c.frames.filter((f) => f.type === 'message').map((f) => f.topic)).toEqual(['chat.secret', 'chat.secret']);
    expect(r.broker.stats().subscriptions).toBe(1);
  });

  it('granting with canRead: nothing of admin.> is ever sent, replayed or live, whatever the pattern; the identity is kept', async () => {
    const r = await rig({
      authorize: {
        upgrade: (req) => ({ user: req.headers['x-user'] }),
        subscribe: (_target, context): AccessVerdict => ({
          identity: (context as { user: string }).user,
          canRead: (topic) => !targetOverlaps({ topics: [topic] }, 'admin.>'),
        }),
      },
    });
    await publishAll(r);
    const c = await Client.open(r, { headers: { 'x-user': 'mallory' } });
    for (const pattern of HOSTILE) {
      expect(await c.subscribe(sid('r', pattern), { pattern }, 'oldest'), pattern).toMatchObject({ type: 'subscribed' });
      expect(await c.subscribe(sid('l', pattern), { pattern }), pattern).toMatchObject({ type: 'subscribed' });
    }
    expect(await c.subscribe('list', { topics: ['admin.secrets', 'chat.secret'] }, 'oldest')).toMatchObject({ type: 'subscribed' });
    const connection = r.ws.connections()[0]!;
    expect(connection.identity(sid('r', '>'))).toBe('mallory');
    expect(connection.identity('list')).toBe('mallory');
    expect(connection.identity('nope')).toBeUndefined();
    await publishAll(r);
    // `>` and `*.secret` reach chat.secret: a replayed and a live one each; the list too.
    await until(
      () =>
        c.messages(sid('r', '>')).length === 2 &&
        c.messages(sid('r', '*.secret')).length === 2 &&
        c.messages('list').length === 2 &&
        c.messages(sid('l', '>')).length === 1,
      'what may be read',
    );
    await c.request({ type: 'ping' });
    const topics = c.frames.filter((f) => f.type === 'message').map((f) => f.topic);
    expect(topics.length).toBeGreaterThan(0);
    expect(topics.every((t) => t === 'chat.secret')).toBe(true);
    for (const f of c.frames) expect(JSON.stringify(f)).not.toContain('"no"');
    expect(c.messages(sid('r', 'admin.*'))).toHaveLength(0);
    expect(c.messages(sid('l', 'admin.>'))).toHaveLength(0);
  });

  it('publish asks (target, context, data) with target { topics: [topic] }', async () => {
    const calls: unknown[] = [];
    const r = await rig({
      authorize: {
        upgrade: () => ({ user: 'ann' }),
        publish: (target, context, data) => {
          calls.push([target, context, data]);
          return !targetOverlaps(target, 'admin.>');
        },
      },
    });
    const c = await Client.open(r);
    expect(await c.request({ type: 'publish', topic: 'admin.secret', data: 1 })).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN' });
    expect(await c.request({ type: 'publish', topic: 'chat.a', data: 2 })).toMatchObject({ type: 'published' });
    expect(calls).toEqual([
      [{ topics: ['admin.secret'] }, { user: 'ann' }, 1],
      [{ topics: ['chat.a'] }, { user: 'ann' }, 2],
    ]);
  });
});

describe('WsHandler: the upgrade request', () => {
  it('answers an upgrade sent as POST with 405, naming the method, and Allow: GET', async () => {
    const r = await rig();
    const url = new URL(r.url);
    const res = await new Promise<{ status: number; allow: string | undefined; body: string }>((resolve, reject) => {
      const req = http.request({
        host: url.hostname,
        port: url.port,
        path: '/ws',
        method: 'POST',
        headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
      });
      req.on('response', (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, allow: response.headers.allow, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(res.status).toBe(405);
    expect(res.allow).toBe('GET');
    expect(JSON.parse(res.body)).toEqual({ error: { code: 'PB_ERR_METHOD_NOT_ALLOWED', message: 'Method POST is not allowed here; use GET' } });
  });
});
