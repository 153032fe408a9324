/**
 * The shared mode of PollHandle on MemoryJobStore (two registries in one process), through the
 * job store kit, plus what is particular to the in-memory store.
 */
import { describe, expect, it } from 'vitest';
import { type JobStore, type JobStoreListener, ManualClock, MemoryJobStore, type PollJobContext, SharedPollHandle, UnavailableError } from '../../src/index.js';
import { jobStoreConformance } from '../conformance/job-store-kit.js';
import { until } from '../helpers.js';

/** A view of `store` that can be made dead: its calls reject and it hears nothing. */
function severable(store: JobStore): { store: JobStore; sever: () => void } {
  let dead = false;
  const fail = (): Promise<never> => Promise.reject(new UnavailableError('the store is unreachable (severed by the test)'));
  const view: JobStore = {
    subscribe: (listener: JobStoreListener) =>
      store.subscribe({
        changed: (id, version) => {
          if (!dead) listener.changed(id, version);
        },
        resync: () => {
          if (!dead) listener.resync();
        },
      }),
    ready: () => (dead ? fail() : store.ready()),
    create: (job) => (dead ? fail() : store.create(job)),
    read: (id) => (dead ? fail() : store.read(id)),
    findByKey: (key) => (dead ? fail() : store.findByKey(key)),
    update: (id, update) => (dead ? fail() : store.update(id, update)),
    expire: (id) => (dead ? fail() : store.expire(id)),
    heartbeat: (owner, leaseMs) => (dead ? fail() : store.heartbeat(owner, leaseMs)),
    release: (owner) => (dead ? fail() : store.release(owner)),
    reap: (error) => (dead ? fail() : store.reap(error)),
  };
  return {
    store: view,
    sever: () => {
      dead = true;
    },
  };
}

/** The store's methods, bound, as a plain object to override some of. */
function bind(store: MemoryJobStore): JobStore {
  return {
    subscribe: (listener) => store.subscribe(listener),
    ready: () => store.ready(),
    create: (job) => store.create(job),
    read: (id) => store.read(id),
    findByKey: (key) => store.findByKey(key),
    update: (id, update) => store.update(id, update),
    expire: (id) => store.expire(id),
    heartbeat: (owner, leaseMs) => store.heartbeat(owner, leaseMs),
    release: (owner) => store.release(owner),
    reap: (error) => store.reap(error),
  };
}

jobStoreConformance('MemoryJobStore', (clock) => {
  const store = new MemoryJobStore({ clock });
  const a = severable(store);
  return Promise.resolve({ a: a.store, b: store, sever: a.sever, dispose: () => Promise.resolve(store.close()) });
});

