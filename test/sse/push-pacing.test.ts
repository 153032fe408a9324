/**
 * The pacing SSE and WebSocket share (src/http/push-pacing.ts): the per-turn flush slicer and the
 * replay page size.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Clock, ManualClock } from '../../src/index.js';
import { FlushSlicer, replayPageSize } from '../../src/http/push-pacing.js';

class Conn {
  flushes = 0;
  constructor(readonly log: number[], readonly id: number) {}
  _flush(): void {
    this.flushes++;
    this.log.push(this.id);
  }
}

describe('FlushSlicer', () => {
  it('flushes marked connections once per turn, at most slice per turn, in marking order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 60 }), (slice, count) => {
        // A clock whose deferred callbacks run one turn at a time.
        let queued: (() => void)[] = [];
        const clock: Clock = { now: () => 0, setTimer: () => expect.unreachable('no timer'), defer: (cb) => void queued.push(cb) };
        const log: number[] = [];
        const slicer = new FlushSlicer<Conn>(clock, slice);
        const conns = Array.from({ length: count }, (_, i) => new Conn(log, i));
        for (const c of conns) slicer.add(c);
        let turns = 0;
        while (queued.length > 0) {
          // one turn: only the callbacks queued before it
          const before = log.length;
          const turn = queued;
          queued = [];
          for (const cb of turn) cb();
          expect(log.length - before).toBeLessThanOrEqual(slice);
          turns++;
        }
        expect(log).toEqual(conns.map((c) => c.id));
        expect(turns).toBe(Math.ceil(count / slice));
      }),
    );
  });

  it('schedules one deferred flush however many connections are marked in a turn', () => {
    const clock = new ManualClock();
    const slicer = new FlushSlicer<Conn>(clock, 100);
    const log: number[] = [];
    for (let i = 0; i < 10; i++) slicer.add(new Conn(log, i));
    expect(clock.pendingDeferred).toBe(1);
    clock.runDeferred();
    expect(log).toHaveLength(10);
    expect(clock.pendingDeferred).toBe(0);
  });
});

describe('replayPageSize', () => {
  it('asks for what fits in the room at the frame size, at least 1 and at most maxPage', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1000, max: 10_000_000 }), fc.double({ min: 1, max: 100_000, noNaN: true }), fc.integer({ min: 1, max: 5000 }), (room, frame, max) => {
        const n = replayPageSize(room, frame, max);
        expect(Number.isInteger(n)).toBe(true);
        expect(n).toBeGreaterThanOrEqual(1);
        expect(n).toBeLessThanOrEqual(max);
        if (n > 1) expect(n * frame).toBeLessThanOrEqual(Math.max(0, room));
        if (n < max) expect((n + 1) * frame).toBeGreaterThan(Math.max(0, room));
      }),
    );
    expect(replayPageSize(0, 512, 256)).toBe(1);
    expect(replayPageSize(1024 * 1024, 512, 256)).toBe(256);
    expect(replayPageSize(5000, 1000, 1000)).toBe(5);
  });
});
