/**
 * Model-based tests of the Purgatory (research/purgatory.md §5): random command sequences run
 * against the real Purgatory on a ManualClock and against the O(n) reference model of
 * model-reference.ts, comparing after every command.
 *
 * Properties checked after every command (numbers from §5):
 * - P1 exactly once: each op's callbacks are exactly [complete] / [complete, expire] / [cancel]
 *   (onExpiration right after onComplete; canceled ops get neither); nothing fires later.
 * - P2/P3: an expiry happens at ceil((t + d) / tick) * tick exactly, checked both against the model
 *   and directly (never before t + d, less than one tick after; nothing overdue stays waiting).
 * - P4: delay <= 0 expires inside tryCompleteElseWatch, after the condition check.
 * - P5/P6: checkAndComplete(k) visits exactly the ops waiting on k (FIFO), completes exactly the
 *   completable ones, returns their count; a second call returns 0; multi-key ops are gone from
 *   every key at once.
 * - P7/P8: numDelayed / watched / stats / watcherCount equal the model; checkInvariants() passes.
 * - P10: an op completable at watch completes before tryCompleteElseWatch returns true and
 *   registers nothing (no counter, no timer).
 * - P11: expirations come in non-decreasing deadline order; checkAndComplete visits in watch order.
 * - P13: outcomes (id, outcome, time) equal the model's, per op and as a multiset.
 * - P14 (per advance): the timer callbacks one advance fires are bounded by ops x levels, not by
 *   the jump / tick.
 * - P16: one timer armed iff something is timed, none otherwise; it is unref'd unless `ref`; it is
 *   due no later than the earliest deadline.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  CanceledError,
  ClosedError,
  DelayedOperation,
  ManualClock,
  Purgatory,
  type PurgatoryStats,
  type WaitOutcome,
} from '../../src/index.js';
import {
  configArb,
  CountingClock,
  isClassMode,
  itProp,
  KEYS,
  keyArb,
  levelBound,
  observable,
  RefModel,
  runs,
  watchSpecArb,
  type Key,
  type ModelConfig,
  type Outcome,
  type ReasonKind,
  type RefOp,
  type RefStep,
  type WatchSpec,
} from './model-reference.js';

// ---------------------------------------------------------------------------------------------
// The real side

type Callback = 'complete' | 'expire' | 'cancel';

interface CallRecord {
  readonly cb: Callback;
  readonly time: number;
  readonly state: string;
  readonly reason?: unknown;
}

/** What the test keeps about one real operation. */
interface RealRec {
  readonly id: number;
  readonly spec: WatchSpec;
  readonly sys: RealSystem;
  /** The DelayedOperation (class modes). */
  op: ModelOp | undefined;
  readonly controller: AbortController | undefined;
  readonly abortToken: object;
  readonly throwToken: object;
  completable: boolean;
  throwNext: boolean;
  tries: number;
  inTry: boolean;
  readonly calls: CallRecord[];
  /** The settled value of a wait() promise. */
  settled: { readonly ok: boolean; readonly value: unknown } | undefined;
}

class ModelOp extends DelayedOperation {
  constructor(
    readonly rec: RealRec,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ) {
    super(timeoutMs, { signal });
  }

  override tryComplete(): boolean {
    const rec = this.rec;
    rec.sys.visits.push(rec.id);
    rec.tries++;
    if (rec.inTry) rec.sys.violations.push(`tryComplete of op ${rec.id} re-entered`);
    if (this.state !== 'waiting') rec.sys.violations.push(`tryComplete of op ${rec.id} called in state ${this.state}`);
    if (rec.throwNext || rec.tries === rec.spec.throwAtWatch) throw rec.throwToken;
    rec.inTry = true;
    try {
      return rec.spec.mode === 'default' ? super.tryComplete() : rec.completable;
    } finally {
      rec.inTry = false;
    }
  }

  onComplete(): void {
    this.#record('complete');
  }

  override onExpiration(): void {
    this.#record('expire');
  }

  override onCancel(reason: unknown): void {
    this.#record('cancel', reason);
  }

  #record(cb: Callback, reason?: unknown): void {
    const rec = this.rec;
    if (rec.inTry && cb === 'complete') rec.sys.violations.push(`onComplete of op ${rec.id} ran inside its tryComplete`);
    const call: CallRecord = { cb, time: rec.sys.clock.now(), state: this.state, reason };
    rec.calls.push(call);
    rec.sys.log.push({ id: rec.id, ...call });
    if (rec.spec.throwingCallbacks) throw { thrownBy: rec.id, cb };
  }
}

interface ChannelEvent {
  readonly kind: Callback;
  readonly op: DelayedOperation;
  readonly time: number;
  readonly latenessMs: number | undefined;
  readonly reason: unknown;
}

/** The systems under test, by purgatory, for the diagnostics handlers. */
const systems = new WeakMap<Purgatory, RealSystem>();

