import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ForbiddenError, PubSubBroker } from '../../src/index.js';
import { WsHandler, type WsHandlerOptions } from '../../src/ws/index.js';
import { until } from '../helpers.js';
import { Client, rig } from './helpers.js';

function rigOptionsCheck(options: Partial<WsHandlerOptions>): void {
  const broker = new PubSubBroker();
  void new WsHandler({ broker, ...options }).close();
  void broker.close();
}

describe('WsHandler: bad frames', () => {
  it('answers every malformed frame with an error frame and keeps the connection', async () => {
    const r = await rig({ maxMessageBytes: 1024, authorize: { publish: () => true } });
    const c = await Client.open(r);
    await c.subscribe('taken', { pattern: 'x' });
    const cases: [unknown, string, Record<string, unknown>?][] = [
      ['not json', 'PB_ERR_PROTOCOL'],
      ['{"type":"ping"', 'PB_ERR_PROTOCOL'],
      ['[1,2]', 'PB_ERR_PROTOCOL'],
      ['null', 'PB_ERR_PROTOCOL'],
      ['42', 'PB_ERR_PROTOCOL'],
      ['"subscribe"', 'PB_ERR_PROTOCOL'],
      [{ type: 'explode', ref: 'a' }, 'PB_ERR_PROTOCOL', { ref: 'a' }],
      [{ type: 7 }, 'PB_ERR_PROTOCOL'],
      [{ ref: 'no-type' }, 'PB_ERR_PROTOCOL', { ref: 'no-type' }],
      [{ type: 'ping', extra: 1, ref: 3 }, 'PB_ERR_PROTOCOL', { ref: 3 }],
      [{ type: 'subscribe', sid: 'a', topic: 'typo' }, 'PB_ERR_PROTOCOL', { sid: 'a' }],
      [{ type: 'subscribe', sid: 'a' }, 'PB_ERR_PROTOCOL', { sid: 'a' }],
      [{ type: 'subscribe', sid: 'a', pattern: 'p', topics: ['p'] }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', sid: 'a', topics: [] }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', sid: 'a', topics: [1] }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', sid: 'a', pattern: 5 }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', sid: 'a', pattern: 'p', cursor: 5 }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', pattern: 'p' }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', sid: 'bad\r\nsid', pattern: 'p' }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', sid: 'x'.repeat(65), pattern: 'p' }, 'PB_ERR_PROTOCOL'],
      [{ type: 'subscribe', sid: 'a', pattern: 'evil\r\ntopic' }, 'PB_ERR_INVALID_ARGUMENT', { sid: 'a' }],
      [{ type: 'subscribe', sid: 'a', pattern: 'a..b' }, 'PB_ERR_INVALID_ARGUMENT'],
      [{ type: 'subscribe', sid: 'a', pattern: '>.a' }, 'PB_ERR_INVALID_ARGUMENT'],
      [{ type: 'subscribe', sid: 'taken', pattern: 'y' }, 'PB_ERR_INVALID_STATE', { sid: 'taken' }],
      [{ type: 'unsubscribe' }, 'PB_ERR_PROTOCOL'],
      [{ type: 'publish', topic: 'p' }, 'PB_ERR_PROTOCOL'],
      [{ type: 'publish', topic: ['p'], data: 1 }, 'PB_ERR_PROTOCOL'],
      [{ type: 'publish', topic: 'p.*', data: 1 }, 'PB_ERR_INVALID_ARGUMENT'],
      [{ type: 'publish', topic: 'line\nbreak', data: 1 }, 'PB_ERR_INVALID_ARGUMENT'],
      [{ type: 'ping', ref: 'carriage\rreturn' }, 'PB_ERR_PROTOCOL'],
      [{ type: 'ping', ref: 1.5 }, 'PB_ERR_PROTOCOL'],
      [{ type: 'ping', ref: 'x'.repeat(129) }, 'PB_ERR_PROTOCOL'],
      ['{"type":"ping","__proto__":{"polluted":true}}', 'PB_ERR_PROTOCOL'],
      ['{"type":"ping","constructor":{"prototype":{"polluted":true}}}', 'PB_ERR_PROTOCOL'],
      ['{"type":"subscribe","sid":"p","pattern":"q","prototype":1}', 'PB_ERR_PROTOCOL'],
      [JSON.stringify({ type: 'publish', topic: 'big', data: 'x'.repeat(2000) }), 'PB_ERR_BODY_TOO_LARGE'],
    ];
    for (const [frame, code, extra] of cases) {
      const before = c.frames.length;
      c.send(frame);
      const reply = await c.next((f) => f.type === 'error', `the error for ${JSON.stringify(frame).slice(0, 60)}`, before);
      expect(reply, JSON.stringify(frame).slice(0, 80)).toMatchObject({ code, ...extra });
      expect(typeof reply.message).toBe('string');
    }
    // Binary frames are not part of the protocol.
    const before = c.frames.length;
    c.socket.send(Buffer.from('{"type":"ping"}'), { binary: true });
    expect(await c.next((f) => f.type === 'error', 'the binary refusal', before)).toMatchObject({ code: 'PB_ERR_PROTOCOL' });

    expect(c.closed).toBeUndefined();
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(r.ws.stats().refusedFrames).toBe(cases.length + 1);
    expect(r.broker.stats().published).toBe(0);
    expect(r.broker.stats().subscriptions).toBe(1);
  });

  it('refuses a frame with a __proto__ key at any depth (a publish frame\'s data too), and publishes nothing', async () => {
    const r = await rig({ authorize: { publish: () => true } });
    const c = await Client.open(r);
    await c.subscribe('s', { topics: ['p'] });
    const hostile = [
      '{"type":"publish","topic":"p","data":{"__proto__":{"polluted":true},"a":1},"ref":"a"}',
      '{"type":"publish","topic":"p","data":[{"x":{"__proto__":{"polluted":true}}}],"ref":"b"}',
      '{"type":"publish","topic":"p","data":{"\\u005f_proto__":1},"ref":"c"}',
      '{"type":"subscribe","sid":"t","topics":["p"],"__proto__":{"polluted":true}}',
    ];
    for (const frame of hostile) {
      const before = c.frames.length;
      c.send(frame);
      const reply = await c.next((f) => f.type === 'error', `the refusal of ${frame}`, before);
      expect(reply, frame).toMatchObject({ code: 'PB_ERR_PROTOCOL' });
      expect(String(reply.message)).toContain('__proto__');
    }
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(r.broker.stats().published).toBe(0);
    expect(c.messages('s')).toHaveLength(0);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('refuses a frame nested deeper than maxFrameDepth before parsing it, and keeps the connection', async () => {
    const r = await rig({ authorize: { publish: () => true }, maxFrameDepth: 8 });
    const c = await Client.open(r);
    const nested = (depth: number): unknown => (depth === 0 ? 1 : { a: nested(depth - 1) });
    expect(await c.request({ type: 'publish', topic: 'd', data: nested(7) })).toMatchObject({ type: 'published' });
    const before = c.frames.length;
    c.send({ type: 'publish', topic: 'd', data: nested(8), ref: 'deep' });
    expect(await c.next((f) => f.type === 'error', 'the depth refusal', before)).toMatchObject({ code: 'PB_ERR_PROTOCOL' });
    // Far deeper than any stack would take: refused by the scan, the server goes on.
    c.send(`{"type":"publish","topic":"d","data":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    await until(() => c.frames.filter((f) => f.type === 'error').length === 2, 'the second refusal');
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    expect(r.broker.stats().published).toBe(1);
    expect(() => rigOptionsCheck({ maxFrameDepth: 0 })).toThrow(/maxFrameDepth/);
    expect(() => rigOptionsCheck({ maxFrameDepth: 1001 })).toThrow(/maxFrameDepth/);
    expect(() => rigOptionsCheck({ allowPatterns: 'yes' as never })).toThrow(/allowPatterns/);
  });

  it('closes with 1009 a frame over maxPayloadBytes without reading it, and the server goes on', async () => {
    const r = await rig({ maxMessageBytes: 1024, maxPayloadBytes: 4096 });
    const c = await Client.open(r);
    const other = await Client.open(r);
    c.send('x'.repeat(5000));
    expect((await c.waitClosed()).code).toBe(1009);
    expect(await other.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    await until(() => r.ws.stats().connections === 1, 'the closed connection to go');
  });

  it('closes with 1007 a text frame that is not UTF-8', async () => {
    const r = await rig();
    const c = await Client.open(r);
    c.socket.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await c.waitClosed()).code).toBe(1007);
  });

  it('survives any frame (fuzz): each gets one reply, never a crash', async () => {
    const r = await rig({ authorize: { publish: () => true }, maxMessageBytes: 512 });
    const c = await Client.open(r);
    const frame = fc.oneof(
      fc.string({ maxLength: 600 }),
      fc.json({ maxDepth: 3 }),
      fc.record(
        {
          type: fc.constantFrom('subscribe', 'unsubscribe', 'publish', 'ping', '__proto__', ''),
          sid: fc.oneof(fc.string({ maxLength: 70 }), fc.integer()),
          pattern: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('a.*', 'a.>', '>', '*', 'a')),
          topics: fc.array(fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('a', 'b.c')), { maxLength: 3 }),
          topic: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('a', 'b.c')),
          cursor: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('oldest', 'now')),
          data: fc.jsonValue({ maxDepth: 2 }),
          ref: fc.oneof(fc.string({ maxLength: 130 }), fc.integer(), fc.double()),
        },
        { requiredKeys: ['type'] },
      ).map((o) => JSON.stringify(o)),
    );
    const frames = fc.sample(frame, { numRuns: 300, seed: 42 });
    let replies = 0;
    const isReply = (f: { type: string }) => ['subscribed', 'unsubscribed', 'published', 'pong', 'error'].includes(f.type);
    for (const f of frames) {
      const before = c.frames.filter(isReply).length;
      c.send(f);
      await until(() => c.frames.filter(isReply).length > before || c.closed !== undefined, 'a reply');
      replies++;
    }
    expect(c.closed).toBeUndefined();
    expect(c.frames.filter(isReply)).toHaveLength(replies);
    expect(await c.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  });
});

describe('WsHandler: authorize', () => {
  it('refuses an upgrade before accepting it, with the status and JSON of the refusal', async () => {
    const r = await rig({
      authorize: {
        upgrade: async (req) => {
          await new Promise((resolve) => setImmediate(resolve));
          if (req.headers['x-token'] === 'bad') throw new ForbiddenError('Bad token');
          if (req.headers['x-token'] === 'boom') throw new Error('secret internals');
          return req.headers['x-token'] === 'ok' ? { user: 'ann' } : false;
        },
      },
    });
    const attempt = (token?: string) =>
      new Promise<{ status: number; body: string }>((resolve) => {
        const socket = new WebSocket(r.url, { headers: token === undefined ? {} : { 'x-token': token } });
        socket.on('error', () => {});
        socket.once('open', () => resolve({ status: 101, body: '' }));
        socket.once('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
      });
    const none = await attempt();
    expect(none.status).toBe(403);
    expect(JSON.parse(none.body)).toMatchObject({ error: { code: 'PB_ERR_FORBIDDEN' } });
    expect(JSON.parse((await attempt('bad')).body)).toEqual({ error: { code: 'PB_ERR_FORBIDDEN', message: 'Bad token' } });
    const boom = await attempt('boom');
    expect(boom.status).toBe(500);
    expect(boom.body).not.toContain('secret');
    expect(r.ws.stats()).toMatchObject({ connections: 0, refusedUpgrades: 3 });
    expect((await attempt('ok')).status).toBe(101);
    await until(() => r.ws.stats().connections === 1, 'the accepted connection');
    expect(r.ws.connections()[0]!.context).toEqual({ user: 'ann' });
  });

  it('passes the upgrade context to the subscribe and publish hooks and to the broker', async () => {
    const calls: unknown[] = [];
    const errors: unknown[] = [];
    const r = await rig(
      {
        authorize: {
          upgrade: (req) => ({ user: req.headers['x-user'] }),
          subscribe: async (target, context) => {
            calls.push(['subscribe', context, target]);
            if (target.pattern === 'explode') throw new Error('hook bug');
            return target.pattern !== 'secret';
          },
          publish: (target, context, data) => {
            calls.push(['publish', context, target, data]);
            return target.topics?.[0] !== 'secret';
          },
        },
        onError: (error) => errors.push(error),
      },
      { authorize: { subscribe: (target, context) => (context as { user: string }).user === 'ann' || target.topics?.[0] !== 'ann-only' } },
    );
    const ann = await Client.open(r, { headers: { 'x-user': 'ann' } });
    const bob = await Client.open(r, { headers: { 'x-user': 'bob' } });
    expect(await bob.subscribe('s', { pattern: 'secret' })).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN', sid: 's' });
    expect(await bob.subscribe('s', { topics: ['ok', 'ann-only'] })).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN', sid: 's' });
    expect(await ann.subscribe('s', { topics: ['ok', 'ann-only'] })).toMatchObject({ type: 'subscribed' });
    expect(await bob.request({ type: 'publish', topic: 'secret', data: 1 })).toMatchObject({ type: 'error', code: 'PB_ERR_FORBIDDEN' });
    expect(await bob.request({ type: 'publish', topic: 'ok', data: 2 })).toMatchObject({ type: 'published' });
    const bug = await bob.subscribe('b', { pattern: 'explode' });
    expect(bug).toEqual({ type: 'error', code: 'PB_ERR_INTERNAL', message: 'Internal server error', sid: 'b', ref: bug.ref });
    expect(errors).toHaveLength(1);
    expect(calls).toContainEqual(['subscribe', { user: 'bob' }, { pattern: 'secret' }]);
    expect(calls).toContainEqual(['subscribe', { user: 'ann' }, { topics: ['ok', 'ann-only'] }]);
    expect(calls).toContainEqual(['publish', { user: 'bob' }, { topics: ['ok'] }, 2]);
    expect(r.broker.stats().subscriptions).toBe(2); // only ann's, both topics; bob's partial one was undone
    await until(() => ann.messages('s').length === 1, 'ann gets the publish');
  });
});

