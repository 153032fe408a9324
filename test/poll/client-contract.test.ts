/**
 * The HTTP contract, checked from the other side: patchbay's own `PollClient` (src/client, written
 * against the contract in the issue) drives a real `PollHandler` on 127.0.0.1.
 */
import http, { type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import { PollClient, type JobStatus } from '../../src/client/index.js';
import { CanceledError, JobFailedError, ManualClock, PollHandle, PollHandler, type PollJobContext, type PollResultMode } from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';

interface Rig {
  base: string;
  jobs: PollHandle;
  handler: PollHandler<{ steps: number; fail?: boolean }>;
  server: Server;
  /** The running job's context and its step gate: the test releases one step at a time. */
  contexts: PollJobContext[];
  step(): void;
  /** How many steps wait to be released (1 while the job waits at its next step). */
  gated(): number;
}

async function rig(resultMode: PollResultMode): Promise<Rig> {
  const clock = new ManualClock();
  const jobs = new PollHandle({ clock });
  const contexts: PollJobContext[] = [];
  const gates: (() => void)[] = [];
  const handler = new PollHandler<{ steps: number; fail?: boolean }>({
    jobs,
    resultMode,
    run: async (input, ctx) => {
      contexts.push(ctx);
      for (let i = 1; i <= input.steps; i++) {
        await new Promise<void>((resolve, reject) => {
          gates.push(resolve);
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error));
        });
        ctx.progress({ done: i, total: input.steps });
      }
      if (input.fail === true) throw new RangeError('out of range');
      return { steps: input.steps };
    },
  });
  const server = http.createServer((req, res) => void handler.handle(req, res));
  server.keepAliveTimeout = 1;
  const { url } = await serveRig(server);
  // Closed after the test, last registered first: the handler, the jobs, then the server.
  perTest.defer(() => jobs.close());
  perTest.defer(() => handler.close());
  return {
    base: url,
    jobs,
    handler,
    server,
    contexts,
    step: () => gates.shift()?.(),
    gated: () => gates.length,
  };
}

/**
 * Releases the job's steps one by one, each once the job waits at it and the client holds a read.
 * A step's progress answers the held read synchronously before the job reaches its next gate, so
 * "gated and held" always means a fresh held read.
 */
async function drive(r: Rig, steps: number): Promise<void> {
  for (let i = 0; i < steps; i++) {
    await until(() => r.gated() === 1 && r.handler.stats().held === 1, `step ${i + 1} gated and a read held`);
    r.step();
  }
}

describe.each<PollResultMode>(['inline', 'redirect'])('PollClient against PollHandler (resultMode %s)', (mode) => {
  it('starts a job, follows it with held reads, reports every step, and resolves with the result', async () => {
    const r = await rig(mode);
    const client = new PollClient({ baseUrl: r.base, waitSeconds: 20 });
    const seen: JobStatus[] = [];
    const result = client.run<{ steps: number }>('/jobs', { steps: 3 }, { onProgress: (s) => seen.push(s) });
    await drive(r, 3);
    expect(await result).toEqual({ steps: 3 });
    // Every step is seen, in order, and no snapshot is reported twice (state or progress differs).
    const dones = seen.map((s) => (s.progress as { done?: number } | null)?.done ?? 0);
    expect(dones).toEqual([...dones].sort((a, b) => a - b));
    expect([...new Set(dones)]).toEqual([0, 1, 2, 3]);
    const keys = seen.map((s) => `${s.state}/${JSON.stringify(s.progress)}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(seen.at(-1)).toMatchObject({ state: 'succeeded', result: { steps: 3 } });
    expect(r.jobs.stats()).toMatchObject({ started: 1, succeeded: 1 });
  });

  it('rejects with JobFailedError carrying the server-side error of a failed job', async () => {
    const r = await rig(mode);
    const client = new PollClient({ baseUrl: r.base, waitSeconds: 20 });
    const result = client.run('/jobs', { steps: 1, fail: true }).catch((e: unknown) => e);
    await drive(r, 1);
    const error = (await result) as JobFailedError;
    expect(error).toBeInstanceOf(JobFailedError);
    expect(error.jobError).toEqual({ name: 'RangeError', message: 'out of range' });
  });

  it('cancels the job on the server (DELETE) when the caller aborts', async () => {
    const r = await rig(mode);
    const client = new PollClient({ baseUrl: r.base, waitSeconds: 20 });
    const ac = new AbortController();
    const result = client.run('/jobs', { steps: 5 }, { signal: ac.signal }).catch((e: unknown) => e);
    await until(() => r.contexts.length === 1 && r.handler.stats().held === 1, 'a held read');
    ac.abort(new CanceledError('the user left'));
    expect(await result).toBeInstanceOf(CanceledError);
    await until(() => r.jobs.stats().canceled === 1, 'the job to be canceled on the server');
    expect(r.contexts[0]!.signal.aborted).toBe(true);
    await until(() => r.handler.stats().held === 0, 'no held read left');
  });

  it('answers a start within Prefer: respond-async, wait=N with the result', async () => {
    const r = await rig(mode);
    const client = new PollClient({ baseUrl: r.base });
    const started = client.start('/jobs', { steps: 1 }, { waitSeconds: 10 });
    await until(() => r.gated() === 1 && r.handler.stats().heldStarts === 1, 'the start to be held');
    r.step();
    const ref = await started;
    expect(ref.status).toMatchObject({ state: 'succeeded', result: { steps: 1 } });
    expect(ref.location.pathname).toBe(`/jobs/${ref.id}`);
  });

  it('gets the same job for a retried start with the same Idempotency-Key', async () => {
    const r = await rig(mode);
    const client = new PollClient({ baseUrl: r.base });
    const a = await client.start('/jobs', { steps: 2 }, { idempotencyKey: 'order-17' });
    const b = await client.start('/jobs', { steps: 2 }, { idempotencyKey: 'order-17' });
    expect(b.id).toBe(a.id);
    expect(b.location.href).toBe(a.location.href);
    expect(r.jobs.stats().started).toBe(1);
  });
});
