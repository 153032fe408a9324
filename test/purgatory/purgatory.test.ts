import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it, vi } from 'vitest';
import {
  CanceledError,
  ClosedError,
  DelayedOperation,
  InvalidArgumentError,
  InvalidStateError,
  ManualClock,
  Purgatory,
  type PurgatoryOptions,
} from '../../src/index.js';
import { perTest } from '../helpers.js';

/** A test operation that records what happened to it. */
class Op extends DelayedOperation {
  completable = false;
  readonly events: string[] = [];
  tries = 0;
  constructor(timeoutMs: number, signal?: AbortSignal) {
    super(timeoutMs, { signal });
  }
  override tryComplete(): boolean {
    this.tries++;
    return this.completable;
  }
  onComplete(): void {
    this.events.push('complete');
  }
  override onExpiration(): void {
    this.events.push('expire');
  }
  override onCancel(reason: unknown): void {
    this.events.push(`cancel:${reason instanceof Error ? reason.constructor.name : String(reason)}`);
  }
}

function setup(options: PurgatoryOptions = {}): { clock: ManualClock; purgatory: Purgatory } {
  const clock = new ManualClock();
  const purgatory = new Purgatory({ clock, tickMs: 10, ...options });
  perTest.defer(() => purgatory.destroy());
  return { clock, purgatory };
}

