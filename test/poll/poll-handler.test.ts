import http, { type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  ManualClock,
  PollHandle,
  type PollHandleOptions,
  PollHandler,
  type PollHandlerOptions,
  type PollJobContext,
} from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';

interface Control {
  ctx: PollJobContext | undefined;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  aborted: boolean;
}

interface Rig {
  base: string;
  clock: ManualClock;
  jobs: PollHandle;
  handler: PollHandler<{ name?: string; value?: unknown }>;
  server: Server;
  /** The controls of the jobs started so far, by the `name` in their body. */
  controls: Map<string, Control>;
}

async function rig(
  options: Partial<PollHandlerOptions<{ name?: string; value?: unknown }>> = {},
  jobOptions: PollHandleOptions = {},
): Promise<Rig> {
  const clock = new ManualClock();
  const jobs = new PollHandle({ clock, ...jobOptions });
  const controls = new Map<string, Control>();
  const handler = new PollHandler<{ name?: string; value?: unknown }>({
    jobs,
    // A body { value } finishes at once with it; { name } is controlled by the test.
    run: (input, ctx) => {
      if (input?.name === undefined) return input?.value ?? null;
      return new Promise((resolve, reject) => {
        const control: Control = { ctx, resolve, reject, aborted: false };
        ctx.signal.addEventListener('abort', () => (control.aborted = true));
        controls.set(input.name!, control);
      });
    },
    ...options,
  });
  const server = http.createServer((req, res) => {
    if ((req.url ?? '').startsWith('/jobs')) void handler.handle(req, res);
    else {
      res.writeHead(418);
      res.end();
    }
  });
  server.keepAliveTimeout = 1;
  const { url } = await serveRig(server, { backlog: 1024 });
  // Closed after the test, last registered first: the handler, the jobs, then the server.
  perTest.defer(() => jobs.close());
  perTest.defer(() => handler.close());
  return { base: url, clock, jobs, handler, server, controls };
}

interface Status {
  id: string;
  state: string;
  progress: unknown;
  result?: unknown;
  error?: { name: string; message: string; code?: string; stack?: string };
}
const body = async (res: Response): Promise<Status> => (await res.json()) as Status;
const errorCode = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string } }).error.code;
const json = (value: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(value),
});
const control = async (r: Rig, name: string): Promise<Control> => {
  await until(() => r.controls.has(name), `job ${name} to run`);
  return r.controls.get(name)!;
};

async function start(r: Rig, value: unknown, headers: Record<string, string> = {}): Promise<{ res: Response; status: Status; location: string }> {
  const res = await fetch(`${r.base}/jobs`, json(value, headers));
  const status = await body(res);
  return { res, status, location: res.headers.get('location') ?? '' };
}