const channelNames = { complete: 'patchbay:purgatory:complete', expire: 'patchbay:purgatory:expire', cancel: 'patchbay:purgatory:cancel' } as const;
const channelHandlers = Object.entries(channelNames).map(([kind, name]) => {
  const handler = (message: unknown): void => {
    const msg = message as { purgatory: Purgatory; operation: DelayedOperation; latenessMs?: number; reason?: unknown };
    const sys = systems.get(msg.purgatory);
    if (sys === undefined) return;
    sys.channel.push({
      kind: kind as Callback,
      op: msg.operation,
      time: sys.clock.now(),
      latenessMs: msg.latenessMs,
      reason: msg.reason,
    });
  };
  return { name, handler };
});
beforeAll(() => {
  for (const { name, handler } of channelHandlers) diagnosticsChannel.subscribe(name, handler);
});
afterAll(() => {
  for (const { name, handler } of channelHandlers) diagnosticsChannel.unsubscribe(name, handler);
});

interface Mark {
  readonly visits: number;
  readonly log: number;
  readonly channel: number;
  readonly errors: number;
}

class RealSystem {
  readonly clock: CountingClock;
  readonly purgatory: Purgatory;
  readonly recs: RealRec[] = [];
  readonly visits: number[] = [];
  readonly log: ({ readonly id: number } & CallRecord)[] = [];
  readonly channel: ChannelEvent[] = [];
  readonly errors: { readonly error: unknown; readonly op: DelayedOperation }[] = [];
  readonly violations: string[] = [];
  readonly destroyToken = { destroyed: true };
  readonly byOp = new Map<DelayedOperation, RealRec>();
  hasPromises = false;

  constructor(readonly cfg: ModelConfig) {
    this.clock = new CountingClock(cfg.startMs);
    this.purgatory = new Purgatory({
      clock: this.clock,
      tickMs: cfg.tickMs,
      wheelSize: cfg.wheelSize,
      ...(cfg.expiryBatchSize === undefined ? {} : { expiryBatchSize: cfg.expiryBatchSize }),
      ...(cfg.ref === undefined ? {} : { ref: cfg.ref }),
      onError: (error, op) => this.errors.push({ error, op }),
    });
    systems.set(this.purgatory, this);
  }

  mark(): Mark {
    return { visits: this.visits.length, log: this.log.length, channel: this.channel.length, errors: this.errors.length };
  }

