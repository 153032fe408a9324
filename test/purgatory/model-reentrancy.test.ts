/**
 * Re-entrancy and lost wake-ups (research/purgatory.md §5, P9 and P12; §1.5).
 *
 * Operations carry scripts: their `tryComplete`, `onComplete`, `onExpiration` and `onCancel` call
 * back into the same purgatory (watch, checkAndComplete, cancelForKey, close, forceComplete,
 * cancel, abort, flipping conditions). Every purgatory call goes through a wrapper that pushes a
 * frame, so each callback knows which call it runs under. Checked while the scripts run:
 *
 * - `tryComplete` runs only while its op waits, is never re-entered, and is called only by the
 *   op's own watch or by a checkAndComplete(k) whose snapshot held the op (ops that start
 *   watching k during the iteration are not visited), in watch order;
 * - `onComplete` never runs while the op's own `tryComplete` is on the stack; each op's callbacks
 *   are exactly one of [complete], [complete, expire], [cancel];
 * - a `tryComplete` that returned true (or forced its op) while the op still waited completes
 *   it in that same call (P9); an op waiting on k when checkAndComplete(k) starts, and still
 *   waiting when it returns, was visited (no lost wake-up);
 * - return values: checkAndComplete counts exactly the ops it completed, tryCompleteElseWatch is
 *   true exactly when its own call completed the op, cancelForKey returns exactly the ops it
 *   canceled, in watch order;
 * - after each top-level command: checkInvariants(), exact counters, one timer iff timed ops,
 *   nothing overdue left waiting, nothing waiting after close (P7, P8, P16).
 *
 * An async variant (fc.scheduler) flips conditions and calls checkAndComplete at random points
 * across microtasks, as Kafka's testTryCompleteWithMultipleThreads does with threads.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClosedError, DelayedOperation, ManualClock, Purgatory } from '../../src/index.js';
import { itProp, keyArb, runs, type Key } from './model-reference.js';

type Action =
  | { readonly t: 'none' }
  | { readonly t: 'watch' }
  | { readonly t: 'check'; readonly key: Key }
  | { readonly t: 'cancelForKey'; readonly key: Key }
  | { readonly t: 'close' }
  | { readonly t: 'flip'; readonly target: number; readonly value: boolean }
  | { readonly t: 'force'; readonly target: number }
  | { readonly t: 'cancel'; readonly target: number }
  | { readonly t: 'abort'; readonly target: number };

/** `try` runs in the first tryComplete call, `tryAgain` in later ones (the re-check at watch, and checks). */
type Hook = 'try' | 'tryAgain' | 'complete' | 'expire' | 'cancel';

interface ReSpec {
  readonly keys: readonly Key[];
  readonly delay: number;
  readonly completable: boolean;
  /** tryComplete returns the flag as it is after running its action (else as it was before). */
  readonly readAfter: boolean;
  readonly signal: boolean;
  readonly hooks: Readonly<Record<Hook, Action>>;
}

type TopCommand = Action | { readonly t: 'advance'; readonly ms: number };

type FrameKind = 'watch' | 'check' | 'cancelForKey' | 'close' | 'force' | 'cancel' | 'abort' | 'advance';

interface TryResult {
  readonly rec: ReRec;
  readonly wantComplete: boolean;
  readonly stateAtReturn: string;
}

interface Frame {
  readonly id: number;
  readonly kind: FrameKind;
  readonly rec?: ReRec;
  /** checkAndComplete: the ops it must visit if they still wait when reached. */
  readonly mustVisit: Set<ReRec>;
  readonly visited: ReRec[];
  readonly tries: TryResult[];
  lastLinkOrder: number;
  tryCount: number;
}

interface CallRecord {
  readonly cb: 'complete' | 'expire' | 'cancel';
  readonly state: string;
  readonly time: number;
  readonly frame: number;
  readonly reason?: unknown;
}

interface ReRec {
  readonly id: number;
  readonly spec: ReSpec;
  readonly op: ScriptedOp;
  readonly controller: AbortController | undefined;
  readonly abortToken: object;
  flag: boolean;
  tries: number;
  depth: number;
  forcedDuringTry: boolean;
  linked: boolean;
  linkOrder: number;
  watchDone: boolean;
  watchedAt: number;
  completedBy: number | undefined;
  canceledBy: number | undefined;
  readonly calls: CallRecord[];
}

