import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/index.js';
import { MAX_TICK, TimerEntry, TimingWheel } from '../../src/purgatory/timing-wheel.js';

class Task extends TimerEntry {
  constructor(readonly id: number) {
    super();
  }
}

/** Advances tick by tick up to `to`, collecting what falls due, as Kafka's TimerTest drives its timer. */
function drain(wheel: TimingWheel<Task>, to: number, fired: Map<number, number>): void {
  for (let t = wheel.elapsed; t <= to; t++) {
    wheel.advance(t);
    for (let task = wheel.popDue(); task !== null; task = wheel.popDue()) fired.set(task.id, t);
  }
}

describe('TimingWheel (ports of Kafka TimerTest and TimerTaskListTest)', () => {
  it('already-expired tasks go to the due list at once, each exactly once', () => {
    const wheel = new TimingWheel<Task>({ wheelSize: 3, startTick: 10 });
    for (let i = 0; i < 5; i++) expect(wheel.add(new Task(i), 5 + i)).toBe(10);
    expect(wheel.dueCount).toBe(5);
    const ids: number[] = [];
    wheel.advance(10);
    for (let t = wheel.popDue(); t !== null; t = wheel.popDue()) ids.push(t.id);
    expect(ids).toEqual([0, 1, 2, 3, 4]);
    expect(wheel.size).toBe(0);
  });

  it('expires every task at its tick, through overflow levels (tick 1, wheel 3)', () => {
    const wheel = new TimingWheel<Task>({ wheelSize: 3 });
    const due = new Map<number, number>();
    let id = 0;
    const add = (when: number): void => {
      const task = new Task(id++);
      due.set(task.id, when);
      wheel.add(task, when);
    };
    for (let t = 1; t < 5; t++) add(t);
    for (let t = 10; t < 100; t++) {
      add(t);
      add(t);
    }
    for (let t = 100; t < 500; t++) add(t);
    wheel.checkInvariants();
    expect(wheel.levels).toBeGreaterThan(4);
    const fired = new Map<number, number>();
    drain(wheel, 600, fired);
    expect(fired.size).toBe(due.size);
    for (const [taskId, when] of due) expect(fired.get(taskId)).toBe(when);
    expect(wheel.size).toBe(0);
  });

  it('re-adding a task moves it, without changing the count', () => {
    const wheel = new TimingWheel<Task>();
    const task = new Task(1);
    wheel.add(task, 10);
    wheel.add(task, 5000);
    expect(wheel.size).toBe(1);
    wheel.checkInvariants();
    wheel.advance(4999);
    expect(wheel.popDue()).toBeNull();
    wheel.advance(5000);
    expect(wheel.popDue()).toBe(task);
  });

  it('remove is O(1), idempotent, and empties the wheel', () => {
    const wheel = new TimingWheel<Task>({ wheelSize: 4 });
    const tasks = Array.from({ length: 50 }, (_, i) => new Task(i));
    tasks.forEach((t, i) => wheel.add(t, 1 + i * 7));
    for (const t of tasks) expect(wheel.remove(t)).toBe(true);
    expect(wheel.remove(tasks[0]!)).toBe(false);
    expect(wheel.size).toBe(0);
    expect(wheel.nextTick()).toBe(Infinity);
    wheel.checkInvariants();
    expect(tasks.every((t) => !t.scheduled)).toBe(true);
  });

  it('a huge jump costs cascades per level, not a loop per tick', () => {
    const wheel = new TimingWheel<Task>();
    const task = new Task(1);
    wheel.add(task, MAX_TICK);
    let steps = 0;
    while (wheel.nextTick() <= MAX_TICK && wheel.dueCount === 0) {
      wheel.advance(wheel.nextTick());
      steps++;
    }
    expect(steps).toBeLessThanOrEqual(wheel.levels + 1);
    expect(wheel.popDue()).toBe(task);
  });

  it('a budget bounds the work of one advance; the slot in progress finishes first next time', () => {
    const wheel = new TimingWheel<Task>({ wheelSize: 8 });
    const tasks = Array.from({ length: 1000 }, (_, i) => new Task(i));
    tasks.forEach((t, i) => wheel.add(t, 64 + (i % 64))); // one coarse slot at level 1 (ticks 64-127)
    wheel.add(new Task(5000), 200);
    const fired = new Map<number, number>();
    let calls = 0;
    for (let now = 0; now <= 200; now++) {
      let done = false;
      while (!done) {
        calls++;
        done = wheel.advance(now, 50);
        wheel.checkInvariants();
        if (!done) expect(wheel.nextTick()).toBeLessThanOrEqual(wheel.elapsed);
        for (let t = wheel.popDue(); t !== null; t = wheel.popDue()) fired.set(t.id, now);
      }
    }
    expect(fired.size).toBe(1001);
    tasks.forEach((t, i) => expect(fired.get(t.id)).toBe(64 + (i % 64)));
    expect(fired.get(5000)).toBe(200);
    expect(calls).toBeGreaterThan(201); // the cascade of 1000 entries took several budgeted calls
  });

  it('rejects a tick that is not an integer in range', () => {
    const wheel = new TimingWheel<Task>();
    expect(() => wheel.add(new Task(1), 1.5)).toThrow(InvalidArgumentError);
    expect(() => wheel.add(new Task(1), MAX_TICK + 2)).toThrow(InvalidArgumentError);
    expect(() => new TimingWheel({ wheelSize: 65 })).toThrow(/`wheelSize` to be an integer from 2 to 64, got `65`/);
    expect(() => new TimingWheel({ wheelSize: 1 })).toThrow(InvalidArgumentError);
    expect(wheel.size).toBe(0);
  });

  test.prop(
    [
      fc.integer({ min: 2, max: 64 }),
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant('add' as const), delay: fc.oneof(fc.integer({ min: -3, max: 300 }), fc.integer({ min: 0, max: 2 ** 40 })) }),
          fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
          fc.record({ kind: fc.constant('advance' as const), by: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 2 ** 41 })) }),
        ),
        { maxLength: 80 },
      ),
    ],
    { numRuns: 300 },
  )('matches a sorted reference: every entry due exactly when its tick is reached, never before', (wheelSize, commands) => {
    const wheel = new TimingWheel<Task>({ wheelSize });
    const live = new Map<number, number>();
    const tasks = new Map<number, Task>();
    let id = 0;
    for (const cmd of commands) {
      if (cmd.kind === 'add') {
        const when = Math.max(0, wheel.elapsed + cmd.delay);
        const task = new Task(id++);
        wheel.add(task, when);
        live.set(task.id, when);
        tasks.set(task.id, task);
      } else if (cmd.kind === 'remove') {
        const ids = [...live.keys()];
        if (ids.length === 0) continue;
        const target = ids[cmd.pick % ids.length]!;
        expect(wheel.remove(tasks.get(target)!)).toBe(true);
        live.delete(target);
      } else {
        const to = wheel.elapsed + cmd.by;
        wheel.advance(to);
        for (let t = wheel.popDue(); t !== null; t = wheel.popDue()) {
          expect(live.get(t.id)!).toBeLessThanOrEqual(to);
          live.delete(t.id);
        }
        for (const [, when] of live) expect(when).toBeGreaterThan(to);
      }
      wheel.checkInvariants();
      expect(wheel.size).toBe(live.size);
    }
  });
});
