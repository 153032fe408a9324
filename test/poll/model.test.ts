/**
 * Properties of the job state machine, driven by a ManualClock and fast-check: timing comes only
 * from the injected clock, so nothing here sleeps or races.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock, PollHandle, PollHandler, type PollJob, type PollJobContext } from '../../src/index.js';

const TICK = 10; // the default purgatory tick

const flush = async (): Promise<void> => {
  for (let i = 0; i < 6; i++) await Promise.resolve();
};

/** Records the poll diagnostics events with the clock's time. */
function recorder(clock: ManualClock): { events: { event: string; id: string; state?: string; at: number }[]; stop(): void } {
  const events: { event: string; id: string; state?: string; at: number }[] = [];
  const subs = (['start', 'finish', 'expire'] as const).map((event) => {
    const fn = (m: unknown): void => {
      const { id, state } = m as { id: string; state?: string };
      events.push({ event, id, state, at: clock.now() });
    };
    diagnosticsChannel.subscribe(`patchbay:poll:${event}`, fn);
    return [event, fn] as const;
  });
  return { events, stop: () => subs.forEach(([event, fn]) => diagnosticsChannel.unsubscribe(`patchbay:poll:${event}`, fn)) };
}

type Behaviour = 'resolve' | 'reject' | 'never' | 'throw-sync' | 'return-sync';
const jobPlan = fc.record({
  behaviour: fc.constantFrom<Behaviour>('resolve', 'reject', 'never', 'throw-sync', 'return-sync'),
  settleAt: fc.integer({ min: 0, max: 3000 }),
  cancelAt: fc.option(fc.integer({ min: 0, max: 3000 }), { nil: null }),
  timeoutMs: fc.option(fc.integer({ min: 1, max: 3000 }), { nil: null }),
  progressAt: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 4 }),
});

const ORDER: Record<string, number> = { pending: 0, running: 1, succeeded: 2, failed: 2, canceled: 2, expired: 3 };