const TICK = 10;

class ScriptedOp extends DelayedOperation {
  rec!: ReRec;
  constructor(
    readonly h: Harness,
    delay: number,
    signal: AbortSignal | undefined,
  ) {
    super(delay, { signal });
  }

  override tryComplete(): boolean {
    const { h, rec } = this;
    const frame = h.top();
    if (this.state !== 'waiting') h.fail(`tryComplete of #${rec.id} in state ${this.state}`);
    if (rec.depth !== 0) h.fail(`tryComplete of #${rec.id} re-entered`);
    if (frame.kind === 'watch') {
      if (frame.rec !== rec) h.fail(`tryComplete of #${rec.id} called by the watch of #${frame.rec?.id}`);
    } else if (frame.kind === 'check') {
      if (!frame.mustVisit.has(rec)) h.fail(`checkAndComplete visited #${rec.id}, which was not in its snapshot`);
      if (rec.linkOrder <= frame.lastLinkOrder) h.fail(`checkAndComplete visited #${rec.id} out of watch order`);
      frame.lastLinkOrder = rec.linkOrder;
      frame.visited.push(rec);
    } else {
      h.fail(`tryComplete of #${rec.id} called from ${frame.kind}`);
    }
    frame.tryCount++;
    rec.depth++;
    rec.forcedDuringTry = false;
    const before = rec.flag;
    h.act(rec, rec.tries++ === 0 ? rec.spec.hooks.try : rec.spec.hooks.tryAgain);
    const result = rec.spec.readAfter ? rec.flag : before;
    rec.depth--;
    const wantComplete = result || rec.forcedDuringTry;
    frame.tries.push({ rec, wantComplete, stateAtReturn: this.state });
    if (frame.kind === 'watch' && frame.tryCount === 1 && !wantComplete && this.state === 'waiting' && !h.p.closed) {
      // No user code runs between this return and the registration on the keys.
      rec.linked = true;
      rec.linkOrder = h.linkCounter++;
    }
    return result;
  }

  onComplete(): void {
    const { h, rec } = this;
    if (rec.depth !== 0) h.fail(`onComplete of #${rec.id} ran inside its own tryComplete`);
    if (this.state !== 'completed' && this.state !== 'expired') h.fail(`onComplete of #${rec.id} in state ${this.state}`);
    if (this.state === 'completed') rec.completedBy = h.top().id;
    this.#record('complete');
    h.act(rec, rec.spec.hooks.complete);
  }

  override onExpiration(): void {
    const { h, rec } = this;
    const last = rec.calls.at(-1);
    if (rec.calls.length !== 1 || last?.cb !== 'complete' || last.state !== 'expired') h.fail(`onExpiration of #${rec.id} not right after onComplete`);
    const frame = h.top();
    const now = h.clock.now();
    if (rec.spec.delay <= 0) {
      if (frame.kind !== 'watch' || frame.rec !== rec || now !== rec.watchedAt) h.fail(`#${rec.id} (timeout <= 0) did not expire inside its watch`);
    } else {
      const deadline = Math.ceil((rec.watchedAt + rec.spec.delay) / TICK) * TICK;
      if (now !== deadline) h.fail(`#${rec.id} expired at ${now}, deadline ${deadline}`);
      if (frame.kind !== 'advance') h.fail(`#${rec.id} expired outside a clock advance (${frame.kind})`);
    }
    this.#record('expire');
    h.act(rec, rec.spec.hooks.expire);
  }

  override onCancel(reason: unknown): void {
    const { h, rec } = this;
    rec.canceledBy = h.top().id;
    this.#record('cancel', reason);
    h.act(rec, rec.spec.hooks.cancel);
  }

  #record(cb: CallRecord['cb'], reason?: unknown): void {
    const { h, rec } = this;
    if (cb !== 'expire' && rec.calls.length > 0) h.fail(`#${rec.id} got ${cb} after ${rec.calls.map((c) => c.cb).join(',')}`);
    rec.calls.push({ cb, state: this.state, time: h.clock.now(), frame: h.top().id, reason });
  }
}

class Harness {
  readonly clock = new ManualClock(0);
  readonly p: Purgatory;
  readonly ops: ReRec[] = [];
  readonly violations: string[] = [];
  readonly errors: unknown[] = [];
  readonly frames: Frame[] = [];
  linkCounter = 0;
  #frameIds = 1;
  #next = 0;
  #budget = 400;