  /** Starts watching per `spec`; returns the call's result or the error it threw. */
  watch(spec: WatchSpec): { rec: RealRec; returned: boolean | undefined; threw: unknown } {
    const controller = spec.signal === 'none' ? undefined : new AbortController();
    const rec: RealRec = {
      id: this.recs.length,
      spec,
      sys: this,
      op: undefined,
      controller,
      abortToken: { abortOf: this.recs.length },
      throwToken: { thrownFrom: this.recs.length },
      completable: spec.completableNow,
      throwNext: false,
      tries: 0,
      inTry: false,
      calls: [],
      settled: undefined,
    };
    this.recs.push(rec);
    if (spec.signal === 'pre-aborted') controller!.abort(rec.abortToken);
    const keys = spec.asString ? spec.keys[0]! : spec.keys;
    if (isClassMode(spec.mode)) {
      const op = new ModelOp(rec, spec.delay, controller?.signal);
      rec.op = op;
      this.byOp.set(op, rec);
      try {
        return { rec, returned: this.purgatory.tryCompleteElseWatch(op, keys), threw: undefined };
      } catch (error) {
        return { rec, returned: undefined, threw: error };
      }
    }
    this.hasPromises = true;
    const tryComplete =
      spec.mode === 'promise'
        ? (): boolean => {
            rec.sys.visits.push(rec.id);
            rec.tries++;
            if (rec.throwNext || rec.tries === spec.throwAtWatch) throw rec.throwToken;
            return rec.completable;
          }
        : undefined;
    const promise: Promise<WaitOutcome> = this.purgatory.wait(keys, {
      timeoutMs: spec.delay,
      ...(controller === undefined ? {} : { signal: controller.signal }),
      ...(tryComplete === undefined ? {} : { tryComplete }),
    });
    promise.then(
      (value) => (rec.settled = { ok: true, value }),
      (value: unknown) => (rec.settled = { ok: false, value }),
    );
    return { rec, returned: undefined, threw: undefined };
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison with the model

function reasonMatches(kind: ReasonKind | undefined, reason: unknown, rec: RealRec, sys: RealSystem): boolean {
  switch (kind) {
    case 'abort':
      return reason === rec.abortToken;
    case 'threw':
      return reason === rec.throwToken;
    case 'destroyed':
      return reason === sys.destroyToken;
    case 'closed':
      return reason instanceof ClosedError && reason.code === 'PB_ERR_CLOSED';
    case 'cancel':
    case 'cancelForKey':
      return reason instanceof CanceledError && reason.code === 'PB_ERR_CANCELED';
    default:
      return false;
  }
}

function expectedCalls(op: RefOp): { cb: Callback; time: number; state: string }[] {
  switch (op.state) {
    case 'completed':
      return [{ cb: 'complete', time: op.endedAt, state: 'completed' }];
    case 'expired':
      return [
        { cb: 'complete', time: op.endedAt, state: 'expired' },
        { cb: 'expire', time: op.endedAt, state: 'expired' },
      ];
    case 'canceled':
      return [{ cb: 'cancel', time: op.endedAt, state: 'canceled' }];
    default:
      return [];
  }
}

const channelKind = (outcome: Outcome): Callback[] =>
  outcome === 'completed' ? ['complete'] : outcome === 'expired' ? ['expire'] : ['cancel'];

/** Compares the real system with the model after one command. */
function verify(m: RefModel, sys: RealSystem, mark: Mark, step: RefStep): void {
  const p = sys.purgatory;
  const clock = sys.clock;
  expect(sys.violations).toEqual([]);
  expect(clock.now()).toBe(m.now);

  // P7/P15: internal structures consistent; nothing deferred is left over.
  p.checkInvariants();
  expect(clock.pendingDeferred).toBe(0);

  // P8: counters exact.
  const c = m.counters();
  const stats: PurgatoryStats = p.stats();
  expect({
    waiting: stats.waiting,
    watched: stats.watched,
    keys: stats.keys,
    timed: stats.timed,
    completed: stats.completed,
    expired: stats.expired,
    canceled: stats.canceled,
  }).toEqual(c);
  expect(p.numDelayed()).toBe(c.waiting);
  expect(p.size).toBe(c.waiting);
  expect(p.watched()).toBe(c.watched);
  expect(KEYS.map((key) => p.watcherCount(key))).toEqual(KEYS.map((key) => m.waiting.filter((op) => op.keys.includes(key)).length));

  // P16: one timer iff something is timed, unref'd unless asked, due no later than the earliest deadline.
  const timers = clock.timers();
  expect(timers.length).toBe(c.timed > 0 ? 1 : 0);
  expect(stats.timerArmed).toBe(c.timed > 0);
  for (const timer of timers) {
    expect(timer.ref).toBe(sys.cfg.ref === true);
    expect(timer.at).toBeGreaterThanOrEqual(clock.now());
    expect(timer.at).toBeLessThanOrEqual(m.earliestDeadline());
  }

  // P5/P11: exactly the expected tryComplete calls, in FIFO watch order.
  expect(sys.visits.slice(mark.visits)).toEqual(step.visits);

  // P1/P13: every op's callbacks so far equal the model's outcome, time and reason; P7: an op is
  // in the wheel exactly while it waits with a deadline.
  const actual: unknown[] = [];
  const expected: unknown[] = [];
  for (const op of m.ops) {
    const rec = sys.recs[op.id]!;
    if (observable(op.spec.mode)) {
      actual.push({ id: op.id, tries: rec.tries });
      expected.push({ id: op.id, tries: op.tries });
    }
    if (rec.op === undefined) continue;
    actual.push({
      id: op.id,
      calls: rec.calls.map(({ cb, time, state }) => ({ cb, time, state })),
      reasonOk: rec.calls[0]?.cb === 'cancel' ? reasonMatches(op.reason, rec.calls[0].reason, rec, sys) : null,
      state: rec.op.state,
      isDone: rec.op.isDone,
      scheduled: rec.op.scheduled,
    });
    expected.push({
      id: op.id,
      calls: expectedCalls(op),
      reasonOk: op.state === 'canceled' ? true : null,
      state: op.state === 'refused' ? 'idle' : op.state,
      isDone: op.state !== 'waiting' && op.state !== 'refused',
      scheduled: op.state === 'waiting' && op.timed,
    });
  }
  expect(actual).toEqual(expected);

  // P1: onExpiration always right after the same op's onComplete.
  const log = sys.log.slice(mark.log);
  log.forEach((entry, i) => {
    if (entry.cb === 'expire') expect(log[i - 1]).toMatchObject({ id: entry.id, cb: 'complete' });
  });
  // P11: expirations in non-decreasing order of deadline (here, of the time they fire at).
  const expiries = log.filter((e) => e.cb === 'expire').map((e) => e.time);
  expect(expiries).toEqual([...expiries].sort((a, b) => a - b));

  // Callback errors go to onError, one per throwing callback, with the op.
  const expectedErrors = step.ended
    .filter((op) => op.spec.throwingCallbacks && isClassMode(op.spec.mode))
    .flatMap((op) => expectedCalls(op).map((call) => `${op.id}:${call.cb}`))
    .sort();
  const errors = sys.errors.slice(mark.errors).map(({ error, op }) => {
    const e = error as { thrownBy: number; cb: Callback };
    expect(sys.byOp.get(op)?.id).toBe(e.thrownBy);
    return `${e.thrownBy}:${e.cb}`;
  });
  expect(errors.sort()).toEqual(expectedErrors);

  // Diagnostics: one event per ended op at its time; anonymous (wait()) ops as a multiset.
  const events = sys.channel.slice(mark.channel);
  for (const event of events) {
    // With a ManualClock a timed expiry is exactly on time. (Expiries of timeout <= 0 are checked
    // by the separate latenessMs property below.)
    const rec = sys.byOp.get(event.op);
    if (event.kind === 'expire' && rec !== undefined && rec.spec.delay > 0) expect(event.latenessMs).toBe(0);
  }
  const describeEvent = (kind: Callback, time: number): string => `${kind}@${time}`;
  const named = events.filter((e) => sys.byOp.has(e.op)).map((e) => `${sys.byOp.get(e.op)!.id}:${describeEvent(e.kind, e.time)}`);
  const anonymous = events.filter((e) => !sys.byOp.has(e.op)).map((e) => describeEvent(e.kind, e.time));
  const expectedNamed: string[] = [];
  const expectedAnonymous: string[] = [];
  for (const op of step.ended) {
    for (const kind of channelKind(op.state as Outcome)) {
      if (isClassMode(op.spec.mode)) expectedNamed.push(`${op.id}:${describeEvent(kind, op.endedAt)}`);
      else expectedAnonymous.push(describeEvent(kind, op.endedAt));
    }
  }
  expect(named.sort()).toEqual(expectedNamed.sort());
  expect(anonymous.sort()).toEqual(expectedAnonymous.sort());
}

/** Lets wait() promises settle, then compares their outcomes with the model. */
async function verifyPromises(m: RefModel, sys: RealSystem): Promise<void> {
  if (!sys.hasPromises) return;
  await Promise.resolve();
  await Promise.resolve();
  for (const op of m.ops) {
    if (isClassMode(op.spec.mode)) continue;
    const rec = sys.recs[op.id]!;
    const what = `wait() of op ${op.id}`;
    if (op.state === 'waiting') expect(rec.settled, what).toBeUndefined();
    else if (op.state === 'completed' || op.state === 'expired') expect(rec.settled, what).toEqual({ ok: true, value: op.state });
    else {
      expect(rec.settled?.ok, what).toBe(false);
      expect(reasonMatches(op.reason, rec.settled!.value, rec, sys), `${what}: rejection reason`).toBe(true);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

type Cmd = fc.AsyncCommand<RefModel, RealSystem>;

const pickOp = (m: RefModel, pick: number, filter: (op: RefOp) => boolean = () => true): RefOp | undefined => {
  const ops = m.ops.filter(filter);
  return ops.length === 0 ? undefined : ops[pick % ops.length];
};

abstract class BaseCmd implements Cmd {
  check(_m: Readonly<RefModel>): boolean {
    return true;
  }
  async run(m: RefModel, sys: RealSystem): Promise<void> {
    const mark = sys.mark();
    const step = this.apply(m, sys);
    verify(m, sys, mark, step);
    await verifyPromises(m, sys);
  }
  abstract apply(m: RefModel, sys: RealSystem): RefStep;
  abstract toString(): string;
}

class WatchCmd extends BaseCmd {
  constructor(readonly spec: WatchSpec) {
    super();
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const p = sys.purgatory;
    const before = { waiting: p.numDelayed(), watched: p.watched(), timers: sys.clock.pendingTimers, armed: sys.clock.armed };
    const { rec, returned, threw } = sys.watch(this.spec);
    const step = m.watch(this.spec);
    expect(rec.id).toBe(step.op.id);
    if (step.throwsClosed) {
      if (isClassMode(this.spec.mode)) expect(threw).toBeInstanceOf(ClosedError);
      return step;
    }
    expect(threw).toBeUndefined();
    if (isClassMode(this.spec.mode)) expect(returned).toBe(step.result);
    if (step.op.state !== 'waiting') {
      // P10 / P4 / pre-aborted: ended before the call returned, leaving nothing behind.
      expect(rec.op === undefined || rec.calls.length > 0).toBe(true);
      expect(p.numDelayed()).toBe(before.waiting);
      expect(p.watched()).toBe(before.watched);
      expect(sys.clock.pendingTimers).toBe(before.timers);
      expect(sys.clock.armed).toBe(before.armed);
    }
    if (step.op.state === 'expired') {
      // P4: delay <= 0 expires synchronously, after the condition was checked (unless aborted).
      expect(this.spec.delay).toBeLessThanOrEqual(0);
      if (observable(this.spec.mode)) expect(rec.tries).toBe(2);
    }
    return step;
  }
  toString(): string {
    return `Watch(${JSON.stringify(this.spec, (_k, v: unknown) => (v === Infinity ? 'Infinity' : v))})`;
  }
}

class FlipCmd extends BaseCmd {
  constructor(
    readonly pick: number,
    readonly how: 'true' | 'false' | 'throw',
  ) {
    super();
  }
  override check(m: RefModel): boolean {
    return m.ops.some((op) => observable(op.spec.mode));
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const op = pickOp(m, this.pick, (o) => observable(o.spec.mode))!;
    const rec = sys.recs[op.id]!;
    if (this.how === 'throw') rec.throwNext = true;
    else rec.completable = this.how === 'true';
    m.flip(op, this.how);
    return { result: undefined, throwsClosed: false, visits: [], ended: [] };
  }
  toString(): string {
    return `Flip(#${this.pick}, ${this.how})`;
  }
}

class CheckCmd extends BaseCmd {
  constructor(
    readonly key: Key,
    readonly twice: boolean,
  ) {
    super();
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const p = sys.purgatory;
    const run = (): RefStep => {
      const step = m.checkAndComplete(this.key);
      if (step.throwsClosed) {
        expect(() => p.checkAndComplete(this.key)).toThrow(ClosedError);
      } else {
        expect(p.checkAndComplete(this.key)).toBe(step.result);
      }
      return step;
    };
    const first = run();
    if (!this.twice) return first;
    // P5: a second call with nothing changed completes nothing.
    const second = run();
    expect(second.result === 0 || second.throwsClosed).toBe(true);
    return { ...first, visits: [...first.visits, ...second.visits], ended: [...first.ended, ...second.ended] };
  }
  toString(): string {
    return `CheckAndComplete(${this.key}${this.twice ? ', twice' : ''})`;
  }
}

type AdvanceKind =
  | { readonly kind: 'small'; readonly ticks: number; readonly ms: number }
  | { readonly kind: 'boundary'; readonly ticks: number }
  | { readonly kind: 'huge'; readonly ms: number }
  | { readonly kind: 'deadline'; readonly pick: number; readonly offset: -1 | 0 | 1 };

class AdvanceCmd extends BaseCmd {
  constructor(readonly how: AdvanceKind) {
    super();
  }
  target(m: RefModel): number {
    const tick = m.tickMs;
    switch (this.how.kind) {
      case 'small':
        return m.now + Math.min(this.how.ms, 5 * tick);
      case 'boundary':
        return (Math.floor(m.now / tick) + this.how.ticks) * tick;
      case 'huge':
        return m.now + this.how.ms;
      case 'deadline': {
        const op = pickOp(m, this.how.pick, (o) => o.state === 'waiting' && o.timed);
        return op === undefined ? m.now : Math.max(m.now, op.deadline + this.how.offset);
      }
    }
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const clock = sys.clock;
    const t = this.target(m);
    const timedBefore = m.counters().timed;
    const maxDeadlineTick = Math.max(t, ...m.waiting.filter((op) => op.timed).map((op) => op.deadline)) / m.tickMs;
    const firedBefore = clock.fired;
    clock.advanceTo(t);
    const step = m.advanceTo(t);
    // P14: the jump costs O(ops x levels) timer callbacks, never O(jump / tick).
    const levels = levelBound(sys.cfg.wheelSize, maxDeadlineTick);
    expect(clock.fired - firedBefore).toBeLessThanOrEqual(timedBefore * (levels + 1) + 2);
    // P2/P3 stated directly: no expiry before t + d, none a tick or more late, nothing overdue left.
    for (const op of step.ended) {
      const rec = sys.recs[op.id]!;
      const due = op.watchedAt + op.spec.delay;
      for (const call of rec.calls) {
        expect(call.time).toBeGreaterThanOrEqual(due);
        expect(call.time).toBeLessThan(due + m.tickMs);
      }
    }
    for (const op of m.waiting) {
      if (op.timed) expect(Math.ceil((op.watchedAt + op.spec.delay) / m.tickMs) * m.tickMs).toBeGreaterThan(t);
    }
    return step;
  }
  toString(): string {
    return `Advance(${JSON.stringify(this.how)})`;
  }
}

class CancelForKeyCmd extends BaseCmd {
  constructor(readonly key: Key) {
    super();
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const canceled = sys.purgatory.cancelForKey(this.key);
    const step = m.cancelForKey(this.key);
    // The DelayedOperations returned, in watch order (wait() ops are PromiseOperations).
    expect(canceled.length).toBe(step.result.length);
    canceled.forEach((op, i) => {
      const rec = sys.byOp.get(op);
      if (rec !== undefined) expect(rec.id).toBe(step.result[i]);
      else expect(isClassMode(m.ops[step.result[i]!]!.spec.mode)).toBe(false);
      expect(op.state).toBe('canceled');
    });
    return step;
  }
  toString(): string {
    return `CancelForKey(${this.key})`;
  }
}

class CancelCmd extends BaseCmd {
  constructor(readonly pick: number) {
    super();
  }
  override check(m: RefModel): boolean {
    return m.ops.some((op) => isClassMode(op.spec.mode));
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const op = pickOp(m, this.pick, (o) => isClassMode(o.spec.mode))!;
    const result = sys.purgatory.cancel(sys.recs[op.id]!.op!);
    const step = m.cancel(op);
    expect(result).toBe(step.result);
    return step;
  }
  toString(): string {
    return `Cancel(#${this.pick})`;
  }
}

class AbortCmd extends BaseCmd {
  constructor(readonly pick: number) {
    super();
  }
  override check(m: RefModel): boolean {
    return m.ops.some((op) => op.spec.signal !== 'none');
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const op = pickOp(m, this.pick, (o) => o.spec.signal !== 'none')!;
    const rec = sys.recs[op.id]!;
    rec.controller!.abort(rec.abortToken);
    return m.abort(op);
  }
  toString(): string {
    return `Abort(#${this.pick})`;
  }
}

class ForceCmd extends BaseCmd {
  constructor(
    readonly pick: number,
    readonly viaOp: boolean,
  ) {
    super();
  }
  override check(m: RefModel): boolean {
    return m.ops.some((op) => isClassMode(op.spec.mode));
  }
  apply(m: RefModel, sys: RealSystem): RefStep {
    const op = pickOp(m, this.pick, (o) => isClassMode(o.spec.mode))!;
    const real = sys.recs[op.id]!.op!;
    const result = this.viaOp ? real.forceComplete() : sys.purgatory.forceComplete(real);
    const step = m.forceComplete(op);
    expect(result).toBe(step.result);
    return step;
  }
  toString(): string {
    return `ForceComplete(#${this.pick}${this.viaOp ? ', via op' : ''})`;
  }
}

class CloseCmd implements Cmd {
  constructor(readonly kind: 'close' | 'destroy') {}
  check(): boolean {
    return true;
  }
  async run(m: RefModel, sys: RealSystem): Promise<void> {
    const mark = sys.mark();
    const p = sys.purgatory;
    if (this.kind === 'close') await p.close();
    else p.destroy(sys.destroyToken);
    const step = m.close(this.kind);
    expect(p.closed).toBe(true);
    verify(m, sys, mark, step);
    // P7: closing leaves nothing armed.
    expect(sys.clock.pendingTimers).toBe(0);
    await verifyPromises(m, sys);
  }
  toString(): string {
    return this.kind === 'close' ? 'Close()' : 'Destroy()';
  }
}

function commandsArb(cfg: ModelConfig): fc.Arbitrary<Iterable<Cmd>> {
  const tick = cfg.tickMs;
  const advance: fc.Arbitrary<AdvanceKind> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('small' as const), ticks: fc.constant(0), ms: fc.integer({ min: 0, max: 5 * tick }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('boundary' as const), ticks: fc.integer({ min: 1, max: 5 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('huge' as const), ms: fc.integer({ min: 2 ** 31, max: 2 ** 34 }) }) },
    // Mostly short steps, so that many ops wait at once.
    {
      weight: 3,
      arbitrary: fc.record({ kind: fc.constant('deadline' as const), pick: fc.nat(), offset: fc.constantFrom<-1 | 0 | 1>(-1, 0, 1) }),
    },
  );
  const command: fc.Arbitrary<Cmd> = fc.oneof(
    { weight: 30, arbitrary: watchSpecArb(tick).map((spec) => new WatchCmd(spec)) },
    { weight: 12, arbitrary: fc.tuple(fc.nat(), fc.constantFrom<'true' | 'false' | 'throw'>('true', 'true', 'false', 'throw')).map(([p, h]) => new FlipCmd(p, h)) },
    { weight: 16, arbitrary: fc.tuple(keyArb, fc.boolean()).map(([k, twice]) => new CheckCmd(k, twice)) },
    { weight: 18, arbitrary: advance.map((how) => new AdvanceCmd(how)) },
    { weight: 3, arbitrary: keyArb.map((k) => new CancelForKeyCmd(k)) },
    { weight: 3, arbitrary: fc.nat().map((p) => new CancelCmd(p)) },
    { weight: 4, arbitrary: fc.nat().map((p) => new AbortCmd(p)) },
    { weight: 4, arbitrary: fc.tuple(fc.nat(), fc.boolean()).map(([p, v]) => new ForceCmd(p, v)) },
    { weight: 1, arbitrary: fc.constantFrom<'close' | 'destroy'>('close', 'destroy').map((k) => new CloseCmd(k)) },
  );
  return fc.commands([command], { maxCommands: 60, size: 'max' });
}

/** Runs the commands; at the end, checks the whole outcome multiset (P13). */
async function runModel(cfg: ModelConfig, cmds: Iterable<Cmd>): Promise<void> {
  let model!: RefModel;
  let real!: RealSystem;
  await fc.asyncModelRun(() => {
    model = new RefModel(cfg.tickMs, cfg.startMs);
    real = new RealSystem(cfg);
    return { model, real };
  }, cmds);
  const modelOutcomes = model.ops
    .filter((op) => isClassMode(op.spec.mode) && op.state !== 'waiting' && op.state !== 'refused')
    .map((op) => `${op.id}:${op.state}@${op.endedAt}`)
    .sort();
  const realOutcomes = real.recs
    .filter((rec) => rec.op !== undefined && rec.op.isDone)
    .map((rec) => `${rec.id}:${rec.op!.state}@${rec.calls[0]!.time}`)
    .sort();
  expect(realOutcomes).toEqual(modelOutcomes);
  real.purgatory.destroy();
}

// ---------------------------------------------------------------------------------------------

describe('Purgatory model-based (fc.commands vs O(n) reference)', () => {
  itProp([configArb.chain((cfg) => fc.tuple(fc.constant(cfg), commandsArb(cfg)))], { numRuns: runs(200) })(
    'matches the reference model after every command (P1-P8, P10, P11, P13, P14, P16)',
    async ([cfg, cmds]) => {
      await runModel(cfg, cmds);
    },
  );

  const smallWheels: fc.Arbitrary<ModelConfig> = fc.record({
    tickMs: fc.constantFrom(10, 1, 7),
    wheelSize: fc.integer({ min: 2, max: 8 }),
    expiryBatchSize: fc.integer({ min: 1, max: 2 }),
    startMs: fc.integer({ min: 0, max: 100 }),
    ref: fc.constant(undefined),
  });
  itProp([smallWheels.chain((cfg) => fc.tuple(fc.constant(cfg), commandsArb(cfg)))], { numRuns: runs(100) })(
    'small wheels and expiry batches of 1-2 (cascades and yielding) match the model too',
    async ([cfg, cmds]) => {
      await runModel(cfg, cmds);
    },
  );

  it('the harness catches a wrong model (sanity check of the oracle)', () => {
    // An op watched at 5 with a 10 ms timeout on a 10 ms tick expires at 20, not at 15: a model
    // that forgot the rounding must be rejected by the comparison.
    const cfg: ModelConfig = { tickMs: 10, wheelSize: 64, expiryBatchSize: undefined, startMs: 5, ref: undefined };
    const spec: WatchSpec = {
      keys: ['a'],
      asString: false,
      delay: 10,
      mode: 'flag',
      completableNow: false,
      signal: 'none',
      throwingCallbacks: false,
      throwAtWatch: 0,
    };
    class SloppyModel extends RefModel {
      override watch(s: WatchSpec): ReturnType<RefModel['watch']> {
        const step = super.watch(s);
        step.op.deadline = step.op.watchedAt + s.delay;
        return step;
      }
    }
    const sys = new RealSystem(cfg);
    const model = new SloppyModel(cfg.tickMs, cfg.startMs);
    let mark = sys.mark();
    sys.watch(spec);
    // The timer is armed for 20, later than the (wrong) deadline 15.
    expect(() => verify(model, sys, mark, model.watch(spec))).toThrow();
    mark = sys.mark();
    sys.clock.advanceTo(15);
    // The model expires the op at 15; the purgatory does not.
    expect(() => verify(model, sys, mark, model.advanceTo(15))).toThrow(/callbacks|expected/);
    sys.purgatory.destroy();
  });
});

describe('Purgatory clock robustness (P14)', () => {
  itProp([fc.integer({ min: 2, max: 64 }), fc.constantFrom(1, 10), fc.integer({ min: 1, max: 2 ** 33 }), fc.integer({ min: 0, max: 10 ** 6 })], {
    numRuns: runs(100),
  })('one jump far past a 2^33 ms deadline fires it exactly at its deadline, with O(levels) timer callbacks', (wheelSize, tickMs, delay, start) => {
    const clock = new CountingClock(start);
    const p = new Purgatory({ clock, tickMs, wheelSize });
    const times: number[] = [];
    class Op extends DelayedOperation {
      onComplete(): void {
        times.push(clock.now());
      }
    }
    p.tryCompleteElseWatch(new Op(delay), 'k');
    const deadline = Math.ceil((start + delay) / tickMs) * tickMs;
    clock.advanceTo(deadline - 1);
    expect(times).toEqual([]);
    const firedBefore = clock.fired;
    clock.advance(2 ** 33);
    expect(times).toEqual([deadline]);
    // Per-tick stepping would take (2^33 / tick) callbacks; the wheel takes about one per level.
    expect(clock.fired - firedBefore).toBeLessThanOrEqual(levelBound(wheelSize, deadline / tickMs) + 1);
    expect(clock.pendingTimers).toBe(0);
    p.checkInvariants();
  });

  itProp(
    [
      fc.integer({ min: 2, max: 64 }),
      fc.array(fc.integer({ min: 1, max: 2 ** 34 }), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 0, max: 2 ** 34 }),
    ],
    { numRuns: runs(100) },
  )('a forward jump of D fires exactly the ops due by now + D, in one advance call, in deadline order', (wheelSize, delays, jump) => {
    const tickMs = 10;
    const clock = new CountingClock(0);
    const p = new Purgatory({ clock, tickMs, wheelSize });
    const fired: number[] = [];
    class Op extends DelayedOperation {
      constructor(readonly i: number) {
        super(delays[i]!);
      }
      onComplete(): void {
        fired.push(this.i);
      }
    }
    delays.forEach((_, i) => p.tryCompleteElseWatch(new Op(i), `k${i % 3}`));
    const deadlines = delays.map((d) => Math.ceil(d / tickMs) * tickMs);
    clock.advance(jump);
    const expected = deadlines.map((d, i) => ({ d, i })).filter(({ d }) => d <= jump);
    expect([...fired].sort((a, b) => a - b)).toEqual(expected.map(({ i }) => i));
    const firedDeadlines = fired.map((i) => deadlines[i]!);
    expect(firedDeadlines).toEqual([...firedDeadlines].sort((a, b) => a - b));
    expect(p.numDelayed()).toBe(delays.length - expected.length);
    expect(clock.fired).toBeLessThanOrEqual(delays.length * (levelBound(wheelSize, 2 ** 34 / tickMs) + 1) + 2);
    p.checkInvariants();
  });

  it('follows the injected monotonic clock only: wall-clock jumps (Date.now, performance.now) change nothing', () => {
    const run = (): string[] => {
      const clock = new ManualClock(1000);
      const p = new Purgatory({ clock, tickMs: 10 });
      const out: string[] = [];
      class Op extends DelayedOperation {
        constructor(
          readonly name: string,
          delay: number,
        ) {
          super(delay);
        }
        onComplete(): void {
          out.push(`${this.name}@${clock.now()}`);
        }
      }
      for (const [name, delay] of [['a', 5], ['b', 50], ['c', 2 ** 32], ['d', 1]] as const) {
        p.tryCompleteElseWatch(new Op(name, delay), name);
      }
      clock.advance(0);
      clock.advance(40);
      clock.advance(2 ** 32);
      return out;
    };
    const baseline = run();
    let wall = 1e12;
    const dateSpy = vi.spyOn(Date, 'now').mockImplementation(() => (wall = wall % 2 === 0 ? wall - 1e9 : wall + 3e9));
    const perfSpy = vi.spyOn(performance, 'now').mockImplementation(() => (wall = wall - 1e9));
    try {
      expect(run()).toEqual(baseline);
      expect(dateSpy).not.toHaveBeenCalled();
      expect(perfSpy).not.toHaveBeenCalled();
    } finally {
      dateSpy.mockRestore();
      perfSpy.mockRestore();
    }
    // a and d share a quantised deadline: no order is promised between them.
    expect([...baseline].sort()).toEqual(['a@1010', 'b@1050', `c@${Math.ceil((1000 + 2 ** 32) / 10) * 10}`, 'd@1010']);
  });
});

describe('Purgatory with fractional clock readings (performance.now() style)', () => {
  itProp(
    [
      fc.constantFrom(1, 10, 7),
      fc.double({ min: 0, max: 1e7, noNaN: true }),
      fc.array(fc.tuple(fc.double({ min: 0.001, max: 1e5, noNaN: true }), fc.double({ min: 0, max: 50, noNaN: true })), {
        minLength: 1,
        maxLength: 20,
      }),
    ],
    { numRuns: runs(150) },
  )('never expires early and never a tick late, whatever the fractions (P2, P3)', (tickMs, start, plan) => {
    const clock = new ManualClock(start);
    const p = new Purgatory({ clock, tickMs, wheelSize: 8 });
    const ops: { watchedAt: number; delay: number; firedAt: number | undefined }[] = [];
    class Op extends DelayedOperation {
      constructor(readonly rec: (typeof ops)[number]) {
        super(rec.delay);
      }
      onComplete(): void {
        this.rec.firedAt = clock.now();
      }
    }
    for (const [delay, gap] of plan) {
      const rec = { watchedAt: clock.now(), delay, firedAt: undefined };
      ops.push(rec);
      p.tryCompleteElseWatch(new Op(rec), 'k');
      clock.advance(gap);
      for (const r of ops) {
        const deadline = Math.ceil((r.watchedAt + r.delay) / tickMs) * tickMs;
        if (r.firedAt !== undefined) {
          expect(r.firedAt).toBeGreaterThanOrEqual(r.watchedAt + r.delay);
          expect(r.firedAt).toBeLessThanOrEqual(deadline);
        } else {
          expect(clock.now()).toBeLessThan(deadline);
        }
      }
      p.checkInvariants();
    }
    clock.advance(2e5);
    expect(ops.every((r) => r.firedAt !== undefined)).toBe(true);
    expect(p.numDelayed()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('diagnostics: latenessMs of the expire event', () => {
  // Regression: an op whose timeout is <= 0 expires inside tryCompleteElseWatch without entering
  // the wheel; the event once reported the absolute clock reading as its lateness (shrunk
  // counterexample [tickMs, start, timeoutMs, viaWait] = [1, 2, 0, false]).
  it('every expiry, timeout <= 0 included, reports 0 <= latenessMs <= max(0, -timeout) + tick', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 10),
        fc.integer({ min: 0, max: 10 ** 6 }),
        fc.integer({ min: -5, max: 50 }),
        fc.boolean(),
        (tickMs, start, timeoutMs, viaWait) => {
          const clock = new ManualClock(start);
          const p = new Purgatory({ clock, tickMs });
          const lateness: number[] = [];
          const handler = (message: unknown): void => {
            const msg = message as { purgatory: Purgatory; latenessMs: number };
            if (msg.purgatory === p) lateness.push(msg.latenessMs);
          };
          diagnosticsChannel.subscribe(channelNames.expire, handler);
          try {
            if (viaWait) void p.wait('k', { timeoutMs });
            else {
              class Op extends DelayedOperation {
                onComplete(): void {}
              }
              p.tryCompleteElseWatch(new Op(timeoutMs), 'k');
            }
            clock.advance(100);
          } finally {
            diagnosticsChannel.unsubscribe(channelNames.expire, handler);
          }
          expect(lateness).toHaveLength(1);
          expect(lateness[0]).toBeGreaterThanOrEqual(0);
          expect(lateness[0]).toBeLessThanOrEqual(Math.max(0, -timeoutMs) + tickMs);
        },
      ),
      { numRuns: runs(200) },
    );
  });

  it('a timed expiry on a ManualClock reports latenessMs 0 (the passing half of the property above)', () => {
    const clock = new ManualClock(12_345);
    const p = new Purgatory({ clock, tickMs: 10 });
    const lateness: number[] = [];
    const handler = (message: unknown): void => {
      const msg = message as { purgatory: Purgatory; latenessMs: number };
      if (msg.purgatory === p) lateness.push(msg.latenessMs);
    };
    diagnosticsChannel.subscribe(channelNames.expire, handler);
    try {
      void p.wait('k', { timeoutMs: 7 });
      clock.advance(100);
    } finally {
      diagnosticsChannel.unsubscribe(channelNames.expire, handler);
    }
    expect(lateness).toEqual([0]);
  });
});
