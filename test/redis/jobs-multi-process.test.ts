/**
 * Jobs shared by two demo processes on one redis-server (RedisJobStore): a job started on one is
 * read, awaited (`Prefer: wait`), replayed by `Idempotency-Key` and canceled through the other,
 * and a process killed with SIGKILL has its running job failed once its lease runs out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoProcess, killDemo, startDemos, stopDemo } from './demo-process.js';
import { redisUnavailableReason, testRedis, type TestRedis, uniquePrefix } from './redis-server.js';

const LEASE_MS = 600;

interface Status {
  id: string;
  state: string;
  progress: { done: number; total: number } | null;
  result?: unknown;
  error?: { name: string; code?: string; message: string };
}

const start = (base: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe.skipIf(redisUnavailableReason !== undefined)('jobs shared by two demo processes on one Redis', () => {
  let redis: TestRedis;
  let a: DemoProcess;
  let b: DemoProcess;
  beforeAll(async () => {
    redis = await testRedis();
    const prefix = uniquePrefix('jobs-demo');
    const env = { JOBS_LEASE_MS: String(LEASE_MS) };
    [a, b] = (await startDemos(2, redis.url, prefix, env)) as [DemoProcess, DemoProcess];
  }, 120_000);
  afterAll(async () => {
    await Promise.all([stopDemo(a), stopDemo(b)]);
    await redis?.dispose();
  });

  it('starts on A; B reads it, holds a read until it changes, replays the key and cancels it', async () => {
    const started = await start(a.base, { steps: 50, stepMs: 200 }, { 'idempotency-key': 'shared-1' });
    expect(started.status).toBe(202);
    const location = started.headers.get('location')!;
    const first = await fetch(new URL(location, b.base));
    expect(first.status).toBe(200);
    const etag = first.headers.get('etag')!;
    expect(((await first.json()) as Status).state).toMatch(/pending|running/);
    // Held on B until A's job reports its next step.
    const held = await fetch(new URL(location, b.base), { headers: { prefer: 'wait=10', 'if-none-match': etag } });
    expect(held.status).toBe(200);
    expect(held.headers.get('etag')).not.toBe(etag);
    expect(held.headers.get('preference-applied')).toBe('wait=10');
    expect(((await held.json()) as Status).state).toBe('running');
    // The same key and body through B: the same job.
    const again = await start(b.base, { steps: 50, stepMs: 200 }, { 'idempotency-key': 'shared-1' });
    expect(again.status).toBe(202);
    expect(again.headers.get('location')).toBe(location);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const conflict = await start(b.base, { steps: 2, stepMs: 1 }, { 'idempotency-key': 'shared-1' });
    expect(conflict.status).toBe(422);
    // Canceled through B; A stops it, and both answer canceled.
    const del = await fetch(new URL(location, b.base), { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(((await del.json()) as Status).state).toBe('canceled');
    const onA = (await (await fetch(new URL(location, a.base))).json()) as Status;
    expect(onA.state).toBe('canceled');
    const statsA = (await (await fetch(`${a.base}/stats`)).json()) as { jobs: { running: number; canceled: number } };
    expect(statsA.jobs).toMatchObject({ running: 0, canceled: 1 });
  });

  it('a job started on B finishes there and its result is read on A', async () => {
    const started = await start(b.base, { steps: 2, stepMs: 10 }, { prefer: 'wait=10' });
    expect(started.status).toBe(200);
    const location = started.headers.get('content-location')!;
    const onA = await fetch(new URL(location, a.base)); // 303 to /result, followed
    expect(onA.status).toBe(200);
    expect((await onA.json()) as Status).toMatchObject({ state: 'succeeded', result: { steps: 2, stepMs: 10 } });
  });

  it('fails the running job of a process killed with SIGKILL once its lease runs out; B hears it', async () => {
    const started = await start(a.base, { steps: 100, stepMs: 100 });
    expect(started.status).toBe(202);
    const location = started.headers.get('location')!;
    let status = (await (await fetch(new URL(location, b.base))).json()) as Status;
    await killDemo(a);
    const killedAt = Date.now();
    // Follow it on B with held reads until it ends (bounded: 20 reads of at most 2 s).
    for (let i = 0; i < 20 && (status.state === 'pending' || status.state === 'running'); i++) {
      const res = await fetch(new URL(location, b.base), { headers: { prefer: 'wait=2' } });
      status = (await res.json()) as Status;
    }
    expect(status.state).toBe('failed');
    expect(status.error).toMatchObject({ name: 'WorkerLostError', code: 'PB_ERR_WORKER_LOST' });
    // Not before the lease could have run out (A renewed it at most a third of a lease before).
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(LEASE_MS / 2);
  });
});