  constructor(
    readonly pool: readonly ReSpec[],
    wheelSize: number,
    expiryBatchSize: number,
  ) {
    this.p = new Purgatory({ clock: this.clock, tickMs: TICK, wheelSize, expiryBatchSize, onError: (e) => this.errors.push(e) });
  }

  fail(message: string): void {
    this.violations.push(message);
  }

  top(): Frame {
    const frame = this.frames.at(-1);
    if (frame === undefined) throw new Error('purgatory called back outside any call');
    return frame;
  }

  #push(kind: FrameKind, rec?: ReRec, mustVisit: Set<ReRec> = new Set()): Frame {
    const frame: Frame = { id: this.#frameIds++, kind, mustVisit, visited: [], tries: [], lastLinkOrder: -1, tryCount: 0, ...(rec ? { rec } : {}) };
    this.frames.push(frame);
    return frame;
  }

  #pop(frame: Frame): void {
    if (this.frames.pop() !== frame) this.fail('frame stack corrupted');
    // P9: a check that said yes (or forced) while the op still waited completed it in this call.
    for (const t of frame.tries) {
      if (t.wantComplete && t.stateAtReturn === 'waiting' && t.rec.completedBy !== frame.id) {
        this.fail(`#${t.rec.id}: tryComplete said yes under ${frame.kind} #${frame.id} but the op ${t.rec.op.state} (by ${t.rec.completedBy})`);
      }
    }
  }

  #waitingOn(key: Key): ReRec[] {
    return this.ops.filter((r) => r.op.state === 'waiting' && r.linked && r.spec.keys.includes(key));
  }

  #target(self: ReRec | undefined, target: number): ReRec | undefined {
    if (self !== undefined && target === 0) return self;
    return this.ops.length === 0 ? undefined : this.ops[target % this.ops.length];
  }

  /** Runs a script action (from a callback, or a top-level command with `self` undefined). */
  act(self: ReRec | undefined, action: TopCommand): void {
    if (action.t === 'none') return;
    if (self !== undefined && --this.#budget < 0) return;
    switch (action.t) {
      case 'watch':
        this.watch();
        return;
      case 'check':
        this.check(action.key);
        return;
      case 'cancelForKey':
        this.cancelForKey(action.key);
        return;
      case 'close':
        this.close();
        return;
      case 'advance': {
        const frame = this.#push('advance');
        this.clock.advance(action.ms);
        this.#pop(frame);
        return;
      }
      case 'flip': {
        const rec = this.#target(self, action.target);
        if (rec !== undefined) rec.flag = action.value;
        return;
      }
      case 'force':
      case 'cancel':
      case 'abort': {
        const rec = this.#target(self, action.target);
        if (rec !== undefined) this[action.t](rec);
        return;
      }
    }
  }

  watch(): void {
    const spec = this.pool[this.#next];
    if (spec === undefined) return;
    this.#next++;
    const controller = spec.signal ? new AbortController() : undefined;
    const op = new ScriptedOp(this, spec.delay, controller?.signal);
    const rec: ReRec = {
      id: this.ops.length,
      spec,
      op,
      controller,
      abortToken: { abort: this.ops.length },
      flag: spec.completable,
      tries: 0,
      depth: 0,
      forcedDuringTry: false,
      linked: false,
      linkOrder: -1,
      watchDone: false,
      watchedAt: this.clock.now(),
      completedBy: undefined,
      canceledBy: undefined,
      calls: [],
    };
    op.rec = rec;
    this.ops.push(rec);
    const closedAtStart = this.p.closed;
    const frame = this.#push('watch', rec);
    let returned: boolean | undefined;
    let threw: unknown;
    try {
      returned = this.p.tryCompleteElseWatch(op, spec.keys);
    } catch (error) {
      threw = error;
    }
    rec.watchDone = true;
    this.#pop(frame);
    if (closedAtStart) {
      if (!(threw instanceof ClosedError) || op.state !== 'idle') this.fail(`watch after close: ${String(threw)}, ${op.state}`);
      return;
    }
    if (threw !== undefined) this.fail(`watch of #${rec.id} threw ${String(threw)}`);
    if (returned !== (rec.completedBy === frame.id)) this.fail(`watch of #${rec.id} returned ${returned}, op ${op.state} by frame ${rec.completedBy}`);
    if (op.state === 'waiting' && controller?.signal.aborted) this.fail(`#${rec.id} still waits with an aborted signal`);
    if (op.state === 'waiting' && !rec.linked) this.fail(`#${rec.id} waits but never registered`);
  }

  check(key: Key): void {
    const closedAtStart = this.p.closed;
    const mustVisit = new Set(this.#waitingOn(key).filter((r) => r.depth === 0));
    const frame = this.#push('check', undefined, mustVisit);
    let returned: number | undefined;
    let threw: unknown;
    try {
      returned = this.p.checkAndComplete(key);
    } catch (error) {
      threw = error;
    }
    this.#pop(frame);
    if (closedAtStart) {
      if (!(threw instanceof ClosedError) || frame.visited.length > 0) this.fail(`checkAndComplete after close: ${String(threw)}`);
      return;
    }
    if (threw !== undefined) this.fail(`checkAndComplete(${key}) threw ${String(threw)}`);
    const completedHere = this.ops.filter((r) => r.completedBy === frame.id).length;
    if (returned !== completedHere) this.fail(`checkAndComplete(${key}) returned ${returned}, completed ${completedHere}`);
    for (const rec of mustVisit) {
      if (rec.op.state === 'waiting' && !frame.visited.includes(rec)) this.fail(`lost wake-up: checkAndComplete(${key}) skipped waiting #${rec.id}`);
    }
  }

  cancelForKey(key: Key): void {
    const atStart = this.#waitingOn(key);
    const frame = this.#push('cancelForKey');
    const returned = this.p.cancelForKey(key);
    this.#pop(frame);
    const recs = returned.map((op) => (op as ScriptedOp).rec);
    const canceledHere = this.ops.filter((r) => r.canceledBy === frame.id);
    if (recs.length !== canceledHere.length || recs.some((r) => r.canceledBy !== frame.id)) {
      this.fail(`cancelForKey(${key}) returned ${recs.map((r) => r.id)}, canceled ${canceledHere.map((r) => r.id)}`);
    }
    if (recs.some((r, i) => i > 0 && r.linkOrder <= recs[i - 1]!.linkOrder)) this.fail(`cancelForKey(${key}) not in watch order`);
    if (recs.some((r) => !atStart.includes(r))) this.fail(`cancelForKey(${key}) canceled an op added meanwhile`);
    for (const rec of atStart) if (rec.op.state === 'waiting') this.fail(`cancelForKey(${key}) left #${rec.id} waiting`);
  }

  close(): void {
    const frame = this.#push('close');
    void this.p.close();
    this.#pop(frame);
    for (const rec of this.ops) if (rec.linked && rec.op.state === 'waiting') this.fail(`#${rec.id} still waits after close`);
  }

  force(rec: ReRec): void {
    const before = rec.op.state;
    const frame = this.#push('force');
    const returned = this.p.forceComplete(rec.op);
    this.#pop(frame);
    if (returned !== (before === 'waiting')) this.fail(`forceComplete(#${rec.id}) returned ${returned} in state ${before}`);
    if (!returned) return;
    if (rec.depth > 0) rec.forcedDuringTry = true;
    else if (rec.completedBy !== frame.id) this.fail(`forceComplete(#${rec.id}) returned true, op ${rec.op.state}`);
  }

  cancel(rec: ReRec): void {
    const before = rec.op.state;
    const frame = this.#push('cancel');
    const returned = this.p.cancel(rec.op);
    this.#pop(frame);
    if (returned !== (before === 'waiting')) this.fail(`cancel(#${rec.id}) returned ${returned} in state ${before}`);
    if (returned && rec.canceledBy !== frame.id) this.fail(`cancel(#${rec.id}) returned true, op ${rec.op.state}`);
  }

  abort(rec: ReRec): void {
    if (rec.controller === undefined || rec.controller.signal.aborted) return;
    const before = rec.op.state;
    const frame = this.#push('abort');
    rec.controller.abort(rec.abortToken);
    this.#pop(frame);
    if (before === 'waiting' && rec.watchDone) {
      const call = rec.calls[0];
      if (rec.canceledBy !== frame.id || call?.reason !== rec.abortToken) this.fail(`abort of #${rec.id} did not cancel it with the reason`);
    }
  }

  /** The checks after each top-level command. */
  verify(): void {
    expect(this.frames).toEqual([]);
    expect(this.violations).toEqual([]);
    // No callback threw (a throw would have reached onError).
    expect(this.errors).toEqual([]);
    this.p.checkInvariants();
    const waiting = this.ops.filter((r) => r.op.state === 'waiting');
    const count = (state: string): number => this.ops.filter((r) => r.op.state === state).length;
    const timed = waiting.filter((r) => r.spec.delay > 0 && r.spec.delay !== Infinity).length;
    expect(this.ops.every((r) => r.depth === 0)).toBe(true);
    const stats = this.p.stats();
    expect({
      waiting: stats.waiting,
      watched: stats.watched,
      keys: stats.keys,
      timed: stats.timed,
      completed: stats.completed,
      expired: stats.expired,
      canceled: stats.canceled,
    }).toEqual({
      waiting: waiting.length,
      watched: waiting.reduce((n, r) => n + r.spec.keys.length, 0),
      keys: new Set(waiting.flatMap((r) => r.spec.keys)).size,
      timed,
      completed: count('completed'),
      expired: count('expired'),
      canceled: count('canceled'),
    });
    expect(this.clock.pendingTimers).toBe(timed > 0 ? 1 : 0);
    expect(this.clock.pendingDeferred).toBe(0);
    if (this.p.closed) expect(waiting).toEqual([]);
    for (const rec of this.ops) {
      const shape = rec.calls.map((c) => `${c.cb}:${c.state}`);
      const expected = {
        idle: [],
        waiting: [],
        completed: ['complete:completed'],
        expired: ['complete:expired', 'expire:expired'],
        canceled: ['cancel:canceled'],
      }[rec.op.state];
      expect(shape, `callbacks of #${rec.id}`).toEqual(expected);
      expect(rec.op.scheduled).toBe(rec.op.state === 'waiting' && rec.spec.delay > 0 && rec.spec.delay !== Infinity);
      if (rec.op.state === 'waiting' && rec.spec.delay !== Infinity) {
        // P3: nothing overdue is left waiting.
        expect(Math.ceil((rec.watchedAt + rec.spec.delay) / TICK) * TICK).toBeGreaterThan(this.clock.now());
      }
    }
  }
}

const target = fc.nat({ max: 12 });
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 24, arbitrary: fc.constant({ t: 'none' as const }) },
  { weight: 9, arbitrary: fc.constant({ t: 'watch' as const }) },
  { weight: 12, arbitrary: keyArb.map((key) => ({ t: 'check' as const, key })) },
  { weight: 3, arbitrary: keyArb.map((key) => ({ t: 'cancelForKey' as const, key })) },
  { weight: 12, arbitrary: fc.record({ t: fc.constant('flip' as const), target, value: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('force' as const), target }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('cancel' as const), target }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('abort' as const), target }) },
  { weight: 1, arbitrary: fc.constant({ t: 'close' as const }) },
);

