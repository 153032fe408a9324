import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { CanceledError, HttpStatusError, JobFailedError, ManualClock, PollClient } from '../../src/client/index.js';
import { PollHandle, type PollHandleOptions, PollHandler, type PollHandlerOptions, type PollJobContext } from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';

// PollClient against the real PollHandle + PollHandler on 127.0.0.1.

interface Input {
  readonly steps?: number;
  readonly fail?: string;
  readonly hang?: boolean;
}

interface Rig {
  base: string;
  jobs: PollHandle;
  /** Status reads held by Prefer: wait on the server now. */
  held(): number;
  serverClock: ManualClock;
  /** Requests as the server saw them: method, path and the headers that matter. */
  log: { method: string; path: string; prefer?: string; inm?: string; key?: string }[];
  /** Lets a test step a job: resolves the next `await gate()` inside a running job. */
  step(): void;
  /** The next n POST answers are lost: the job is created, then the socket is destroyed. */
  loseStartAnswers(n: number): void;
}

async function rig(handleOptions: Partial<PollHandleOptions> = {}, handlerOptions: Partial<PollHandlerOptions<Input, unknown>> = {}): Promise<Rig> {
  const serverClock = new ManualClock();
  const jobs = new PollHandle({ clock: serverClock, ...handleOptions });
  const waiters: (() => void)[] = [];
  let released = 0;
  const gate = (): Promise<void> =>
    new Promise((resolve) => {
      if (released > 0) {
        released--;
        resolve();
      } else waiters.push(resolve);
    });
  const handler = new PollHandler<Input, unknown>({
    jobs,
    run: async (input: Input, { progress, signal }: PollJobContext) => {
      if (input.hang === true) {
        await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      }
      const steps = input.steps ?? 0;
      for (let i = 0; i < steps; i++) {
        await gate();
        progress({ done: i + 1, total: steps });
      }
      if (input.fail !== undefined) throw new Error(input.fail);
      return { ok: true, steps };
    },
    ...handlerOptions,
  });
  const log: Rig['log'] = [];
  let lose = 0;
  const server = http.createServer((req, res) => {
    const h = req.headers;
    log.push({
      method: req.method ?? '',
      path: req.url ?? '',
      ...(h.prefer === undefined ? {} : { prefer: String(h.prefer) }),
      ...(h['if-none-match'] === undefined ? {} : { inm: h['if-none-match'] }),
      ...(h['idempotency-key'] === undefined ? {} : { key: h['idempotency-key'] as string }),
    });
    if (req.method === 'POST' && lose > 0) {
      lose--;
      const writeHead = res.writeHead.bind(res);
      res.writeHead = ((...args: Parameters<typeof res.writeHead>) => {
        req.socket.destroy(); // the job exists, but its answer never arrives
        return writeHead(...args);
      }) as typeof res.writeHead;
    }
    void handler.handle(req, res);
  });
  server.keepAliveTimeout = 1;
  // Closed after the test, last registered first: the server, the handler, then the jobs.
  perTest.defer(() => jobs.close());
  perTest.defer(() => handler.close());
  const { url } = await serveRig(server);
  return {
    base: url,
    jobs,
    held: () => handler.stats().held,
    serverClock,
    log,
    step: () => {
      const w = waiters.shift();
      if (w) w();
      else released++;
    },
    loseStartAnswers: (n) => {
      lose = n;
    },
  };
}

