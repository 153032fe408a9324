/**
 * P15 (and the wheel's share of P2, P11, P14): the TimingWheel against a plain map of
 * entry -> due tick, with fc.commands. After every command: `checkInvariants()` (each entry in
 * one slot whose range holds its tick, occupancy bits equal non-empty slots, size equals the
 * entry count), `size` / `dueCount` / `elapsed` equal the model, and `nextTick()` is never after
 * the earliest scheduled tick (so an owner arming a timer for it is never late) and never at or
 * before `elapsed` unless something is due.
 */
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { MAX_TICK, TimerEntry, TimingWheel } from '../../src/purgatory/timing-wheel.js';
import { itProp, levelBound, runs } from './model-reference.js';

class Entry extends TimerEntry {
  constructor(readonly id: number) {
    super();
  }
}

const ENTRIES = 12;

interface WheelModel {
  elapsed: number;
  /** id -> tick, for entries in the wheel. */
  readonly when: Map<number, number>;
  readonly due: Set<number>;
  maxTick: number;
}

interface WheelReal {
  readonly wheel: TimingWheel<Entry>;
  readonly entries: readonly Entry[];
}

type WheelCmd = fc.Command<WheelModel, WheelReal>;

function verify(m: WheelModel, r: WheelReal): void {
  const w = r.wheel;
  w.checkInvariants();
  expect(w.size).toBe(m.when.size);
  expect(w.dueCount).toBe(m.due.size);
  expect(w.elapsed).toBe(m.elapsed);
  expect(r.entries.map((e) => e.scheduled)).toEqual(r.entries.map((e) => m.when.has(e.id)));
  const scheduled = [...m.when].filter(([id]) => !m.due.has(id)).map(([, t]) => t);
  const next = w.nextTick();
  if (m.due.size > 0) expect(next).toBe(m.elapsed);
  else if (scheduled.length === 0) expect(next).toBe(Infinity);
  else {
    expect(next).toBeGreaterThan(m.elapsed);
    expect(next).toBeLessThanOrEqual(Math.min(...scheduled));
  }
  expect(w.levels).toBeLessThanOrEqual(levelBound(w.wheelSize, m.maxTick));
}

class AddCmd implements WheelCmd {
  constructor(
    readonly id: number,
    readonly offset: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: WheelModel, r: WheelReal): void {
    const when = Math.min(MAX_TICK, Math.max(0, m.elapsed + this.offset));
    const sizeBefore = r.wheel.size;
    const moved = m.when.has(this.id);
    const fire = r.wheel.add(r.entries[this.id]!, when);
    // Re-adding moves the entry: the count does not change.
    expect(r.wheel.size).toBe(moved ? sizeBefore : sizeBefore + 1);
    m.when.set(this.id, when);
    m.maxTick = Math.max(m.maxTick, when);
    if (when <= m.elapsed) {
      m.due.add(this.id);
      expect(fire).toBe(m.elapsed);
    } else {
      m.due.delete(this.id);
      // The owner must wake at or before the entry's tick, and after elapsed.
      expect(fire).toBeGreaterThan(m.elapsed);
      expect(fire).toBeLessThanOrEqual(when);
    }
    verify(m, r);
  }
  toString(): string {
    return `Add(#${this.id}, elapsed+${this.offset})`;
  }
}

class RemoveCmd implements WheelCmd {
  constructor(readonly id: number) {}
  check(): boolean {
    return true;
  }
  run(m: WheelModel, r: WheelReal): void {
    expect(r.wheel.remove(r.entries[this.id]!)).toBe(m.when.has(this.id));
    m.when.delete(this.id);
    m.due.delete(this.id);
    verify(m, r);
  }
  toString(): string {
    return `Remove(#${this.id})`;
  }
}

