import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay, resolveBackoff } from '../../src/core/backoff.js';
import { ManualClock, realClock } from '../../src/core/clock.js';
import { Deque } from '../../src/core/deque.js';
import { InvalidArgumentError } from '../../src/core/errors.js';
import { oneOf, optionalClock } from '../../src/core/validate.js';

describe('Deque', () => {
  it('behaves like an array queue under any sequence of push, shift, drop and unshiftAll', () => {
    type Op = { op: 'push'; n: number } | { op: 'shift' } | { op: 'drop'; n: number } | { op: 'unshift'; items: number[] };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('push' as const), n: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ op: fc.constant('shift' as const) }),
      fc.record({ op: fc.constant('drop' as const), n: fc.integer({ min: 0, max: 3000 }) }),
      fc.record({ op: fc.constant('unshift' as const), items: fc.array(fc.integer(), { maxLength: 5 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const d = new Deque<number>();
        let model: number[] = [];
        let next = 0;
        for (const o of ops) {
          if (o.op === 'push') {
            for (let i = 0; i < o.n; i++) {
              d.push(next);
              model.push(next++);
            }
          } else if (o.op === 'shift') {
            expect(d.shift()).toBe(model.shift());
          } else if (o.op === 'drop') {
            d.drop(o.n);
            model = model.slice(o.n);
          } else {
            d.unshiftAll(o.items);
            model = [...o.items, ...model];
          }
          expect(d.length).toBe(model.length);
          expect(d.peek()).toBe(model[0]);
          expect(d.last()).toBe(model.at(-1));
          expect(d.at(model.length >> 1)).toBe(model[model.length >> 1]);
          expect(d.slice(model.length >> 2, model.length >> 1)).toEqual(model.slice(model.length >> 2, model.length >> 1));
          expect(d.slice(1)).toEqual(model.slice(1));
        }
        expect([...d]).toEqual(model);
        expect(d.drain()).toEqual(model);
        expect(d.length).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('slices like an array, with indexes clamped to the queue', () => {
    const d = new Deque<number>();
    for (let i = 0; i < 6; i++) d.push(i);
    d.shift();
    d.shift();
    expect(d.slice(0)).toEqual([2, 3, 4, 5]);
    expect(d.slice(1, 3)).toEqual([3, 4]);
    expect(d.slice(-5, 99)).toEqual([2, 3, 4, 5]);
    expect(d.slice(3, 1)).toEqual([]);
    expect(d.slice(4, 9)).toEqual([]);
  });

  it('countAtMost finds where a key passes a value in a sorted queue, as a filter would count', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 })), fc.nat(20), fc.integer({ min: -1, max: 51 }), (values, shifts, value) => {
        const sorted = [...values].sort((a, b) => a - b);
        const d = new Deque<{ k: number }>();
        for (const k of sorted) d.push({ k });
        d.drop(shifts);
        const model = sorted.slice(shifts);
        expect(d.countAtMost((x) => x.k, value)).toBe(model.filter((k) => k <= value).length);
      }),
      { numRuns: 200 },
    );
  });

  it('releases a shifted item at once and refuses set() out of range', () => {
    const d = new Deque<object>();
    d.push({});
    d.push({});
    d.shift();
    expect(d.at(-1)).toBeUndefined();
    expect(() => d.set(1, {})).toThrow(RangeError);
    d.set(0, { x: 1 });
    expect(d.peek()).toEqual({ x: 1 });
  });
});

describe('backoff', () => {
  const defaults = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.5 };

  it('stays within [cap * (1 - jitter), cap] and never under the floor', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.double({ min: 0, max: 0.9999, noNaN: true }), fc.integer({ min: 0, max: 2000 }), (attempt, r, floor) => {
        const b = resolveBackoff('backoff', undefined, defaults);
        const cap = Math.min(1000, 100 * 2 ** (attempt - 1));
        const d = backoffDelay(b, attempt, () => r, floor);
        expect(d).toBeGreaterThanOrEqual(Math.max(floor, cap * 0.5) - 1e-9);
        expect(d).toBeLessThanOrEqual(Math.max(floor, cap) + 1e-9);
      }),
    );
  });

  it('names the bad field in a typed error', () => {
    expect(() => resolveBackoff('reconnect', { jitter: 2 }, defaults)).toThrow(/reconnect\.jitter/);
    expect(() => resolveBackoff('reconnect', { initialDelayMs: 0 }, defaults)).toThrow(InvalidArgumentError);
    expect(() => resolveBackoff('restart', { maxDelayMs: 50 }, defaults)).toThrow(/restart\.maxDelayMs/);
    expect(() => resolveBackoff('restart', { factor: 0.5 }, defaults)).toThrow(/restart\.factor/);
    expect(() => resolveBackoff('restart', 'fast' as never, defaults)).toThrow(/Expected `restart` to be an object/);
    expect(resolveBackoff('x', { initialDelayMs: 5000 }, defaults).maxDelayMs).toBe(5000);
  });
});

describe('oneOf and optionalClock', () => {
  it('oneOf passes an allowed value, falls back on undefined and names the choices otherwise', () => {
    expect(oneOf('overflow', 'drop', ['drop', 'close'], 'close')).toBe('drop');
    expect(oneOf('overflow', undefined, ['drop', 'close'], 'close')).toBe('close');
    expect(() => oneOf('overflow', 'DROP', ['drop', 'close'], 'close')).toThrow('Expected `overflow` to be one of "drop", "close", got `"DROP"` (string)');
  });

  it('optionalClock takes a Clock, defaults to realClock, and refuses anything else', () => {
    const clock = new ManualClock();
    expect(optionalClock('clock', clock)).toBe(clock);
    expect(optionalClock('clock', undefined)).toBe(realClock);
    expect(() => optionalClock('clock', Date)).toThrow(InvalidArgumentError);
    expect(() => optionalClock('clock', { now: () => 0 })).toThrow(/Expected `clock` to be a Clock/);
  });
});

describe('Events', () => {
  it('types listeners by the event map, and on() returns an idempotent unsubscribe', async () => {
    const { Events } = await import('../../src/core/events.js');
    const events = new Events<{ tick: [n: number]; done: [] }>();
    const seen: number[] = [];
    const off = events.on('tick', (n) => seen.push(n));
    events.on('done', () => seen.push(-1));
    expect(events.emit('tick', 1)).toBe(true);
    off();
    off();
    expect(events.emit('tick', 2)).toBe(false);
    events.emit('done');
    expect(seen).toEqual([1, -1]);
    expect(events.listenerCount('done')).toBe(1);
    events.removeAllListeners();
    expect(events.listenerCount('done')).toBe(0);
    // @ts-expect-error: a tick carries a number
    events.emit('tick', 'x');
  });
});
