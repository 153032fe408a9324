/**
 * P7, the garbage-collection half (research/purgatory.md §1.6, KAFKA-664 / KAFKA-19763): once an
 * operation has ended (completed, forced, expired, canceled by key, by its signal, by cancel(),
 * by close(), or by a throwing tryComplete), the purgatory holds no reference to it, so it is
 * collected while the purgatory (and the caller's AbortController) live on. A waiting operation,
 * on the other hand, is held: the control case that shows the check can see a leak.
 *
 * Uses `global.gc`, exposed at runtime when the worker was started without `--expose-gc`.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { DelayedOperation, ManualClock, Purgatory } from '../../src/index.js';

function getGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}
const gc = getGc();

/** True once `ref`'s target is collected. Yields a turn between tries (WeakRefs hold until then). */
async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 10; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    gc();
    if (ref.deref() === undefined) return true;
  }
  return false;
}

class Op extends DelayedOperation {
  completable = false;
  // A sizeable payload, as a real request would carry.
  readonly payload = new Array(1000).fill(0);
  override tryComplete(): boolean {
    if (this.completable === null) throw new Error('boom');
    return this.completable;
  }
  onComplete(): void {}
}

interface World {
  readonly clock: ManualClock;
  readonly p: Purgatory;
  /** Kept alive for the whole test: its signal must not keep an ended op alive. */
  readonly controller: AbortController;
}

function world(): World {
  const clock = new ManualClock(0);
  return { clock, p: new Purgatory({ clock, tickMs: 10, wheelSize: 4, expiryBatchSize: 2 }), controller: new AbortController() };
}

/**
 * Each scenario watches an op (keeping only a WeakRef to it), ends it some way, and returns the
 * ref. Neighbours that keep waiting on the same keys make sure the lists and wheel slots the op
 * was in are still alive.
 */
const scenarios: Record<string, (w: World) => WeakRef<object>> = {
  'completed by checkAndComplete (multi-key)': ({ p, controller }) => {
    const op = new Op(5000, { signal: controller.signal });
    p.tryCompleteElseWatch(op, ['a', 'b', 'c']);
    op.completable = true;
    expect(p.checkAndComplete('b')).toBe(1);
    return new WeakRef(op);
  },
  'completed at watch (never registered)': ({ p, controller }) => {
    const op = new Op(5000, { signal: controller.signal });
    op.completable = true;
    expect(p.tryCompleteElseWatch(op, ['a', 'b'])).toBe(true);
    return new WeakRef(op);
  },
  'forceComplete': ({ p, controller }) => {
    const op = new Op(5000, { signal: controller.signal });
    p.tryCompleteElseWatch(op, ['a', 'd']);
    expect(p.forceComplete(op)).toBe(true);
    return new WeakRef(op);
  },
  'expired (in a batch that yields)': ({ p, clock, controller }) => {
    const ops = [1, 2, 3].map(() => new Op(30, { signal: controller.signal }));
    for (const op of ops) p.tryCompleteElseWatch(op, ['a', 'b']);
    const ref = new WeakRef(ops[1]!);
    clock.advance(30);
    expect(ops.map((op) => op.state)).toEqual(['expired', 'expired', 'expired']);
    return ref;
  },
  'expired at once (timeout 0)': ({ p, controller }) => {
    const op = new Op(0, { signal: controller.signal });
    p.tryCompleteElseWatch(op, 'a');
    expect(op.state).toBe('expired');
    return new WeakRef(op);
  },
  'cancelForKey (op also on other keys)': ({ p, controller }) => {
    const op = new Op(5000, { signal: controller.signal });
    p.tryCompleteElseWatch(op, ['a', 'b', 'e']);
    expect(p.cancelForKey('e')).toEqual([op]);
    return new WeakRef(op);
  },
  'cancel()': ({ p, controller }) => {
    const op = new Op(Infinity, { signal: controller.signal });
    p.tryCompleteElseWatch(op, 'a');
    expect(p.cancel(op)).toBe(true);
    return new WeakRef(op);
  },
  'aborted by its own signal': ({ p }) => {
    const own = new AbortController();
    const op = new Op(5000, { signal: own.signal });
    p.tryCompleteElseWatch(op, ['a', 'b']);
    own.abort(new Error('client went away'));
    expect(op.state).toBe('canceled');
    return new WeakRef(op);
  },
  'tryComplete threw': ({ p, controller }) => {
    const op = new Op(5000, { signal: controller.signal });
    p.tryCompleteElseWatch(op, ['a', 'b']);
    (op as { completable: boolean | null }).completable = null;
    p.checkAndComplete('a');
    expect(op.state).toBe('canceled');
    return new WeakRef(op);
  },
  'wait() resolved': ({ p, controller }) => {
    // The PromiseOperation itself is out of reach; its predicate is held by it and by nothing else.
    let ready = false;
    const tryComplete = (): boolean => ready;
    void p.wait(['a', 'b'], { timeoutMs: 5000, tryComplete, signal: controller.signal });
    ready = true;
    expect(p.checkAndComplete('a')).toBe(1);
    return new WeakRef(tryComplete);
  },
  'wait() expired': ({ p, clock }) => {
    const tryComplete = (): boolean => false;
    void p.wait('c', { timeoutMs: 20, tryComplete });
    clock.advance(20);
    return new WeakRef(tryComplete);
  },
};

describe('Purgatory keeps no reference to ended operations (P7, GC)', () => {
  for (const [name, scenario] of Object.entries(scenarios)) {
    it(`${name}: collected while the purgatory lives`, async () => {
      const w = world();
      // Neighbours on the same keys and the wheel, still waiting.
      const neighbours = ['a', 'b', 'c', 'd'].map((key) => {
        const op = new Op(5000, { signal: w.controller.signal });
        w.p.tryCompleteElseWatch(op, key);
        return op;
      });
      const ref = scenario(w);
      w.p.checkInvariants();
      expect(await collected(ref)).toBe(true);
      // The purgatory, the neighbours and the shared signal are all still alive and working.
      expect(w.p.numDelayed()).toBe(4);
      expect(neighbours.every((op) => op.state === 'waiting')).toBe(true);
      w.clock.advance(5000);
      expect(neighbours.every((op) => op.state === 'expired')).toBe(true);
      expect(w.controller.signal.aborted).toBe(false);
    });
  }

  it('closed: every op is collected while the closed purgatory object lives', async () => {
    const w = world();
    const refs = ['a', 'b', 'c'].map((key, i) => {
      const op = new Op(i === 0 ? Infinity : 5000, { signal: w.controller.signal });
      w.p.tryCompleteElseWatch(op, [key, 'shared']);
      return new WeakRef(op);
    });
    await w.p.close();
    for (const ref of refs) expect(await collected(ref)).toBe(true);
    expect(w.p.closed).toBe(true);
    expect(w.clock.pendingTimers).toBe(0);
  });

  it('control: a waiting op is held by the purgatory, and collected once it ends', async () => {
    const w = world();
    let op: Op | undefined = new Op(100, { signal: w.controller.signal });
    w.p.tryCompleteElseWatch(op, ['a', 'b']);
    const ref = new WeakRef(op);
    op = undefined;
    // Still waiting: the watcher lists and the wheel must hold it (no premature collection).
    expect(await collected(ref)).toBe(false);
    expect(w.p.numDelayed()).toBe(1);
    w.clock.advance(100);
    expect(w.p.numDelayed()).toBe(0);
    expect(await collected(ref)).toBe(true);
  });
});