const specArb: fc.Arbitrary<ReSpec> = fc.record({
  keys: fc.uniqueArray(keyArb, { minLength: 1, maxLength: 3 }),
  delay: fc.constantFrom(-1, 0, 5, 10, 25, 100, Infinity),
  completable: fc.boolean(),
  readAfter: fc.boolean(),
  signal: fc.boolean(),
  hooks: fc.record({ try: actionArb, tryAgain: actionArb, complete: actionArb, expire: actionArb, cancel: actionArb }),
});

const topArb: fc.Arbitrary<TopCommand> = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ t: 'watch' as const }) },
  { weight: 4, arbitrary: keyArb.map((key) => ({ t: 'check' as const, key })) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('flip' as const), target, value: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 40 }) }) },
  { weight: 1, arbitrary: keyArb.map((key) => ({ t: 'cancelForKey' as const, key })) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('force' as const), target }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancel' as const), target }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('abort' as const), target }) },
);

describe('Purgatory re-entrancy (P9, P12)', () => {
  itProp(
    [
      fc.array(specArb, { minLength: 1, maxLength: 16, size: 'max' }),
      fc.array(topArb, { minLength: 1, maxLength: 40, size: 'max' }),
      fc.integer({ min: 2, max: 64 }),
      fc.integer({ min: 1, max: 3 }),
      fc.boolean(),
    ],
    { numRuns: runs(300) },
  )('callbacks calling back into the purgatory keep it consistent, exactly-once and wake-up-safe', (pool, commands, wheelSize, batch, closeAtEnd) => {
    const h = new Harness(pool, wheelSize, batch);
    for (const command of commands) {
      h.act(undefined, command);
      h.verify();
    }
    if (closeAtEnd) {
      h.close();
      h.verify();
      expect(h.p.numDelayed()).toBe(0);
    }
    h.p.destroy();
  });

  it('the condition turning true during registration is not lost (the last completion check)', () => {
    const clock = new ManualClock(0);
    const p = new Purgatory({ clock, tickMs: TICK });
    let ready = false;
    let checks = 0;
    const events: string[] = [];
    class Helper extends DelayedOperation {
      onComplete(): void {
        events.push('helper');
        ready = true; // B's completion makes A's condition true
      }
    }
    class A extends DelayedOperation {
      override tryComplete(): boolean {
        checks++;
        const was = ready;
        if (checks === 1) p.checkAndComplete('other'); // wakes Helper, which flips `ready`
        return was;
      }
      onComplete(): void {
        events.push(`a:${this.state}`);
      }
    }
    p.tryCompleteElseWatch(new Helper(1000), 'other');
    expect(p.tryCompleteElseWatch(new A(1000), ['k', 'j'])).toBe(true);
    expect(checks).toBe(2);
    expect(events).toEqual(['helper', 'a:completed']);
    expect(p.numDelayed()).toBe(0);
    expect(p.watched()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    p.checkInvariants();
  });

  it('ops added to key k during checkAndComplete(k) wait for the next call (snapshot)', () => {
    const p = new Purgatory({ clock: new ManualClock(0), tickMs: TICK });
    const done: string[] = [];
    class Op extends DelayedOperation {
      constructor(
        readonly name: string,
        readonly then?: () => void,
      ) {
        super(1000);
      }
      onComplete(): void {
        done.push(this.name);
        this.then?.();
      }
    }
    // Default tryComplete: any check of a key completes a waiting op, so only the snapshot rule
    // keeps the op added from the first onComplete out of that iteration.
    p.tryCompleteElseWatch(new Op('first', () => p.tryCompleteElseWatch(new Op('added'), 'k')), 'k');
    p.tryCompleteElseWatch(new Op('second'), 'k');
    expect(p.checkAndComplete('k')).toBe(2);
    expect(done).toEqual(['first', 'second']);
    expect(p.watcherCount('k')).toBe(1);
    expect(p.checkAndComplete('k')).toBe(1);
    expect(done).toEqual(['first', 'second', 'added']);
    p.checkInvariants();
  });

  it('close() from inside onComplete during checkAndComplete cancels the rest and leaves nothing', () => {
    const clock = new ManualClock(0);
    const p = new Purgatory({ clock, tickMs: TICK });
    const events: string[] = [];
    class Op extends DelayedOperation {
      constructor(
        readonly name: string,
        readonly closes = false,
      ) {
        super(500);
      }
      onComplete(): void {
        events.push(`${this.name}:complete`);
        if (this.closes) void p.close();
      }
      override onCancel(reason: unknown): void {
        events.push(`${this.name}:cancel:${(reason as ClosedError).code}`);
      }
    }
    p.tryCompleteElseWatch(new Op('a', true), 'k');
    p.tryCompleteElseWatch(new Op('b'), ['k', 'j']);
    p.tryCompleteElseWatch(new Op('c'), 'j');
    expect(p.checkAndComplete('k')).toBe(1);
    expect(events.slice(0, 1)).toEqual(['a:complete']);
    expect(events.slice(1).sort()).toEqual(['b:cancel:PB_ERR_CLOSED', 'c:cancel:PB_ERR_CLOSED']);
    expect(p.numDelayed()).toBe(0);
    expect(p.watched()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    clock.advance(10_000);
    expect(events).toHaveLength(3);
  });
});

describe('Purgatory under random async interleavings (fc.scheduler; Kafka testTryCompleteWithMultipleThreads)', () => {
  interface AsyncSpec {
    readonly keys: readonly Key[];
    readonly delay: number;
    readonly attempts: number;
    readonly viaWait: boolean;
  }
  const asyncSpecArb: fc.Arbitrary<AsyncSpec> = fc.record({
    keys: fc.uniqueArray(keyArb, { minLength: 1, maxLength: 2 }),
    delay: fc.constantFrom(15, 40, 100, 300, Infinity),
    attempts: fc.integer({ min: 1, max: 4 }),
    viaWait: fc.boolean(),
  });

  itProp([fc.scheduler(), fc.array(asyncSpecArb, { minLength: 1, maxLength: 10 }), fc.array(fc.integer({ min: 1, max: 60 }), { maxLength: 8 })], {
    numRuns: runs(150),
  })('every op ends; it completes iff a check follows its last flip before its deadline, and never expires after that', async (s, specs, advances) => {
    const clock = new ManualClock(0);
    const p = new Purgatory({ clock, tickMs: TICK, wheelSize: 4 });
    let seq = 0;
    const checks: { key: Key; seq: number; time: number }[] = [];
    const state = specs.map((spec) => ({
      spec,
      flips: 0,
      readyAt: undefined as { seq: number; time: number } | undefined,
      outcome: undefined as { what: string; time: number; seq: number } | undefined,
    }));
    const check = (key: Key): void => {
      checks.push({ key, seq: seq++, time: clock.now() });
      p.checkAndComplete(key);
    };
    class Op extends DelayedOperation {
      constructor(readonly i: number) {
        super(specs[i]!.delay);
      }
      override tryComplete(): boolean {
        return state[this.i]!.readyAt !== undefined;
      }
      onComplete(): void {
        state[this.i]!.outcome = { what: this.state, time: clock.now(), seq: seq++ };
      }
    }
    const tasks: Promise<unknown>[] = [];
    state.forEach((st, i) => {
      if (st.spec.viaWait) {
        const promise = p.wait(st.spec.keys, { timeoutMs: st.spec.delay, tryComplete: () => st.readyAt !== undefined });
        // The outcome is taken when the promise settles, possibly after the clock moved on:
        // record only what it was. (Not awaited: a lost wake-up must fail, not hang.)
        void promise.then((what) => (st.outcome = { what, time: NaN, seq: NaN }));
      } else {
        p.tryCompleteElseWatch(new Op(i), st.spec.keys);
      }
      for (let a = 0; a < st.spec.attempts; a++) {
        tasks.push(
          s.schedule(Promise.resolve(`flip ${i}.${a}`)).then(() => {
            st.flips++;
            if (st.flips === st.spec.attempts) st.readyAt = { seq: seq++, time: clock.now() };
            // Even attempts wake a key at once; every attempt also wakes one later, at another
            // random point (possibly after the deadline).
            if (a % 2 === 0) check(st.spec.keys[a % st.spec.keys.length]!);
            return s.schedule(Promise.resolve(`late check ${i}.${a}`)).then(() => check(st.spec.keys[(a + 1) % st.spec.keys.length]!));
          }),
        );
      }
    });
    for (const ms of advances) tasks.push(s.schedule(Promise.resolve(`advance ${ms}`)).then(() => clock.advance(ms)));
    await s.waitIdle();
    await Promise.all(tasks);
    for (let i = 0; i < 3; i++) await Promise.resolve();
    p.checkInvariants();

    state.forEach((st, i) => {
      const deadline = st.spec.delay === Infinity ? Infinity : Math.ceil(st.spec.delay / TICK) * TICK;
      const ready = st.readyAt!;
      expect(ready, `op ${i} became ready`).toBeDefined();
      const wake = checks.find((c) => c.seq > ready.seq && st.spec.keys.includes(c.key) && c.time < deadline);
      const what = `op ${i} ${JSON.stringify(st.spec)}; ${s.report().length} tasks`;
      if (wake !== undefined) {
        // No lost wake-up: completed by the first check after it became ready, never expired.
        expect(st.outcome?.what, what).toBe('completed');
        if (!st.spec.viaWait) expect(st.outcome!.time, what).toBe(wake.time);
      } else {
        // Never woken in time: it is still waiting only if its deadline is not reached yet.
        if (deadline <= clock.now()) expect(st.outcome?.what, what).toBe('expired');
        else expect(st.outcome, what).toBeUndefined();
        if (!st.spec.viaWait && st.outcome !== undefined) expect(st.outcome.time, what).toBe(deadline);
      }
    });
    // Settle the rest: everything ends, nothing is left behind.
    clock.advance(10_000);
    for (let i = 0; i < 3; i++) await Promise.resolve();
    expect(p.numDelayed()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    expect(state.filter((st) => st.spec.delay !== Infinity).every((st) => st.outcome !== undefined)).toBe(true);
    p.destroy();
  });
});
