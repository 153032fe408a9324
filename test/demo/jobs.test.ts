import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { PollHandle, PollHandler } from '../../src/index.js';
import { eventually, serveRig, TestResources } from '../helpers.js';

let base = '';
let demo: { server: Server; jobs: PollHandle; poll: PollHandler };

const suite = new TestResources();
beforeAll(() =>
  suite.setup(async () => {
    demo = createDemo({ jobs: { maxLiveJobs: 50, maxWaitSeconds: 30 } });
    ({ url: base } = await serveRig(demo.server, { resources: suite }));
  }),
);
afterAll(async () => {
  await suite.teardown();
});

interface Status {
  id: string;
  state: string;
  progress: { done: number; total: number; message: string } | null;
  result?: unknown;
}
const errorCode = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string } }).error.code;
const startJob = (body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

/** Follows a job with held reads (Prefer: wait + If-None-Match) until it ends; returns every snapshot seen. */
async function follow(location: string, etag: string): Promise<{ seen: Status[]; last: Response }> {
  const seen: Status[] = [];
  for (let i = 0; i < 100; i++) {
    const res = await fetch(new URL(location, base), { headers: { prefer: 'wait=20', 'if-none-match': etag } });
    if (res.status === 304) continue;
    expect(res.status).toBe(200);
    etag = res.headers.get('etag')!;
    const s = (await res.json()) as Status;
    seen.push(s);
    if (s.state !== 'pending' && s.state !== 'running') return { seen, last: res };
  }
  throw new Error('the job did not end within 100 reads');
}

describe('demo: POST /jobs, GET /jobs/:id, DELETE /jobs/:id', () => {
  it('runs a job with progress per step, then answers 303 to its result', async () => {
    const res = await startJob({ steps: 3, stepMs: 20 });
    expect(res.status).toBe(202);
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^\/jobs\/[\w-]{16}$/);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const { seen, last } = await follow(location, res.headers.get('etag')!);
    const done = seen.map((s) => s.progress?.done ?? 0);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(seen.at(-1)).toMatchObject({ state: 'succeeded', progress: { done: 3, total: 3, message: 'step 3 of 3' }, result: { steps: 3, stepMs: 20 } });
    expect(last.redirected).toBe(true); // 303 See Other to the result resource
    expect(last.url).toBe(`${base}${location}/result`);
    const manual = await fetch(new URL(location, base), { redirect: 'manual' });
    expect(manual.status).toBe(303);
    expect(manual.headers.get('location')).toBe(`${location}/result`);
  });

  it('answers within Prefer: respond-async, wait=N when the job is quick', async () => {
    const res = await startJob({ steps: 2, stepMs: 1 }, { prefer: 'respond-async, wait=10' });
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=10');
    expect(await res.json()).toMatchObject({ state: 'succeeded', result: { steps: 2, stepMs: 1 } });
  });

  it('cancels a job mid-way with DELETE', async () => {
    const res = await startJob({ steps: 100, stepMs: 50 });
    const location = res.headers.get('location')!;
    let etag = res.headers.get('etag')!;
    // Wait for the first step, so the job is running mid-way: held reads, each answered on a change.
    await eventually(
      async () => {
        const r = await fetch(new URL(location, base), { headers: { prefer: 'wait=20', 'if-none-match': etag } });
        etag = r.headers.get('etag') ?? etag;
        return r.status === 200 && ((await r.json()) as Status).progress !== null;
      },
      'the job to report its first step',
      { timeoutMs: 20_000 },
    );
    const del = await fetch(new URL(location, base), { method: 'DELETE' });
    expect(del.status).toBe(200);
    const s = (await del.json()) as Status;
    expect(s.state).toBe('canceled');
    expect(s.progress!.done).toBeLessThan(100);
    const after = await fetch(new URL(location, base), { redirect: 'manual' });
    expect(after.status).toBe(303);
    const final = await fetch(new URL(location, base));
    expect(((await final.json()) as Status).state).toBe('canceled');
  });

  it('validates and bounds the body', async () => {
    const cases: [unknown, number, string][] = [
      [{}, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 0, stepMs: 10 }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 1001, stepMs: 10 }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 2, stepMs: -1 }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 2, stepMs: 60_001 }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 1000, stepMs: 60_000 }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 1.5, stepMs: 1 }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: '3', stepMs: 1 }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 3, stepMs: 1, extra: true }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      [[3, 1], 400, 'PB_ERR_INVALID_ARGUMENT'],
      [{ steps: 3, stepMs: 1, pad: 'x'.repeat(2000) }, 413, 'PB_ERR_BODY_TOO_LARGE'],
    ];
    const before = demo.jobs.stats().started;
    for (const [body, status, code] of cases) {
      const res = await startJob(body);
      expect(res.status, JSON.stringify(body).slice(0, 60)).toBe(status);
      expect(await errorCode(res)).toBe(code);
    }
    const garbled = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"steps":' });
    expect(garbled.status).toBe(400);
    expect(demo.jobs.stats().started).toBe(before);
  });

  it('answers unknown and hostile ids with 404, and other methods with 405', async () => {
    for (const path of ['/jobs/nope', '/jobs/__proto__', '/jobs/__proto__/result', '/jobs/%E0%A4%A']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(await errorCode(res)).toBe('PB_ERR_NOT_FOUND');
    }
    const res = await fetch(`${base}/jobs`);
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
  });

  it('reports the jobs in GET /stats', async () => {
    const stats = (await (await fetch(`${base}/stats`)).json()) as { jobs: Record<string, number>; poll: Record<string, number> };
    expect(stats.jobs).toMatchObject({ started: expect.any(Number), stored: expect.any(Number), pending: 0 });
    expect(stats.jobs['started']).toBeGreaterThanOrEqual(3);
    expect(stats.poll).toMatchObject({ held: 0, heldStarts: 0 });
  });

  it('serves the page with the jobs section', async () => {
    const page = await (await fetch(`${base}/`)).text();
    expect(page).toContain('<section id="job"');
    expect(page).toContain('<progress id="job-progress"');
  });
});
