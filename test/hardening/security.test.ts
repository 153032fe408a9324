/**
 * Security properties across the primitives, on real servers at 127.0.0.1:0:
 * - `authorize` hooks deny by topic (publish, long poll, SSE, WebSocket upgrade / subscribe /
 *   publish, jobs, uploads), and a denied client learns nothing: no ids, no counts, no cursor;
 * - no prototype pollution through topic names, job ids, JSON bodies or options;
 * - no CR / LF / NUL reaches a response header or an SSE field;
 * - CORS is off by default (no Access-Control-* header at all) and exact when on.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  ErrorCodes,
  ForbiddenError,
  formatEvent,
  InvalidArgumentError,
  PollHandle,
  PollHandler,
  PubSubBroker,
  type PubSubBrokerOptions,
  SseHandler,
  targetOverlaps,
  type TopicTarget,
} from '../../src/index.js';
import { LongPollHandler } from '../../src/longpoll/index.js';
import { UploadHandler } from '../../src/upload/index.js';
import { WsHandler } from '../../src/ws/index.js';
import { perTest, serveRig, until } from '../helpers.js';
import { Client, rig as wsRig } from '../ws/helpers.js';
import { type Answer, errorBody, request, type RequestSpec } from './http.js';

afterEach(() => {
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  expect(Object.prototype).not.toHaveProperty('polluted');
});

const SECRET = 'secret';
const topicsOf = (t: TopicTarget): string[] => ('pattern' in t && t.pattern !== undefined ? [t.pattern] : [...((t as { topics?: readonly string[] }).topics ?? [])]);
const touchesSecret = (t: TopicTarget): boolean => topicsOf(t).some((x) => x.split('.')[0] === SECRET || x.startsWith('*') || x.startsWith('>'));

/** A refusal that tells nothing: 403, a JSON error body only, no ids, counts or cursor. */
function expectOpaqueRefusal(answer: Answer, leaks: readonly string[]): void {
  expect(answer.status).toBe(403);
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  expect(Object.keys(body)).toEqual(['error']);
  expect(errorBody(answer).code).toBe(ErrorCodes.FORBIDDEN);
  for (const leak of leaks) expect(answer.body).not.toContain(leak);
  expect(answer.body).not.toMatch(/\d/); // no counts, no sequence numbers
  expect(answer.headers['patchbay-cursor']).toBeUndefined();
  expect(answer.headers['location']).toBeUndefined();
}

async function secretBroker(options: PubSubBrokerOptions = {}) {
  const broker = new PubSubBroker(options);
  perTest.defer(() => broker.close());
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await broker.publish(`${SECRET}.plans`, { i, launch: 'tuesday' })).id);
  return { broker, ids };
}