describe('PollHandle properties', () => {
  it('every job reaches exactly one outcome and keeps it; states only move forward; a cancel never overrides a success', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(jobPlan, { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 3 }), async (plans, concurrency) => {
        const clock = new ManualClock();
        const rec = recorder(clock);
        const jobs = new PollHandle({ clock, ttlMs: 100_000, concurrency });
        try {
          const contexts: (PollJobContext | undefined)[] = [];
          const settles: ((ok: boolean) => void)[] = [];
          const handles: PollJob[] = plans.map((plan, i) =>
            jobs.start(
              (ctx) => {
                contexts[i] = ctx;
                if (plan.behaviour === 'throw-sync') throw new Error('sync');
                if (plan.behaviour === 'return-sync') return i;
                return new Promise((resolve, reject) => {
                  settles[i] = (ok) => (ok ? resolve(i) : reject(new Error('async')));
                });
              },
              plan.timeoutMs === null ? {} : { timeoutMs: plan.timeoutMs },
            ),
          );
          // Every action in time order (ties in plan order).
          type Action = { at: number; i: number; kind: 'settle' | 'cancel' | 'progress'; n: number };
          const actions: Action[] = [];
          plans.forEach((p, i) => {
            if (p.behaviour === 'resolve' || p.behaviour === 'reject') actions.push({ at: p.settleAt, i, kind: 'settle', n: 0 });
            if (p.cancelAt !== null) actions.push({ at: p.cancelAt, i, kind: 'cancel', n: 0 });
            p.progressAt.forEach((at, n) => actions.push({ at, i, kind: 'progress', n: n + 1 }));
          });
          actions.sort((a, b) => a.at - b.at);
          const seen: string[][] = plans.map(() => []);
          const observe = (): void =>
            handles.forEach((h, i) => {
              const states = seen[i]!;
              if (states[states.length - 1] !== h.state) states.push(h.state);
            });
          await flush();
          observe();
          for (const a of actions) {
            clock.advanceTo(Math.max(clock.now(), a.at));
            await flush();
            observe();
            const h = handles[a.i]!;
            if (a.kind === 'cancel') h.cancel();
            else if (a.kind === 'settle') settles[a.i]?.(plans[a.i]!.behaviour === 'resolve');
            else if (contexts[a.i] !== undefined) contexts[a.i]!.progress({ done: a.n });
            await flush();
            observe();
          }
          clock.advance(5000); // every timeout is due by now
          await flush();
          observe();
          await jobs.close(); // whatever is still live ends canceled
          observe();
          for (let i = 0; i < plans.length; i++) {
            const finishes = rec.events.filter((e) => e.event === 'finish' && e.id === handles[i]!.id);
            expect(finishes).toHaveLength(1);
            expect(handles[i]!.state).toBe(finishes[0]!.state);
            // States only move forward: pending, running, one outcome.
            const order = seen[i]!.map((s) => ORDER[s]!);
            expect(order).toEqual([...order].sort((x, y) => x - y));
            expect(seen[i]!.filter((s) => ORDER[s] === 2)).toHaveLength(1);
            const plan = plans[i]!;
            // A job canceled while pending never runs; one that ran synchronously ended with it.
            if (contexts[i] === undefined) expect(finishes[0]!.state).toBe('canceled');
            else if (plan.behaviour === 'return-sync') expect(seen[i]).toContain('succeeded');
            else if (plan.behaviour === 'throw-sync') expect(seen[i]).toContain('failed');
            if (finishes[0]!.state === 'succeeded') {
              expect(handles[i]!.snapshot().result).toBe(i);
              if (plan.cancelAt !== null) expect(plan.cancelAt).toBeGreaterThanOrEqual(finishes[0]!.at);
            }
          }
        } finally {
          rec.stop();
          await jobs.close();
        }
      }),
      { numRuns: 150 },
    );
  });

  it('expires an outcome at its TTL rounded up to the tick: never early, less than a tick late', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: 5000 }), ttlMs: fc.integer({ min: 1, max: 5000 }) }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 40 }),
        async (finishes, steps) => {
          const clock = new ManualClock();
          const rec = recorder(clock);
          const jobs = new PollHandle({ clock });
          try {
            const ordered = [...finishes].sort((a, b) => a.at - b.at);
            const ids = new Map<string, number>();
            for (const f of ordered) {
              clock.advanceTo(Math.max(clock.now(), f.at));
              const job = jobs.start(() => 'r', { ttlMs: f.ttlMs });
              ids.set(job.id, f.ttlMs);
              await flush();
              expect(job.state).toBe('succeeded');
            }
            // Walk time in random steps, checking at each stop that nothing expired early.
            for (const step of steps) {
              clock.advance(step);
              for (const [id, ttl] of ids) {
                const done = rec.events.find((e) => e.event === 'finish' && e.id === id)!;
                const expired = rec.events.find((e) => e.event === 'expire' && e.id === id);
                if (clock.now() < done.at + ttl) expect(expired).toBeUndefined();
                if (clock.now() >= done.at + ttl + TICK) expect(expired).toBeDefined();
              }
            }
            clock.advance(20_000);
            for (const [id, ttl] of ids) {
              const done = rec.events.find((e) => e.event === 'finish' && e.id === id)!;
              const expired = rec.events.find((e) => e.event === 'expire' && e.id === id)!;
              expect(expired.at).toBeGreaterThanOrEqual(done.at + ttl);
              expect(expired.at).toBeLessThan(done.at + ttl + TICK);
              expect(() => jobs.get(id)).toThrow(/expired/);
            }
          } finally {
            rec.stop();
            await jobs.close();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

// --- Prefer: wait, through the real handler with in-memory requests ---------------------------

class FakeResponse extends EventEmitter {
  statusCode = 0;
  headers: Record<string, string> = {};
  body = '';
  writableEnded = false;
  destroyed = false;
  headersSent = false;
  answeredAt = Number.NaN;
  answers = 0;
  constructor(readonly clock: ManualClock) {
    super();
  }
  writeHead(status: number, headers?: string[] | Record<string, string | number>): this {
    this.statusCode = status;
    this.headersSent = true;
    if (Array.isArray(headers)) for (let i = 0; i < headers.length; i += 2) this.headers[headers[i]!.toLowerCase()] = headers[i + 1]!;
    else if (headers !== undefined) for (const [k, v] of Object.entries(headers)) this.headers[k.toLowerCase()] = String(v);
    return this;
  }
  end(chunk?: Buffer | string): this {
    this.body = chunk === undefined ? '' : String(chunk);
    this.writableEnded = true;
    this.answeredAt = this.clock.now();
    this.answers++;
    return this;
  }
}

function fakeRequest(url: string, headers: Record<string, string>): IncomingMessage {
  const distinct: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(headers)) distinct[k] = [v];
  return { method: 'GET', url, headers, headersDistinct: distinct } as unknown as IncomingMessage;
}

describe('PollHandler Prefer: wait property', () => {
  it('answers a held read at the first change after it arrived, or at N seconds (rounded up to the tick), exactly once', async () => {
    type Step = { at: number; kind: 'progress' } | { at: number; kind: 'finish' } | { at: number; kind: 'read'; wait: number; conditional: boolean };
    const step = fc.oneof(
      fc.record({ at: fc.integer({ min: 0, max: 12_000 }), kind: fc.constant('progress' as const) }),
      fc.record({ at: fc.integer({ min: 0, max: 12_000 }), kind: fc.constant('finish' as const) }),
      fc.record({
        at: fc.integer({ min: 0, max: 12_000 }),
        kind: fc.constant('read' as const),
        wait: fc.integer({ min: 1, max: 6 }),
        conditional: fc.boolean(),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), fc.integer({ min: 1, max: 8000 }), async (raw, ttlMs) => {
        const clock = new ManualClock();
        const jobs = new PollHandle({ clock, ttlMs });
        const handler = new PollHandler({ jobs, run: () => undefined, maxWaitSeconds: 10 });
        try {
          let ctx: PollJobContext | undefined;
          let finish: (() => void) | undefined;
          const job = jobs.start((c) => {
            ctx = c;
            return new Promise<void>((resolve) => (finish = resolve));
          });
          await flush();
          // Every change of the job, with its time, as the registry made it.
          const changes: number[] = [];
          let lastVersion = job.version;
          const noteChange = (): void => {
            if (job.version !== lastVersion) {
              changes.push(clock.now());
              lastVersion = job.version;
            }
          };
          const expireSub = (m: unknown): void => {
            if ((m as { id: string }).id === job.id) changes.push(clock.now());
          };
          diagnosticsChannel.subscribe('patchbay:poll:expire', expireSub);
          const reads: { res: FakeResponse; at: number; wait: number; changesBefore: number; version: number; held: boolean }[] = [];
          const steps = [...raw].sort((a, b) => a.at - b.at) as Step[];
          let n = 0;
          for (const s of steps) {
            clock.advanceTo(Math.max(clock.now(), s.at));
            lastVersion = job.version; // an expiry during advanceTo was noted by the channel
            if (s.kind === 'progress') {
              if (job.state === 'running') ctx!.progress({ done: ++n });
              noteChange();
            } else if (s.kind === 'finish') {
              finish?.();
              await flush();
              noteChange();
            } else {
              const res = new FakeResponse(clock);
              const headers: Record<string, string> = { prefer: `wait=${s.wait}` };
              if (s.conditional && job.state !== 'expired') headers['if-none-match'] = `"${job.version}"`;
              const version = job.version;
              void handler.handle(fakeRequest(`/jobs/${job.id}`, headers), res as unknown as ServerResponse);
              const live = job.state === 'pending' || job.state === 'running';
              reads.push({ res, at: clock.now(), wait: s.wait, changesBefore: changes.length, version, held: !res.writableEnded });
              // A read is held exactly when the client's snapshot is the current one and can still change.
              if (job.state !== 'expired') expect(!res.writableEnded).toBe(s.conditional || live);
            }
          }
          clock.advance(20_000);
          diagnosticsChannel.unsubscribe('patchbay:poll:expire', expireSub);
          for (const r of reads) {
            expect(r.res.answers).toBe(1);
            if (!r.held) {
              expect(r.res.answeredAt).toBe(r.at);
              continue;
            }
            const deadline = Math.ceil((r.at + r.wait * 1000) / TICK) * TICK;
            const firstChange = changes.slice(r.changesBefore).find((t) => t >= r.at) ?? Infinity;
            expect(r.res.answeredAt).toBe(Math.min(firstChange, deadline));
            expect(r.res.headers['preference-applied']).toBe(`wait=${r.wait}`);
            if (firstChange < deadline) expect([200, 410]).toContain(r.res.statusCode);
            else if (firstChange > deadline) {
              // Nothing changed: the same snapshot (304 when the client named it).
              expect([200, 304]).toContain(r.res.statusCode);
              if (r.res.statusCode === 200) expect(r.res.headers['etag']).toBe(`"${r.version}"`);
            }
          }
          expect(handler.stats().held).toBe(0);
        } finally {
          await handler.close();
          await jobs.close();
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('PollHandler holding, in memory', () => {
  it('does not hold a read whose client is already gone', async () => {
    const clock = new ManualClock();
    const jobs = new PollHandle({ clock });
    const handler = new PollHandler({ jobs, run: () => undefined });
    try {
      const job = jobs.start(() => new Promise(() => {}));
      await flush();
      const res = new FakeResponse(clock);
      res.destroyed = true;
      await handler.handle(fakeRequest(`/jobs/${job.id}`, { prefer: 'wait=30' }), res as unknown as ServerResponse);
      expect(handler.stats().held).toBe(0);
      expect(jobs.purgatory.size).toBe(0);
      expect(res.answers).toBe(0);
    } finally {
      await handler.close();
      await jobs.close();
    }
  });
});
