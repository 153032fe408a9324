import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import {
  CapacityError,
  ClosedError,
  GoneError,
  IdempotencyConflictError,
  InvalidArgumentError,
  ManualClock,
  NotFoundError,
  PollHandle,
  type PollHandleOptions,
  type PollJobContext,
  Purgatory,
} from '../../src/index.js';
import { perTest } from '../helpers.js';

/** Lets microtasks and promise callbacks run (no timers involved). */
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((resolve) => setImmediate(resolve));
};

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}
function deferred<T = unknown>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function registry(options: PollHandleOptions = {}): { jobs: PollHandle; clock: ManualClock } {
  const clock = (options.clock as ManualClock | undefined) ?? new ManualClock();
  const jobs = new PollHandle({ clock, ...options });
  perTest.defer(() => jobs.close());
  return { jobs, clock };
}

/** A job whose function the test controls: its context, and a deferred for its result. */
function controlled<T = unknown>(): { fn: (ctx: PollJobContext) => Promise<T>; ctx: () => PollJobContext; result: Deferred<T>; started: () => boolean } {
  const result = deferred<T>();
  let context: PollJobContext | undefined;
  return {
    fn: (ctx) => {
      context = ctx;
      return result.promise;
    },
    ctx: () => context!,
    result,
    started: () => context !== undefined,
  };
}

describe('PollHandle: life of a job', () => {
  it('returns a pending job at once, runs it in a microtask, and keeps its result', async () => {
    const { jobs } = registry();
    const c = controlled<{ n: number }>();
    const job = jobs.start(c.fn);
    expect(job.id).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(job.state).toBe('pending');
    expect(job.replayed).toBe(false);
    expect(c.started()).toBe(false);
    await flush();
    expect(job.state).toBe('running');
    expect(c.ctx().id).toBe(job.id);
    expect(c.ctx().signal.aborted).toBe(false);
    const v = job.version;
    c.ctx().progress({ done: 1, total: 4, message: 'one' });
    expect(job.version).toBe(v + 1);
    expect(job.progress).toEqual({ done: 1, total: 4, message: 'one' });
    c.ctx().progress({ done: 1, total: 4, message: 'one' }); // same value: no change
    expect(job.version).toBe(v + 1);
    c.result.resolve({ n: 7 });
    const snapshot = await job.done();
    expect(snapshot).toEqual({ id: job.id, state: 'succeeded', progress: { done: 1, total: 4, message: 'one' }, result: { n: 7 }, version: v + 2 });
    expect(jobs.get(job.id).snapshot()).toEqual(snapshot);
    c.ctx().progress(0.5); // after the outcome: ignored
    expect(job.version).toBe(v + 2);
    expect(jobs.stats()).toMatchObject({ pending: 0, running: 0, inFlight: 0, stored: 1, started: 1, succeeded: 1 });
  });

  it('hands each snapshot a fresh copy of the result', async () => {
    const { jobs } = registry();
    const job = jobs.start(() => ({ list: [1] }));
    const a = (await job.done()).result as { list: number[] };
    a.list.push(2);
    expect(job.snapshot().result).toEqual({ list: [1] });
  });

  it('stores undefined as null, and fails a result that is not JSON or too large', async () => {
    const { jobs } = registry({ maxResultBytes: 100 });
    expect((await jobs.start(() => undefined).done()).result).toBeNull();
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    for (const bad of [10n, circular, () => 1, 'x'.repeat(200)]) {
      const s = await jobs.start(() => bad).done();
      expect(s.state).toBe('failed');
      expect(s.error).toMatchObject({ name: 'InvalidResultError', code: 'PB_ERR_INVALID_ARGUMENT' });
      expect(s.result).toBeUndefined();
    }
  });

  it('fails a job that throws or rejects, with its error serialized safely', async () => {
    const { jobs } = registry();
    const sync = await jobs
      .start(() => {
        throw Object.assign(new TypeError('bad input'), { code: 'E_BAD', secret: 'x' });
      })
      .done();
    expect(sync.state).toBe('failed');
    expect(sync.error).toEqual({ name: 'TypeError', message: 'bad input', code: 'E_BAD' });
    const rejected = await jobs.start(() => Promise.reject(new Error('nope'))).done();
    expect(rejected.error).toEqual({ name: 'Error', message: 'nope' });
    const hostile = {
      get name(): string {
        throw new Error('boom');
      },
    };
    for (const [thrown, message] of [
      ['plain string', 'plain string'],
      [42, '42'],
      [undefined, 'The job failed'],
      [Symbol('s'), 'Symbol(s)'],
      [hostile, 'The job failed'],
      [{ message: 'm'.repeat(5000) }, 'm'.repeat(1000)],
    ] as const) {
      const s = await jobs.start(() => Promise.reject(thrown)).done();
      expect(s.state).toBe('failed');
      expect(s.error?.message).toBe(message);
      expect(s.error?.stack).toBeUndefined();
    }
  });

  it('exposes the stack only when asked, and uses a custom serializer when given', async () => {
    const withStack = registry({ exposeStack: true }).jobs;
    const s = await withStack.start(() => Promise.reject(new Error('x'))).done();
    expect(s.error?.stack).toContain('Error: x');
    const custom = registry({ serializeError: () => ({ name: 'Redacted', message: 'something failed' }) }).jobs;
    expect((await custom.start(() => Promise.reject(new Error('db password wrong'))).done()).error).toEqual({ name: 'Redacted', message: 'something failed' });
    const broken = registry({
      serializeError: () => {
        throw new Error('serializer bug');
      },
    }).jobs;
    expect((await broken.start(() => Promise.reject(new Error('x'))).done()).error).toEqual({ name: 'Error', message: 'x' });
  });

  it('refuses progress of another shape with a typed error inside the job', async () => {
    const { jobs } = registry();
    const c = controlled();
    jobs.start(c.fn);
    await flush();
    for (const bad of [-0.1, 1.5, Number.NaN, Infinity, 'half', null, [1], { done: -1 }, { done: 1, total: 'x' }, { done: 1, message: 'm'.repeat(1001) }]) {
      expect(() => c.ctx().progress(bad as never), JSON.stringify(bad)).toThrow(InvalidArgumentError);
    }
    c.ctx().progress(0);
    c.ctx().progress(1);
  });
});