describe('authorize hooks deny by topic, and a denied client learns nothing', () => {
  it('broker: authorize.publish and authorize.subscribe refuse with PB_ERR_FORBIDDEN and store nothing', async () => {
    const broker = new PubSubBroker({
      authorize: { publish: (target) => !targetOverlaps(target, `${SECRET}.>`), subscribe: (target) => !targetOverlaps(target, `${SECRET}.>`) },
    });
    perTest.defer(() => broker.close());
    await expect(broker.publish(`${SECRET}.x`, 1)).rejects.toBeInstanceOf(ForbiddenError);
    await expect(broker.subscribe(`${SECRET}.>`, { onMessage: () => {} })).rejects.toMatchObject({ code: ErrorCodes.FORBIDDEN });
    await expect(broker.subscribe('>', { onMessage: () => {} })).rejects.toMatchObject({ code: ErrorCodes.FORBIDDEN });
    expect(broker.stats()).toMatchObject({ published: 0, subscriptions: 0 });
    await broker.publish('public.x', 1);
    expect(broker.stats().published).toBe(1);
  });

  it('long poll: 403 JSON without the secret topic’s ids, cursor or counts; nothing parked', async () => {
    const { broker, ids } = await secretBroker();
    const handler = new LongPollHandler({ broker, queryTarget: true, allowPatterns: true, authorize: (target) => !touchesSecret(target) });
    perTest.defer(() => handler.close());
    const { url: base } = await serveRig((req, res) => void handler.handle(req, res));
    for (const path of [`/?topic=${SECRET}.plans&cursor=${ids[0]}`, `/?topic=public&topic=${SECRET}.plans`, '/?pattern=*.plans', `/?pattern=${SECRET}.%3E&timeout=0`]) {
      expectOpaqueRefusal(await request(base, { path }), [...ids, 'tuesday', 'plans"']);
    }
    expect(handler.stats().parked).toBe(0);
    const allowed = await request(base, { path: '/?topic=public&timeout=0' });
    expect(allowed.status).toBe(204);
  });

  it('SSE: 403 JSON before any stream; no subscription made', async () => {
    const { broker, ids } = await secretBroker();
    const sse = new SseHandler({ broker, queryTarget: true, allowPatterns: true, authorize: (target) => !touchesSecret(target) });
    perTest.defer(() => sse.close());
    const { url: base } = await serveRig((req, res) => void sse.handle(req, res));
    for (const spec of [
      { path: `/?topic=${SECRET}.plans`, headers: { 'last-event-id': ids[0]! } },
      { path: `/?pattern=${SECRET}.*` },
      { path: '/?pattern=%3E' },
    ]) {
      const answer = await request(base, spec);
      expect(answer.headers['content-type']).not.toContain('text/event-stream');
      expectOpaqueRefusal(answer, [...ids, 'tuesday']);
    }
    expect(broker.stats().subscriptions).toBe(0);
    expect(sse.stats().connections).toBe(0);
  });

  it('WebSocket: the upgrade hook refuses with 403; subscribe and publish hooks refuse by topic with an error frame that names no id', async () => {
    const r = await wsRig({
      authorize: {
        upgrade: (req: IncomingMessage) => (req.headers['x-user'] === 'mallory' ? false : { user: req.headers['x-user'] }),
        subscribe: (target) => !touchesSecret(target),
        publish: (target) => !targetOverlaps(target, `${SECRET}.>`),
      },
    });
    const secretIds: string[] = [];
    for (let i = 0; i < 3; i++) secretIds.push((await r.broker.publish(`${SECRET}.plans`, { launch: 'tuesday' })).id);
    // Upgrade refused: an HTTP 403 and no connection.
    const refused = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(r.url, { headers: { 'x-user': 'mallory' } });
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      socket.on('open', () => reject(new Error('mallory got in')));
      socket.on('error', () => {});
    });
    expect(refused).toBe(403);
    expect(r.ws.stats().refusedUpgrades).toBe(1);
    const client = await Client.open(r, { headers: { 'x-user': 'alice' } });
    const denials = [
      await client.subscribe('s1', { topics: [`${SECRET}.plans`] }, secretIds[0]),
      await client.subscribe('s2', { pattern: '>' }, 'oldest'),
      await client.subscribe('s3', { topics: ['public', `${SECRET}.plans`] }),
      await client.request({ type: 'publish', topic: `${SECRET}.plans`, data: 'x' }),
    ];
    for (const frame of denials) {
      expect(frame.type).toBe('error');
      expect((frame as Record<string, unknown>)['code']).toBe(ErrorCodes.FORBIDDEN);
      const text = JSON.stringify(frame);
      for (const id of secretIds) expect(text).not.toContain(id);
      expect(text).not.toContain('tuesday');
    }
    expect(client.frames.filter((f) => f.type === 'message')).toHaveLength(0);
    expect(r.broker.stats()).toMatchObject({ subscriptions: 0, published: 3 });
    const ok = await client.subscribe('p', { topics: ['public'] });
    expect(ok.type).toBe('subscribed');
  });

  it('jobs: a denied read or cancel is 403 without the job’s state or result; a denied start starts nothing', async () => {
    const jobs = new PollHandle();
    const handler = new PollHandler<unknown>({
      jobs,
      run: () => ({ answer: 'forty-two' }),
      authorize: (req, action) => req.headers['x-user'] === 'alice' || (action === 'start' && req.headers['x-user'] === 'bob'),
    });
    perTest.defer(async () => {
      await handler.close();
      await jobs.close();
    });
    const { url: base } = await serveRig((req, res) => void handler.handle(req, res));
    const started = await request(base, { method: 'POST', path: '/jobs', headers: { 'x-user': 'alice', 'content-type': 'application/json', prefer: 'wait=5' }, body: '{}' });
    expect(started.status).toBeLessThan(400);
    const location = String(started.headers['content-location'] ?? started.headers['location']);
    expect(location).toMatch(/^\/jobs\//);
    for (const method of ['GET', 'DELETE']) {
      const denied = await request(base, { method, path: location, headers: { 'x-user': 'bob' } });
      expect(denied.status).toBe(403);
      expect(Object.keys(JSON.parse(denied.body) as object)).toEqual(['error']);
      expect(denied.body).not.toContain('forty-two');
      expect(denied.body).not.toMatch(/succeeded|running|pending|progress/);
      expect(denied.headers['etag']).toBeUndefined();
    }
    const before = jobs.stats().started;
    const noStart = await request(base, { method: 'POST', path: '/jobs', headers: { 'content-type': 'application/json' }, body: '{}' });
    expectOpaqueRefusal(noStart, []);
    expect(jobs.stats().started).toBe(before);
  });

  it('uploads: a denied create, read or write is 403 JSON and stores no file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'patchbay-hardening-'));
    const uploads = new UploadHandler({ directory: join(dir, 'store'), authorize: (req, action) => req.headers['x-user'] === 'alice' || action === 'options' });
    perTest.defer(async () => {
      await uploads.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const { url: base } = await serveRig((req, res) => void uploads.handle(req, res));
    const tus = { 'tus-resumable': '1.0.0' };
    const denied = await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '3' } });
    expectOpaqueRefusal(denied, []);
    expect(readdirSync(join(dir, 'store'))).toEqual([]);
    const created = await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '3', 'x-user': 'alice' } });
    expect(created.status).toBe(201);
    const files = readdirSync(join(dir, 'store')).length;
    const path = created.headers.location!;
    const write = await request(base, { method: 'PATCH', path, headers: { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
    expect(write.status).toBe(403);
    const head = await request(base, { method: 'HEAD', path, headers: tus });
    expect(head.status).toBe(403);
    expect(head.headers['upload-offset']).toBeUndefined();
    expect(readdirSync(join(dir, 'store')).length).toBe(files);
    expect(uploads.stats().active).toBe(1);
  });
});

