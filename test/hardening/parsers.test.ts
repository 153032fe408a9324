/**
 * Every parser of patchbay, fuzzed with fast-check: each input either parses to what it means or
 * is refused with the documented typed error (a PatchbayError with the right code) or a 4xx with a
 * JSON body. No other exception escapes, nothing hangs (every request has a deadline, every wait
 * is bounded), and a refused input stores nothing (the primitives' stats are unchanged).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ErrorCodes,
  FrameDecoder,
  InvalidArgumentError,
  InvalidCursorError,
  parseCursor,
  parsePattern,
  parseTopic,
  PatchbayError,
  PollHandle,
  PollHandler,
  ProtocolError,
  PubSubBroker,
  SseHandler,
} from '../../src/index.js';
import { encodeFrame } from '../../src/sidecar/framing.js';
import { retryAfterMs } from '../../src/client/transport.js';
import { parseIdempotencyKey, parseIfNoneMatch, parsePrefer } from '../../src/poll/headers.js';
import { UploadHandler } from '../../src/upload/index.js';
import { isRefused, parseClientFrame } from '../../src/ws/protocol.js';
import { perTest, serveRig, until } from '../helpers.js';
import { Client, rig as wsRig } from '../ws/helpers.js';
import { errorBody, headerChar, request } from './http.js';

afterEach(() => {
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
});

/** Runs `parse`; returns its value, or the error when it is a PatchbayError with `code`. Anything else fails the test. */
function outcome<T>(parse: () => T, code: string): { ok: true; value: T } | { ok: false; error: PatchbayError } {
  try {
    return { ok: true, value: parse() };
  } catch (error) {
    if (!(error instanceof PatchbayError)) throw new Error(`A non-patchbay error escaped: ${String(error)}`, { cause: error });
    expect(error.code).toBe(code);
    return { ok: false, error };
  }
}

const ID = /^([0-9a-z]{1,16})-([0-9a-z]{1,11})$/;
const base36 = fc.string({ unit: fc.constantFrom(...'0123456789abcdefghijklmnopqrstuvwxyz'), minLength: 1, maxLength: 12 });
const cursorLike = fc.oneof(
  fc.tuple(base36, base36).map(([a, b]) => `${a}-${b}`),
  fc.tuple(base36, fc.constantFrom('-', '--', '_', ' -', '-\u0000', '.'), base36).map(([a, s, b]) => `${a}${s}${b}`),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);
const anything = fc.oneof(fc.anything(), fc.constantFrom(Symbol('x'), 1n, () => 1, new Map(), Number.NaN));