describe('PollHandle: cancel and timeout', () => {
  it('cancels a pending job: its function never runs', async () => {
    const { jobs } = registry({ concurrency: 1 });
    const first = controlled();
    const second = controlled();
    jobs.start(first.fn);
    const job = jobs.start(second.fn);
    await flush();
    expect(job.state).toBe('pending');
    expect(job.cancel()).toBe(true);
    expect(job.state).toBe('canceled');
    first.result.resolve(1);
    await flush();
    expect(second.started()).toBe(false);
    expect(jobs.stats()).toMatchObject({ pending: 0, running: 0, canceled: 1, succeeded: 1 });
  });

  it('cancels a running job through its signal; what it returns afterwards is dropped', async () => {
    const { jobs } = registry();
    const c = controlled();
    const job = jobs.start(c.fn);
    await flush();
    const reason = new Error('user asked');
    const snapshot = jobs.cancel(job.id, reason);
    expect(snapshot.state).toBe('canceled');
    expect(c.ctx().signal.aborted).toBe(true);
    expect(c.ctx().signal.reason).toBe(reason);
    expect(jobs.stats()).toMatchObject({ running: 0, inFlight: 1 }); // the function has not returned yet
    expect(job.cancel()).toBe(false);
    c.result.resolve('late');
    await flush();
    expect(job.state).toBe('canceled');
    expect(job.snapshot().result).toBeUndefined();
    expect(jobs.stats()).toMatchObject({ inFlight: 0, canceled: 1, succeeded: 0 });
  });

  it('keeps a concurrency slot until a canceled function returns (cancellation is cooperative)', async () => {
    const { jobs } = registry({ concurrency: 1 });
    const a = controlled();
    const b = controlled();
    const ja = jobs.start(a.fn);
    jobs.start(b.fn);
    await flush();
    ja.cancel();
    await flush();
    expect(b.started()).toBe(false);
    a.result.resolve(null);
    await flush();
    expect(b.started()).toBe(true);
  });

  it('fails a job that outlives its timeout, and aborts its signal', async () => {
    const { jobs, clock } = registry({ timeoutMs: 1000 });
    const c = controlled();
    const job = jobs.start(c.fn);
    await flush();
    clock.advance(999);
    expect(job.state).toBe('running');
    clock.advance(1);
    expect(job.state).toBe('failed');
    expect(job.snapshot().error).toMatchObject({ name: 'TimeoutError', code: 'PB_ERR_TIMEOUT' });
    expect(c.ctx().signal.reason).toMatchObject({ code: 'PB_ERR_TIMEOUT' });
    c.result.resolve('late');
    await flush();
    expect(job.state).toBe('failed');
  });

  it('takes a timeout per start, and none by default', async () => {
    const { jobs, clock } = registry();
    const c = controlled();
    const d = controlled();
    const slow = jobs.start(c.fn);
    const quick = jobs.start(d.fn, { timeoutMs: 50 });
    await flush();
    clock.advance(60);
    expect(quick.state).toBe('failed');
    clock.advance(1_000_000);
    expect(slow.state).toBe('running');
  });
});