describe('no prototype pollution', () => {
  const NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'];

  it('through topic names: publish, subscribe, long poll and SSE on __proto__ / constructor / prototype', async () => {
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    const got: string[] = [];
    for (const name of NAMES) await broker.subscribe(`${name}.>`, { onMessage: (m) => void got.push(m.topic) });
    for (const name of NAMES) {
      await broker.publish(name, { polluted: true });
      await broker.publish(`${name}.${name}`, JSON.parse('{"constructor":{"prototype":{"polluted":1}}}'));
      // One rule at every entry: a `__proto__` key is refused at any depth, not stored.
      await expect(broker.publish(`${name}.${name}`, JSON.parse('{"a":{"__proto__":{"polluted":1}}}'))).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect(got.sort()).toEqual(NAMES.map((n) => `${n}.${n}`).sort());
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    const lp = new LongPollHandler({ broker, queryTarget: true });
    const sse = new SseHandler({ broker, queryTarget: true });
    perTest.defer(async () => {
      await lp.close();
      await sse.close();
    });
    const { url: base } = await serveRig((req, res) => void ((req.url ?? '').startsWith('/sse') ? sse.handle(req, res) : lp.handle(req, res)));
    for (const name of NAMES) {
      const answer = await request(base, { path: `/lp?topic=${name}&cursor=${(await broker.head()).replace(/-.*/, '-0')}` });
      expect(answer.status).toBe(200);
      expect((JSON.parse(answer.body) as { messages: unknown[] }).messages.length).toBeGreaterThan(0);
      expect((await request(base, { path: `/sse?topic=${name}`, headOnly: true })).status).toBe(200);
    }
  });

  it('through JSON bodies, job ids and WebSocket frames', async () => {
    const jobs = new PollHandle();
    const seen: unknown[] = [];
    const handler = new PollHandler<unknown>({
      jobs,
      run: (input) => {
        seen.push(input);
        return input;
      },
    });
    perTest.defer(async () => {
      await handler.close();
      await jobs.close();
    });
    const { url: base } = await serveRig((req, res) => void handler.handle(req, res));
    const hostile = ['{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}', '{"a":{"__proto__":{"polluted":1}}}', '[{"__proto__":{"polluted":1}}]'];
    for (const body of hostile) {
      const answer = await request(base, { method: 'POST', path: '/jobs', headers: { 'content-type': 'application/json', prefer: 'wait=5' }, body });
      expect(answer.status).toBeLessThan(500);
    }
    for (const id of NAMES) {
      for (const method of ['GET', 'DELETE']) {
        const answer = await request(base, { method, path: `/jobs/${id}` });
        expect([400, 404]).toContain(answer.status);
        expect(errorBody(answer).code).toMatch(/^PB_ERR_/);
      }
    }
    const r = await wsRig({ authorize: { publish: () => true } });
    const client = await Client.open(r);
    await client.subscribe('s', { pattern: '>' });
    for (const name of NAMES) {
      const refused = await client.request({ type: 'publish', topic: name, data: JSON.parse('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}') });
      expect(refused).toMatchObject({ type: 'error', code: 'PB_ERR_PROTOCOL' }); // refused where the frame is parsed
      const reply = await client.request({ type: 'publish', topic: name, data: JSON.parse('{"constructor":{"prototype":{"polluted":1}}}') });
      expect(reply.type).toBe('published');
    }
    client.send('{"type":"ping","__proto__":{"polluted":1}}');
    client.send('{"type":"subscribe","sid":"__proto__","pattern":"constructor.>"}');
    await client.request({ type: 'ping' });
    await until(() => client.messages('s').length === NAMES.length, 'the hostile publishes to come back as plain data');
  });

  it('through options objects', async () => {
    const polluted = () => JSON.parse('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}') as Record<string, unknown>;
    const broker = new PubSubBroker({ ...polluted(), authorize: polluted() } as PubSubBrokerOptions);
    perTest.defer(() => broker.close());
    const handlers = [
      new SseHandler({ ...polluted(), broker }),
      new LongPollHandler({ ...polluted(), broker }),
      new WsHandler({ ...polluted(), broker }),
    ];
    const jobs = new PollHandle(polluted());
    perTest.defer(async () => {
      for (const h of handlers) await h.close();
      await jobs.close();
    });
    // The objects work as if the keys were not there, and nothing reached Object.prototype.
    expect((await broker.publish('x', 1)).topic).toBe('x');
    expect((await (await jobs.submit(() => 'ok')).done()).result).toBe('ok');
    expect(Object.prototype).not.toHaveProperty('polluted');
  });
});

describe('no CR, LF or NUL reaches a header or an SSE field', () => {
  it('SSE event and id refuse CR / LF (and NUL in id); data is split so every line stays data', () => {
    const text = fc.string({ unit: fc.constantFrom('a', ' ', ':', '\r', '\n', '\0', 'id: 9', 'event: x', 'data:', '\u00e9'), maxLength: 12 });
    fc.assert(
      fc.property(text, fc.option(text, { nil: undefined }), fc.option(text, { nil: undefined }), (data, id, event) => {
        let out: string;
        try {
          out = formatEvent({ data, ...(id === undefined ? {} : { id }), ...(event === undefined ? {} : { event }) });
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidArgumentError);
          expect(/[\r\n]/.test(id ?? '') || /[\r\n]/.test(event ?? '') || (id ?? '').includes('\0')).toBe(true);
          return;
        }
        expect(/[\r\n]/.test(id ?? '') || /[\r\n]/.test(event ?? '')).toBe(false);
        const events: EventSourceMessage[] = [];
        const parser = createParser({ onEvent: (e) => events.push(e) });
        parser.feed(out);
        expect(events).toHaveLength(1);
        expect(events[0]!.data).toBe(data.replace(/\r\n|\r/g, '\n'));
        expect(events[0]!.id ?? '').toBe(id ?? '');
        expect(events[0]!.event ?? '').toBe(event ?? '');
        // Every line is one of the fields we wrote: nothing else was injected.
        for (const line of out.split('\n').filter((l) => l !== '')) expect(line).toMatch(/^(data|id|event): /);
      }),
      { numRuns: 2_000 },
    );
  });

  it('hostile cursors, ids and topics in URLs never reach a response header', async () => {
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    const lp = new LongPollHandler({ broker, queryTarget: true });
    const sse = new SseHandler({ broker, queryTarget: true, lastEventIdQuery: 'lastEventId' });
    const jobs = new PollHandle();
    const poll = new PollHandler<unknown>({ jobs, run: () => 1 });
    perTest.defer(async () => {
      await lp.close();
      await sse.close();
      await poll.close();
      await jobs.close();
    });
    const { url: base } = await serveRig((req, res) => {
      const url = req.url ?? '';
      void (url.startsWith('/sse') ? sse.handle(req, res) : url.startsWith('/jobs') ? poll.handle(req, res) : lp.handle(req, res));
    });
    const evil = ['a%0d%0aSet-Cookie:%20x=1', '%0aX-Evil:%201', 'a%00b', 'x%0d%0a%0d%0a<html>', '%E5%98%8A%E5%98%8DX-Evil:1'];
    for (const e of evil) {
      for (const path of [`/lp?topic=t&cursor=${e}`, `/lp?topic=${e}`, `/sse?topic=t&lastEventId=${e}`, `/sse?topic=${e}`, `/jobs/${e}`]) {
        const answer = await request(base, { path, headOnly: true });
        expect(answer.status, path).toBeGreaterThanOrEqual(400);
        expect(answer.headers['set-cookie']).toBeUndefined();
        expect(answer.headers['x-evil']).toBeUndefined();
        for (const [name, value] of Object.entries(answer.headers)) expect(`${name}: ${String(value)}`).not.toMatch(/[\r\n\0]/);
      }
    }
  });
});

