/**
 * The hostile-input suite (issue 15): every class of input one client can send, against every
 * network-facing route of the demo server. For each: no 5xx (a refusal is a 4xx with a JSON error
 * body), the process lives on, nothing stays stuck (the long poll's interests and parked polls
 * return to zero, a normal client's cursor still works afterwards), and what is held is counted by
 * stats(). Heap figures are measured in an isolated process by heap.test.ts; each adapter runs the
 * publish classes through the adapter kit (test/conformance/adapter-kit.ts). Later features join
 * this suite as they land.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { LongPollHandler, PubSubBroker, SseHandler } from '../../src/index.js';
import type { WsHandler } from '../../src/ws/index.js';
import { serveRig, TestResources, until } from '../helpers.js';
import { type Answer, headerChar, request } from './http.js';

let base = '';
let dir = '';
let demo: { server: Server; broker: PubSubBroker; longPoll: LongPollHandler; sse: SseHandler; ws: WsHandler };

const suite = new TestResources();
beforeAll(() =>
  suite.setup(async () => {
    dir = mkdtempSync(join(tmpdir(), 'patchbay-hostile-'));
    demo = createDemo({ maxBodyBytes: 64 * 1024, maxHoldMs: 200, uploadsDir: dir, maxUploadBytes: 1024 * 1024 });
    ({ url: base } = await serveRig(demo.server, { resources: suite }));
  }),
);
afterAll(async () => {
  await suite.teardown();
  rmSync(dir, { recursive: true, force: true });
});

/** A refusal is a 4xx with a JSON error body; anything else must be a success. Never a 5xx. */
function expectNoServerError(answer: Answer, what: string, head = false): void {
  expect(answer.status, `${what} answered ${answer.status}: ${answer.body.slice(0, 200)}`).toBeLessThan(500);
  if (answer.status >= 400 && answer.status !== 431 && !head) {
    expect(answer.headers['content-type'], what).toMatch(/^application\/json/);
    expect((JSON.parse(answer.body) as { error: { code: string } }).error.code, what).toMatch(/^PB_ERR_/);
  }
}

const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);
const hostileJson = fc.oneof(
  fc.constant(deep(5000)),
  fc.constant(deep(65)),
  fc.constant('{"a":{"b":[{"__proto__":{"polluted":1}}]}}'),
  fc.constant('{"\\u005f_proto__":1}'),
  fc.constant('"\\ud800"'),
  fc.constant('{"x":["ok","\\udfff"]}'),
  fc.constant('{"a":1'),
  fc.json(),
  fc.string(),
);
const hostileTopic = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'a..b', '>', '*', 'a.>', '%E0%A4%A', '%00', 'x'.repeat(300), '_INBOX.x', 'ok'),
  fc.stringMatching(/^[a-z.*>%0-9_-]{1,20}$/),
);
const hostileCursor = fc.oneof(
  fc.constantFrom('', 'zzzzzzzzzzzzzzzzz-1', 'abc-zzzzzzzzzzzz', '-', 'a-', '__proto__', '9'.repeat(40), 'oldest', 'now'),
  fc.stringMatching(/^[0-9a-z]{1,16}-[0-9a-z]{1,11}$/),
  fc.string({ maxLength: 60 }),
);

/** A request some client could send to a route of the demo. */
const hostileRequest = fc.oneof(
  fc.record({ kind: fc.constant('pub'), topic: hostileTopic, body: hostileJson, type: fc.constantFrom('application/json', 'text/plain', 'application/x+json', 'image/png'), origin: fc.option(fc.constantFrom('https://evil.example', 'null'), { nil: undefined }) }),
  fc.record({ kind: fc.constant('lp'), topic: hostileTopic, cursor: hostileCursor, limit: fc.oneof(fc.constantFrom('0', '-1', '1e9', 'x'), fc.nat().map(String)), extra: fc.constantFrom('', '&pattern=>', '&topic=admin.secrets') }),
  fc.record({ kind: fc.constant('sse'), topic: hostileTopic, cursor: hostileCursor, extra: fc.constantFrom('', '&pattern=>', '&topic=admin.secrets') }),
  fc.record({ kind: fc.constant('jobs'), body: hostileJson, prefer: fc.string({ unit: headerChar, maxLength: 30 }), key: fc.string({ unit: headerChar, maxLength: 300 }), id: hostileTopic }),
  fc.record({ kind: fc.constant('uploads'), method: fc.constantFrom('POST', 'PUT', 'PATCH', 'HEAD', 'DELETE', 'GET'), length: fc.oneof(fc.constantFrom('-1', '1e30', 'x', '99999999999999999999'), fc.nat().map(String)), metadata: fc.string({ unit: headerChar, maxLength: 100 }), id: hostileTopic }),
  fc.record({ kind: fc.constant('ndjson'), n: fc.oneof(fc.constantFrom('-1', '1e9', 'x', '10000001'), fc.nat({ max: 50 }).map(String)), from: fc.oneof(fc.constantFrom('-1', 'x'), fc.nat({ max: 60 }).map(String)) }),
  fc.record({ kind: fc.constant('misc'), path: fc.constantFrom('/stats', '/ws', '/sidecar', '/nope', '//[', '//[?topic=t', '/uploads//[', '/vendor/patchbay/../../etc/passwd', '/%', '/pub', '/lp/', '/sse/a/b') }),
);

