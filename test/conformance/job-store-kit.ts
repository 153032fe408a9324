/**
 * The job store kit: two `SharedPollHandle` registries (A and B, standing for two processes) share jobs
 * through a {@link JobStore}, and everything the shared mode promises is checked through them,
 * directly and over HTTP. Run against `MemoryJobStore` and `RedisJobStore`, unchanged.
 *
 * Time is a `ManualClock` shared by the registries and the stores; what the kit waits for
 * (answers of a store across a network) it waits for by condition, with a deadline.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ErrorCodes,
  GoneError,
  IdempotencyConflictError,
  type JobStore,
  ManualClock,
  NotFoundError,
  PollHandle,
  PollHandler,
  type PollHandleOptions,
  type PollJobContext,
  SharedPollHandle,
} from '../../src/index.js';
import { eventually, perTest, serveRig } from '../helpers.js';

/** What a kit run needs: a store for each registry (sharing the same jobs), on `clock`. */
export interface SharedStores {
  readonly a: JobStore;
  readonly b: JobStore;
  /** Makes A's store dead: its calls fail and it hears nothing (A's process died). */
  sever(): void;
  /** Releases what the stores hold. */
  dispose(): Promise<void>;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** A job the test drives: its context once it runs, and the deferred of its result. */
function controlled<T = unknown>(): { fn: (ctx: PollJobContext) => Promise<T>; ctx: () => PollJobContext | undefined; result: Deferred<T> } {
  const result = deferred<T>();
  let context: PollJobContext | undefined;
  return {
    fn: (ctx) => {
      context = ctx;
      return result.promise;
    },
    ctx: () => context,
    result,
  };
}

/** Registers the kit's tests for one store implementation. */
export function jobStoreConformance(name: string, make: (clock: ManualClock) => Promise<SharedStores>): void {
  describe(`${name}: jobs shared between registries`, () => {
    async function setup(options: PollHandleOptions = {}): Promise<{ A: SharedPollHandle; B: SharedPollHandle; clock: ManualClock; stores: SharedStores }> {
      const clock = new ManualClock(1_000_000);
      const stores = await make(clock);
      perTest.defer(() => stores.dispose());
      const A = new SharedPollHandle({ clock, store: stores.a, leaseMs: 3000, ...options });
      const B = new SharedPollHandle({ clock, store: stores.b, leaseMs: 3000, ...options });
      perTest.defer(async () => {
        await A.close().catch(() => {});
        await B.close().catch(() => {});
      });
      await Promise.all([stores.a.ready(), stores.b.ready()]);
      return { A, B, clock, stores };
    }

    it('a job started on A is read on B and followed to its outcome, with the same versions', async () => {
      const { A, B } = await setup();
      const c = controlled<{ n: number }>();
      const job = await A.submit(c.fn);
      await eventually(() => c.ctx() !== undefined, 'the job to run on A');
      const seen = await B.lookup(job.id);
      expect(seen.state).toBe('running');
      expect(seen.version).toBe(job.version);
      c.ctx()!.progress({ done: 1, total: 2 });
      await eventually(() => job.progress !== null, 'the progress to be stored');
      expect((await B.lookup(job.id)).snapshot()).toEqual(job.snapshot());
      c.result.resolve({ n: 7 });
      const done = await job.done();
      expect(done).toMatchObject({ state: 'succeeded', result: { n: 7 }, progress: { done: 1, total: 2 } });
      expect((await B.lookup(job.id)).snapshot()).toEqual(done);
      expect(A.stats()).toMatchObject({ succeeded: 1, running: 0, pending: 0, stored: 1 });
    });

    it('B awaits a change of A\'s job, and done() on B resolves with A\'s outcome', async () => {
      const { A, B } = await setup();
      const c = controlled();
      const job = await A.submit(c.fn);
      await eventually(() => c.ctx() !== undefined, 'the job to run');
      const onB = await B.lookup(job.id);
      const changed = B.waitForChange(job.id, { timeoutMs: 60_000, version: onB.version });
      const outcome = onB.done();
      c.ctx()!.progress(0.5);
      expect((await changed).progress).toBe(0.5);
      c.result.resolve('ok');
      expect(await outcome).toMatchObject({ state: 'succeeded', result: 'ok' });
      expect(B.stats().waiting).toBe(0);
    });

    it('B cancels A\'s running job: A\'s signal aborts and its late result is dropped', async () => {
      const { A, B } = await setup();
      const c = controlled();
      const job = await A.submit(c.fn);
      await eventually(() => c.ctx() !== undefined, 'the job to run');
      const snapshot = await B.cancelJob(job.id);
      expect(snapshot.state).toBe('canceled');
      await eventually(() => c.ctx()!.signal.aborted, "A's signal to abort");
      expect(job.state).toBe('canceled');
      c.result.resolve('too late');
      await eventually(() => A.stats().inFlight === 0, 'the function to return');
      expect((await B.lookup(job.id)).state).toBe('canceled');
      expect(A.stats()).toMatchObject({ canceled: 1, succeeded: 0, running: 0 });
      // Canceling an ended job changes nothing.
      expect((await A.cancelJob(job.id)).version).toBe(snapshot.version);
    });

    it('a pending job canceled through B never runs on A', async () => {
      const { A, B } = await setup({ concurrency: 1 });
      const first = controlled();
      const second = controlled();
      const j1 = await A.submit(first.fn);
      const j2 = await A.submit(second.fn);
      await eventually(() => first.ctx() !== undefined, 'the first job to run');
      expect(j2.state).toBe('pending');
      await B.cancelJob(j2.id);
      await eventually(() => j2.state === 'canceled', 'A to hear of the cancel');
      first.result.resolve(1);
      await j1.done();
      await eventually(() => A.stats().inFlight === 0 && A.stats().pending === 0, 'the queue to drain');
      expect(second.ctx()).toBeUndefined();
    });

    it('idempotency keys are shared: the same key on B answers for A\'s job, another body conflicts', async () => {
      const { A, B } = await setup();
      const c = controlled();
      let ran = 0;
      const job = await A.submit(c.fn, { idempotencyKey: 'k1', fingerprint: 'f1' });
      const again = await B.submit(
        () => {
          ran++;
        },
        { idempotencyKey: 'k1', fingerprint: 'f1' },
      );
      expect(again.replayed).toBe(true);
      expect(again.id).toBe(job.id);
      await expect(B.submit(() => 1, { idempotencyKey: 'k1', fingerprint: 'f2' })).rejects.toBeInstanceOf(IdempotencyConflictError);
      expect((await B.lookupByIdempotencyKey('k1'))?.id).toBe(job.id);
      expect(await B.lookupByIdempotencyKey('unknown')).toBeUndefined();
      c.result.resolve(null);
      await job.done();
      expect(ran).toBe(0);
      expect(B.stats().started).toBe(0);
    });

    it("a dead registry's live jobs fail once its lease runs out, and B's waiters hear it", async () => {
      const { A, B, clock, stores } = await setup();
      const c = controlled();
      const job = await A.submit(c.fn);
      await eventually(() => c.ctx() !== undefined, 'the job to run');
      const onB = await B.lookup(job.id);
      const outcome = onB.done();
      stores.sever();
      // B renews its own lease every second and reaps the dead ones then: once A's lease (3 s
      // after its last renewal) has run out by the clock.
      for (let i = 0; i < 8 && B.stats().reaped === 0; i++) {
        clock.advance(1000);
        await eventually(() => B.stats().reaped === 1, 'B to reap the job', { timeoutMs: 300 }).catch(() => undefined);
      }
      expect(B.stats().reaped).toBe(1);
      const failed = await outcome;
      expect(failed.state).toBe('failed');
      expect(failed.error).toMatchObject({ name: 'WorkerLostError', code: ErrorCodes.WORKER_LOST });
    });

    it('an outcome expires after its TTL on every registry: gone (410), then unknown (404)', async () => {
      const { A, B, clock } = await setup({ ttlMs: 10_000, goneMs: 20_000 });
      const job = await A.submit(() => 'x');
      await job.done();
      expect((await B.lookup(job.id)).state).toBe('succeeded');
      clock.advance(10_100);
      await eventually(() => A.stats().expired === 1, 'A to expire it');
      await expect(B.lookup(job.id)).rejects.toBeInstanceOf(GoneError);
      await expect(A.lookup(job.id)).rejects.toBeInstanceOf(GoneError);
      clock.advance(20_100);
      await expect(B.lookup(job.id)).rejects.toBeInstanceOf(NotFoundError);
      await expect(B.lookup('__proto__')).rejects.toBeInstanceOf(NotFoundError);
      await expect(B.lookup('x'.repeat(500))).rejects.toBeInstanceOf(NotFoundError);
    });

    it('a shared registry has no synchronous start, get, cancel or findByIdempotencyKey (they would mean this process only), and a PollHandle refuses a store', async () => {
      const { A, stores } = await setup();
      for (const method of ['start', 'get', 'cancel', 'findByIdempotencyKey']) expect(method in A).toBe(false);
      // @ts-expect-error -- the synchronous methods are a PollHandle's only
      expect(() => A.start(() => 1)).toThrow(TypeError);
      expect(() => new PollHandle({ store: stores.a } as PollHandleOptions)).toThrow(/SharedPollHandle/);
    });

    it('closing A cancels its live jobs in the store, so B sees them end', async () => {
      const { A, B } = await setup();
      const c = controlled();
      const job = await A.submit(c.fn);
      await eventually(() => c.ctx() !== undefined, 'the job to run');
      await A.close();
      expect(c.ctx()!.signal.aborted).toBe(true);
      expect((await B.lookup(job.id)).state).toBe('canceled');
    });

    it('over HTTP: start on A, held read and cancel on B, idempotent retry on B', async () => {
      const { A, B } = await setup();
      const controls: ReturnType<typeof controlled>[] = [];
      /** A PollHandler on `jobs` behind a server; both closed after the test (the handler first). */
      const serve = async (jobs: SharedPollHandle): Promise<{ base: string }> => {
        const handler = new PollHandler({
          jobs,
          run: (_input, ctx) => {
            const c = controlled();
            controls.push(c);
            return c.fn(ctx);
          },
        });
        const { url } = await serveRig((req, res) => void handler.handle(req, res));
        perTest.defer(() => handler.close());
        return { base: url };
      };
      const a = await serve(A);
      const b = await serve(B);
      const post = (base: string, key: string) =>
        fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: '{"x":1}' });
      const started = await post(a.base, 'key-1');
      expect(started.status).toBe(202);
      const location = started.headers.get('location')!;
      await eventually(() => controls.length === 1 && controls[0]!.ctx() !== undefined, 'the job to run on A');
      const first = await fetch(new URL(location, b.base));
      expect(first.status).toBe(200);
      const etag = first.headers.get('etag')!;
      expect((await first.json()) as unknown).toMatchObject({ state: 'running' });
      // A held read on B is answered when A's job changes.
      const held = fetch(new URL(location, b.base), { headers: { prefer: 'wait=30', 'if-none-match': etag } });
      await eventually(() => B.stats().mirrors === 1, 'the read to reach B');
      controls[0]!.ctx()!.progress(0.25);
      const woken = await held;
      expect(woken.status).toBe(200);
      expect(woken.headers.get('etag')).not.toBe(etag);
      expect((await woken.json()) as unknown).toMatchObject({ state: 'running', progress: 0.25 });
      // The same key and body through B: the same job, replayed.
      const retried = await post(b.base, 'key-1');
      expect(retried.status).toBe(202);
      expect(retried.headers.get('location')).toBe(location);
      expect(retried.headers.get('idempotent-replayed')).toBe('true');
      expect(controls).toHaveLength(1);
      // Cancel through B.
      const del = await fetch(new URL(location, b.base), { method: 'DELETE' });
      expect(del.status).toBe(200);
      expect((await del.json()) as unknown).toMatchObject({ state: 'canceled' });
      await eventually(() => controls[0]!.ctx()!.signal.aborted, "A's signal to abort");
      const onA = await fetch(new URL(location, a.base));
      expect((await onA.json()) as unknown).toMatchObject({ state: 'canceled' });
      // An unknown id, and a malformed one, are 404 with a JSON body on B too.
      for (const path of ['/jobs/AAAAAAAAAAAAAAAA', '/jobs/__proto__', '/jobs/%E0%A4%A']) {
        const res = await fetch(`${b.base}${path}`);
        expect(res.status).toBe(404);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_NOT_FOUND');
      }
    });

    it("held reads of another registry's job that disconnect leave nothing behind: no held request, no copy after a tick", async () => {
      const { A, B, clock } = await setup();
      const handler = new PollHandler({ jobs: B, run: () => null });
      const { url: base } = await serveRig((req, res) => void handler.handle(req, res));
      perTest.defer(() => handler.close());
      const c = controlled();
      const job = await A.submit(c.fn);
      await eventually(() => c.ctx() !== undefined, 'the job to run');
      const aborts = Array.from({ length: 20 }, () => new AbortController());
      const reads = aborts.map((ac) => fetch(`${base}/jobs/${job.id}`, { headers: { prefer: 'wait=30', 'if-none-match': `"${job.version}"` }, signal: ac.signal }).catch(() => undefined));
      await eventually(() => handler.stats().held === 20, 'the 20 reads to be held on B');
      expect(B.stats().mirrors).toBe(1);
      for (const ac of aborts) ac.abort();
      await Promise.all(reads);
      await eventually(() => handler.stats().held === 0, 'the held reads to be dropped');
      clock.advance(1000); // B's tick drops the copy nobody reads
      expect(B.stats().mirrors).toBe(0);
      c.result.resolve(null);
      await job.done();
    });

    it('property: any interleaving of progress, outcome and cancels on A and B ends in one outcome both agree on', async () => {
      const { A, B } = await setup();
      type Step = { kind: 'progress'; n: number } | { kind: 'finish'; ok: boolean } | { kind: 'cancel'; on: 'A' | 'B' };
      const step: fc.Arbitrary<Step> = fc.oneof(
        fc.record({ kind: fc.constant('progress' as const), n: fc.integer({ min: 0, max: 100 }) }),
        fc.record({ kind: fc.constant('finish' as const), ok: fc.boolean() }),
        fc.record({ kind: fc.constant('cancel' as const), on: fc.constantFrom('A' as const, 'B' as const) }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
          const c = controlled<string>();
          let rejected: ((e: unknown) => void) | undefined;
          const job = await A.submit((ctx) => {
            const p = c.fn(ctx);
            return new Promise<string>((resolve, reject) => {
              rejected = reject;
              void p.then(resolve);
            });
          });
          await eventually(() => c.ctx() !== undefined || job.state !== 'pending', 'the job to start');
          const versions: number[] = [];
          const cancels: Promise<unknown>[] = [];
          for (const s of steps) {
            if (s.kind === 'progress') c.ctx()?.progress({ done: s.n });
            else if (s.kind === 'finish') {
              if (s.ok) c.result.resolve('done');
              else rejected?.(new Error('boom'));
            } else cancels.push((s.on === 'A' ? A : B).cancelJob(job.id));
            versions.push(job.version);
          }
          await Promise.all(cancels);
          if (job.state === 'running') {
            c.result.resolve('done');
          }
          let end: Awaited<ReturnType<typeof job.done>> | undefined;
          void job.done().then((snapshot) => {
            end = snapshot;
          });
          await eventually(() => end !== undefined, `an outcome after ${JSON.stringify(steps)} (job ${JSON.stringify(job.snapshot())})`, { timeoutMs: 3000 });
          if (end === undefined) return;
          expect(['succeeded', 'failed', 'canceled']).toContain(end.state);
          c.result.resolve('late'); // a canceled function that ignored its signal returns at last
          await eventually(() => A.stats().inFlight === 0, 'the function to return');
          const onB = (await B.lookup(job.id)).snapshot();
          expect(onB).toEqual(job.snapshot());
          for (let i = 1; i < versions.length; i++) expect(versions[i]!).toBeGreaterThanOrEqual(versions[i - 1]!);
        }),
        { numRuns: 25 },
      );
    });
  });
}