describe('PollHandler: start and status', () => {
  it('starts with 202, Location, Retry-After and ETag; status reads answer 200, then 304', async () => {
    const r = await rig();
    const { res, status, location } = await start(r, { name: 'a' });
    expect(res.status).toBe(202);
    expect(location).toBe(`/jobs/${status.id}`);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.headers.get('etag')).toBe('"1"');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(status).toEqual({ id: status.id, state: 'pending', progress: null });
    const c = await control(r, 'a');
    const read = await fetch(new URL(location, r.base));
    expect(read.status).toBe(200);
    expect(read.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(read.headers.get('cache-control')).toBe('no-cache');
    const etag = read.headers.get('etag')!;
    expect(await body(read)).toEqual({ id: status.id, state: 'running', progress: null });
    const same = await fetch(new URL(location, r.base), { headers: { 'if-none-match': etag } });
    expect(same.status).toBe(304);
    expect(same.headers.get('etag')).toBe(etag);
    expect(same.headers.get('retry-after')).toBe('1');
    expect(await same.text()).toBe('');
    const weak = await fetch(new URL(location, r.base), { headers: { 'if-none-match': `"999", W/${etag}` } });
    expect(weak.status).toBe(304);
    const star = await fetch(new URL(location, r.base), { headers: { 'if-none-match': '*' } });
    expect(star.status).toBe(304);
    c.ctx!.progress({ done: 1, total: 4 });
    const changed = await fetch(new URL(location, r.base), { headers: { 'if-none-match': etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
    expect((await body(changed)).progress).toEqual({ done: 1, total: 4 });
    c.resolve({ answer: 42 });
    await until(() => r.jobs.stats().succeeded === 1, 'the job to succeed');
    const done = await fetch(new URL(location, r.base));
    expect(done.status).toBe(200);
    expect(done.headers.get('retry-after')).toBeNull();
    expect(await body(done)).toEqual({ id: status.id, state: 'succeeded', progress: { done: 1, total: 4 }, result: { answer: 42 } });
    const head = await fetch(new URL(location, r.base), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('etag')).toBe(done.headers.get('etag'));
    expect(await head.text()).toBe('');
  });

  it('estimates Retry-After from the progress rate, clamped', async () => {
    const r = await rig({ minRetryAfterSeconds: 2, maxRetryAfterSeconds: 20 });
    const { status, res } = await start(r, { name: 'a' });
    expect(res.headers.get('retry-after')).toBe('2');
    const c = await control(r, 'a');
    r.clock.advance(3000);
    c.ctx!.progress(0.25); // 3 s for a quarter: about 9 s left
    expect((await fetch(`${r.base}/jobs/${status.id}`)).headers.get('retry-after')).toBe('9');
    c.ctx!.progress({ done: 1, total: 100 }); // 3 s for 1%: about 297 s left, clamped
    expect((await fetch(`${r.base}/jobs/${status.id}`)).headers.get('retry-after')).toBe('20');
    c.ctx!.progress(0.99);
    expect((await fetch(`${r.base}/jobs/${status.id}`)).headers.get('retry-after')).toBe('2');
  });

  it('reports a failed job with its safe error, and no stack', async () => {
    const r = await rig();
    const { status } = await start(r, { name: 'a' });
    (await control(r, 'a')).reject(Object.assign(new RangeError('too far'), { code: 'E_FAR' }));
    await until(() => r.jobs.stats().failed === 1, 'the job to fail');
    const s = await body(await fetch(`${r.base}/jobs/${status.id}`));
    expect(s).toEqual({ id: status.id, state: 'failed', progress: null, error: { name: 'RangeError', message: 'too far', code: 'E_FAR' } });
  });

  it("redirects a finished job's status to its result resource with 303 (resultMode: 'redirect')", async () => {
    const r = await rig({ resultMode: 'redirect' });
    const { status } = await start(r, { name: 'a' });
    const c = await control(r, 'a');
    const early = await fetch(`${r.base}/jobs/${status.id}/result`);
    expect(early.status).toBe(409);
    expect(early.headers.get('retry-after')).toBe('1');
    expect(await errorCode(early)).toBe('PB_ERR_INVALID_STATE');
    c.resolve([1, 2, 3]);
    await until(() => r.jobs.stats().succeeded === 1, 'the job to succeed');
    const manual = await fetch(`${r.base}/jobs/${status.id}`, { redirect: 'manual' });
    expect(manual.status).toBe(303);
    expect(manual.headers.get('location')).toBe(`/jobs/${status.id}/result`);
    const followed = await fetch(`${r.base}/jobs/${status.id}`);
    expect(followed.redirected).toBe(true);
    expect(followed.url).toBe(`${r.base}/jobs/${status.id}/result`);
    expect(await body(followed)).toEqual({ id: status.id, state: 'succeeded', progress: null, result: [1, 2, 3] });
    const etag = followed.headers.get('etag')!;
    expect((await fetch(`${r.base}/jobs/${status.id}/result`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(`${r.base}/jobs/${status.id}`, { headers: { 'if-none-match': etag }, redirect: 'manual' })).status).toBe(304);
  });
});

describe('PollHandler: Prefer: wait', () => {
  it('holds a status read until the job changes, then answers with the change', async () => {
    const r = await rig();
    const { status } = await start(r, { name: 'a' });
    const c = await control(r, 'a');
    const first = await fetch(`${r.base}/jobs/${status.id}`);
    const etag = first.headers.get('etag')!;
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { 'if-none-match': etag, prefer: 'wait=10' } });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    c.ctx!.progress(0.5);
    const res = await held;
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=10');
    expect((await body(res)).progress).toBe(0.5);
    expect(r.handler.stats().held).toBe(0);
    // Without If-None-Match, the read is held from the current snapshot.
    const next = fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=10' } });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    c.resolve('ok');
    const done = await next;
    expect((await body(done)).state).toBe('succeeded');
  });

  it('answers a held read at N seconds with 304 when nothing changed, never earlier', async () => {
    const r = await rig();
    const { status, res } = await start(r, { name: 'a' });
    await control(r, 'a');
    let answered = false;
    const etag = (await fetch(`${r.base}/jobs/${status.id}`)).headers.get('etag')!;
    expect(etag).not.toBe(res.headers.get('etag'));
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { 'if-none-match': etag, prefer: 'wait=5' } }).then((x) => {
      answered = true;
      return x;
    });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    r.clock.advance(4999);
    // Still held on the server (an answer would have ended the hold in the advance), and after a
    // round trip on the same server the client has no answer either.
    expect(r.handler.stats().held).toBe(1);
    expect((await fetch(`${r.base}/jobs/${status.id}`)).status).toBe(200);
    expect(answered).toBe(false);
    r.clock.advance(1);
    const out = await held;
    expect(out.status).toBe(304);
    expect(out.headers.get('preference-applied')).toBe('wait=5');
  });

  it('answers at once when the client is behind, and clamps a huge wait to maxWaitSeconds', async () => {
    const r = await rig({ maxWaitSeconds: 20 });
    const { status } = await start(r, { name: 'a' });
    await control(r, 'a');
    const behind = await fetch(`${r.base}/jobs/${status.id}`, { headers: { 'if-none-match': '"1"', prefer: 'wait=10' } });
    expect(behind.status).toBe(200);
    expect(behind.headers.get('preference-applied')).toBe('wait=10');
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=99999999999999999999' } });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    r.clock.advance(20_000);
    const res = await held;
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=20');
  });

  it('answers a finished job at once unless If-None-Match matches; a held read of an expiring job gets 410', async () => {
    const r = await rig({}, { ttlMs: 20_000 });
    const { status } = await start(r, { value: 'v' });
    await until(() => r.jobs.stats().succeeded === 1, 'the job to succeed');
    const now = await fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=30' } });
    expect(now.status).toBe(200);
    const etag = now.headers.get('etag')!;
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=30', 'if-none-match': etag } });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    r.clock.advance(20_000); // the outcome expires before the 30 s wait ends
    const gone = await held;
    expect(gone.status).toBe(410);
    expect(await errorCode(gone)).toBe('PB_ERR_GONE');
  });

  it('answers a start with the outcome when the job ends within Prefer: respond-async, wait=N', async () => {
    const r = await rig();
    const quick = fetch(`${r.base}/jobs`, json({ name: 'q' }, { prefer: 'respond-async, wait=5' }));
    (await control(r, 'q')).resolve({ fast: true });
    const res = await quick;
    expect(res.status).toBe(200);
    const s = await body(res);
    expect(s).toEqual({ id: s.id, state: 'succeeded', progress: null, result: { fast: true } });
    expect(res.headers.get('content-location')).toBe(`/jobs/${s.id}`);
    expect(res.headers.get('preference-applied')).toBe('wait=5');
    expect(r.handler.stats()).toMatchObject({ finishedInWait: 1, heldStarts: 0 });

    const slow = fetch(`${r.base}/jobs`, json({ name: 's' }, { prefer: 'respond-async, wait=5' }));
    await control(r, 's');
    await until(() => r.handler.stats().heldStarts === 1, 'the start to be held');
    r.clock.advance(5000);
    const later = await slow;
    expect(later.status).toBe(202);
    expect(later.headers.get('preference-applied')).toBe('respond-async, wait=5');
    expect(later.headers.get('location')).toMatch(/^\/jobs\/[\w-]{16}$/);

    const asyncOnly = await fetch(`${r.base}/jobs`, json({ value: 1 }, { prefer: 'respond-async' }));
    expect(asyncOnly.status).toBe(202);
    expect(asyncOnly.headers.get('preference-applied')).toBe('respond-async');
  });

  it('refuses a malformed Prefer with 400 and ignores preferences it does not know', async () => {
    const r = await rig();
    const { status } = await start(r, { name: 'a' });
    for (const prefer of ['wait=-1', 'wait=1.5', 'wait=abc', 'wait', 'wait=', 'respond-async, wait="x"', 'foo="unterminated, wait=3']) {
      const res = await fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer } });
      expect(res.status, prefer).toBe(400);
      expect(await errorCode(res), prefer).toBe('PB_ERR_INVALID_ARGUMENT');
      const s = await fetch(`${r.base}/jobs`, json({ value: 1 }, { prefer }));
      expect(s.status, `start ${prefer}`).toBe(400);
    }
    expect(r.jobs.stats().started).toBe(1);
    for (const prefer of ['return=minimal', 'handling=lenient; x=y', 'WAIT=0', 'wait="0"', 'wait=0, wait=abc']) {
      const res = await fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer } });
      expect(res.status, prefer).toBe(200);
    }
  });
});

