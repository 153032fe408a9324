import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError, ManualClock, realClock } from '../../src/index.js';

describe('ManualClock', () => {
  it('fires timers in time order, ties in the order set, with time standing at each due time', () => {
    const clock = new ManualClock(100);
    const seen: string[] = [];
    clock.setTimer(() => seen.push(`b@${clock.now()}`), 20);
    clock.setTimer(() => seen.push(`a@${clock.now()}`), 10);
    clock.setTimer(() => seen.push(`c@${clock.now()}`), 20);
    clock.advance(15);
    expect(seen).toEqual(['a@110']);
    expect(clock.now()).toBe(115);
    clock.advance(5);
    expect(seen).toEqual(['a@110', 'b@120', 'c@120']);
  });

  it('fires timers that timers set, when due within the same advance', () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    clock.setTimer(() => {
      seen.push(clock.now());
      clock.setTimer(() => seen.push(clock.now()), 5);
    }, 5);
    clock.advance(10);
    expect(seen).toEqual([5, 10]);
  });

  it('cancel removes a timer; canceling twice is harmless', () => {
    const clock = new ManualClock();
    const t = clock.setTimer(() => expect.unreachable(), 1);
    expect(clock.pendingTimers).toBe(1);
    t.cancel();
    t.cancel();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(10);
  });

  it('reports timers with their ref flag (unref by default)', () => {
    const clock = new ManualClock();
    clock.setTimer(() => {}, 30, { ref: true });
    clock.setTimer(() => {}, 10);
    expect(clock.timers()).toEqual([
      { at: 10, ref: false },
      { at: 30, ref: true },
    ]);
  });

  it('runs deferred callbacks on advance, including ones they defer', () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    clock.defer(() => {
      seen.push(1);
      clock.defer(() => seen.push(2));
    });
    expect(clock.pendingDeferred).toBe(1);
    clock.advance(0);
    expect(seen).toEqual([1, 2]);
  });

  it('keeps the rest of a deferred batch when one callback throws', () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    clock.defer(() => {
      throw new Error('x');
    });
    clock.defer(() => seen.push(1));
    expect(() => clock.runDeferred()).toThrow('x');
    clock.runDeferred();
    expect(seen).toEqual([1]);
  });

  it('never goes back, and rejects bad input with a typed error', () => {
    const clock = new ManualClock(50);
    expect(() => clock.advanceTo(49)).toThrow(InvalidArgumentError);
    expect(() => clock.advance(-1)).toThrow(InvalidArgumentError);
    expect(() => clock.advance(Number.NaN)).toThrow(/got `NaN` \(number\)/);
    expect(() => new ManualClock(Number.POSITIVE_INFINITY)).toThrow(InvalidArgumentError);
    expect(clock.now()).toBe(50);
  });

  it('next() fires the earliest timer and reports when none is left', () => {
    const clock = new ManualClock();
    let fired = 0;
    clock.setTimer(() => fired++, 1e12);
    expect(clock.next()).toBe(true);
    expect(clock.now()).toBe(1e12);
    expect(fired).toBe(1);
    expect(clock.next()).toBe(false);
  });
});

describe('realClock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is monotonic and in milliseconds', () => {
    const a = realClock.now();
    const b = realClock.now();
    expect(b).toBeGreaterThanOrEqual(a);
  });

  it('honours delays past 2^31-1 ms instead of firing after 1 ms', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    let fired = false;
    realClock.setTimer(() => (fired = true), 2 ** 33);
    vi.advanceTimersByTime(2 ** 31);
    expect(fired).toBe(false);
    vi.advanceTimersByTime(2 ** 33 - 2 ** 31 - 1);
    expect(fired).toBe(false);
    vi.advanceTimersByTime(1);
    expect(fired).toBe(true);
  });

  it('never fires before a fractional deadline', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    vi.advanceTimersByTime(0.4);
    const start = performance.now();
    let at = -1;
    realClock.setTimer(() => (at = performance.now()), 2.5);
    vi.advanceTimersByTime(10);
    expect(at - start).toBeGreaterThanOrEqual(2.5);
  });

  it('cancel disarms', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    let fired = false;
    const t = realClock.setTimer(() => (fired = true), 2 ** 32);
    vi.advanceTimersByTime(2 ** 31);
    t.cancel();
    vi.advanceTimersByTime(2 ** 33);
    expect(fired).toBe(false);
  });

  it('defer runs after the current turn', async () => {
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      realClock.defer(() => {
        order.push('deferred');
        resolve();
      });
      order.push('sync');
    });
    expect(order).toEqual(['sync', 'deferred']);
  });
});
