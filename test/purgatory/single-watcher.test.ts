/**
 * A key with one watcher maps straight to that watcher (no list); a second watcher gives the key
 * a list headed by the first. These tests pin the behaviour across that change of shape.
 */
import { describe, expect, it } from 'vitest';
import { DelayedOperation, ManualClock, Purgatory } from '../../src/index.js';
import { perTest } from '../helpers.js';

class Op extends DelayedOperation {
  completable = false;
  constructor(
    readonly name: string,
    readonly log: string[],
    timeoutMs = 1000,
  ) {
    super(timeoutMs);
  }
  override tryComplete(): boolean {
    return this.completable;
  }
  onComplete(): void {
    this.log.push(`${this.name}:${this.state}`);
  }
  override onCancel(): void {
    this.log.push(`${this.name}:canceled`);
  }
}

function setup(): { clock: ManualClock; purgatory: Purgatory } {
  const clock = new ManualClock();
  const purgatory = new Purgatory({ clock, tickMs: 10 });
  perTest.defer(() => purgatory.close());
  return { clock, purgatory };
}

describe('Purgatory: a key with a single watcher', () => {
  it('completes, cancels and expires a lone watcher and leaves no key behind', () => {
    const { clock, purgatory } = setup();
    const log: string[] = [];
    const a = new Op('a', log);
    const b = new Op('b', log);
    const c = new Op('c', log, 50);
    purgatory.tryCompleteElseWatch(a, 'ka');
    purgatory.tryCompleteElseWatch(b, 'kb');
    purgatory.tryCompleteElseWatch(c, 'kc');
    purgatory.checkInvariants();
    expect(purgatory.watcherCount('ka')).toBe(1);
    expect(purgatory.checkAndComplete('ka')).toBe(0);
    a.completable = true;
    expect(purgatory.checkAndComplete('ka')).toBe(1);
    expect(purgatory.cancelForKey('kb')).toEqual([b]);
    clock.advance(60);
    expect(log).toEqual(['a:completed', 'b:canceled', 'c:expired']);
    expect(purgatory.stats()).toMatchObject({ keys: 0, watched: 0, waiting: 0 });
    purgatory.checkInvariants();
  });

  it('turns into a list on a second watcher, keeping watch order, and back to nothing', () => {
    const { purgatory } = setup();
    const log: string[] = [];
    const [a, b, c] = ['a', 'b', 'c'].map((name) => new Op(name, log));
    purgatory.tryCompleteElseWatch(a!, ['k', 'x']);
    purgatory.tryCompleteElseWatch(b!, 'k');
    purgatory.checkInvariants();
    expect(purgatory.watcherCount('k')).toBe(2);
    a!.completable = true;
    b!.completable = true;
    expect(purgatory.checkAndComplete('k')).toBe(2);
    expect(log).toEqual(['a:completed', 'b:completed']);
    expect(purgatory.stats()).toMatchObject({ keys: 0, watched: 0 });
    // The key is new again: a lone watcher once more.
    purgatory.tryCompleteElseWatch(c!, 'k');
    expect(purgatory.watcherCount('k')).toBe(1);
    purgatory.checkInvariants();
  });

  it('does not visit a watcher added by the lone watcher’s own tryComplete', () => {
    const { purgatory } = setup();
    const log: string[] = [];
    const late = new Op('late', log);
    late.completable = false;
    let armed = false;
    class Adder extends Op {
      override tryComplete(): boolean {
        if (armed) {
          purgatory.tryCompleteElseWatch(late, 'k');
          late.completable = true;
          return true;
        }
        return false;
      }
    }
    const first = new Adder('first', log);
    purgatory.tryCompleteElseWatch(first, 'k');
    armed = true;
    expect(purgatory.checkAndComplete('k')).toBe(1);
    expect(log).toEqual(['first:completed']);
    expect(purgatory.watcherCount('k')).toBe(1);
    purgatory.checkInvariants();
    expect(purgatory.checkAndComplete('k')).toBe(1);
    expect(log).toEqual(['first:completed', 'late:completed']);
    purgatory.checkInvariants();
  });
});
