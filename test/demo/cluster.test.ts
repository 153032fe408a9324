/**
 * Issue 18, "every core": the demo as `WORKERS=2` on one port (node:cluster) on a real Redis, a
 * real process tree. Every route works whichever worker a request reaches (each answer names its
 * worker in `Patchbay-Worker`; connections are not kept alive, so the primary deals them out in
 * turn): a publish on one wakes long polls and SSE streams on both, a job started on one is read
 * on the other, an upload's chunks land on both and it completes with the right SHA-256, a stop
 * token signed with the cluster's secret is honored by both, the sidecars run once, a worker that
 * dies is replaced, and SIGTERM ends every process. Waits are for conditions, never for time.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, SseHub, type SseSink } from '../../src/index.js';
import { request } from '../hardening/http.js';
import { eventually, sourceNodeArgs } from '../helpers.js';
import { freePort, redisUnavailableReason, testRedis, type TestRedis, uniquePrefix } from '../redis/redis-server.js';

const SECRET = randomBytes(24).toString('hex');
const tus = { 'tus-resumable': '1.0.0' };

let redis: TestRedis | undefined;
let primary: ChildProcess | undefined;
let exited: Promise<number | null> | undefined;
let output = '';
let base = '';
let uploadsDir = '';

/** The processes whose parent is `pid`, with their command lines. */
function childrenOf(pid: number): { pid: number; args: string }[] {
  const ps = spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { encoding: 'utf8' });
  return ps.stdout
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(.*)$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => ({ pid: Number(m[1]), args: m[2]! }))
    .filter((p) => !p.args.includes('esbuild')); // tsx's helper, not one of ours
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const workerPids = (): number[] => (primary?.pid === undefined ? [] : childrenOf(primary.pid).filter((p) => p.args.includes('demo/server.js')).map((p) => p.pid));

const worker = (headers: Record<string, unknown>): number => Number(headers['patchbay-worker']);

