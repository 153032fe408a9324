/**
 * The adapter conformance kit: one suite, written once, that plain `node:http` and every
 * framework adapter must pass, in the spirit of backend-kit.ts. The kit makes the handlers; a
 * subject mounts them on its framework at the demo's routes and listens on 127.0.0.1:
 *
 * | route | what |
 * |---|---|
 * | `POST /pub/:topic` | publish (`maxBodyBytes` and `publishOptions` from the kit), `201` with `{ id }` |
 * | `GET /lp/:topic` | the kit's LongPollHandler |
 * | `GET /sse/:topic` | the kit's SseHandler |
 * | `/jobs`, `/jobs/*` | the kit's PollHandler (basePath `/jobs`) |
 * | `/uploads`, `/uploads/*` | the kit's UploadHandler (basePath `/uploads`) |
 *
 * Every route takes every method (the handlers answer 405 themselves). The same requests must get
 * the same statuses, the same headers (those the handlers set), the same bodies and the same event
 * streams, and a client that goes away must leave nothing behind in the handlers' stats().
 *
 * Usage: `adapterConformance('express', (h) => serveRig(createServer(app), { resources: h.resources }))`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, LongPollHandler, PollHandle, PollHandler, PubSubBroker, SseHandler } from '../../src/index.js';
import { UploadHandler } from '../../src/upload/index.js';
import { eventually, readSse, TestResources } from '../helpers.js';

/** What the kit hands a subject to mount. */
export interface KitHandlers {
  readonly broker: PubSubBroker;
  readonly longPoll: LongPollHandler;
  readonly sse: SseHandler;
  readonly poll: PollHandler<{ ms: number }, { ms: number }>;
  readonly uploads: UploadHandler;
  /** The publish route's body limit. */
  readonly maxBodyBytes: number;
  /**
   * The publish route's other options, for the subject to pass through as they are: `text/csv`
   * admitted next to the defaults, and a `parse` that refuses the body `refuse me` (a `400`) and
   * upper-cases a `text/csv` one (a string starting `csv:`).
   */
  readonly publishOptions: {
    readonly contentTypes: readonly string[];
    readonly parse: (data: unknown) => unknown;
  };
  /** Where the subject registers what it starts (`serveRig(server, { resources })`): closed after the subject, in afterAll. */
  readonly resources: TestResources;
}

/** A running subject. */
export interface KitSubject {
  /** The server's origin, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Stops the server (the kit closes the handlers). */
  readonly close: () => Promise<void>;
}

/** Where a subject departs from the reference on purpose (documented in the adapter). */
export interface KitQuirks {
  /**
   * A path that is not valid percent-encoding is refused by the framework's router before any
   * adapter code runs: still a JSON 400, but not in patchbay's error shape.
   */
  readonly routerRefusesBadPercentEncoding?: boolean;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** Named deadlines: a hang fails with what was awaited, not with the test timeout. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Deadline of ${ms} ms passed waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits on real time (the server is a real socket away) get this long before failing with what they awaited. */
const SOON = { timeoutMs: 5000 };

function headersOf(res: Response, names: readonly string[]): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const n of names) out[n] = res.headers.get(n);
  return out;
}

async function expectError(res: Response, status: number, code: string): Promise<{ error: { code: string; message: string } }> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe(JSON_TYPE);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  return body;
}