type HostileRequest = typeof hostileRequest extends fc.Arbitrary<infer T> ? T : never;

function toSpec(r: HostileRequest): { method?: string; path: string; headers?: Record<string, string>; body?: string; headOnly?: boolean } {
  switch (r.kind) {
    case 'pub':
      return { method: 'POST', path: `/pub/${r.topic}`, headers: { 'content-type': r.type, ...(r.origin === undefined ? {} : { origin: r.origin }) }, body: r.body };
    case 'lp':
      return { path: `/lp/${r.topic}?cursor=${encodeURIComponent(r.cursor)}&limit=${r.limit}&timeout=0${r.extra}` };
    case 'sse':
      return { path: `/sse/${r.topic}?lastEventId=${encodeURIComponent(r.cursor)}${r.extra}`, headOnly: true };
    case 'jobs':
      return { method: 'POST', path: '/jobs', headers: { 'content-type': 'application/json', prefer: r.prefer, 'idempotency-key': r.key }, body: r.body };
    case 'uploads':
      return { method: r.method, path: r.method === 'POST' ? '/uploads' : `/uploads/${r.id}`, headers: { 'tus-resumable': '1.0.0', 'upload-length': r.length, 'upload-metadata': r.metadata, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: r.method === 'PATCH' || r.method === 'POST' ? 'x' : undefined };
    case 'ndjson':
      return { path: `/stream/ndjson?n=${r.n}&from=${r.from}` };
    case 'misc':
      return { path: r.path };
  }
}

describe('hostile input against every route of the demo', () => {
  it('property: no request gets a 5xx, every refusal is a JSON error, and nothing stays stuck', async () => {
    await fc.assert(
      fc.asyncProperty(hostileRequest, async (r) => {
        const spec = toSpec(r);
        const answer = await request(base, spec);
        expectNoServerError(answer, `${r.kind} ${JSON.stringify(r).slice(0, 200)}`, spec.method === 'HEAD');
      }),
      { numRuns: 300 },
    );
    await until(() => demo.longPoll.stats().parked === 0 && demo.longPoll.stats().interests === 0, 'the long polls to let go of everything');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  }, 120_000);

  it('after all of it, a normal client still publishes, polls from its cursor and streams', async () => {
    const first = await request(base, { method: 'POST', path: '/pub/after', headers: { 'content-type': 'text/plain' }, body: 'one' });
    expect(first.status).toBe(201);
    const { id } = JSON.parse(first.body) as { id: string };
    await request(base, { method: 'POST', path: '/pub/after', headers: { 'content-type': 'text/plain' }, body: 'two' });
    const poll = await request(base, { path: `/lp/after?cursor=${id}` });
    expect((JSON.parse(poll.body) as { messages: { data: string }[] }).messages.map((m) => m.data)).toEqual(['two']);
  });

  it('a route that names its topic never serves another from the query string (?pattern=>, ?topic=)', async () => {
    await request(base, { method: 'POST', path: '/pub/admin.secrets', headers: { 'content-type': 'text/plain' }, body: 'the launch codes' });
    const head = (await demo.broker.head()).replace(/-[0-9a-z]+$/, '-0');
    for (const extra of ['&pattern=>', '&topic=admin.secrets', '&pattern=admin.*']) {
      const answer = await request(base, { path: `/lp/public?cursor=${head}&timeout=0${extra}` });
      expectNoServerError(answer, extra);
      expect(answer.body).not.toContain('launch codes');
    }
  });

  it('WebSocket: hostile frames get error frames, the socket stays usable and the server lives', async () => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`);
    const frames: { type: string; code?: string; ref?: unknown }[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data)) as { type: string }));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const hostile = [
      deep(5000),
      `{"type":"publish","topic":"t","data":${deep(100)},"ref":1}`,
      '{"type":"publish","topic":"t","data":{"a":{"__proto__":{"polluted":1}}},"ref":2}',
      '{"type":"publish","topic":"t","data":"\\ud800","ref":3}',
      '{"type":"subscribe","sid":"s","pattern":">","ref":4}',
      '{"type":"subscribe","sid":"s2","topics":["t"],"cursor":"zzzz-zzzz","ref":5}',
      '{"type":"nope"}',
      'not json',
    ];
    for (const text of hostile) ws.send(text);
    ws.send(JSON.stringify({ type: 'ping', ref: 'last' }));
    await until(() => frames.some((f) => f.type === 'pong' && f.ref === 'last'), 'the pong after the hostile frames');
    const errors = frames.filter((f) => f.type === 'error');
    expect(errors.length).toBeGreaterThanOrEqual(5);
    for (const e of errors) expect(e.code).toMatch(/^PB_ERR_/);
    expect(frames.filter((f) => f.type === 'published')).toEqual([]);
    ws.close();
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});
