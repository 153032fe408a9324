/**
 * The job registry interface: what a PollHandle (jobs in this process) and a SharedPollHandle
 * (jobs shared through a JobStore, here a MemoryJobStore) both promise, run once against each
 * through the methods they share; then what belongs to one of them: a local status read that
 * answers synchronously, and a shared registry whose close leaves no timer behind.
 */
import { describe, expect, it } from 'vitest';
import {
  CanceledError,
  GoneError,
  IdempotencyConflictError,
  type JobRegistry,
  type JobStore,
  ManualClock,
  MemoryJobStore,
  NotFoundError,
  PollHandle,
  type PollHandleOptions,
  PollJob,
  type PollJobContext,
  SharedPollHandle,
  UnavailableError,
} from '../../src/index.js';
import { perTest } from '../helpers.js';

/** Lets microtasks and promise callbacks run (a MemoryJobStore answers in microtasks). */
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
};

type Make = (clock: ManualClock, options?: PollHandleOptions) => JobRegistry;
const registries: [string, Make][] = [
  ['PollHandle (this process)', (clock, options) => new PollHandle({ clock, ...options })],
  [
    'SharedPollHandle (on a MemoryJobStore)',
    (clock, options) => {
      const store = new MemoryJobStore({ clock });
      perTest.defer(() => store.close());
      return new SharedPollHandle({ clock, store, ...options });
    },
  ],
];

/** A job whose function the test drives. */
function controlled<T = unknown>(): { fn: (ctx: PollJobContext) => Promise<T>; ctx: () => PollJobContext | undefined; finish: (value: T) => void } {
  let context: PollJobContext | undefined;
  let finish!: (value: T) => void;
  const result = new Promise<T>((resolve) => (finish = resolve));
  return {
    fn: (ctx) => {
      context = ctx;
      return result;
    },
    ctx: () => context,
    finish,
  };
}