describe('CORS', () => {
  async function everything(cors: { origin: readonly string[] } | undefined) {
    const broker = new PubSubBroker();
    const lp = new LongPollHandler({ broker, queryTarget: true, ...(cors ? { cors } : {}) });
    const sse = new SseHandler({ broker, queryTarget: true, ...(cors ? { cors } : {}) });
    const jobs = new PollHandle();
    const poll = new PollHandler<unknown>({ jobs, run: () => 1, ...(cors ? { cors } : {}) });
    const dir = mkdtempSync(join(tmpdir(), 'patchbay-hardening-'));
    const uploads = new UploadHandler({ directory: join(dir, 'store'), ...(cors ? { cors } : {}) });
    perTest.defer(async () => {
      for (const c of [lp, sse, poll, uploads, jobs, broker]) await c.close();
      rmSync(dir, { recursive: true, force: true });
    });
    return serveRig((req, res) => {
      const url = req.url ?? '';
      void (url.startsWith('/sse')
        ? sse.handle(req, res)
        : url.startsWith('/jobs')
          ? poll.handle(req, res)
          : url.startsWith('/uploads')
            ? uploads.handle(req, res)
            : lp.handle(req, res, { topics: ['t'] }));
    });
  }
  const probes = (origin: string): RequestSpec[] => [
    { path: '/lp?timeout=0', headers: { origin } },
    { method: 'OPTIONS', path: '/lp', headers: { origin, 'access-control-request-method': 'GET' } },
    { path: '/sse?topic=t', headers: { origin }, headOnly: true },
    { method: 'OPTIONS', path: '/sse', headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'last-event-id' } },
    { path: '/jobs/nope', headers: { origin } },
    { method: 'OPTIONS', path: '/jobs', headers: { origin, 'access-control-request-method': 'POST' } },
    { method: 'POST', path: '/uploads', headers: { origin, 'tus-resumable': '1.0.0', 'upload-length': '1' } },
    { method: 'OPTIONS', path: '/uploads', headers: { origin, 'access-control-request-method': 'POST' } },
  ];
  const acHeaders = (a: Answer) => Object.keys(a.headers).filter((h) => h.startsWith('access-control-'));

  it('is off by default: no Access-Control-* header on any answer, preflights included', async () => {
    const { url: base } = await everything(undefined);
    for (const probe of probes('https://evil.example')) {
      const answer = await request(base, probe);
      expect(acHeaders(answer), `${probe.method ?? 'GET'} ${probe.path}`).toEqual([]);
    }
  });

  it('is exact when on: the listed origin is echoed (with Vary: Origin), any other gets no Access-Control-* header', async () => {
    const good = 'https://app.example';
    const { url: base } = await everything({ origin: [good] });
    for (const probe of probes(good)) {
      const answer = await request(base, probe);
      expect(answer.headers['access-control-allow-origin'], `${probe.method ?? 'GET'} ${probe.path}`).toBe(good);
    }
    for (const evil of ['https://evil.example', 'https://app.example.evil.example', 'http://app.example', 'null']) {
      for (const probe of probes(evil)) {
        const answer = await request(base, probe);
        expect(answer.headers['access-control-allow-origin'], `${evil} ${probe.method ?? 'GET'} ${probe.path}`).toBeUndefined();
        expect(answer.headers['access-control-allow-credentials']).toBeUndefined();
      }
    }
  });
});