describe('PollHandler: cancel, expiry, unknown ids', () => {
  it('DELETE cancels a running job through its AbortSignal; a finished one stays as it is', async () => {
    const r = await rig();
    const { status, location } = await start(r, { name: 'a' });
    const c = await control(r, 'a');
    const held = fetch(new URL(location, r.base), { headers: { prefer: 'wait=30' } });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    const del = await fetch(new URL(location, r.base), { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(await body(del)).toEqual({ id: status.id, state: 'canceled', progress: null });
    expect(c.aborted).toBe(true);
    expect((await body(await held)).state).toBe('canceled');
    c.resolve('too late');
    expect((await body(await fetch(new URL(location, r.base)))).state).toBe('canceled');
    const again = await fetch(new URL(location, r.base), { method: 'DELETE' });
    expect(again.status).toBe(200);
    expect((await body(again)).state).toBe('canceled');
    const finished = await start(r, { value: 5 });
    await until(() => r.jobs.stats().succeeded === 1, 'the job to succeed');
    const late = await fetch(`${r.base}/jobs/${finished.status.id}`, { method: 'DELETE' });
    expect(await body(late)).toMatchObject({ state: 'succeeded', result: 5 });
  });

  it('answers 410 after the TTL, and 404 once the tombstone is gone', async () => {
    const r = await rig({}, { ttlMs: 1000, goneMs: 2000 });
    const { status } = await start(r, { value: 1 });
    await until(() => r.jobs.stats().succeeded === 1, 'the job to succeed');
    r.clock.advance(999);
    expect((await fetch(`${r.base}/jobs/${status.id}`)).status).toBe(200);
    r.clock.advance(1);
    for (const path of [`/jobs/${status.id}`, `/jobs/${status.id}/result`]) {
      const res = await fetch(`${r.base}${path}`);
      expect(res.status).toBe(410);
      expect(await errorCode(res)).toBe('PB_ERR_GONE');
    }
    expect((await fetch(`${r.base}/jobs/${status.id}`, { method: 'DELETE' })).status).toBe(410);
    r.clock.advance(2001);
    expect((await fetch(`${r.base}/jobs/${status.id}`)).status).toBe(404);
  });

  it('answers unknown, malformed and hostile ids with 404 and a JSON body', async () => {
    const r = await rig();
    for (const path of [
      '/jobs/nope',
      '/jobs/__proto__',
      '/jobs/constructor',
      '/jobs/__proto__/result',
      '/jobs/%E0%A4%A',
      `/jobs/${'x'.repeat(5000)}`,
      '/jobs/a/b',
      '/jobs/a/result/x',
      '/jobsx',
      '/jobs//result',
      '/jobs/%2F..%2F',
    ]) {
      const res = await fetch(`${r.base}${path}`);
      expect(res.status, path).toBe(404);
      expect(await errorCode(res), path).toBe('PB_ERR_NOT_FOUND');
    }
  });

  it('answers other methods with 405 and Allow', async () => {
    const r = await rig();
    const { status } = await start(r, { value: 1 });
    const cases: [string, string, string][] = [
      ['/jobs', 'GET', 'POST'],
      ['/jobs', 'DELETE', 'POST'],
      [`/jobs/${status.id}`, 'POST', 'GET, HEAD, DELETE'],
      [`/jobs/${status.id}`, 'PUT', 'GET, HEAD, DELETE'],
      [`/jobs/${status.id}/result`, 'DELETE', 'GET, HEAD'],
    ];
    for (const [path, method, allow] of cases) {
      const res = await fetch(`${r.base}${path}`, { method });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(await errorCode(res)).toBe('PB_ERR_METHOD_NOT_ALLOWED');
    }
  });
});

describe('PollHandler: Idempotency-Key', () => {
  it('answers a retried start for the same job, and refuses the key with another body (422)', async () => {
    const r = await rig();
    const first = await start(r, { name: 'a' }, { 'idempotency-key': 'key-1' });
    expect(first.res.status).toBe(202);
    expect(first.res.headers.get('idempotent-replayed')).toBeNull();
    const c = await control(r, 'a');
    const retry = await start(r, { name: 'a' }, { 'idempotency-key': 'key-1' });
    expect(retry.res.status).toBe(202);
    expect(retry.status.id).toBe(first.status.id);
    expect(retry.status.state).toBe('running'); // the original is reported, not duplicated
    expect(retry.res.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.location).toBe(first.location);
    const quoted = await start(r, { name: 'a' }, { 'idempotency-key': '"key-1"' }); // a Structured Field string
    expect(quoted.status.id).toBe(first.status.id);
    const other = await fetch(`${r.base}/jobs`, json({ name: 'b' }, { 'idempotency-key': 'key-1' }));
    expect(other.status).toBe(422);
    expect(await errorCode(other)).toBe('PB_ERR_IDEMPOTENCY_CONFLICT');
    const otherType = await fetch(`${r.base}/jobs`, { method: 'POST', headers: { 'idempotency-key': 'key-1', 'content-type': 'text/plain' }, body: JSON.stringify({ name: 'a' }) });
    expect(otherType.status).toBe(422);
    c.resolve('result');
    await until(() => r.jobs.stats().succeeded === 1, 'the job to succeed');
    const after = await start(r, { name: 'a' }, { 'idempotency-key': 'key-1' });
    expect(after.status).toMatchObject({ id: first.status.id, state: 'succeeded', result: 'result' });
    const sync = await fetch(`${r.base}/jobs`, json({ name: 'a' }, { 'idempotency-key': 'key-1', prefer: 'respond-async, wait=5' }));
    expect(sync.status).toBe(200);
    expect((await body(sync)).result).toBe('result');
    expect(r.jobs.stats()).toMatchObject({ started: 1 });
  });

  it('starts one job for concurrent identical starts', async () => {
    const r = await rig();
    const answers = await Promise.all(Array.from({ length: 20 }, () => start(r, { name: 'c' }, { 'idempotency-key': 'same' })));
    expect(new Set(answers.map((a) => a.status.id)).size).toBe(1);
    expect(answers.every((a) => a.res.status === 202)).toBe(true);
    expect(r.jobs.stats().started).toBe(1);
  });

  it('scopes keys per client when asked', async () => {
    const r = await rig({ idempotencyScope: (req) => String(req.headers['x-user'] ?? '') });
    const a = await start(r, { value: 1 }, { 'idempotency-key': 'k', 'x-user': 'alice' });
    const b = await start(r, { value: 1 }, { 'idempotency-key': 'k', 'x-user': 'bob' });
    const a2 = await start(r, { value: 1 }, { 'idempotency-key': 'k', 'x-user': 'alice' });
    expect(b.status.id).not.toBe(a.status.id);
    expect(a2.status.id).toBe(a.status.id);
  });

  it('refuses malformed keys with 400', async () => {
    const r = await rig();
    const cases: [string, RequestInit][] = [
      ['empty', json({ value: 1 }, { 'idempotency-key': '' })],
      ['long', json({ value: 1 }, { 'idempotency-key': 'k'.repeat(256) })],
      ['bad quoting', json({ value: 1 }, { 'idempotency-key': '"unterminated' })],
      ['non-ASCII', { method: 'POST', headers: [['content-type', 'application/json'], ['idempotency-key', 'caf\u00e9']], body: '{}' }],
    ];
    for (const [what, init] of cases) {
      const res = await fetch(`${r.base}/jobs`, init);
      expect(res.status, what).toBe(400);
      expect(await errorCode(res), what).toBe('PB_ERR_INVALID_ARGUMENT');
    }
    // fetch joins repeated headers into one; node:http sends each on its own line.
    const twice = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${r.base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': ['a', 'b'] } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end('{}');
    });
    expect(twice.status).toBe(400);
    expect(twice.body).toContain('at most one Idempotency-Key');
    expect(r.jobs.stats().started).toBe(0);
  });
});

describe('PollHandler: limits and bad input', () => {
  it('answers a flood of starts past maxLiveJobs with 503, Retry-After and a JSON body', async () => {
    const r = await rig({}, { maxLiveJobs: 5 });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => fetch(`${r.base}/jobs`, json({ name: `f${i}` }))));
    const byStatus = new Map<number, number>();
    for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
    expect(Object.fromEntries(byStatus)).toEqual({ 202: 5, 503: 35 });
    const refused = answers.find((a) => a.status === 503)!;
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await errorCode(refused)).toBe('PB_ERR_CAPACITY');
    expect(r.jobs.stats()).toMatchObject({ started: 5, rejected: 35, pending: 0, running: 5 });
  });

  it('answers polls sooner than Retry-After with 429 when rejectEarlyPolls is on', async () => {
    const r = await rig({ rejectEarlyPolls: true, minRetryAfterSeconds: 2 });
    const { status } = await start(r, { name: 'a' });
    await control(r, 'a');
    const early = await fetch(`${r.base}/jobs/${status.id}`);
    expect(early.status).toBe(429);
    expect(early.headers.get('retry-after')).toBe('2');
    expect(await errorCode(early)).toBe('PB_ERR_RATE_LIMITED');
    r.clock.advance(1750); // within the 250 ms tolerance
    expect((await fetch(`${r.base}/jobs/${status.id}`)).status).toBe(200);
    expect((await fetch(`${r.base}/jobs/${status.id}`)).status).toBe(429);
    // A held read is not polling: it is never refused as early.
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=3' } });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    r.clock.advance(3000);
    expect((await held).status).toBe(200);
    expect(r.handler.stats().rateLimited).toBe(2);
  });

  it('refuses bad bodies with 4xx, starting nothing', async () => {
    const r = await rig({
      maxBodyBytes: 100,
      parse: (b) => {
        if (typeof b !== 'object' || b === null) throw new InvalidArgumentError('Expected a JSON object');
        return b as { name?: string };
      },
    });
    const cases: [string, RequestInit, number, string][] = [
      ['too large', json({ value: 'x'.repeat(200) }), 413, 'PB_ERR_BODY_TOO_LARGE'],
      ['bad JSON', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{oops' }, 400, 'PB_ERR_PROTOCOL'],
      ['bad type', { method: 'POST', headers: { 'content-type': 'image/png' }, body: 'x' }, 415, 'PB_ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['parse refuses', json('a string'), 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['empty', { method: 'POST' }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      // One rule at every JSON entry point (issue 15): a __proto__ key is refused at any depth.
      ['proto', json(JSON.parse('{"__proto__": {"polluted": true}}')), 400, 'PB_ERR_PROTOCOL'],
    ];
    for (const [what, init, status, code] of cases) {
      const res = await fetch(`${r.base}/jobs`, init);
      expect(res.status, what).toBe(status);
      if (code !== '') expect(await errorCode(res), what).toBe(code);
    }
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(r.jobs.stats().started).toBe(0); // every case is refused, the __proto__ one included
  });

  it('answers 403 when authorize refuses', async () => {
    const r = await rig({ authorize: (_req, action) => action !== 'cancel' });
    const { status } = await start(r, { name: 'a' });
    const res = await fetch(`${r.base}/jobs/${status.id}`, { method: 'DELETE' });
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('PB_ERR_FORBIDDEN');
  });

  it('answers CORS preflights and exposes the protocol headers', async () => {
    const r = await rig({ cors: { origin: ['http://app.example'] } });
    const pre = await fetch(`${r.base}/jobs`, {
      method: 'OPTIONS',
      headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'prefer, idempotency-key' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-headers')).toBe('Content-Type, Prefer, Idempotency-Key, If-None-Match');
    const res = await fetch(`${r.base}/jobs`, json({ value: 1 }, { origin: 'http://app.example' }));
    expect(res.headers.get('access-control-expose-headers')).toContain('Location');
    expect(res.headers.get('access-control-expose-headers')).toContain('Preference-Applied');
  });
});

describe('PollHandler: lifecycle', () => {
  it('drops a held read whose client went away, at once', async () => {
    const r = await rig();
    const { status } = await start(r, { name: 'a' });
    await control(r, 'a');
    const ac = new AbortController();
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=30' }, signal: ac.signal }).catch((e: unknown) => e);
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    expect(r.jobs.purgatory.size).toBe(1);
    ac.abort();
    await held;
    await until(() => r.handler.stats().held === 0, 'the read to be dropped');
    expect(r.jobs.purgatory.size).toBe(0);
    expect(r.clock.pendingTimers).toBe(0);
  });

  it('close() answers held reads with what is current, then refuses with 503', async () => {
    const r = await rig();
    const { status } = await start(r, { name: 'a' });
    await control(r, 'a');
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=30' } });
    await until(() => r.handler.stats().held === 1, 'the read to be held');
    await r.handler.close();
    const res = await held;
    expect(res.status).toBe(200);
    expect((await body(res)).state).toBe('running');
    const after = await fetch(`${r.base}/jobs/${status.id}`);
    expect(after.status).toBe(503);
    expect(await errorCode(after)).toBe('PB_ERR_CLOSED');
  });

  it("closing the registry cancels its jobs and answers held reads with that", async () => {
    const r = await rig();
    const { status } = await start(r, { name: 'a' });
    const c = await control(r, 'a');
    const held = fetch(`${r.base}/jobs/${status.id}`, { headers: { prefer: 'wait=30' } });
    const heldStart = fetch(`${r.base}/jobs`, json({ name: 'b' }, { prefer: 'wait=30' }));
    await until(() => r.handler.stats().held === 1 && r.handler.stats().heldStarts === 1, 'both to be held');
    await r.jobs.close();
    expect((await body(await held)).state).toBe('canceled');
    const s = await heldStart;
    expect(s.status).toBe(200);
    expect((await body(s)).state).toBe('canceled');
    expect(c.aborted).toBe(true);
    expect(r.clock.pendingTimers).toBe(0);
  });

  it('validates its options', () => {
    const jobs = new PollHandle({ clock: new ManualClock() });
    const run = (): null => null;
    const bad: Partial<PollHandlerOptions>[] = [
      { jobs: undefined },
      { jobs: {} as never },
      { run: undefined },
      { basePath: 'jobs' },
      { basePath: '/jobs?x' },
      { resultMode: 'both' as never },
      { maxWaitSeconds: -1 },
      { maxWaitSeconds: 1.5 },
      { minRetryAfterSeconds: 10, maxRetryAfterSeconds: 5 },
      { parse: 1 as never },
    ];
    for (const options of bad) expect(() => new PollHandler({ jobs, run, ...options } as PollHandlerOptions), JSON.stringify(options)).toThrow(InvalidArgumentError);
    expect(() => new PollHandler({ jobs, run, basePath: '/api/v1/jobs/' })).not.toThrow();
    void jobs.close();
  });
});

describe('PollHandler: a basePath with parameters', () => {
  /** A handler under `/rooms/:room/summarize` on plain node:http; `run` returns the room it was started for. */
  async function roomRig(authorize?: PollHandlerOptions<{ room: string }>['authorize']): Promise<{ base: string; clock: ManualClock; seen: unknown[] }> {
    const clock = new ManualClock();
    const jobs = new PollHandle({ clock });
    const seen: unknown[] = [];
    const handler = new PollHandler<{ room: string }, string>({
      jobs,
      basePath: '/rooms/:room/summarize',
      parse: (_body, _req, params) => ({ room: params['room']! }),
      run: (input) => `summary of ${input.room}`,
      authorize: (req, action, id, params) => {
        seen.push({ action, id, params: { ...params } });
        return authorize === undefined ? true : authorize(req, action, id, params);
      },
    });
    const server = http.createServer((req, res) => void handler.handle(req, res));
    server.keepAliveTimeout = 1;
    const { url } = await serveRig(server);
    perTest.defer(() => jobs.close());
    perTest.defer(() => handler.close());
    return { base: url, clock, seen };
  }

  it('starts a job under the room it was posted to, and Location, status and result follow that room', async () => {
    const r = await roomRig();
    const started = await fetch(`${r.base}/rooms/a%20b/summarize`, { method: 'POST' });
    expect(started.status).toBe(202);
    const status = await body(started);
    const location = started.headers.get('location')!;
    expect(location).toBe(`/rooms/a%20b/summarize/${status.id}`);
    expect(r.seen[0]).toEqual({ action: 'start', id: undefined, params: { room: 'a b' } });
    const read = await fetch(new URL(location, r.base), { headers: { prefer: 'wait=5' } });
    expect(await body(read)).toMatchObject({ id: status.id, state: 'succeeded', result: 'summary of a b' });
    expect(r.seen[1]).toEqual({ action: 'status', id: status.id, params: { room: 'a b' } });
    expect((await fetch(new URL(`${location}/result`, r.base))).status).toBe(200);
    // A start held by Prefer: wait answers with Content-Location under its room too.
    const waited = await fetch(`${r.base}/rooms/42/summarize/`, { method: 'POST', headers: { prefer: 'wait=5' } });
    expect(waited.status).toBe(200);
    const done = await body(waited);
    expect(done.result).toBe('summary of 42');
    expect(waited.headers.get('content-location')).toBe(`/rooms/42/summarize/${done.id}`);
  });

  it('answers 404 for a path that does not match the pattern, 403 when authorize refuses a room', async () => {
    const r = await roomRig((_req, _action, _id, params) => params['room'] !== 'locked');
    for (const path of ['/rooms//summarize', '/rooms/1/other', '/rooms/1', '/rooms/%E0%A4%A/summarize', '/jobs']) {
      const res = await fetch(`${r.base}${path}`, { method: 'POST' });
      expect(res.status, path).toBe(404);
      expect(await errorCode(res)).toBe('PB_ERR_NOT_FOUND');
    }
    expect((await fetch(`${r.base}/rooms/locked/summarize`, { method: 'POST' })).status).toBe(403);
    expect((await fetch(`${r.base}/rooms/1/summarize/x/y`)).status).toBe(404);
  });

  it('keeps a fixed basePath fixed: a colon inside a segment is literal', async () => {
    const jobs = new PollHandle({ clock: new ManualClock() });
    perTest.defer(() => jobs.close());
    const handler = new PollHandler({ jobs, run: () => 1, basePath: '/v1/a:b' });
    perTest.defer(() => handler.close());
    const { url } = await serveRig(http.createServer((req, res) => void handler.handle(req, res)));
    const res = await fetch(`${url}/v1/a:b`, { method: 'POST' });
    expect(res.status).toBe(202);
    expect(res.headers.get('location')).toMatch(/^\/v1\/a:b\//);
  });
});