describe.each(registries)('JobRegistry: %s', (_name, make) => {
  function setup(options?: PollHandleOptions): { jobs: JobRegistry; clock: ManualClock } {
    const clock = new ManualClock(1_000_000);
    const jobs = make(clock, options);
    perTest.defer(() => jobs.close());
    return { jobs, clock };
  }

  it('submits a job, runs it, and keeps its result; lookup answers with the same job', async () => {
    const { jobs } = setup();
    const c = controlled<{ n: number }>();
    const job = await jobs.submit(c.fn);
    expect(job).toBeInstanceOf(PollJob);
    expect(job.replayed).toBe(false);
    await flush();
    expect(job.state).toBe('running');
    c.ctx()!.progress(0.5);
    await flush();
    expect((await jobs.lookup(job.id)).snapshot()).toEqual(job.snapshot());
    c.finish({ n: 1 });
    const done = await job.done();
    expect(done).toMatchObject({ id: job.id, state: 'succeeded', progress: 0.5, result: { n: 1 } });
    expect((await jobs.lookup(job.id)).snapshot()).toEqual(done);
    expect(jobs.stats()).toMatchObject({ started: 1, succeeded: 1, pending: 0, running: 0, inFlight: 0, stored: 1 });
  });

  it('replays a start by its idempotency key, refuses another fingerprint, and finds the job by key', async () => {
    const { jobs } = setup();
    const c = controlled();
    const job = await jobs.submit(c.fn, { idempotencyKey: 'k', fingerprint: 'a' });
    const again = await jobs.submit(() => 'other', { idempotencyKey: 'k', fingerprint: 'a' });
    expect(again).toMatchObject({ id: job.id, replayed: true });
    await expect(jobs.submit(() => 'other', { idempotencyKey: 'k', fingerprint: 'b' })).rejects.toBeInstanceOf(IdempotencyConflictError);
    expect((await jobs.lookupByIdempotencyKey('k'))?.id).toBe(job.id);
    expect(await jobs.lookupByIdempotencyKey('unknown')).toBeUndefined();
    expect(jobs.stats()).toMatchObject({ started: 1, replayed: 2 });
  });

  it('cancelJob cancels a running job: its signal aborts and a late result is dropped', async () => {
    const { jobs } = setup();
    const c = controlled();
    const job = await jobs.submit(c.fn);
    await flush();
    const reason = new Error('stop');
    expect((await jobs.cancelJob(job.id, reason)).state).toBe('canceled');
    await flush();
    expect(c.ctx()!.signal.aborted).toBe(true);
    c.finish('late');
    await flush();
    expect((await jobs.lookup(job.id)).state).toBe('canceled');
    expect((await jobs.cancelJob(job)).state).toBe('canceled'); // a view of it works as its id does
    expect(jobs.stats()).toMatchObject({ canceled: 1, succeeded: 0, inFlight: 0 });
  });

  it('waitForChange wakes on the next change of the job', async () => {
    const { jobs } = setup();
    const c = controlled();
    const job = await jobs.submit(c.fn);
    await flush();
    const changed = jobs.waitForChange(job.id, { version: job.version, timeoutMs: 60_000 });
    c.ctx()!.progress({ done: 1, total: 2 });
    expect((await changed).progress).toEqual({ done: 1, total: 2 });
    expect(jobs.stats().waiting).toBe(0);
    c.finish(null);
  });

  it('done({ signal }) stops waiting when the signal aborts; the job goes on', async () => {
    const { jobs } = setup();
    const c = controlled();
    const job = await jobs.submit(c.fn);
    const ac = new AbortController();
    const waiting = job.done({ signal: ac.signal });
    const reason = new Error('gave up');
    ac.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    await expect(job.done({ signal: ac.signal })).rejects.toBe(reason); // already aborted: at once
    await flush();
    c.finish('ok');
    expect(await job.done()).toMatchObject({ state: 'succeeded', result: 'ok' });
  });

  it('an outcome expires after its TTL: gone, then unknown', async () => {
    const { jobs, clock } = setup({ ttlMs: 1000, goneMs: 5000 });
    const job = await jobs.submit(() => 'x');
    await job.done();
    clock.advance(1100);
    await flush();
    expect(job.state).toBe('expired');
    await expect(jobs.lookup(job.id)).rejects.toBeInstanceOf(GoneError);
    clock.advance(5100);
    await flush();
    await expect(jobs.lookup(job.id)).rejects.toBeInstanceOf(NotFoundError);
    await expect(jobs.lookup('__proto__')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('close cancels the live jobs, answers their done(), and refuses later calls', async () => {
    const { jobs } = setup();
    const c = controlled();
    const job = await jobs.submit(c.fn);
    await flush();
    const outcome = job.done();
    await jobs.close();
    expect((await outcome).state).toBe('canceled');
    expect(c.ctx()!.signal.aborted).toBe(true);
    await expect(jobs.submit(() => 1)).rejects.toMatchObject({ code: 'PB_ERR_CLOSED' });
    await expect(jobs.lookup(job.id)).rejects.toMatchObject({ code: 'PB_ERR_CLOSED' });
  });
});

describe('PollHandle: a status read of a job in this process', () => {
  it('returns the job synchronously (not a promise), and the same view every time', () => {
    const jobs = new PollHandle({ clock: new ManualClock() });
    perTest.defer(() => jobs.close());
    const job = jobs.start(() => new Promise(() => {}));
    const read = jobs.get(job.id);
    expect(read).not.toBeInstanceOf(Promise);
    expect(typeof (read as unknown as { then?: unknown }).then).toBe('undefined');
    expect(read).toBeInstanceOf(PollJob);
    expect(read.state).toBe('pending');
    expect(jobs.get(job.id)).toBe(read);
    expect(read).toBe(job);
    job.cancel(new CanceledError('done with it'));
  });
});

describe('SharedPollHandle: close', () => {
  it('leaves no timer on the clock, the retry timers of failed writes included', async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock });
    perTest.defer(() => store.close());
    let refuse = true;
    const flaky: JobStore = {
      subscribe: (listener) => store.subscribe(listener),
      ready: () => store.ready(),
      create: (job) => store.create(job),
      read: (id) => store.read(id),
      findByKey: (key) => store.findByKey(key),
      // The first `running` write and every outcome write fail: both arm a retry timer.
      update: (id, update) => {
        if (update.kind === 'succeeded' || (update.kind === 'running' && refuse)) {
          refuse = false;
          return Promise.reject(new UnavailableError('unreachable for this write'));
        }
        return store.update(id, update);
      },
      expire: (id) => store.expire(id),
      heartbeat: (owner, leaseMs) => store.heartbeat(owner, leaseMs),
      release: (owner) => store.release(owner),
      reap: (error) => store.reap(error),
    };
    const jobs = new SharedPollHandle({ clock, store: flaky, leaseMs: 30_000 });
    const first = await jobs.submit(() => 'ran');
    await flush();
    expect(first.state).toBe('pending'); // its running write failed: retried in a second
    const second = await jobs.submit(() => 'ran');
    await flush();
    expect(second.state).toBe('running'); // its outcome write failed: retried in a second
    expect(clock.pendingTimers).toBeGreaterThanOrEqual(3); // the lease tick and two retries
    await jobs.close();
    expect(clock.pendingTimers).toBe(0);
    expect(first.state).toBe('canceled');
    expect(second.state).toBe('canceled');
  });
});