class AdvanceCmd implements WheelCmd {
  constructor(
    readonly delta: number,
    readonly drain: boolean,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: WheelModel, r: WheelReal): void {
    const dueBefore = m.due.size;
    const now = Math.max(0, m.elapsed + this.delta);
    r.wheel.advance(now);
    if (now > m.elapsed) {
      m.elapsed = now;
      for (const [id, t] of m.when) if (t <= now) m.due.add(id);
    }
    verify(m, r);
    if (!this.drain) return;
    const popped: Entry[] = [];
    for (let e = r.wheel.popDue(); e !== null; e = r.wheel.popDue()) popped.push(e);
    expect(popped.map((e) => e.id).sort((a, b) => a - b)).toEqual([...m.due].sort((a, b) => a - b));
    // P11: what one advance makes due comes out in non-decreasing tick order.
    if (dueBefore === 0) {
      const ticks = popped.map((e) => m.when.get(e.id)!);
      expect(ticks).toEqual([...ticks].sort((a, b) => a - b));
    }
    for (const e of popped) {
      expect(m.when.get(e.id)).toBeLessThanOrEqual(m.elapsed);
      m.when.delete(e.id);
    }
    m.due.clear();
    verify(m, r);
  }
  toString(): string {
    return `Advance(${this.delta}${this.drain ? ', drain' : ''})`;
  }
}

class PopCmd implements WheelCmd {
  check(): boolean {
    return true;
  }
  run(m: WheelModel, r: WheelReal): void {
    const e = r.wheel.popDue();
    if (m.due.size === 0) expect(e).toBeNull();
    else {
      expect(e).not.toBeNull();
      expect(m.due.has(e!.id)).toBe(true);
      m.due.delete(e!.id);
      m.when.delete(e!.id);
    }
    verify(m, r);
  }
  toString(): string {
    return 'PopDue()';
  }
}

const offsetArb = fc.oneof(
  { weight: 2, arbitrary: fc.integer({ min: -3, max: 0 }) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 300 }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 2 ** 33 }) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 40, 2 ** 52) },
);
const deltaArb = fc.oneof(
  { weight: 1, arbitrary: fc.integer({ min: -5, max: 0 }) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 100 }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 2 ** 34 }) },
);
const id = fc.nat({ max: ENTRIES - 1 });
const wheelCommands = fc.commands(
  [
    fc.tuple(id, offsetArb).map(([i, o]) => new AddCmd(i, o)),
    fc.tuple(id, offsetArb).map(([i, o]) => new AddCmd(i, o)),
    id.map((i) => new RemoveCmd(i)),
    fc.tuple(deltaArb, fc.boolean()).map(([d, drain]) => new AdvanceCmd(d, drain)),
    fc.constant(new PopCmd()),
  ],
  { maxCommands: 80, size: 'max' },
);

describe('TimingWheel model-based (P15)', () => {
  itProp([fc.integer({ min: 2, max: 64 }), fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 40 })), wheelCommands], { numRuns: runs(200) })(
    'matches a map of entry -> tick after every add / move / remove / advance / popDue',
    (wheelSize, startTick, cmds) => {
      fc.modelRun(
        () => ({
          model: { elapsed: startTick, when: new Map<number, number>(), due: new Set<number>(), maxTick: startTick } as WheelModel,
          real: {
            wheel: new TimingWheel<Entry>({ wheelSize, startTick }),
            entries: Array.from({ length: ENTRIES }, (_, i) => new Entry(i)),
          },
        }),
        cmds,
      );
    },
  );

  itProp([fc.integer({ min: 2, max: 64 }), fc.array(fc.integer({ min: 1, max: 2 ** 40 }), { minLength: 1, maxLength: 30 })], { numRuns: runs(150) })(
    'driving by nextTick() reaches every entry exactly at its tick in O(entries x levels) steps (P2, P14)',
    (wheelSize, ticks) => {
      const wheel = new TimingWheel<Entry>({ wheelSize });
      const entries = ticks.map((_, i) => new Entry(i));
      entries.forEach((e, i) => wheel.add(e, ticks[i]!));
      let steps = 0;
      const seen: number[] = [];
      while (wheel.size > 0) {
        const next = wheel.nextTick();
        steps++;
        wheel.advance(next);
        for (let e = wheel.popDue(); e !== null; e = wheel.popDue()) {
          // Never early, never late: due exactly when the owner's clock reaches its tick.
          expect(ticks[e.id]).toBe(wheel.elapsed);
          seen.push(e.id);
        }
        wheel.checkInvariants();
      }
      expect(seen.sort((a, b) => a - b)).toEqual(entries.map((e) => e.id));
      expect(steps).toBeLessThanOrEqual(ticks.length * (levelBound(wheelSize, 2 ** 40) + 1));
    },
  );
});
