/**
 * docs/limits.md, checked: each documented limit answers as documented (status, JSON error code,
 * and nothing stored), on real servers at 127.0.0.1:0. Defaults are used where hitting them is
 * cheap; elsewhere a small value is configured and the default is checked against the table.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_BODY_BYTES,
  ErrorCodes,
  LongPollHandler,
  MAX_TOPIC_LENGTH,
  MAX_TOPIC_TOKENS,
  PollHandle,
  PollHandler,
  PubSubBroker,
  readBody,
  sendError,
  sendJson,
} from '../../src/index.js';
import { MAX_IDEMPOTENCY_KEY_LENGTH } from '../../src/poll/headers.js';
import { UploadHandler } from '../../src/upload/index.js';
import { Client, rig as wsRig } from '../ws/helpers.js';
import { perTest, serveRig } from '../helpers.js';
import { errorBody, request } from './http.js';

describe('HTTP limits (docs/limits.md)', () => {
  it('headers and URL over 16 KiB: 431 from Node, the handler never runs', async () => {
    let ran = 0;
    const { url: base } = await serveRig((_req, res) => {
      ran++;
      res.end();
    });
    const longHeader = await request(base, { path: '/', headers: { 'x-big': 'a'.repeat(17 * 1024) } });
    const longUrl = await request(base, { path: `/?q=${'a'.repeat(17 * 1024)}` });
    expect([longHeader.status, longUrl.status]).toEqual([431, 431]);
    expect(ran).toBe(0);
  });

  it('a body over readBody’s 1 MiB default: 413 PB_ERR_BODY_TOO_LARGE, nothing published', async () => {
    expect(DEFAULT_MAX_BODY_BYTES).toBe(1024 * 1024);
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    const { url: base } = await serveRig((req, res) => {
      readBody(req)
        .then(async (body) => sendJson(res, 201, { id: (await broker.publish('t', body.toString())).id }))
        .catch((error: unknown) => sendError(res, error));
    });
    const ok = await request(base, { method: 'POST', path: '/', body: 'a'.repeat(DEFAULT_MAX_BODY_BYTES) });
    expect(ok.status).toBe(201);
    const tooBig = await request(base, { method: 'POST', path: '/', body: 'a'.repeat(DEFAULT_MAX_BODY_BYTES + 1) });
    expect(tooBig.status).toBe(413);
    expect(errorBody(tooBig).code).toBe(ErrorCodes.BODY_TOO_LARGE);
    expect(broker.stats().published).toBe(1);
  });

  it('jobs: a start body over 64 KiB is 413; past maxLiveJobs a start is 503 PB_ERR_CAPACITY with Retry-After: 1; a bad Idempotency-Key is 400', async () => {
    const jobs = new PollHandle({ maxLiveJobs: 2 });
    const handler = new PollHandler<unknown>({ jobs, run: (_input, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)) });
    perTest.defer(async () => {
      await handler.close();
      await jobs.close();
    });
    const { url: base } = await serveRig((req, res) => void handler.handle(req, res));
    const json = { 'content-type': 'application/json' };
    const big = await request(base, { method: 'POST', path: '/jobs', headers: json, body: JSON.stringify({ a: 'x'.repeat(65_536) }) });
    expect(big.status).toBe(413);
    expect(errorBody(big).code).toBe(ErrorCodes.BODY_TOO_LARGE);
    const key = await request(base, { method: 'POST', path: '/jobs', headers: { ...json, 'idempotency-key': 'k'.repeat(MAX_IDEMPOTENCY_KEY_LENGTH + 1) }, body: '{}' });
    expect(key.status).toBe(400);
    expect(errorBody(key).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect(MAX_IDEMPOTENCY_KEY_LENGTH).toBe(255);
    expect(jobs.stats().started).toBe(0);
    for (let i = 0; i < 2; i++) expect((await request(base, { method: 'POST', path: '/jobs', headers: json, body: '{}' })).status).toBe(202);
    const full = await request(base, { method: 'POST', path: '/jobs', headers: json, body: '{}' });
    expect(full.status).toBe(503);
    expect(full.headers['retry-after']).toBe('1');
    expect(errorBody(full).code).toBe(ErrorCodes.CAPACITY);
    expect(jobs.stats().started).toBe(2);
  });

  it('topics: over 256 characters or 32 tokens is 400 PB_ERR_INVALID_ARGUMENT; a long poll’s limit is clamped to maxBatchMessages (100)', async () => {
    expect([MAX_TOPIC_LENGTH, MAX_TOPIC_TOKENS]).toEqual([256, 32]);
    const broker = new PubSubBroker();
    const lp = new LongPollHandler({ broker, queryTarget: true });
    perTest.defer(async () => {
      await lp.close();
      await broker.close();
    });
    const { url: base } = await serveRig((req, res) => void lp.handle(req, res));
    for (const topic of ['a'.repeat(MAX_TOPIC_LENGTH + 1), Array.from({ length: MAX_TOPIC_TOKENS + 1 }, () => 'a').join('.')]) {
      const answer = await request(base, { path: `/?topic=${topic}&timeout=0` });
      expect(answer.status).toBe(400);
      expect(errorBody(answer).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    }
    const first = (await broker.publish('t', 0)).id;
    for (let i = 1; i < 150; i++) await broker.publish('t', i);
    const answer = await request(base, { path: `/?topic=t&cursor=${first}&limit=1000` });
    expect(answer.status).toBe(200);
    const body = JSON.parse(answer.body) as { messages: unknown[]; more: boolean };
    expect(body.messages).toHaveLength(100);
    expect(body.more).toBe(true);
  });

  it('uploads: over maxSizeBytes is 413; past maxActiveUploads a create is 503 PB_ERR_CAPACITY', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'patchbay-limits-'));
    const uploads = new UploadHandler({ directory: join(dir, 'store'), maxSizeBytes: 10, maxActiveUploads: 1 });
    perTest.defer(async () => {
      await uploads.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const { url: base } = await serveRig((req, res) => void uploads.handle(req, res));
    const tus = { 'tus-resumable': '1.0.0' };
    const big = await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '11' } });
    expect(big.status).toBe(413);
    expect(errorBody(big).code).toBe(ErrorCodes.BODY_TOO_LARGE);
    expect((await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '10' } })).status).toBe(201);
    const full = await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '10' } });
    expect(full.status).toBe(503);
    expect(errorBody(full).code).toBe(ErrorCodes.CAPACITY);
    expect(uploads.stats()).toMatchObject({ active: 1, refused: 1 });
  });
});

describe('WebSocket limits (docs/limits.md)', () => {
  it('a message over 64 KiB is an error frame PB_ERR_BODY_TOO_LARGE; subscriptions past maxSubscriptions are PB_ERR_OVERFLOW; over 32 topics PB_ERR_INVALID_ARGUMENT', async () => {
    const r = await wsRig({ maxSubscriptions: 2 });
    const client = await Client.open(r);
    client.send(JSON.stringify({ type: 'ping', ref: 'big', pad: 'x'.repeat(65_536) }));
    const big = await client.next((f) => f.type === 'error', 'the refusal of the big frame');
    expect((big as Record<string, unknown>)['code']).toBe(ErrorCodes.BODY_TOO_LARGE);
    expect((await client.subscribe('a', { topics: ['a'] })).type).toBe('subscribed');
    expect((await client.subscribe('b', { topics: ['b'] })).type).toBe('subscribed');
    const third = await client.subscribe('c', { topics: ['c'] });
    expect(third).toMatchObject({ type: 'error', code: ErrorCodes.OVERFLOW });
    await client.request({ type: 'unsubscribe', sid: 'b' });
    const many = await client.subscribe('d', { topics: Array.from({ length: 33 }, (_, i) => `t${i}`) });
    expect(many).toMatchObject({ type: 'error', code: ErrorCodes.INVALID_ARGUMENT });
    expect(r.ws.stats().subscriptions).toBe(1);
    expect(client.closed).toBeUndefined();
  });
});