export function adapterConformance(name: string, serve: (handlers: KitHandlers) => Promise<KitSubject>, quirks: KitQuirks = {}): void {
  describe(`Adapter conformance: ${name}`, () => {
    let h: KitHandlers;
    let subject: KitSubject;
    let base: string;
    let dir: string;
    let jobs: PollHandle;
    const resources = new TestResources();

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'patchbay-adapter-kit-'));
      const broker = new PubSubBroker();
      jobs = new PollHandle({ ttlMs: 60_000 });
      h = {
        broker,
        longPoll: new LongPollHandler({ broker, maxHoldMs: 10_000 }),
        sse: new SseHandler({ broker, retryMs: 1000, lastEventIdQuery: 'lastEventId' }),
        poll: new PollHandler({
          jobs,
          basePath: '/jobs',
          maxBodyBytes: 1024,
          parse: (body) => {
            const ms = (body as { ms?: unknown } | undefined)?.ms;
            if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0) throw new InvalidArgumentError('Send { "ms": n }');
            return { ms };
          },
          run: async ({ ms }, { signal }) => {
            await sleep(ms, undefined, { signal });
            return { ms };
          },
        }),
        uploads: new UploadHandler({
          directory: dir,
          basePath: '/uploads',
          maxSizeBytes: 1024 * 1024,
          jobs,
          jobsBasePath: '/jobs',
          process: (file) => ({ size: file.size }),
        }),
        maxBodyBytes: 1024,
        publishOptions: {
          contentTypes: ['text/plain', 'application/json', 'text/csv'],
          parse: (data) => {
            if (data === 'refuse me') throw new InvalidArgumentError('The kit refuses this body');
            return typeof data === 'string' && data.startsWith('csv:') ? data.toUpperCase() : data;
          },
        },
        resources,
      };
      subject = await serve(h);
      base = subject.url;
    });

    afterAll(async () => {
      await subject?.close();
      await resources.teardown();
      await h?.longPoll.close();
      await h?.sse.close();
      await h?.poll.close();
      await h?.uploads.close();
      await jobs?.close();
      await h?.broker.close();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    const publish = async (topic: string, body: string, type = 'text/plain'): Promise<string> => {
      const res = await fetch(`${base}/pub/${topic}`, { method: 'POST', headers: { 'content-type': type }, body });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: string }).id;
    };

    describe('publish', () => {
      it('answers 201 with { id } as JSON, for text and for JSON bodies', async () => {
        const res = await fetch(`${base}/pub/kit.pub`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
        expect(res.status).toBe(201);
        expect(headersOf(res, ['content-type', 'cache-control'])).toEqual({ 'content-type': JSON_TYPE, 'cache-control': 'no-store' });
        const { id } = (await res.json()) as { id: string };
        expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
        const id2 = await publish('kit.pub', JSON.stringify({ n: 1 }), 'application/json');
        const read = await h.broker.read('kit.pub', null, 10);
        expect(read.messages.map((m) => [m.id, m.data])).toEqual([
          [id, 'hello'],
          [id2, { n: 1 }],
        ]);
      });

      it('answers bad input with JSON errors: method, body, media type, size, topic', async () => {
        const get = await fetch(`${base}/pub/kit.pub`);
        expect(get.headers.get('allow')).toBe('POST');
        await expectError(get, 405, 'PB_ERR_METHOD_NOT_ALLOWED');
        await expectError(await fetch(`${base}/pub/kit.pub`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' }), 400, 'PB_ERR_PROTOCOL');
        await expectError(await fetch(`${base}/pub/kit.pub`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: 'x' }), 415, 'PB_ERR_UNSUPPORTED_MEDIA_TYPE');
        await expectError(
          await fetch(`${base}/pub/kit.pub`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x'.repeat(h.maxBodyBytes + 1) }),
          413,
          'PB_ERR_BODY_TOO_LARGE',
        );
        await expectError(await fetch(`${base}/pub/a..b`, { method: 'POST', body: 'x' }), 400, 'PB_ERR_INVALID_ARGUMENT');
      });

      it('passes contentTypes and parse through to its PublishHandler', async () => {
        const csv = await publish('kit.pub2', 'csv:a,b', 'text/csv');
        await expectError(await fetch(`${base}/pub/kit.pub2`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'refuse me' }), 400, 'PB_ERR_INVALID_ARGUMENT');
        const read = await h.broker.read('kit.pub2', null, 10);
        expect(read.messages.map((m) => [m.id, m.data])).toEqual([[csv, 'CSV:A,B']]);
      });

      it('answers a path that is not valid percent-encoding with a JSON 400', async () => {
        const res = await fetch(`${base}/pub/%E0%A4%A`, { method: 'POST', body: 'x' });
        expect(res.status).toBe(400);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const body = (await res.json()) as { error: unknown };
        if (!quirks.routerRefusesBadPercentEncoding) expect((body.error as { code: string }).code).toBe('PB_ERR_INVALID_ARGUMENT');
      });
    });

    describe('long polling', () => {
      it('answers at once after a cursor, with the messages, the cursor header and the same JSON', async () => {
        const first = await publish('kit.lp1', 'a');
        const second = await publish('kit.lp1', 'b');
        const res = await fetch(`${base}/lp/kit.lp1?cursor=${first}`);
        expect(res.status).toBe(200);
        expect(headersOf(res, ['content-type', 'cache-control', 'patchbay-cursor', 'patchbay-gap'])).toEqual({
          'content-type': JSON_TYPE,
          'cache-control': 'no-store',
          'patchbay-cursor': second,
          'patchbay-gap': null,
        });
        expect(await res.json()).toEqual({ messages: [{ id: second, topic: 'kit.lp1', data: 'b' }], cursor: second, gap: false, more: false });
      });

      it('parks a poll until a publish wakes it', async () => {
        const cursor = await publish('kit.lp2', 'before');
        const parkedBefore = h.longPoll.stats().parked;
        const answer = fetch(`${base}/lp/kit.lp2?cursor=${cursor}`);
        await eventually(() => h.longPoll.stats().parked === parkedBefore + 1, 'the poll to park', SOON);
        const id = await publish('kit.lp2', 'wake');
        const res = await within(5000, 'the woken poll', answer);
        expect(res.status).toBe(200);
        expect(((await res.json()) as { messages: { id: string; data: unknown }[] }).messages).toEqual([{ id, topic: 'kit.lp2', data: 'wake' }]);
      });

      it('answers 204 with the cursor when the hold ends', async () => {
        const cursor = await publish('kit.lp3', 'x');
        const res = await within(5000, 'the 204', fetch(`${base}/lp/kit.lp3?cursor=${cursor}&timeout=50`));
        expect(res.status).toBe(204);
        expect(headersOf(res, ['cache-control', 'patchbay-cursor'])).toEqual({ 'cache-control': 'no-store', 'patchbay-cursor': cursor });
        expect(await res.text()).toBe('');
      });

      it('leaves 0 parked polls when the client goes away', async () => {
        const cursor = await publish('kit.lp4', 'x');
        const parked = h.longPoll.stats().parked;
        const controller = new AbortController();
        const pending = fetch(`${base}/lp/kit.lp4?cursor=${cursor}`, { signal: controller.signal }).catch(() => 'aborted');
        await eventually(() => h.longPoll.stats().parked === parked + 1, 'the poll to park', SOON);
        controller.abort();
        expect(await pending).toBe('aborted');
        await eventually(() => h.longPoll.stats().parked === parked, 'the parked poll to be dropped', SOON);
        await eventually(() => h.longPoll.stats().parked === 0 && h.longPoll.stats().interests === 0, 'no parked polls and no interests', SOON);
      });

      it('answers bad input with JSON errors: cursor, query, method', async () => {
        await expectError(await fetch(`${base}/lp/kit.lp5?cursor=@@@`), 400, 'PB_ERR_INVALID_CURSOR');
        await expectError(await fetch(`${base}/lp/kit.lp5?timeout=soon`), 400, 'PB_ERR_INVALID_ARGUMENT');
        await expectError(await fetch(`${base}/lp/a..b`), 400, 'PB_ERR_INVALID_ARGUMENT');
        const post = await fetch(`${base}/lp/kit.lp5`, { method: 'POST', body: 'x' });
        expect(post.headers.get('allow')).toBe('GET');
        await expectError(post, 405, 'PB_ERR_METHOD_NOT_ALLOWED');
      });
    });

    describe('Server-Sent Events', () => {
      it('streams events with the SSE headers, ids from publish, and replays after Last-Event-ID', async () => {
        const res = await fetch(`${base}/sse/kit.sse1`);
        expect(res.status).toBe(200);
        expect(headersOf(res, ['content-type', 'cache-control', 'x-accel-buffering'])).toEqual({
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-transform',
          'x-accel-buffering': 'no',
        });
        const events = await readSse(res);
        const a = await publish('kit.sse1', 'line one\nline two');
        const b = await publish('kit.sse1', JSON.stringify({ n: 2 }), 'application/json');
        const got = await events.take(2, 'two live events');
        expect(got.map((e) => [e.id, e.event, e.data])).toEqual([
          [a, undefined, 'line one\nline two'],
          [b, undefined, '{"n":2}'],
        ]);
        await events.close();
        const c = await publish('kit.sse1', 'three');
        const resumed = await fetch(`${base}/sse/kit.sse1`, { headers: { 'last-event-id': a } });
        expect(resumed.status).toBe(200);
        const replay = await readSse(resumed);
        expect((await replay.take(2, 'the replay')).map((e) => [e.id, e.data])).toEqual([
          [b, '{"n":2}'],
          [c, 'three'],
        ]);
        await replay.close();
      });

      it('resumes from the lastEventId query (EventSource cannot set headers on its first connection)', async () => {
        const a = await publish('kit.sse5', 'one');
        const b = await publish('kit.sse5', 'two');
        const res = await fetch(`${base}/sse/kit.sse5?lastEventId=${a}`);
        expect(res.status).toBe(200);
        const events = await readSse(res);
        expect((await events.take(1, 'the replay')).map((e) => [e.id, e.data])).toEqual([[b, 'two']]);
        await events.close();
      });

      it('delivers a burst in order and whole', async () => {
        const res = await fetch(`${base}/sse/kit.sse2`);
        const events = await readSse(res);
        const ids: string[] = [];
        const big = 'y'.repeat(900);
        for (let i = 0; i < 200; i++) ids.push((await h.broker.publish('kit.sse2', `${i}:${big}`)).id);
        const got = await events.take(200, 'the burst');
        expect(got.map((e) => e.id)).toEqual(ids);
        expect(got.every((e, i) => e.data === `${i}:${big}`)).toBe(true);
        await events.close();
      });

      it('leaves 0 streams when the client goes away', async () => {
        await eventually(() => h.sse.stats().connections === 0, 'earlier streams to close', SOON);
        const open = 0;
        const controller = new AbortController();
        const res = await fetch(`${base}/sse/kit.sse3`, { signal: controller.signal });
        expect(res.status).toBe(200);
        await eventually(() => h.sse.stats().connections === open + 1, 'the stream to open', SOON);
        controller.abort();
        await eventually(() => h.sse.stats().connections === 0, 'no open streams', SOON);
      });

      it('answers bad input with JSON errors before any stream starts', async () => {
        await expectError(await fetch(`${base}/sse/kit.sse4`, { headers: { 'last-event-id': '@@@' } }), 400, 'PB_ERR_INVALID_CURSOR');
        await expectError(await fetch(`${base}/sse/a..b`), 400, 'PB_ERR_INVALID_ARGUMENT');
        const post = await fetch(`${base}/sse/kit.sse4`, { method: 'POST', body: 'x' });
        expect(post.headers.get('allow')).toBe('GET');
        await expectError(post, 405, 'PB_ERR_METHOD_NOT_ALLOWED');
      });
    });

    describe('jobs (short polling)', () => {
      it('starts with 202 + Location + Retry-After + ETag, reads, 304s, HEADs and ends', async () => {
        const start = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":30}' });
        expect(start.status).toBe(202);
        const status = (await start.json()) as { id: string; state: string };
        expect(headersOf(start, ['content-type', 'cache-control', 'location', 'retry-after'])).toEqual({
          'content-type': JSON_TYPE,
          'cache-control': 'no-store',
          location: `/jobs/${status.id}`,
          'retry-after': '1',
        });
        expect(start.headers.get('etag')).toMatch(/^"\d+"$/);
        const done = await within(5000, 'the held read', fetch(`${base}/jobs/${status.id}`, { headers: { prefer: 'wait=5', 'if-none-match': start.headers.get('etag')! } }));
        expect(done.status).toBe(200);
        expect(done.headers.get('preference-applied')).toBe('wait=5');
        let body = (await done.json()) as { state: string; result?: unknown };
        if (body.state !== 'succeeded') {
          const again = await fetch(`${base}/jobs/${status.id}`, { headers: { prefer: 'wait=5', 'if-none-match': done.headers.get('etag')! } });
          body = (await again.json()) as { state: string; result?: unknown };
        }
        expect(body).toEqual({ id: status.id, state: 'succeeded', progress: null, result: { ms: 30 } });
        const read = await fetch(`${base}/jobs/${status.id}`);
        const etag = read.headers.get('etag')!;
        expect(headersOf(read, ['content-type', 'cache-control', 'retry-after'])).toEqual({ 'content-type': JSON_TYPE, 'cache-control': 'no-cache', 'retry-after': null });
        const text = await read.text();
        const notModified = await fetch(`${base}/jobs/${status.id}`, { headers: { 'if-none-match': etag } });
        expect(notModified.status).toBe(304);
        expect(notModified.headers.get('etag')).toBe(etag);
        const head = await fetch(`${base}/jobs/${status.id}`, { method: 'HEAD' });
        expect(head.status).toBe(200);
        expect(head.headers.get('etag')).toBe(etag);
        expect(head.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
        expect(await head.text()).toBe('');
        const result = await fetch(`${base}/jobs/${status.id}/result`);
        expect(result.status).toBe(200);
        expect(await result.text()).toBe(text);
      });

      it('cancels with DELETE, and leaves 0 held reads when a waiting client goes away', async () => {
        const start = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":60000}' });
        const { id } = (await start.json()) as { id: string };
        const controller = new AbortController();
        const held = fetch(`${base}/jobs/${id}`, { headers: { prefer: 'wait=30' }, signal: controller.signal }).catch(() => 'aborted');
        await eventually(() => h.poll.stats().held === 1, 'the read to be held', SOON);
        controller.abort();
        expect(await held).toBe('aborted');
        await eventually(() => h.poll.stats().held === 0, 'no held reads', SOON);
        const del = await fetch(`${base}/jobs/${id}`, { method: 'DELETE' });
        expect(del.status).toBe(200);
        expect(((await del.json()) as { state: string }).state).toBe('canceled');
      });

      it('answers bad input with JSON errors: id, method, body, Prefer, parse', async () => {
        await expectError(await fetch(`${base}/jobs/nope`), 404, 'PB_ERR_NOT_FOUND');
        const get = await fetch(`${base}/jobs`);
        expect(get.headers.get('allow')).toBe('POST');
        await expectError(get, 405, 'PB_ERR_METHOD_NOT_ALLOWED');
        await expectError(await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":' }), 400, 'PB_ERR_PROTOCOL');
        await expectError(await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":-1}' }), 400, 'PB_ERR_INVALID_ARGUMENT');
        await expectError(await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ms: 1, pad: 'x'.repeat(2000) }) }), 413, 'PB_ERR_BODY_TOO_LARGE');
        await expectError(await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'wait=soon' }, body: '{"ms":1}' }), 400, 'PB_ERR_INVALID_ARGUMENT');
      });
    });

    describe('uploads (tus)', () => {
      const tus = { 'tus-resumable': '1.0.0' };

      it('creates, resumes, completes and hands off to a job', async () => {
        const options = await fetch(`${base}/uploads`, { method: 'OPTIONS' });
        expect(options.status).toBe(204);
        expect(options.headers.get('tus-version')).toBe('1.0.0');
        expect(options.headers.get('tus-max-size')).toBe(String(1024 * 1024));
        const create = await fetch(`${base}/uploads`, { method: 'POST', headers: { ...tus, 'upload-length': '10', 'upload-metadata': `filename ${btoa('a.txt')}` } });
        expect(create.status).toBe(201);
        const location = create.headers.get('location')!;
        expect(location).toMatch(/^\/uploads\/[A-Za-z0-9_-]+$/);
        const part = await fetch(`${base}${location}`, { method: 'PATCH', headers: { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: '01234' });
        expect(part.status).toBe(204);
        expect(part.headers.get('upload-offset')).toBe('5');
        const head = await fetch(`${base}${location}`, { method: 'HEAD', headers: tus });
        expect(head.status).toBe(200);
        expect(headersOf(head, ['upload-offset', 'upload-length'])).toEqual({ 'upload-offset': '5', 'upload-length': '10' });
        const conflict = await fetch(`${base}${location}`, { method: 'PATCH', headers: { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: '01234' });
        await expectError(conflict, 409, 'PB_ERR_PROTOCOL');
        const last = await fetch(`${base}${location}`, { method: 'PATCH', headers: { ...tus, 'upload-offset': '5', 'content-type': 'application/offset+octet-stream' }, body: '56789' });
        expect(last.status).toBe(204);
        expect(last.headers.get('upload-offset')).toBe('10');
        const job = last.headers.get('patchbay-job-location')!;
        expect(job).toMatch(/^\/jobs\/[A-Za-z0-9_-]+$/);
        const status = await fetch(`${base}${job}`, { headers: { prefer: 'wait=5' } });
        expect(((await status.json()) as { result?: unknown }).result).toEqual({ size: 10 });
      });

      it('answers protocol errors as JSON: version, unknown or unsafe id', async () => {
        await expectError(await fetch(`${base}/uploads`, { method: 'POST', headers: { 'upload-length': '1' } }), 412, 'PB_ERR_PROTOCOL');
        const patch = { method: 'PATCH', headers: { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'x' };
        await expectError(await fetch(`${base}/uploads/nope`, patch), 404, 'PB_ERR_NOT_FOUND');
        await expectError(await fetch(`${base}/uploads/a%2Fb`, patch), 404, 'PB_ERR_NOT_FOUND');
      });
    });

    // Issue 15: what one hostile client sends, through this adapter. Each answer is a 4xx with a
    // JSON body, nothing is stored, and an SSE client on the topic and a normal publish after it
    // are unaffected (the process would be gone if any of it escaped).
    describe('hostile input', () => {
      it('refuses bodies no transport can carry (300 deep, __proto__, lone surrogates) on /pub and /jobs, and a reader on the topic lives on', async () => {
        const stream = await fetch(`${base}/sse/kit.hostile`);
        expect(stream.status).toBe(200);
        const events = await readSse(stream);
        const before = h.broker.stats().published;
        const bodies = ['['.repeat(300) + ']'.repeat(300), '{"a":[{"__proto__":{"polluted":1}}]}', '"\\ud800"', '{"k":["\\udfff"]}'];
        for (const body of bodies) {
          const pub = await fetch(`${base}/pub/kit.hostile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          expect(pub.status, body.slice(0, 20)).toBe(400);
          expect(((await pub.json()) as { error: { code: string } }).error.code).toMatch(/^PB_ERR_(PROTOCOL|INVALID_ARGUMENT)$/);
        }
        const job = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":0,"x":{"__proto__":1}}' });
        await expectError(job, 400, 'PB_ERR_PROTOCOL');
        expect(h.broker.stats().published).toBe(before);
        const id = await publish('kit.hostile', 'after');
        const got = (await events.take(1, 'the message after the hostile ones')).filter((e) => e.data === 'after');
        expect(got.map((e) => e.id)).toEqual([id]);
        await events.close();
        expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
      });

      it('refuses a cross-site publish (a page on another origin, text/plain needs no preflight) with 403; a request without Origin still publishes', async () => {
        const before = h.broker.stats().published;
        for (const origin of ['https://evil.example', 'null']) {
          const res = await fetch(`${base}/pub/kit.csrf`, { method: 'POST', headers: { 'content-type': 'text/plain', origin }, body: 'forged' });
          await expectError(res, 403, 'PB_ERR_FORBIDDEN');
        }
        expect(h.broker.stats().published).toBe(before);
        const own = await fetch(`${base}/pub/kit.csrf`, { method: 'POST', headers: { 'content-type': 'text/plain', origin: base }, body: 'mine' });
        expect(own.status).toBe(201);
        await publish('kit.csrf', 'tool');
      });
    });
  });
}