describe.skipIf(redisUnavailableReason !== undefined)('demo: WORKERS=2 on Redis (node:cluster)', () => {
  beforeAll(async () => {
    redis = await testRedis();
    const port = await freePort(); // the workers share one port: it must be known before they listen
    uploadsDir = mkdtempSync(join(tmpdir(), 'patchbay-cluster-uploads-'));
    primary = spawn(process.execPath, [...sourceNodeArgs, 'demo/server.js'], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      env: {
        ...process.env,
        WORKERS: '2',
        PATCHBAY_REDIS_URL: redis.url,
        PATCHBAY_REDIS_PREFIX: uniquePrefix('cluster'),
        PATCHBAY_STOP_TOKEN_SECRET: SECRET,
        PORT: String(port),
        METRICS_PORT: '0',
        UPLOADS_DIR: uploadsDir,
        LP_TIMEOUT_MS: '60000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    exited = new Promise((resolve) => primary!.once('exit', (code) => resolve(code)));
    for (const stream of [primary.stdout!, primary.stderr!]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => (output += chunk));
    }
    await eventually(() => {
      if (primary!.exitCode !== null) throw new Error(`the demo exited before listening: ${output}`);
      return output.includes('patchbay demo on');
    }, 'the cluster to listen', { timeoutMs: 25_000 });
    base = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    const pids = primary?.pid === undefined ? [] : [primary.pid, ...childrenOf(primary.pid).map((p) => p.pid)];
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await exited;
    await redis?.dispose();
    if (uploadsDir) rmSync(uploadsDir, { recursive: true, force: true });
  });

  it('WORKERS=2 without PATCHBAY_REDIS_URL is a startup error that says why', () => {
    const run = spawnSync(process.execPath, [...sourceNodeArgs, 'demo/server.js'], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      env: { ...process.env, WORKERS: '2', PATCHBAY_REDIS_URL: '', PORT: '0', SIDECARS: '0' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('WORKERS=2 needs PATCHBAY_REDIS_URL');
  });

  it('runs two workers and the two sidecars once, the metrics port bound by one process', async () => {
    const children = childrenOf(primary!.pid!);
    expect(children.filter((p) => p.args.includes('demo/server.js'))).toHaveLength(2);
    expect(children.filter((p) => p.args.includes('metrics.mjs'))).toHaveLength(1);
    expect(children.filter((p) => p.args.includes('log-shipper.mjs'))).toHaveLength(1);
    // Both workers report the one metrics sidecar's address, and it serves what both counted.
    const urls = new Map<number, string>();
    await eventually(async () => {
      const r = await request(base, { path: '/sidecar' });
      const body = JSON.parse(r.body) as { metrics: { url: string | null } };
      if (body.metrics.url !== null) urls.set(worker(r.headers), body.metrics.url);
      return urls.size === 2;
    }, 'both workers to answer GET /sidecar');
    expect(new Set(urls.values()).size).toBe(1);
    const scrape = await fetch([...urls.values()][0]!);
    expect(await scrape.text()).toContain('demo_requests_total');
  });

  it('a publish wakes long polls held by both workers', async () => {
    const first = JSON.parse((await request(base, { method: 'POST', path: '/pub/cluster-lp', body: 'first' })).body) as { id: string };
    // Four long polls, one connection each, dealt out in turn: two on each worker.
    const polls = Array.from({ length: 4 }, () => request(base, { path: `/lp/cluster-lp?cursor=${encodeURIComponent(first.id)}` }, 30_000));
    await eventually(async () => {
      const seen = new Map<number, number>();
      for (let i = 0; i < 4; i++) {
        const r = await request(base, { path: '/stats' });
        seen.set(worker(r.headers), (JSON.parse(r.body) as { longPoll: { parked: number } }).longPoll.parked);
      }
      return seen.size === 2 && [...seen.values()].reduce((a, b) => a + b, 0) === 4;
    }, 'the four long polls to be parked on the two workers');
    await request(base, { method: 'POST', path: '/pub/cluster-lp', body: 'second' });
    const answers = await Promise.all(polls);
    expect(new Set(answers.map((a) => worker(a.headers))).size).toBe(2);
    for (const a of answers) expect((JSON.parse(a.body) as { messages: { data: unknown }[] }).messages.map((m) => m.data)).toEqual(['second']);
  });

  it('a publish reaches SSE streams on both workers', async () => {
    const streams: { pid: number; text: () => string; abort: AbortController }[] = [];
    try {
      while (new Set(streams.map((s) => s.pid)).size < 2 && streams.length < 6) {
        const abort = new AbortController();
        const res = await fetch(`${base}/sse/cluster-sse`, { signal: abort.signal });
        let text = '';
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        void (async () => {
          for (;;) {
            const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
            if (done) return;
            text += value;
          }
        })();
        streams.push({ pid: Number(res.headers.get('patchbay-worker')), text: () => text, abort });
        await eventually(() => text.includes('patchbay-open'), 'the stream to open');
      }
      expect(new Set(streams.map((s) => s.pid)).size).toBe(2);
      await request(base, { method: 'POST', path: '/pub/cluster-sse', body: 'to-every-worker' });
      await eventually(() => streams.every((s) => s.text().includes('data: to-every-worker')), 'every stream to get the message');
    } finally {
      for (const s of streams) s.abort.abort();
    }
  });

  it('a stop token signed with the cluster secret is answered 204 by both workers; a forged one is not', async () => {
    // Minted as a worker mints it: a hub with the same secret (the unit tests check that a hub
    // honors another's tokens; here, that both workers were given the secret).
    const writes: Buffer[] = [];
    const sink: SseSink = { start() {}, write: (c) => void writes.push(c), buffered: 0, end() {}, destroy() {}, onClose() {} };
    const hub = new SseHub({ stopTokenSecret: SECRET, clock: new ManualClock(performance.now()), heartbeatMs: 0 });
    const s = hub.stream(sink);
    s.start();
    s.close({ reconnect: false });
    const token = /id: (stop-[a-z0-9]+)/.exec(Buffer.concat(writes).toString())![1]!;
    const answered = new Map<number, number>();
    await eventually(async () => {
      const r = await request(base, { path: '/sse/cluster-stop', headers: { 'last-event-id': token } });
      answered.set(worker(r.headers), r.status);
      return answered.size === 2;
    }, 'both workers to answer the stop token');
    expect([...answered.values()]).toEqual([204, 204]);
    const forged = `${token.slice(0, -4)}0000` === token ? `${token.slice(0, -4)}1111` : `${token.slice(0, -4)}0000`;
    const refused = await request(base, { path: '/sse/cluster-stop', headers: { 'last-event-id': forged } });
    expect(refused.status).toBe(400); // not a stop token, and not a cursor either
  });

  it('a job started on one worker is read on the other', async () => {
    const started = await request(base, { method: 'POST', path: '/jobs', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ steps: 2, stepMs: 10 }) });
    expect(started.status).toBe(202);
    const by = worker(started.headers);
    const location = started.headers.location!;
    const states = new Set<string>();
    await eventually(async () => {
      const r = await request(base, { path: location });
      // A finished job's status redirects (303) to its result (the demo's resultMode).
      if (worker(r.headers) !== by) states.add(r.status === 303 ? 'succeeded' : (JSON.parse(r.body) as { state: string }).state);
      return states.has('succeeded');
    }, 'the other worker to read the job, done');
    const result = await request(base, { path: `${location}/result` });
    expect(result.status, result.body).toBe(200);
    expect(JSON.parse(result.body)).toMatchObject({ state: 'succeeded', result: { steps: 2, stepMs: 10 } });
  });

  it("an upload's chunks land on both workers and it completes with the right SHA-256", async () => {
    const data = randomBytes(300_000);
    const created = await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': String(data.length), 'upload-metadata': `filename ${Buffer.from('c.bin').toString('base64')}` } });
    expect(created.status, created.body).toBe(201);
    const location = created.headers.location!;
    const served = new Set<number>([worker(created.headers)]);
    let jobLocation: string | undefined;
    const step = 100_000;
    for (let offset = 0; offset < data.length; offset += step) {
      const r = await request(base, {
        method: 'PATCH',
        path: location,
        headers: { ...tus, 'content-type': 'application/offset+octet-stream', 'upload-offset': String(offset) },
        body: data.subarray(offset, offset + step),
      });
      expect(r.status, r.body).toBe(204);
      served.add(worker(r.headers));
      jobLocation = (r.headers['patchbay-job-location'] as string | undefined) ?? jobLocation;
    }
    expect(served.size).toBe(2);
    expect(jobLocation).toMatch(/^\/jobs\//);
    let result: { sha256?: string; size?: number } | undefined;
    await eventually(async () => {
      const r = await fetch(`${base}${jobLocation}`); // follows the redirect to the result
      const body = (await r.json()) as { state?: string; result?: { sha256: string; size: number }; sha256?: string; size?: number };
      result = body.result ?? (body.sha256 !== undefined ? body : undefined);
      return result !== undefined;
    }, 'the upload to be hashed');
    expect(result).toMatchObject({ size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
  });

  it('a worker that dies is replaced', async () => {
    const before = workerPids();
    expect(before).toHaveLength(2);
    process.kill(before[0]!, 'SIGKILL');
    await eventually(() => {
      const now = workerPids();
      return now.length === 2 && !now.includes(before[0]!);
    }, 'a new worker to start', { timeoutMs: 20_000 });
    const seen = new Set<number>();
    await eventually(async () => {
      seen.add(worker((await request(base, { path: '/stats' })).headers));
      return seen.size === 2;
    }, 'both workers to serve again');
    expect(seen.has(before[0]!)).toBe(false);
  });

  it('SIGTERM shuts every process down gracefully: the primary exits 0 and no worker or sidecar is left', async () => {
    const pids = childrenOf(primary!.pid!).map((p) => p.pid);
    expect(pids.length).toBe(4);
    process.kill(primary!.pid!, 'SIGTERM');
    expect(await exited).toBe(0);
    await eventually(() => !pids.some(alive), 'every worker and sidecar to be gone');
  });
});