describe('PollHandle: expiry', () => {
  it('expires an outcome after its TTL, never before; then 410-style GoneError, then NotFoundError', async () => {
    const { jobs, clock } = registry({ ttlMs: 1000, goneMs: 5000 });
    clock.advance(3); // not on a tick boundary: the deadline rounds up, never down
    const job = jobs.start(() => 'r');
    await job.done();
    // Finished at 3: due at 1003, which rounds up to the next 10 ms tick, 1010.
    clock.advanceTo(1009);
    expect(job.state).toBe('succeeded');
    expect(jobs.get(job.id).state).toBe('succeeded');
    clock.advanceTo(1010);
    expect(job.state).toBe('expired');
    expect(job.snapshot()).toEqual({ id: job.id, state: 'expired', progress: null, version: expect.any(Number) });
    expect(() => jobs.get(job.id)).toThrow(GoneError);
    clock.advanceTo(1010 + 5000);
    expect(() => jobs.get(job.id)).toThrow(GoneError);
    clock.advance(1);
    expect(() => jobs.get(job.id)).toThrow(NotFoundError);
    expect(jobs.stats()).toMatchObject({ stored: 0, expired: 1, tombstones: 0 });
  });

  it('takes a TTL per start', async () => {
    const { jobs, clock } = registry({ ttlMs: 1000 });
    const short = jobs.start(() => 1, { ttlMs: 100 });
    const long = jobs.start(() => 1);
    await Promise.all([short.done(), long.done()]);
    clock.advance(100);
    expect(short.state).toBe('expired');
    expect(long.state).toBe('succeeded');
  });

  it('bounds the tombstones: the oldest expired ids are forgotten first', async () => {
    const { jobs, clock } = registry({ ttlMs: 10, maxTombstones: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const job = jobs.start(() => i);
      await job.done();
      ids.push(job.id);
      clock.advance(10);
    }
    expect(jobs.stats().tombstones).toBe(3);
    expect(() => jobs.get(ids[0]!)).toThrow(NotFoundError);
    expect(() => jobs.get(ids[1]!)).toThrow(NotFoundError);
    expect(() => jobs.get(ids[4]!)).toThrow(GoneError);
  });

  it('treats garbage and prototype names as unknown ids', () => {
    const { jobs } = registry();
    for (const id of ['', '__proto__', 'constructor', 'toString', 'x'.repeat(10_000), '../etc', 7 as unknown as string]) {
      expect(() => jobs.get(id), String(id).slice(0, 20)).toThrow(NotFoundError);
    }
    expect(() => jobs.get('x'.repeat(10_000))).toThrow(/malformed id/);
  });
});

describe('PollHandle: bounds and idempotency', () => {
  it('refuses starts past maxLiveJobs with a CapacityError, creating nothing', async () => {
    const { jobs } = registry({ maxLiveJobs: 3 });
    const c = controlled();
    for (let i = 0; i < 3; i++) jobs.start(c.fn);
    expect(() => jobs.start(c.fn)).toThrow(CapacityError);
    try {
      jobs.start(c.fn);
    } catch (error) {
      expect((error as CapacityError).retryAfterSeconds).toBe(1);
    }
    expect(jobs.stats()).toMatchObject({ pending: 3, started: 3, rejected: 2 });
    c.result.resolve(1);
    await flush();
    jobs.start(c.fn); // room again
  });

  it('refuses starts past maxStoredResults until results expire', async () => {
    const { jobs, clock } = registry({ maxStoredResults: 2, ttlMs: 100 });
    await jobs.start(() => 1).done();
    await jobs.start(() => 2).done();
    expect(() => jobs.start(() => 3)).toThrow(CapacityError);
    clock.advance(100);
    await jobs.start(() => 3).done();
  });

  it('returns the same job for the same idempotency key, and refuses another fingerprint', async () => {
    const { jobs, clock } = registry({ ttlMs: 100 });
    const c = controlled();
    const first = jobs.start(c.fn, { idempotencyKey: 'k1', fingerprint: 'a' });
    const again = jobs.start(() => 'other', { idempotencyKey: 'k1', fingerprint: 'a' });
    expect(again.id).toBe(first.id);
    expect(again.replayed).toBe(true);
    expect(() => jobs.start(() => 'other', { idempotencyKey: 'k1', fingerprint: 'b' })).toThrow(IdempotencyConflictError);
    expect(jobs.findByIdempotencyKey('k1')?.id).toBe(first.id);
    expect(jobs.findByIdempotencyKey('nope')).toBeUndefined();
    await flush();
    c.result.resolve('done');
    await first.done();
    expect(jobs.start(() => 'x', { idempotencyKey: 'k1', fingerprint: 'a' }).snapshot().result).toBe('done');
    expect(jobs.stats()).toMatchObject({ started: 1, idempotencyKeys: 1 });
    clock.advance(100); // the key lives as long as its job
    expect(jobs.stats().idempotencyKeys).toBe(0);
    expect(jobs.start(() => 'x', { idempotencyKey: 'k1', fingerprint: 'b' }).replayed).toBe(false);
  });

  it('does not count replays against capacity', () => {
    const { jobs } = registry({ maxLiveJobs: 1 });
    const c = controlled();
    const job = jobs.start(c.fn, { idempotencyKey: 'k' });
    expect(jobs.start(c.fn, { idempotencyKey: 'k' }).id).toBe(job.id);
    expect(() => jobs.start(c.fn, { idempotencyKey: 'other' })).toThrow(CapacityError);
  });

  it('runs at most `concurrency` jobs, first in first out', async () => {
    const { jobs } = registry({ concurrency: 2 });
    const cs = Array.from({ length: 5 }, () => controlled());
    const started: number[] = [];
    cs.forEach((c, i) =>
      jobs.start((ctx) => {
        started.push(i);
        return c.fn(ctx);
      }),
    );
    await flush();
    expect(started).toEqual([0, 1]);
    expect(jobs.stats()).toMatchObject({ pending: 3, running: 2 });
    cs[1]!.result.resolve(1);
    await flush();
    expect(started).toEqual([0, 1, 2]);
    cs[0]!.result.resolve(1);
    cs[2]!.result.resolve(1);
    await flush();
    expect(started).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('PollHandle: waiting and lifecycle', () => {
  it('waitForChange resolves at the first change, or at the timeout', async () => {
    const { jobs, clock } = registry();
    const c = controlled();
    const job = jobs.start(c.fn);
    await flush();
    const changed = jobs.waitForChange(job.id, { timeoutMs: 5000 });
    expect(jobs.stats().waiting).toBe(1);
    c.ctx().progress(0.25);
    expect((await changed).progress).toBe(0.25);
    const timed = jobs.waitForChange(job.id, { timeoutMs: 5000 });
    clock.advance(5000);
    expect((await timed).progress).toBe(0.25);
    const stale = await jobs.waitForChange(job.id, { version: 1, timeoutMs: 5000 }); // already differs
    expect(stale.version).toBe(job.version);
    const ac = new AbortController();
    const aborted = jobs.waitForChange(job.id, { timeoutMs: 5000, signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(jobs.stats().waiting).toBe(0);
  });

  it('close() cancels live jobs, settles done() and waits, and leaves no timer', async () => {
    const { jobs, clock } = registry({ timeoutMs: 60_000 });
    const c = controlled();
    const running = jobs.start(c.fn);
    const finished = jobs.start(() => 'ok');
    await flush();
    const pendingDone = running.done();
    const wait = jobs.waitForChange(finished.id, { timeoutMs: 10_000 });
    expect(clock.pendingTimers).toBeGreaterThan(0);
    await jobs.close();
    expect((await pendingDone).state).toBe('canceled');
    expect(c.ctx().signal.reason).toBeInstanceOf(ClosedError);
    await expect(wait).rejects.toBeInstanceOf(ClosedError);
    expect(clock.pendingTimers).toBe(0);
    expect(() => jobs.start(() => 1)).toThrow(ClosedError);
    expect(() => jobs.get(running.id)).toThrow(ClosedError);
    expect(running.snapshot().state).toBe('canceled');
  });

  it('closes through Symbol.asyncDispose, and leaves a shared purgatory open', async () => {
    const clock = new ManualClock();
    const purgatory = new Purgatory({ clock });
    {
      await using jobs = new PollHandle({ clock, purgatory });
      await jobs.start(() => 1).done();
      expect(purgatory.size).toBe(1); // the TTL
    }
    expect(purgatory.closed).toBe(false);
    expect(purgatory.size).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    await purgatory.close();
  });

  it('publishes start, finish and expire on diagnostics channels', async () => {
    const seen: string[] = [];
    const listeners = (['start', 'finish', 'expire'] as const).map((event) => {
      const fn = (m: unknown): void => void seen.push(`${event}:${(m as { state?: string }).state ?? ''}`);
      diagnosticsChannel.subscribe(`patchbay:poll:${event}`, fn);
      return [event, fn] as const;
    });
    try {
      const { jobs, clock } = registry({ ttlMs: 10 });
      await jobs.start(() => 1).done();
      clock.advance(10);
      expect(seen).toEqual(['start:', 'finish:succeeded', 'expire:']);
    } finally {
      for (const [event, fn] of listeners) diagnosticsChannel.unsubscribe(`patchbay:poll:${event}`, fn);
    }
  });

  it('validates its options and arguments', () => {
    const bad: PollHandleOptions[] = [
      { ttlMs: 0 },
      { ttlMs: -1 },
      { ttlMs: 1.5 },
      { timeoutMs: 0 },
      { timeoutMs: Number.NaN },
      { concurrency: 0 },
      { maxLiveJobs: 0 },
      { maxStoredResults: -1 },
      { maxTombstones: -1 },
      { serializeError: 'x' as never },
      { purgatory: {} as never },
      { clock: {} as never },
    ];
    for (const options of bad) expect(() => new PollHandle(options), JSON.stringify(options)).toThrow(InvalidArgumentError);
    const { jobs } = registry();
    expect(() => jobs.start('x' as never)).toThrow(InvalidArgumentError);
    expect(() => jobs.start(() => 1, { ttlMs: 0 })).toThrow(InvalidArgumentError);
    expect(() => jobs.start(() => 1, { fingerprint: 1 as never })).toThrow(InvalidArgumentError);
    expect(() => jobs.start(() => 1, { idempotencyKey: '' })).toThrow(InvalidArgumentError);
  });
});

describe('PollHandle: a result no client could be sent fails the job, it never crashes a read', () => {
  it('a result nested deeper than 64, with a BigInt or a lone surrogate ends failed with PB_ERR_INVALID_ARGUMENT', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = [deep];
    const jobs = new PollHandle();
    try {
      for (const value of [deep, { n: 1n }, '\ud800']) {
        const job = jobs.start(() => value);
        const end = await job.done();
        expect(end.state).toBe('failed');
        expect(end.error?.code).toBe('PB_ERR_INVALID_ARGUMENT');
        expect(() => jobs.get(job.id)).not.toThrow();
      }
    } finally {
      await jobs.close();
    }
  });
});