describe('MemoryJobStore', () => {
  it('forgets expired jobs, tombstones and released leases: nothing grows', async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock });
    const jobs = new SharedPollHandle({ clock, store, ttlMs: 1000, goneMs: 1000, leaseMs: 300 });
    for (let i = 0; i < 50; i++) await (await jobs.submit(() => i, { idempotencyKey: `k${i}` })).done();
    expect(store.stats()).toMatchObject({ jobs: 50, keys: 50, leases: 1 });
    clock.advance(1100);
    await new Promise((r) => setImmediate(r));
    expect(store.stats()).toMatchObject({ jobs: 0, keys: 0, gone: 50 });
    clock.advance(1100);
    expect(store.stats()).toMatchObject({ jobs: 0, keys: 0, gone: 0 });
    await jobs.close();
    expect(store.stats().leases).toBe(0);
    expect(jobs.stats()).toMatchObject({ pending: 0, running: 0, stored: 0, mirrors: 0 });
  });

  it('fails a job whose creation the store did but whose answer was lost, once the store answers again', async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock });
    let created: string | undefined;
    const lossy: JobStore = {
      ...bind(store),
      create: async (job) => {
        await store.create(job);
        created = job.id;
        throw new UnavailableError('the answer was lost');
      },
    };
    const jobs = new SharedPollHandle({ clock, store: lossy, leaseMs: 300 });
    const other = new SharedPollHandle({ clock, store });
    await expect(jobs.submit(() => 1, { idempotencyKey: 'k' })).rejects.toBeInstanceOf(UnavailableError);
    expect(jobs.stats().pending).toBe(0);
    expect((await other.lookup(created!)).state).toBe('pending');
    clock.advance(100); // the next tick
    for (let i = 0; i < 20 && (await store.read(created!)) !== undefined && ((await store.read(created!)) as { state: string }).state === 'pending'; i++) {
      await new Promise((r) => setImmediate(r));
    }
    expect(await store.read(created!)).toMatchObject({ state: 'failed', error: { code: 'PB_ERR_WORKER_LOST' } });
    await jobs.close();
    await other.close();
  });

  it('a registry that missed an announcement catches up at its next tick: its held wait is answered', async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock });
    let deaf = false;
    const hard: JobStore = {
      ...bind(store),
      subscribe: (listener) =>
        store.subscribe({
          changed: (id, version) => {
            if (!deaf) listener.changed(id, version);
          },
          resync: () => listener.resync(),
        }),
    };
    const A = new SharedPollHandle({ clock, store, leaseMs: 3000 });
    const B = new SharedPollHandle({ clock, store: hard, leaseMs: 3000 });
    let ctx: PollJobContext | undefined;
    const job = await A.submit((c) => {
      ctx = c;
      return new Promise(() => {});
    });
    await until(() => ctx !== undefined, 'the job to run');
    const onB = await B.lookup(job.id);
    let woken = false;
    const wait = B.waitForChange(job.id, { version: onB.version, timeoutMs: 60_000 }).then((s) => {
      woken = true;
      return s;
    });
    await new Promise((r) => setImmediate(r));
    deaf = true;
    ctx!.progress(0.5);
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(woken).toBe(false); // B did not hear it
    clock.advance(1000); // B's tick re-reads the jobs it holds live copies of
    expect((await wait).progress).toBe(0.5);
    job.cancel();
    await A.close();
    await B.close();
  });

  it('PollJob.cancel() on a copy of another registry\'s job cancels it there', async () => {
    const store = new MemoryJobStore();
    const A = new SharedPollHandle({ store });
    const B = new SharedPollHandle({ store });
    let signal: AbortSignal | undefined;
    const job = await A.submit(({ signal: s }) => {
      signal = s;
      return new Promise(() => {});
    });
    await until(() => signal !== undefined, 'the job to run');
    const onB = await B.lookup(job.id);
    expect(onB.cancel()).toBe(true);
    expect((await onB.done()).state).toBe('canceled');
    await until(() => signal!.aborted, "A's signal to abort");
    expect(job.state).toBe('canceled');
    expect(onB.cancel()).toBe(false);
    await A.close();
    await B.close();
  });

  it('runs a job whose running write was applied but whose answer was lost', async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock });
    let lose = true;
    const lossy: JobStore = {
      ...bind(store),
      update: async (id, update) => {
        const found = await store.update(id, update);
        if (update.kind === 'running' && lose) {
          lose = false;
          throw new UnavailableError('the answer was lost');
        }
        return found;
      },
    };
    const jobs = new SharedPollHandle({ clock, store: lossy, leaseMs: 30_000 });
    let ran = 0;
    const job = await jobs.submit(() => {
      ran++;
      return 'ran';
    });
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    expect(ran).toBe(0);
    clock.advance(1000); // the retry: the store refuses (already running) and the function runs
    expect(await job.done()).toMatchObject({ state: 'succeeded', result: 'ran' });
    expect(ran).toBe(1);
    expect(jobs.stats()).toMatchObject({ pending: 0, running: 0, inFlight: 0, succeeded: 1 });
    await jobs.close();
  });

  it("a registry that closes without writing its jobs' end releases its lease as run out: another fails them at once", async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock });
    const refusing: JobStore = {
      ...bind(store),
      update: (id, update) => (update.kind === 'canceled' ? Promise.reject(new UnavailableError('unreachable for this write')) : store.update(id, update)),
    };
    const A = new SharedPollHandle({ clock, store: refusing, leaseMs: 60_000 });
    const B = new SharedPollHandle({ clock, store, leaseMs: 60_000 });
    const job = await A.submit(() => new Promise(() => {}));
    await until(() => job.state === 'running', 'the job to run');
    await A.close();
    expect(await store.read(job.id)).toMatchObject({ state: 'running' });
    clock.advance(20_000); // B's tick, long before A's 60 s lease would have run out
    for (let i = 0; i < 20 && B.stats().reaped === 0; i++) await new Promise((r) => setImmediate(r));
    expect(await store.read(job.id)).toMatchObject({ state: 'failed', error: { code: 'PB_ERR_WORKER_LOST' } });
    await B.close();
  });

  it('done() on a copy dropped at a tick looks the job up again and resolves with its outcome', async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock });
    const A = new SharedPollHandle({ clock, store });
    const B = new SharedPollHandle({ clock, store });
    let finish!: (v: string) => void;
    const job = await A.submit(() => new Promise<string>((r) => (finish = r)));
    const copy = await B.lookup(job.id);
    clock.advance(10_000); // B's tick drops the copy nobody awaits
    expect(B.stats().mirrors).toBe(0);
    const outcome = copy.done();
    await until(() => B.stats().mirrors > 0, 'the job to be looked up again');
    finish('late');
    expect(await outcome).toMatchObject({ state: 'succeeded', result: 'late' });
    await A.close();
    await B.close();
  });

  it('remembers at most maxTombstones ended ids as gone', async () => {
    const clock = new ManualClock();
    const store = new MemoryJobStore({ clock, maxTombstones: 3 });
    const jobs = new SharedPollHandle({ clock, store, ttlMs: 100, goneMs: 10_000 });
    for (let i = 0; i < 10; i++) await (await jobs.submit(() => i)).done();
    clock.advance(200);
    await new Promise((r) => setImmediate(r));
    expect(store.stats()).toMatchObject({ jobs: 0, gone: 3 });
    await jobs.close();
  });

  it('refuses updates its state machine does not allow, answering with the job as it is', async () => {
    const store = new MemoryJobStore();
    await store.create({ id: 'j', owner: 'o', ttlMs: 1000, goneMs: 0, leaseMs: 1000 });
    expect(await store.update('j', { kind: 'progress', progress: 0.5 })).toMatchObject({ state: 'pending', version: 1 });
    expect(await store.update('j', { kind: 'succeeded', resultJson: '1' })).toMatchObject({ state: 'pending', version: 1 });
    expect(await store.update('j', { kind: 'running' })).toMatchObject({ state: 'running', version: 2 });
    expect(await store.update('j', { kind: 'canceled' })).toMatchObject({ state: 'canceled', version: 3 });
    expect(await store.update('j', { kind: 'succeeded', resultJson: '1' })).toMatchObject({ state: 'canceled', version: 3 });
    expect(await store.update('nope', { kind: 'running' })).toBeUndefined();
    store.close();
    await expect(store.read('j')).rejects.toMatchObject({ code: 'PB_ERR_CLOSED' });
  });
});