describe('PollClient', () => {
  it('runs a job to its result, reporting each progress change, with held reads (Prefer: wait + If-None-Match)', async () => {
    const r = await rig();
    const client = new PollClient({ baseUrl: r.base, waitSeconds: 10 });
    const progress: unknown[] = [];
    const done = client.run<{ ok: boolean; steps: number }>('/jobs', { steps: 3 }, { onProgress: (s) => progress.push([s.state, s.progress]) });
    for (let i = 0; i < 3; i++) {
      await until(() => r.held() === 1 || progress.length > i + 1, `a held read before step ${i + 1}`);
      r.step();
    }
    expect(await done).toEqual({ ok: true, steps: 3 });
    expect(['pending', 'running']).toContain((progress[0] as unknown[])[0]);
    expect(progress.slice(1)).toEqual(
      expect.arrayContaining([
        ['running', { done: 1, total: 3 }],
        ['running', { done: 2, total: 3 }],
      ]),
    );
    expect(progress[progress.length - 1]).toEqual(['succeeded', { done: 3, total: 3 }]);
    const reads = r.log.filter((l) => l.method === 'GET');
    expect(reads.length).toBeGreaterThanOrEqual(1);
    expect(reads.every((l) => l.prefer === 'wait=10' && l.inm !== undefined)).toBe(true);
    expect(r.log[0]).toMatchObject({ method: 'POST', path: '/jobs' });
    expect(r.log[0]!.key).toMatch(/^[0-9a-f-]{36}$/); // a fresh Idempotency-Key per start
  });

  it('gets a quick job answered by the start itself with Prefer: respond-async, wait', async () => {
    const r = await rig();
    const client = new PollClient({ baseUrl: r.base });
    const ref = await client.start<{ ok: boolean }>('/jobs', { steps: 0 }, { waitSeconds: 5 });
    expect(ref.status?.state).toBe('succeeded');
    expect(ref.location.pathname).toBe(`/jobs/${ref.id}`);
    expect(await client.wait(ref)).toEqual({ ok: true, steps: 0 });
    expect(r.log.map((l) => l.method)).toEqual(['POST']); // nothing more to ask
    expect(r.log[0]!.prefer).toBe('respond-async, wait=5');
  });

  it('follows a 303 to the result resource (resultMode redirect)', async () => {
    const r = await rig({}, { resultMode: 'redirect' });
    const client = new PollClient({ baseUrl: r.base });
    const ref = await client.start('/jobs', { steps: 0 });
    await until(() => r.jobs.stats().stored === 1, 'the job to finish');
    expect(await client.wait(ref)).toEqual({ ok: true, steps: 0 });
    expect(r.log.some((l) => l.path.endsWith('/result'))).toBe(true);
  });

  it('rejects with JobFailedError carrying the server error for a failed job', async () => {
    const r = await rig();
    const error = await new PollClient({ baseUrl: r.base }).run('/jobs', { fail: 'disk full' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobFailedError);
    expect(error).toMatchObject({ code: 'PB_ERR_JOB_FAILED', state: 'failed', jobError: { message: 'disk full' } });
    expect((error as Error).message).toContain('disk full');
  });

  it('an abort cancels the job on the server (DELETE), rejects with the reason, and leaves no timer', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const client = new PollClient({ baseUrl: r.base, clock });
    const ac = new AbortController();
    const p = client.run('/jobs', { hang: true }, { signal: ac.signal });
    await until(() => r.held() === 1, 'a held status read');
    ac.abort(new Error('user gave up'));
    await expect(p).rejects.toThrow('user gave up');
    expect(r.log.some((l) => l.method === 'DELETE')).toBe(true);
    const id = r.log.find((l) => l.method === 'DELETE')!.path.split('/').pop()!;
    expect(r.jobs.get(id)?.state).toBe('canceled');
    expect(clock.pendingTimers).toBe(0);
  });

  it('a job canceled by someone else rejects with CanceledError', async () => {
    const r = await rig();
    const client = new PollClient({ baseUrl: r.base });
    const ref = await client.start('/jobs', { hang: true });
    const waiting = client.wait(ref).catch((e: unknown) => e);
    await until(() => r.held() === 1, 'a held status read');
    await client.cancel(ref);
    expect(await waiting).toBeInstanceOf(CanceledError);
  });

  it('retries a start whose answer was lost with the same Idempotency-Key, and gets the same job', async () => {
    const r = await rig();
    const clock = new ManualClock();
    const client = new PollClient({ baseUrl: r.base, clock, random: () => 0 });
    r.loseStartAnswers(1);
    const p = client.start('/jobs', { steps: 0 }, { idempotencyKey: 'order-42' });
    // The backoff is the one timer due now (the request's own deadline is 30 s away).
    await until(() => clock.timers().length === 1 && clock.timers()[0]!.at === clock.now(), 'the backoff after the lost answer');
    clock.advance(0);
    const ref = await p;
    const posts = r.log.filter((l) => l.method === 'POST');
    expect(posts.map((l) => l.key)).toEqual(['order-42', 'order-42']);
    expect(r.jobs.stats().stored + r.jobs.stats().inFlight).toBe(1); // one job, not two
    expect(ref.id).toBeTruthy();
  });

  it('paces reads by Retry-After when the server does not hold them', async () => {
    const r = await rig({}, { maxWaitSeconds: 0 });
    const clock = new ManualClock();
    const client = new PollClient({ baseUrl: r.base, clock });
    const done = client.run('/jobs', { steps: 1 });
    await until(() => r.log.filter((l) => l.method === 'GET').length === 1 && clock.timers().length === 1, 'the first read and a pause');
    const pause = clock.timers()[0]!.at - clock.now();
    expect(pause).toBeGreaterThanOrEqual(1000); // Retry-After: at least 1 s
    r.step();
    await until(() => r.jobs.stats().stored === 1, 'the job to finish');
    clock.advance(pause);
    expect(await done).toEqual({ ok: true, steps: 1 });
  });

  it('reports an unknown job as HttpStatusError 404 and an expired one as JobFailedError(expired)', async () => {
    const r = await rig({ ttlMs: 1000 });
    const client = new PollClient({ baseUrl: r.base });
    await expect(client.wait('/jobs/nope')).rejects.toMatchObject({ status: 404, serverCode: 'PB_ERR_NOT_FOUND' });
    await expect(client.wait('/jobs/nope')).rejects.toBeInstanceOf(HttpStatusError);
    const ref = await client.start('/jobs', { steps: 0 });
    await until(() => r.jobs.stats().stored === 1, 'the job to finish');
    r.serverClock.advance(1000);
    await until(() => r.jobs.stats().stored === 0, 'the result to expire');
    await expect(client.wait(ref)).rejects.toMatchObject({ code: 'PB_ERR_JOB_FAILED', state: 'expired' });
  });

  it('rejects bad options and bad keys with InvalidArgumentError', async () => {
    expect(() => new PollClient({ baseUrl: 'nope' })).toThrow(/baseUrl/);
    expect(() => new PollClient({ waitSeconds: -1 })).toThrow(/waitSeconds/);
    expect(() => new PollClient({ maxRetries: 1.5 })).toThrow(/maxRetries/);
    const client = new PollClient({ baseUrl: 'http://127.0.0.1:9' });
    await expect(client.start('/jobs', {}, { idempotencyKey: 'a\r\nb' })).rejects.toThrow(/idempotencyKey/);
    await expect(new PollClient().start('/relative')).rejects.toThrow(/baseUrl/);
  });
});