describe('cursors: parseCursor', () => {
  it('parses exactly the ids the server issues and refuses the rest with PB_ERR_INVALID_CURSOR', () => {
    fc.assert(
      fc.property(cursorLike, (text) => {
        const r = outcome(() => parseCursor(text), ErrorCodes.INVALID_CURSOR);
        const m = ID.exec(text);
        if (r.ok) {
          expect(m).not.toBeNull();
          expect(r.value).toEqual({ epoch: m![1], seq: Number.parseInt(m![2]!, 36) });
          expect(Number.isSafeInteger(r.value.seq)).toBe(true);
        } else {
          expect(r.error).toBeInstanceOf(InvalidCursorError);
          // Only a valid shape whose number is too large for a safe integer is refused besides the malformed.
          if (m !== null) expect(Number.isSafeInteger(Number.parseInt(m[2]!, 36))).toBe(false);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('refuses every non-string with PB_ERR_INVALID_CURSOR', () => {
    fc.assert(
      fc.property(anything, (value) => {
        fc.pre(typeof value !== 'string');
        const r = outcome(() => parseCursor(value), ErrorCodes.INVALID_CURSOR);
        expect(r.ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});

const TOKEN = /^[A-Za-z0-9_\-~:@]+$/;
const topicLike = fc.oneof(
  fc
    .array(fc.oneof(fc.string({ unit: fc.constantFrom(...'abcXYZ019_-~:@'), minLength: 1, maxLength: 6 }), fc.constantFrom('*', '>', '', '__proto__', 'constructor', 'prototype', '_INBOX')), {
      minLength: 1,
      maxLength: 36,
    })
    .map((tokens) => tokens.join('.')),
  fc.string({ maxLength: 300 }),
  fc.string({ unit: fc.constantFrom(...'a.*>\u0000\n \u00e9/'), maxLength: 20 }),
);

describe('topic names and patterns', () => {
  it('parseTopic returns the tokens of a valid topic and refuses the rest with PB_ERR_INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(topicLike, (topic) => {
        const r = outcome(() => parseTopic(topic), ErrorCodes.INVALID_ARGUMENT);
        const tokens = topic.split('.');
        const valid = topic.length > 0 && topic.length <= 256 && tokens.length <= 32 && tokens.every((t) => TOKEN.test(t));
        expect(r.ok).toBe(valid);
        if (r.ok) expect(r.value).toEqual(tokens);
        else expect(r.error).toBeInstanceOf(InvalidArgumentError);
      }),
      { numRuns: 2_000 },
    );
  });

  it('parsePattern takes * anywhere and > last, refuses the rest and reply inboxes', () => {
    fc.assert(
      fc.property(topicLike, (pattern) => {
        const r = outcome(() => parsePattern(pattern), ErrorCodes.INVALID_ARGUMENT);
        const tokens = pattern.split('.');
        const valid =
          pattern.length > 0 &&
          pattern.length <= 256 &&
          tokens.length <= 32 &&
          tokens.every((t, i) => t === '*' || (t === '>' && i === tokens.length - 1) || TOKEN.test(t)) &&
          tokens[0] !== '_INBOX';
        expect(r.ok).toBe(valid);
        if (r.ok) expect(r.value).toEqual(tokens);
      }),
      { numRuns: 2_000 },
    );
  });

  it('the broker refuses bad topics and patterns with the typed error and stores nothing', async () => {
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    let published = 0;
    let subscribed = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(topicLike, anything), async (topic) => {
        let topicOk = true;
        try {
          parseTopic(topic);
        } catch {
          topicOk = false;
        }
        try {
          await broker.publish(topic as string, { n: 1 });
          expect(topicOk).toBe(true);
          published++;
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidArgumentError);
          expect(topicOk).toBe(false);
        }
        try {
          const sub = await broker.subscribe(topic as string, { onMessage: () => {} });
          subscribed++;
          await sub.close();
        } catch (error) {
          expect(error).toBeInstanceOf(PatchbayError);
          expect((error as PatchbayError).code).toBe(ErrorCodes.INVALID_ARGUMENT);
        }
        expect(broker.stats().published).toBe(published);
        expect(broker.stats().subscriptions).toBe(0);
      }),
      { numRuns: 500 },
    );
    expect(subscribed).toBeGreaterThan(0);
    expect(published).toBeGreaterThan(0);
  });
});

describe('poll headers: Prefer, Idempotency-Key, If-None-Match', () => {
  const headerText = fc.oneof(
    fc.string({ unit: headerChar, maxLength: 60 }),
    fc.tuple(fc.constantFrom('wait=', 'WAIT = ', 'respond-async, wait=', 'wait="', 'x="a,b", wait='), fc.string({ unit: fc.constantFrom(...'0123456789"x -;,'), maxLength: 14 })).map(([a, b]) => a + b),
  );

  it('parsePrefer reads wait and respond-async or refuses with PB_ERR_INVALID_ARGUMENT', () => {
    fc.assert(
      fc.property(headerText, (header) => {
        const r = outcome(() => parsePrefer(header), ErrorCodes.INVALID_ARGUMENT);
        if (!r.ok) return;
        expect(typeof r.value.respondAsync).toBe('boolean');
        if (r.value.wait !== undefined) {
          expect(Number.isSafeInteger(r.value.wait) && r.value.wait >= 0 && r.value.wait <= 1e9).toBe(true);
          expect(header.toLowerCase()).toContain('wait');
        }
        if (r.value.respondAsync) expect(header.toLowerCase()).toContain('respond-async');
      }),
      { numRuns: 2_000 },
    );
  });

  it('parseIdempotencyKey returns 1-255 printable ASCII characters or refuses with PB_ERR_INVALID_ARGUMENT', () => {
    const keys = fc.oneof(fc.constant(undefined), fc.array(fc.oneof(headerText, fc.string({ maxLength: 300 })), { maxLength: 3 }));
    fc.assert(
      fc.property(keys, (values) => {
        const r = outcome(() => parseIdempotencyKey(values), ErrorCodes.INVALID_ARGUMENT);
        if (!r.ok) return;
        if (values === undefined || values.length === 0) {
          expect(r.value).toBeUndefined();
          return;
        }
        expect(values).toHaveLength(1);
        expect(r.value).toMatch(/^[\x20-\x7e]{1,255}$/);
        const raw = values[0]!.trim();
        if (!raw.startsWith('"')) expect(r.value).toBe(raw);
      }),
      { numRuns: 2_000 },
    );
  });

  it('parseIfNoneMatch never throws and returns only the tags it was given', () => {
    const tags = fc.oneof(
      headerText,
      fc.array(fc.tuple(fc.boolean(), fc.nat({ max: 1e6 })), { maxLength: 40 }).map((list) => list.map(([weak, n]) => `${weak ? 'W/' : ''}"${n}"`).join(', ')),
    );
    fc.assert(
      fc.property(tags, (header) => {
        const value = parseIfNoneMatch(header);
        const list = value === undefined ? [] : typeof value === 'number' ? [value] : value;
        expect(list.length).toBeLessThanOrEqual(32);
        for (const n of list) {
          expect(Number.isSafeInteger(n)).toBe(true);
          if (n !== -1) expect(header).toContain(`"${n}"`);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('POST /jobs through a real request: a bad Prefer or Idempotency-Key is a 400 JSON refusal that starts no job', async () => {
    const jobs = new PollHandle();
    const handler = new PollHandler<unknown>({ jobs, run: () => 'done' });
    perTest.defer(async () => {
      await handler.close();
      await jobs.close();
    });
    const { url: base } = await serveRig((req, res) => void handler.handle(req, res));
    await fc.assert(
      fc.asyncProperty(fc.option(headerText, { nil: undefined }), fc.option(fc.array(headerText, { minLength: 1, maxLength: 2 }), { nil: undefined }), async (prefer, keys) => {
        // node:http trims the value it reads: the parsers see the trimmed text.
        const trim = (s: string) => s.replace(/^[\t ]+|[\t ]+$/g, '');
        let valid = true;
        try {
          parsePrefer(prefer === undefined ? undefined : trim(prefer));
          parseIdempotencyKey(keys?.map(trim));
        } catch {
          valid = false;
        }
        const started = jobs.stats().started;
        const headers: Record<string, string | string[]> = { 'content-type': 'application/json' };
        if (prefer !== undefined) headers['prefer'] = prefer;
        if (keys !== undefined) headers['idempotency-key'] = keys.length === 1 ? keys[0]! : keys;
        const answer = await request(base, { method: 'POST', path: '/jobs', headers, body: '{}' });
        if (valid) {
          expect(answer.status, answer.body).toBeLessThan(400);
        } else {
          expect(answer.status).toBe(400);
          expect(errorBody(answer).code).toBe(ErrorCodes.INVALID_ARGUMENT);
          expect(jobs.stats().started).toBe(started);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('Retry-After: retryAfterMs', () => {
  it('reads delta-seconds and HTTP-dates, clamps to an hour, and ignores anything else', () => {
    const values = fc.oneof(
      fc.string({ unit: headerChar, maxLength: 40 }),
      fc.bigInt({ min: 0n, max: 10n ** 30n }).map(String),
      fc.date({ min: new Date(0), max: new Date(8e15), noInvalidDate: true }).map((d) => d.toUTCString()),
      fc.tuple(fc.constantFrom('Mon, ', 'Sunday, ', 'Thu ', 'Fri,'), fc.string({ maxLength: 30 })).map(([a, b]) => a + b),
    );
    fc.assert(
      fc.property(values, fc.option(fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()), { nil: undefined }), (value, date) => {
        let headers: Headers;
        try {
          headers = new Headers({ 'retry-after': value, ...(date === undefined ? {} : { date }) });
        } catch {
          return; // not a value fetch would ever hand over
        }
        const ms = retryAfterMs(headers, () => 1_700_000_000_000);
        const trimmed = value.trim();
        if (/^\d+$/.test(trimmed)) expect(ms).toBe(Math.min(Number(trimmed) * 1000, 3_600_000));
        else if (ms !== undefined) {
          expect(Number.isInteger(ms) && ms >= 0 && ms <= 3_600_000).toBe(true);
          expect(Number.isNaN(Date.parse(trimmed))).toBe(false);
        }
      }),
      { numRuns: 3_000 },
    );
  });
});

describe('sidecar frames: FrameDecoder', () => {
  /** What a decoder must do with these bytes: the frames before the first bad header, and whether it fails. */
  function reference(bytes: Buffer, max: number): { frames: Buffer[]; fails: boolean } {
    const frames: Buffer[] = [];
    let at = 0;
    while (bytes.length - at >= 4) {
      const length = bytes.readUInt32BE(at);
      if (length === 0 || length > max) return { frames, fails: true };
      if (bytes.length - at < 4 + length) break;
      frames.push(bytes.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    return { frames, fails: false };
  }

  it('decodes valid frames across any chunking, fails with PB_ERR_PROTOCOL at the first bad header, and buffers at most one frame', () => {
    const max = 48;
    const piece = fc.oneof(
      { weight: 4, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 60 }).map((p) => encodeFrame(p)) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)) },
      { weight: 1, arbitrary: fc.constantFrom(Buffer.from([0, 0, 0, 0]), Buffer.from([255, 255, 255, 255]), Buffer.from([0, 0, 0, 49])) },
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.array(fc.nat({ max: 600 }), { maxLength: 8 }), (pieces, cuts) => {
        const bytes = Buffer.concat(pieces);
        const expected = reference(bytes, max);
        const decoder = new FrameDecoder({ maxFrameBytes: max });
        const got: Buffer[] = [];
        const points = [...new Set(cuts.map((c) => Math.min(c, bytes.length)))].sort((a, b) => a - b);
        let failed: unknown;
        let from = 0;
        for (const to of [...points, bytes.length]) {
          try {
            decoder.push(bytes.subarray(from, to), (payload) => got.push(Buffer.from(payload)));
          } catch (error) {
            failed = error;
            break;
          }
          expect(decoder.bufferedBytes).toBeLessThanOrEqual(4 + max);
          from = to;
        }
        expect(got).toEqual(expected.frames);
        if (expected.fails) {
          expect(failed).toBeInstanceOf(ProtocolError);
          expect((failed as ProtocolError).code).toBe(ErrorCodes.PROTOCOL);
          // Spent: every later push throws the same error and delivers nothing.
          expect(() => decoder.push(encodeFrame('x'), () => got.push(Buffer.alloc(0)))).toThrow(ProtocolError);
          expect(got).toEqual(expected.frames);
        } else {
          expect(failed).toBeUndefined();
        }
      }),
      { numRuns: 1_500 },
    );
  });
});

describe('WebSocket messages', () => {
  const TYPES = ['subscribe', 'unsubscribe', 'publish', 'ping'];
  const fieldValue = fc.oneof(fc.string({ maxLength: 12 }), fc.integer(), fc.constant(null), fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }), fc.json({ maxDepth: 1 }).map((j) => JSON.parse(j) as unknown));
  const frameish = fc
    .dictionary(
      fc.constantFrom('type', 'sid', 'ref', 'topic', 'topics', 'pattern', 'cursor', 'data', '__proto__', 'constructor', 'prototype', 'extra'),
      fieldValue,
      { maxKeys: 6 },
    )
    .chain((fields) => fc.constantFrom(...TYPES, 'nope').map((type) => ({ type, ...fields })))
    .map((frame) => JSON.stringify(frame).replace('"extra"', '"__proto__"'));
  const text = fc.oneof(frameish, fc.json(), fc.string({ maxLength: 60 }), fc.constantFrom('{"__proto__":{"polluted":1},"type":"ping"}', '{"type":"ping","constructor":{"prototype":{"polluted":1}}}', '[]', 'null', '{'));

  it('parseClientFrame never throws: a frame or a refusal with PB_ERR_PROTOCOL / PB_ERR_BODY_TOO_LARGE', () => {
    fc.assert(
      fc.property(text, fc.boolean(), (payload, binary) => {
        const result = parseClientFrame(Buffer.from(payload), binary, 200);
        if (isRefused(result)) {
          expect(result.error).toBeInstanceOf(PatchbayError);
          expect([ErrorCodes.PROTOCOL, ErrorCodes.BODY_TOO_LARGE]).toContain(result.error.code);
        } else {
          expect(binary).toBe(false);
          expect(TYPES).toContain(result.type);
          const parsed = JSON.parse(payload) as Record<string, unknown>;
          expect(parsed['type']).toBe(result.type);
        }
      }),
      { numRuns: 3_000 },
    );
  });

  it('a real connection answers a stream of hostile frames with error frames and stays usable; refused frames store nothing', async () => {
    const r = await wsRig();
    const client = await Client.open(r);
    const samples = fc.sample(fc.oneof(text, fc.constant('x'.repeat(70_000))), { numRuns: 300, seed: 42 });
    let before = 0;
    for (const payload of samples) client.send(payload);
    const done = await client.request({ type: 'ping' });
    expect(done.type).toBe('pong');
    expect(client.closed).toBeUndefined();
    expect(r.ws.stats().connections).toBe(1);
    const published = client.frames.filter((f) => f.type === 'published').length;
    const subscribed = client.frames.filter((f) => f.type === 'subscribed').length;
    const unsubscribed = client.frames.filter((f) => f.type === 'unsubscribed').length;
    expect(r.broker.stats().published).toBe(published);
    expect(r.broker.stats().subscriptions).toBe(subscribed - unsubscribed);
    for (const f of client.frames.filter((x) => x.type === 'error')) {
      expect(typeof (f as Record<string, unknown>)['code']).toBe('string');
      expect(String((f as Record<string, unknown>)['code'])).toMatch(/^PB_ERR_/);
    }
    before = r.ws.stats().refusedFrames;
    expect(before).toBeGreaterThan(0);
    client.socket.terminate();
    await until(() => r.ws.stats().connections === 0 && r.broker.stats().subscriptions === 0, 'the connection and its subscriptions to go');
  });
});

describe('Last-Event-ID through a real SSE request', () => {
  it('a valid id resumes (200), anything else is a 400 JSON PB_ERR_INVALID_CURSOR, and no subscription is left', async () => {
    const broker = new PubSubBroker();
    const sse = new SseHandler({ broker, lastEventIdQuery: 'lastEventId', queryTarget: true });
    perTest.defer(async () => {
      await sse.close();
      await broker.close();
    });
    const { url: base } = await serveRig((req, res) => void sse.handle(req, res));
    const issued = (await broker.publish('news', 'hello')).id;
    const ids = fc.oneof(cursorLike, fc.string({ unit: headerChar, maxLength: 40 }), fc.constant(issued));
    await fc.assert(
      fc.asyncProperty(ids, fc.boolean(), async (id, inQuery) => {
        // node:http sends header values as Latin-1 and refuses CR, LF, NUL and other controls.
        fc.pre(inQuery || /^[\t\x20-\x7e\x80-\xff]*$/.test(id));
        const trimmed = inQuery ? id : id.replace(/^[\t ]+|[\t ]+$/g, '');
        const answer = await request(
          base,
          inQuery
            ? { path: `/?topic=news&lastEventId=${encodeURIComponent(id)}`, headOnly: true }
            : { path: '/?topic=news', headers: { 'last-event-id': id }, headOnly: true },
        );
        let valid = trimmed === '';
        try {
          if (!valid) parseCursor(trimmed);
          valid = true;
        } catch {
          // refused below
        }
        if (valid) expect(answer.status).toBe(200);
        else {
          expect(answer.status).toBe(400);
          expect(errorBody(answer).code).toBe(ErrorCodes.INVALID_CURSOR);
        }
      }),
      { numRuns: 150 },
    );
    await until(() => broker.stats().subscriptions === 0 && sse.stats().connections === 0, 'every stream to be gone');
  });
});

describe('uploads through real requests', () => {
  async function uploadRig() {
    const dir = mkdtempSync(join(tmpdir(), 'patchbay-hardening-'));
    const uploads = new UploadHandler({ directory: join(dir, 'store'), maxSizeBytes: 1_000 });
    perTest.defer(async () => {
      await uploads.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const { url: base } = await serveRig((req, res) => void uploads.handle(req, res));
    return { base, uploads, store: join(dir, 'store') };
  }
  const files = (store: string) => {
    try {
      return readdirSync(store).length;
    } catch {
      return 0;
    }
  };

  it('hostile ids (traversal, encodings, NUL) are 404 JSON refusals and touch no file', async () => {
    const { base, uploads, store } = await uploadRig();
    const ids = fc.oneof(
      fc.string({ maxLength: 30 }).map(encodeURIComponent),
      fc.constantFrom('..', '%2e%2e', '..%2f..%2fetc%2fpasswd', '%00', 'a%00b', '%2F', '.', 'a/../b', '%252e%252e', 'x'.repeat(129), '__proto__', 'constructor'),
      fc.string({ unit: fc.constantFrom(...'ab./%2e0'), maxLength: 12 }),
    );
    await fc.assert(
      fc.asyncProperty(ids, fc.constantFrom('HEAD', 'PATCH', 'DELETE', 'GET'), async (id, method) => {
        const answer = await request(base, {
          method,
          path: `/uploads/${id}`,
          headers: { 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
          body: method === 'PATCH' ? 'abc' : undefined,
        });
        expect(answer.status, `${method} ${id}`).toBeGreaterThanOrEqual(400);
        expect(answer.status, `${method} ${id}`).toBeLessThan(500);
        if (method !== 'HEAD') expect(errorBody(answer).code).toMatch(/^PB_ERR_/);
      }),
      { numRuns: 200 },
    );
    expect(uploads.stats().active).toBe(0);
    expect(files(store)).toBe(0);
  });

  it('fuzzed creation headers: 201 for a valid upload, else a 4xx JSON refusal that stores nothing', async () => {
    const { base, uploads } = await uploadRig();
    const lengths = fc.oneof(fc.nat({ max: 2_000 }).map(String), fc.string({ unit: headerChar, maxLength: 12 }), fc.constantFrom('-1', '1e3', '0x10', ' 5', '99999999999999999999', ''));
    let created = 0;
    await fc.assert(
      fc.asyncProperty(lengths, fc.option(fc.string({ unit: headerChar, maxLength: 30 }), { nil: undefined }), fc.constantFrom('1.0.0', '0.2.2', 'x'), async (length, metadata, version) => {
        const headers: Record<string, string> = { 'tus-resumable': version, 'upload-length': length };
        if (metadata !== undefined) headers['upload-metadata'] = metadata;
        const answer = await request(base, { method: 'POST', path: '/uploads', headers });
        if (answer.status === 201) {
          created++;
          expect(answer.headers.location).toMatch(/^\/uploads\/[A-Za-z0-9_-]+$/);
        } else {
          expect(answer.status, `${length} ${metadata} ${version}: ${answer.body}`).toBeGreaterThanOrEqual(400);
          expect(answer.status).toBeLessThan(500);
          expect(errorBody(answer).code).toMatch(/^PB_ERR_/);
        }
        const trimmed = length.replace(/^[\t ]+|[\t ]+$/g, '');
        if (answer.status === 201) expect(version === '1.0.0' && /^\d+$/.test(trimmed) && Number(trimmed) <= 1_000).toBe(true);
        expect(uploads.stats().active).toBeLessThanOrEqual(created);
      }),
      { numRuns: 150 },
    );
    expect(created).toBeGreaterThan(0);
  });

  it('fuzzed Upload-Offset on PATCH: only the right offset writes; the rest are 4xx JSON and the offset stays', async () => {
    const { base } = await uploadRig();
    const create = await request(base, { method: 'POST', path: '/uploads', headers: { 'tus-resumable': '1.0.0', 'upload-length': '100' } });
    expect(create.status).toBe(201);
    const path = create.headers.location!;
    let offset = 0;
    const offsets = fc.oneof(fc.nat({ max: 120 }).map(String), fc.string({ unit: headerChar, maxLength: 8 }), fc.constantFrom('-0', '+1', '1.0', ''));
    await fc.assert(
      fc.asyncProperty(offsets, fc.nat({ max: 4 }), async (sent, size) => {
        const answer = await request(base, {
          method: 'PATCH',
          path,
          headers: { 'tus-resumable': '1.0.0', 'upload-offset': sent, 'content-type': 'application/offset+octet-stream' },
          body: Buffer.alloc(size, 97),
        });
        if (answer.status === 204) {
          expect(sent.trim()).toBe(String(offset));
          offset += size;
          expect(answer.headers['upload-offset']).toBe(String(offset));
        } else {
          expect(answer.status, `${sent}: ${answer.body}`).toBeGreaterThanOrEqual(400);
          expect(answer.status).toBeLessThan(500);
          expect(errorBody(answer).code).toMatch(/^PB_ERR_/);
        }
        const head = await request(base, { method: 'HEAD', path, headers: { 'tus-resumable': '1.0.0' } });
        expect(head.headers['upload-offset']).toBe(String(offset));
      }),
      { numRuns: 120 },
    );
  });
});