describe('Purgatory (ports of Kafka DelayedOperationTest)', () => {
  it('testSafeTryCompleteOrElse: completes at once without registering when the condition holds', () => {
    const { purgatory, clock } = setup();
    const op = new Op(100_000);
    op.completable = true;
    expect(purgatory.tryCompleteElseWatch(op, ['a', 'b'])).toBe(true);
    expect(op.events).toEqual(['complete']);
    expect(op.tries).toBe(1);
    expect(purgatory.numDelayed()).toBe(0);
    expect(purgatory.watched()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('testRequestSatisfaction: 0 with no waiters, 0 while not completable, 1 when completable, then 0', () => {
    const { purgatory } = setup();
    expect(purgatory.checkAndComplete('test')).toBe(0);
    const r1 = new Op(100_000);
    const r2 = new Op(100_000);
    expect(purgatory.tryCompleteElseWatch(r1, 'test1')).toBe(false);
    expect(purgatory.tryCompleteElseWatch(r2, 'test2')).toBe(false);
    expect(purgatory.checkAndComplete('test1')).toBe(0);
    expect(purgatory.checkAndComplete('test2')).toBe(0);
    r1.completable = true;
    expect(purgatory.checkAndComplete('test1')).toBe(1);
    expect(purgatory.checkAndComplete('test1')).toBe(0);
    r2.completable = true;
    expect(purgatory.checkAndComplete('test2')).toBe(1);
    expect(purgatory.checkAndComplete('test2')).toBe(0);
    expect(r1.events).toEqual(['complete']);
    expect(r2.events).toEqual(['complete']);
  });

  it('testRequestExpiry: a 20 ms op expires, a 200 s op does not; never before its deadline', () => {
    const { purgatory, clock } = setup({ tickMs: 1 });
    const r1 = new Op(20);
    const r2 = new Op(200_000);
    purgatory.tryCompleteElseWatch(r1, ['test1']);
    purgatory.tryCompleteElseWatch(r2, ['test2']);
    clock.advance(19);
    expect(r1.events).toEqual([]);
    clock.advance(1);
    expect(r1.events).toEqual(['complete', 'expire']);
    expect(r2.events).toEqual([]);
    expect(purgatory.numDelayed()).toBe(1);
    expect(purgatory.stats().expired).toBe(1);
  });

  it('testRequestPurge: counters drop at once, watcher links included (eager unlink)', () => {
    const { purgatory } = setup();
    const r1 = new Op(100_000);
    const r2 = new Op(100_000);
    const r3 = new Op(100_000);
    purgatory.tryCompleteElseWatch(r1, ['test1']);
    purgatory.tryCompleteElseWatch(r2, ['test1', 'test2']);
    purgatory.tryCompleteElseWatch(r3, ['test1', 'test2', 'test3']);
    expect(purgatory.numDelayed()).toBe(3);
    expect(purgatory.watched()).toBe(6);
    expect(r2.forceComplete()).toBe(true);
    expect(purgatory.numDelayed()).toBe(2);
    expect(purgatory.watched()).toBe(4);
    expect(purgatory.forceComplete(r3)).toBe(true);
    expect(purgatory.numDelayed()).toBe(1);
    expect(purgatory.watched()).toBe(1);
    expect(purgatory.stats().keys).toBe(1);
    expect(purgatory.forceComplete(r3)).toBe(false);
    purgatory.checkInvariants();
  });

  it('shouldCancelForKeyReturningCanceledOperations: cancels without completing', () => {
    const { purgatory, clock } = setup();
    const a = new Op(10_000);
    const b = new Op(10_000);
    const c = new Op(10_000);
    purgatory.tryCompleteElseWatch(a, 'test1');
    purgatory.tryCompleteElseWatch(b, 'test1');
    purgatory.tryCompleteElseWatch(c, 'test2');
    const canceled = purgatory.cancelForKey('test1');
    expect(canceled).toEqual([a, b]);
    expect(purgatory.numDelayed()).toBe(1);
    expect(purgatory.watched()).toBe(1);
    expect(a.events).toEqual(['cancel:CanceledError']);
    expect(a.state).toBe('canceled');
    clock.advance(20_000);
    expect(a.events).toEqual(['cancel:CanceledError']);
    expect(c.events).toEqual(['complete', 'expire']);
  });

  it('shouldReturnNilOperationsOnCancelForKeyWhenKeyDoesntExist', () => {
    const { purgatory } = setup();
    expect(purgatory.cancelForKey('nope')).toEqual([]);
  });

  it('re-checks after registering: a condition that turned true during watch is not lost', () => {
    const { purgatory } = setup();
    const op = new Op(1000);
    // The first check flips the condition, as a callback triggered by registration might.
    op.tryComplete = function (this: Op) {
      this.tries++;
      const was = this.completable;
      this.completable = true;
      return was;
    };
    expect(purgatory.tryCompleteElseWatch(op, 'k')).toBe(true);
    expect(op.tries).toBe(2);
    expect(purgatory.numDelayed()).toBe(0);
    expect(purgatory.watched()).toBe(0);
  });
});

describe('Purgatory semantics', () => {
  it('wakes waiters in watch order (FIFO) and only those whose condition holds', () => {
    const { purgatory } = setup();
    const order: number[] = [];
    const ops = [0, 1, 2, 3].map((i) => {
      const op = new Op(1000);
      op.onComplete = () => order.push(i);
      purgatory.tryCompleteElseWatch(op, 'k');
      op.completable = i !== 2;
      return op;
    });
    expect(purgatory.checkAndComplete('k')).toBe(3);
    expect(order).toEqual([0, 1, 3]);
    expect(ops[2]!.state).toBe('waiting');
  });

  it('the default condition is a plain wake-up by key', () => {
    const { purgatory } = setup();
    class Wake extends DelayedOperation {
      woke = 0;
      onComplete(): void {
        this.woke++;
      }
    }
    const op = new Wake(1000);
    expect(purgatory.tryCompleteElseWatch(op, ['a', 'b'])).toBe(false);
    expect(purgatory.checkAndComplete('b')).toBe(1);
    expect(purgatory.checkAndComplete('a')).toBe(0);
    expect(op.woke).toBe(1);
  });

  it('a multi-key op completes once, whichever key wakes it', () => {
    const { purgatory } = setup();
    const op = new Op(1000);
    op.completable = true;
    op.completable = false;
    purgatory.tryCompleteElseWatch(op, ['a', 'b', 'a']);
    expect(purgatory.watched()).toBe(2);
    op.completable = true;
    expect(purgatory.checkAndComplete('a')).toBe(1);
    expect(purgatory.checkAndComplete('b')).toBe(0);
    expect(op.events).toEqual(['complete']);
  });

  it('a timeout <= 0 expires at once, after one check of the condition', () => {
    const { purgatory, clock } = setup();
    const op = new Op(0);
    expect(purgatory.tryCompleteElseWatch(op, 'k')).toBe(false);
    expect(op.events).toEqual(['complete', 'expire']);
    expect(op.state).toBe('expired');
    const neg = new Op(-5);
    neg.completable = true;
    expect(purgatory.tryCompleteElseWatch(neg, 'k')).toBe(true);
    expect(neg.events).toEqual(['complete']);
    expect(purgatory.numDelayed()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rounds deadlines up to the tick: never early, late by less than one tick', () => {
    const { purgatory, clock } = setup({ tickMs: 10 });
    clock.advance(3);
    const op = new Op(25); // deadline 28, fires at 30
    purgatory.tryCompleteElseWatch(op, 'k');
    clock.advanceTo(29);
    expect(op.events).toEqual([]);
    clock.advanceTo(30);
    expect(op.events).toEqual(['complete', 'expire']);
  });

  it('Infinity waits without a timer until woken', () => {
    const { purgatory, clock } = setup();
    const op = new Op(Number.POSITIVE_INFINITY);
    purgatory.tryCompleteElseWatch(op, 'k');
    expect(clock.pendingTimers).toBe(0);
    expect(purgatory.stats()).toMatchObject({ waiting: 1, timed: 0, timerArmed: false });
    clock.advance(1e15);
    op.completable = true;
    expect(purgatory.checkAndComplete('k')).toBe(1);
  });

  it('arms one unref\'d timer for the earliest deadline, and none once nothing is timed', () => {
    const { purgatory, clock } = setup();
    const ops = [500, 100, 300].map((t) => {
      const op = new Op(t);
      purgatory.tryCompleteElseWatch(op, 'k');
      return op;
    });
    expect(clock.timers()).toEqual([{ at: 100, ref: false }]);
    purgatory.cancel(ops[1]!);
    purgatory.cancel(ops[0]!);
    expect(clock.pendingTimers).toBe(1);
    purgatory.cancel(ops[2]!);
    expect(clock.pendingTimers).toBe(0);
    expect(purgatory.stats().timerArmed).toBe(false);
  });

  it('keeps the process alive only when asked (ref: true)', () => {
    const { purgatory, clock } = setup({ ref: true });
    purgatory.tryCompleteElseWatch(new Op(50), 'k');
    expect(clock.timers()).toEqual([{ at: 50, ref: true }]);
  });

  it('expires a big burst in batches, yielding between them', () => {
    const { purgatory, clock } = setup({ expiryBatchSize: 100 });
    let expiredInFirstTurn = -1;
    // This timer fires just before the purgatory's, so what it defers runs right after the
    // first batch: as I/O queued before the burst would on the real event loop.
    clock.setTimer(() => clock.defer(() => (expiredInFirstTurn = purgatory.stats().expired)), 10);
    const ops = Array.from({ length: 350 }, () => {
      const op = new Op(10);
      purgatory.tryCompleteElseWatch(op, 'k');
      return op;
    });
    clock.advance(10);
    expect(expiredInFirstTurn).toBe(100);
    expect(ops.every((o) => o.state === 'expired')).toBe(true);
    expect(purgatory.numDelayed()).toBe(0);
    purgatory.checkInvariants();
  });

  it('bounds the cascade of a coarse slot by expiryBatchSize too, not only the expiries', () => {
    const manual = new ManualClock();
    let turns = 0;
    const clock = {
      now: () => manual.now(),
      setTimer: (cb: () => void, ms: number, o?: { ref?: boolean }) => manual.setTimer(cb, ms, o),
      defer: (cb: () => void) => {
        turns++;
        manual.defer(cb);
      },
    };
    const purgatory = new Purgatory({ clock, tickMs: 1, expiryBatchSize: 100 });
    perTest.defer(() => purgatory.destroy());
    // 5,000 deadlines inside one level-1 slot (ticks 64-127): reaching it cascades them all.
    const ops = Array.from({ length: 5000 }, (_, i) => {
      const op = new Op(64 + (i % 64));
      purgatory.tryCompleteElseWatch(op, 'k');
      return op;
    });
    manual.advanceTo(64);
    // Moving 5,000 entries down a level at 100 per turn takes 50 turns: the timer's, then 49 deferred.
    expect(turns).toBeGreaterThanOrEqual(49);
    manual.advanceTo(200);
    ops.forEach((op, i) => expect(op.state, `op ${i}`).toBe('expired'));
    purgatory.checkInvariants();
  });

  it('cancels on abort, removing the op at once', () => {
    const { purgatory, clock } = setup();
    const ac = new AbortController();
    const op = new Op(1000, ac.signal);
    purgatory.tryCompleteElseWatch(op, 'k');
    ac.abort(new Error('client went away'));
    expect(op.events).toEqual(['cancel:Error']);
    expect(purgatory.numDelayed()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    purgatory.checkInvariants();
  });

  it('an already-aborted signal cancels before anything is registered', () => {
    const { purgatory } = setup();
    const op = new Op(1000, AbortSignal.abort('gone'));
    op.completable = true;
    expect(purgatory.tryCompleteElseWatch(op, 'k')).toBe(false);
    expect(op.events).toEqual(['cancel:gone']);
    expect(op.tries).toBe(0);
  });

  it('a signal aborted from inside tryComplete cancels, whatever the timeout', () => {
    for (const timeout of [0, 1000]) {
      const { purgatory } = setup();
      const ac = new AbortController();
      const op = new Op(timeout, ac.signal);
      op.tryComplete = () => {
        ac.abort('from inside');
        return false;
      };
      purgatory.tryCompleteElseWatch(op, 'k');
      expect(op.state).toBe('canceled');
      expect(op.events).toEqual(['cancel:from inside']);
      expect(purgatory.stats()).toMatchObject({ waiting: 0, watched: 0, timed: 0 });
    }
  });

  it('a completed op drops its abort listener', () => {
    const { purgatory } = setup();
    const ac = new AbortController();
    const op = new Op(1000, ac.signal);
    purgatory.tryCompleteElseWatch(op, 'k');
    op.completable = true;
    purgatory.checkAndComplete('k');
    ac.abort();
    expect(op.events).toEqual(['complete']);
  });

  it('close() cancels every waiter with ClosedError, disarms, and later calls throw', async () => {
    const { purgatory, clock } = setup();
    const a = new Op(1000);
    const b = new Op(Number.POSITIVE_INFINITY);
    purgatory.tryCompleteElseWatch(a, ['x', 'y']);
    purgatory.tryCompleteElseWatch(b, 'y');
    await purgatory.close();
    expect(a.events).toEqual(['cancel:ClosedError']);
    expect(b.events).toEqual(['cancel:ClosedError']);
    expect(purgatory.stats()).toMatchObject({ waiting: 0, watched: 0, keys: 0, timed: 0, timerArmed: false });
    expect(clock.pendingTimers).toBe(0);
    expect(() => purgatory.tryCompleteElseWatch(new Op(1), 'k')).toThrow(ClosedError);
    expect(() => purgatory.checkAndComplete('k')).toThrow(ClosedError);
    await expect(purgatory.wait('k', { timeoutMs: 1 })).rejects.toThrow(ClosedError);
  });

  it('destroy(reason) cancels with that reason', () => {
    const { purgatory } = setup();
    const op = new Op(1000);
    purgatory.tryCompleteElseWatch(op, 'k');
    purgatory.destroy('shutdown');
    expect(op.events).toEqual(['cancel:shutdown']);
  });
});

describe('Purgatory re-entrancy', () => {
  it('a checkAndComplete does not visit ops added to the key during it (snapshot)', () => {
    const { purgatory } = setup();
    const late: Op[] = [];
    const first = new Op(1000);
    first.completable = true;
    first.completable = false;
    purgatory.tryCompleteElseWatch(first, 'k');
    first.completable = true;
    first.onComplete = () => {
      const op = new Op(1000);
      late.push(op);
      purgatory.tryCompleteElseWatch(op, 'k');
      op.completable = true;
    };
    expect(purgatory.checkAndComplete('k')).toBe(1);
    expect(late[0]!.state).toBe('waiting');
    expect(purgatory.checkAndComplete('k')).toBe(1);
  });

  it('survives callbacks that cancel the next waiters or close the purgatory', () => {
    const { purgatory } = setup();
    const ops = Array.from({ length: 5 }, () => {
      const op = new Op(1000);
      purgatory.tryCompleteElseWatch(op, 'k');
      op.completable = true;
      return op;
    });
    ops[0]!.onComplete = () => {
      purgatory.cancel(ops[1]!);
      purgatory.cancel(ops[2]!);
    };
    ops[3]!.onComplete = () => void purgatory.close();
    expect(purgatory.checkAndComplete('k')).toBe(2);
    expect(ops.map((o) => o.state)).toEqual(['completed', 'canceled', 'canceled', 'completed', 'canceled']);
    expect(purgatory.numDelayed()).toBe(0);
  });

  it('forceComplete from inside tryComplete completes after tryComplete returns', () => {
    const { purgatory } = setup();
    const seen: string[] = [];
    class SelfCompleting extends DelayedOperation {
      ready = false;
      override tryComplete(): boolean {
        seen.push('try:start');
        if (this.ready) this.forceComplete();
        seen.push('try:end');
        return false;
      }
      onComplete(): void {
        seen.push('complete');
      }
    }
    const op = new SelfCompleting(1000);
    purgatory.tryCompleteElseWatch(op, 'k');
    op.ready = true;
    seen.length = 0;
    expect(purgatory.checkAndComplete('k')).toBe(1);
    expect(seen).toEqual(['try:start', 'try:end', 'complete']);
  });

  it('tryComplete is never re-entered for the same op', () => {
    const { purgatory } = setup();
    let depth = 0;
    let maxDepth = 0;
    class Nested extends DelayedOperation {
      override tryComplete(): boolean {
        depth++;
        maxDepth = Math.max(maxDepth, depth);
        purgatory.checkAndComplete('k');
        depth--;
        return false;
      }
      onComplete(): void {}
    }
    purgatory.tryCompleteElseWatch(new Nested(1000), 'k');
    purgatory.checkAndComplete('k');
    expect(maxDepth).toBe(1);
  });

  it('a tryComplete that closes the purgatory while watching cancels the op', () => {
    const { purgatory } = setup();
    const op = new Op(1000);
    op.tryComplete = () => {
      void purgatory.close();
      return false;
    };
    expect(purgatory.tryCompleteElseWatch(op, 'k')).toBe(false);
    expect(op.events).toEqual(['cancel:ClosedError']);
    expect(purgatory.stats()).toMatchObject({ waiting: 0, watched: 0 });
  });
});

describe('Purgatory errors in user code', () => {
  it('a throwing tryComplete cancels that op with the error; others still wake', () => {
    const { purgatory } = setup();
    const bad = new Op(1000);
    const good = new Op(1000);
    purgatory.tryCompleteElseWatch(bad, 'k');
    purgatory.tryCompleteElseWatch(good, 'k');
    bad.tryComplete = () => {
      throw new TypeError('broken predicate');
    };
    good.completable = true;
    expect(purgatory.checkAndComplete('k')).toBe(1);
    expect(bad.events).toEqual(['cancel:TypeError']);
    expect(good.events).toEqual(['complete']);
  });

  it('a throwing onComplete goes to onError; the purgatory stays consistent', () => {
    const errors: unknown[] = [];
    const { purgatory } = setup({ onError: (e) => errors.push(e) });
    const a = new Op(1000);
    const b = new Op(1000);
    a.onComplete = () => {
      throw new Error('handler bug');
    };
    purgatory.tryCompleteElseWatch(a, 'k');
    purgatory.tryCompleteElseWatch(b, 'k');
    a.completable = b.completable = true;
    expect(purgatory.checkAndComplete('k')).toBe(2);
    expect(errors).toHaveLength(1);
    expect(b.events).toEqual(['complete']);
    purgatory.checkInvariants();
  });

  it('without onError, a throwing callback is rethrown as an uncaught exception', async () => {
    const { purgatory } = setup();
    const op = new Op(0);
    op.onExpiration = () => {
      throw new Error('uncaught on purpose');
    };
    // Capture the microtask rather than let it crash the test runner.
    const queued: (() => void)[] = [];
    const spy = vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((fn) => void queued.push(fn));
    try {
      purgatory.tryCompleteElseWatch(op, 'k');
    } finally {
      spy.mockRestore();
    }
    expect(op.state).toBe('expired');
    expect(queued).toHaveLength(1);
    expect(() => queued[0]!()).toThrow('uncaught on purpose');
    purgatory.checkInvariants();
  });

  it('publishes callback errors on the diagnostics channel', () => {
    const seen: unknown[] = [];
    const listener = (m: unknown): number => seen.push(m);
    diagnosticsChannel.subscribe('patchbay:purgatory:error', listener);
    try {
      const { purgatory } = setup({ onError: () => {} });
      const op = new Op(0);
      op.onComplete = () => {
        throw new Error('x');
      };
      purgatory.tryCompleteElseWatch(op, 'k');
      expect(seen).toHaveLength(1);
    } finally {
      diagnosticsChannel.unsubscribe('patchbay:purgatory:error', listener);
    }
  });
});

describe('Purgatory bad input', () => {
  it('rejects a NaN or non-number timeout with a typed error', () => {
    expect(() => new Op(Number.NaN)).toThrow(InvalidArgumentError);
    expect(() => new Op(Number.NaN)).toThrow('Expected `timeoutMs` to be a number of milliseconds, got `NaN` (number)');
    expect(() => new Op('100' as unknown as number)).toThrow(/got `"100"` \(string\)/);
    expect(() => new Op(10, {} as AbortSignal)).toThrow(/`signal` to be an AbortSignal/);
  });

  it('takes its signal as `{ signal }`: a bare AbortSignal (the old positional form) is refused, not ignored', () => {
    class Bare extends DelayedOperation {
      onComplete(): void {}
    }
    const ac = new AbortController();
    expect(() => new Bare(10, ac.signal as never)).toThrow(InvalidArgumentError);
    expect(() => new Bare(10, ac.signal as never)).toThrow(/`\{ signal \}`/);
    expect(() => new Bare(10, 'x' as never)).toThrow(InvalidArgumentError);
    expect(new Bare(10, { signal: ac.signal }).signal).toBe(ac.signal);
    expect(new Bare(10, {}).signal).toBeUndefined();
  });

  it('rejects empty or non-string keys and leaves nothing registered', () => {
    const { purgatory, clock } = setup();
    const op = new Op(1000);
    expect(() => purgatory.tryCompleteElseWatch(op, [])).toThrow('Expected `keys` to hold at least one key, got an empty array');
    expect(() => purgatory.tryCompleteElseWatch(op, ['a', 7 as unknown as string])).toThrow(
      'Expected `keys[1]` to be a string, got `7` (number)',
    );
    expect(() => purgatory.tryCompleteElseWatch(op, 42 as unknown as string)).toThrow(InvalidArgumentError);
    expect(() => purgatory.tryCompleteElseWatch(op, null as unknown as string)).toThrow(InvalidArgumentError);
    expect(() => purgatory.checkAndComplete(undefined as unknown as string)).toThrow(InvalidArgumentError);
    expect(() => purgatory.cancelForKey({} as unknown as string)).toThrow(InvalidArgumentError);
    expect(purgatory.stats()).toMatchObject({ waiting: 0, watched: 0, keys: 0 });
    expect(clock.pendingTimers).toBe(0);
    // The op was left untouched and can still be used.
    expect(op.state).toBe('idle');
    purgatory.tryCompleteElseWatch(op, 'a');
    expect(op.state).toBe('waiting');
  });

  it('treats __proto__ and other odd strings as ordinary keys', () => {
    const { purgatory } = setup();
    const op = new Op(1000);
    purgatory.tryCompleteElseWatch(op, ['__proto__', 'constructor', '']);
    expect(purgatory.watcherCount('__proto__')).toBe(1);
    op.completable = true;
    expect(purgatory.checkAndComplete('__proto__')).toBe(1);
    expect(purgatory.stats().keys).toBe(0);
  });

  it('refuses to watch an op twice', () => {
    const { purgatory } = setup();
    const op = new Op(1000);
    purgatory.tryCompleteElseWatch(op, 'k');
    expect(() => purgatory.tryCompleteElseWatch(op, 'j')).toThrow(InvalidStateError);
    op.forceComplete();
    expect(() => purgatory.tryCompleteElseWatch(op, 'k')).toThrow('The operation is already completed: operations are single-use');
    expect(purgatory.watched()).toBe(0);
  });

  it('rejects something that is not a DelayedOperation', () => {
    const { purgatory } = setup();
    expect(() => purgatory.tryCompleteElseWatch({} as DelayedOperation, 'k')).toThrow(/`op` to be a DelayedOperation/);
  });

  it('validates options at construction', () => {
    expect(() => new Purgatory({ tickMs: 0 })).toThrow('Expected `tickMs` to be an integer from 1 to 2147483647, got `0` (number)');
    expect(() => new Purgatory({ tickMs: 2.5 })).toThrow(InvalidArgumentError);
    expect(() => new Purgatory({ wheelSize: 100 })).toThrow(InvalidArgumentError);
    expect(() => new Purgatory({ expiryBatchSize: -1 })).toThrow(InvalidArgumentError);
    expect(() => new Purgatory({ onError: 'x' as unknown as () => void })).toThrow(/`onError` to be a function/);
    expect(() => new Purgatory({ clock: {} as ManualClock })).toThrow(/`clock` to be a Clock/);
    expect(() => new Purgatory('fast' as PurgatoryOptions)).toThrow(/`options` to be an object/);
  });

  it('treats timeouts past 2^31-1 ms as real deadlines, not 1 ms', () => {
    const { purgatory, clock } = setup();
    const op = new Op(2 ** 33);
    purgatory.tryCompleteElseWatch(op, 'k');
    clock.advance(2 ** 31);
    expect(op.state).toBe('waiting');
    clock.advance(2 ** 33 - 2 ** 31 - 1);
    expect(op.state).toBe('waiting');
    clock.advance(10);
    expect(op.state).toBe('expired');
  });
});

describe('Purgatory.wait (promise API)', () => {
  it("resolves 'completed' when the condition holds and a key is checked", async () => {
    const { purgatory } = setup();
    let ready = false;
    const p = purgatory.wait(['a', 'b'], { timeoutMs: 1000, tryComplete: () => ready });
    expect(purgatory.checkAndComplete('a')).toBe(0);
    ready = true;
    expect(purgatory.checkAndComplete('b')).toBe(1);
    await expect(p).resolves.toBe('completed');
  });

  it("resolves 'completed' at once when the condition already holds", async () => {
    const { purgatory } = setup();
    await expect(purgatory.wait('a', { timeoutMs: 1000, tryComplete: () => true })).resolves.toBe('completed');
    expect(purgatory.numDelayed()).toBe(0);
  });

  it("resolves 'expired' at the deadline", async () => {
    const { purgatory, clock } = setup();
    const p = purgatory.wait('a', { timeoutMs: 100 });
    clock.advance(100);
    await expect(p).resolves.toBe('expired');
  });

  it('without a condition, the next check of a key wakes it', async () => {
    const { purgatory } = setup();
    const p = purgatory.wait('a', { timeoutMs: 1000 });
    expect(purgatory.checkAndComplete('a')).toBe(1);
    await expect(p).resolves.toBe('completed');
  });

  it('rejects with the signal reason on abort, and with CanceledError on cancelForKey', async () => {
    const { purgatory } = setup();
    const ac = new AbortController();
    const p1 = purgatory.wait('a', { timeoutMs: 1000, signal: ac.signal });
    const p2 = purgatory.wait('b', { timeoutMs: 1000 });
    ac.abort(new Error('bye'));
    purgatory.cancelForKey('b');
    await expect(p1).rejects.toThrow('bye');
    await expect(p2).rejects.toBeInstanceOf(CanceledError);
    await expect(purgatory.wait('c', { timeoutMs: 1000, signal: AbortSignal.abort('early') })).rejects.toBe('early');
    expect(purgatory.numDelayed()).toBe(0);
  });

  it('rejects bad input instead of throwing', async () => {
    const { purgatory } = setup();
    await expect(purgatory.wait('a', { timeoutMs: Number.NaN })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(purgatory.wait([], { timeoutMs: 1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(purgatory.wait('a', undefined as unknown as { timeoutMs: number })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(purgatory.wait('a', { timeoutMs: 1, tryComplete: 5 as unknown as () => boolean })).rejects.toThrow(
      /`tryComplete` to be a function/,
    );
  });

  it('rejects with ClosedError when the purgatory closes', async () => {
    const { purgatory } = setup();
    const p = purgatory.wait('a', { timeoutMs: Number.POSITIVE_INFINITY });
    await purgatory.close();
    await expect(p).rejects.toBeInstanceOf(ClosedError);
  });
});
