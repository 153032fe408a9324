/**
 * Time, injected. Every timed class in patchbay takes a {@link Clock}, real by default, so tests
 * drive time by hand with a {@link ManualClock} instead of sleeping.
 *
 * @module
 */
import { InvalidArgumentError } from './errors.js';
import { describe } from './validate.js';

/** A timer armed by {@link Clock.setTimer}. */
export interface ClockTimer {
  /** Disarms the timer. Safe to call more than once, and after it fired. */
  cancel(): void;
}

/** Options for {@link Clock.setTimer}. */
export interface SetTimerOptions {
  /**
   * Keep the process alive while the timer is armed.
   * @defaultValue `false` (the timer is `unref()`ed)
   */
  readonly ref?: boolean;
}

/**
 * The time source and the few timer calls the library needs.
 *
 * `now()` is monotonic: it never goes backwards, whatever the wall clock does.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale (fractional allowed). Only differences are meaningful. */
  now(): number;
  /**
   * Calls `callback` once, no earlier than `delayMs` after now (a delay <= 0 means "soon").
   * Delays longer than Node's 2^31-1 ms limit are honoured, not clamped.
   */
  setTimer(callback: () => void, delayMs: number, options?: SetTimerOptions): ClockTimer;
  /** Calls `callback` soon, after pending I/O (like `setImmediate`); used to yield in long loops. */
  defer(callback: () => void): void;
}

/** The largest delay Node's `setTimeout` honours; larger ones would fire after 1 ms. */
const TIMEOUT_MAX = 2 ** 31 - 1;

class RealTimer implements ClockTimer {
  #handle: NodeJS.Timeout | undefined;
  readonly #callback: () => void;
  readonly #ref: boolean;
  #due: number;

  constructor(callback: () => void, delayMs: number, ref: boolean) {
    this.#callback = callback;
    this.#ref = ref;
    this.#due = performance.now() + delayMs;
    this.#arm(delayMs);
  }

  #arm(delayMs: number): void {
    // Node truncates to whole ms and may fire up to 1 ms before a fractional deadline, so round up.
    const ms = Math.min(TIMEOUT_MAX, Math.max(0, Math.ceil(delayMs)));
    this.#handle = setTimeout(this.#fire, ms);
    // Browsers' setTimeout returns a number with no unref(): there, every timer is weak anyway.
    if (!this.#ref) (this.#handle as { unref?: () => void }).unref?.();
  }

  readonly #fire = (): void => {
    const left = this.#due - performance.now();
    if (left > 0) {
      this.#arm(left);
      return;
    }
    this.#handle = undefined;
    this.#callback();
  };

  cancel(): void {
    if (this.#handle !== undefined) {
      clearTimeout(this.#handle);
      this.#handle = undefined;
    }
  }
}

/**
 * The real clock: `performance.now()` and Node's timers (a browser's, in `patchbay/client`). Timers are `unref()`ed unless asked
 * otherwise, never fire before their delay, and delays past 2^31-1 ms are chained rather than
 * clamped to 1 ms as a bare `setTimeout` would.
 */
export const realClock: Clock = Object.freeze({
  now: () => performance.now(),
  setTimer: (callback: () => void, delayMs: number, options?: SetTimerOptions): ClockTimer =>
    new RealTimer(callback, delayMs, options?.ref === true),
  defer: (callback: () => void): void => {
    if (typeof setImmediate === 'function') setImmediate(callback);
    else setTimeout(callback, 0); // browsers
  },
});

interface ManualTimer extends ClockTimer {
  readonly at: number;
  readonly seq: number;
  readonly ref: boolean;
  readonly callback: () => void;
  armed: boolean;
}

/** What {@link ManualClock.timers} reports about one armed timer. */
export interface ManualTimerInfo {
  /** The time at which the timer fires. */
  readonly at: number;
  /** Whether the timer would keep a real process alive. */
  readonly ref: boolean;
}

/**
 * A clock that only moves when told to. Use it in tests, yours and ours: timers fire in time
 * order (ties in the order they were set) as {@link ManualClock.advance} passes their due time,
 * and deferred callbacks run before and after each timer, so a test sees a settled state.
 *
 * @example
 * ```ts
 * const clock = new ManualClock();
 * const purgatory = new Purgatory({ clock, tickMs: 10 });
 * const done = purgatory.wait('k', { timeoutMs: 100 });
 * clock.advance(100);
 * await done; // 'expired'
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: ManualTimer[] = [];
  #deferred: (() => void)[] = [];

  /**
   * @param startMs - The initial reading of {@link ManualClock.now}.
   * @defaultValue `startMs = 0`
   */
  constructor(startMs = 0) {
    if (typeof startMs !== 'number' || !Number.isFinite(startMs)) {
      throw new InvalidArgumentError(`Expected \`startMs\` to be a finite number, got ${describe(startMs)}`);
    }
    this.#now = startMs;
  }

  /** The current manual time in ms. */
  now(): number {
    return this.#now;
  }

  /** Arms a timer that fires once {@link ManualClock.advance} reaches `now() + delayMs`. */
  setTimer(callback: () => void, delayMs: number, options?: SetTimerOptions): ClockTimer {
    const timer: ManualTimer = {
      at: this.#now + Math.max(0, Number.isNaN(delayMs) ? 0 : delayMs),
      seq: this.#seq++,
      ref: options?.ref === true,
      callback,
      armed: true,
      cancel: () => {
        timer.armed = false;
        const i = this.#timers.indexOf(timer);
        if (i !== -1) this.#timers.splice(i, 1);
      },
    };
    this.#timers.push(timer);
    return timer;
  }

  /** Queues `callback` to run at the next {@link ManualClock.advance} or {@link ManualClock.runDeferred}. */
  defer(callback: () => void): void {
    this.#deferred.push(callback);
  }

  /** Moves time forward by `ms`, firing every timer due on the way. */
  advance(ms: number): void {
    if (typeof ms !== 'number' || Number.isNaN(ms) || ms < 0) {
      throw new InvalidArgumentError(`Expected \`ms\` to be a number >= 0, got ${describe(ms)}`);
    }
    this.advanceTo(this.#now + ms);
  }

  /**
   * Moves time forward to `t`, firing every timer due on the way in time order; time stands at
   * each timer's due time while it runs. As in Node's event loop, timers due at the same time
   * all fire before the deferred callbacks they queue. Throws if `t` is in the past: the clock
   * is monotonic.
   */
  advanceTo(t: number): void {
    if (typeof t !== 'number' || Number.isNaN(t) || t < this.#now) {
      throw new InvalidArgumentError(
        `Expected \`t\` to be a time >= now (${this.#now}), got ${describe(t)}: a monotonic clock never goes back`,
      );
    }
    for (;;) {
      this.runDeferred();
      const next = this.#earliest();
      if (next === undefined || next.at > t) break;
      if (next.at > this.#now) this.#now = next.at;
      // Like one pass of Node's timers phase: every timer due now fires, in order, before the
      // deferred (setImmediate) callbacks they queue.
      const due = this.#timers.filter((timer) => timer.at <= this.#now).sort((a, b) => a.at - b.at || a.seq - b.seq);
      for (const timer of due) {
        if (!timer.armed) continue;
        timer.cancel();
        timer.callback();
      }
    }
    if (t > this.#now) this.#now = t;
    this.runDeferred();
  }

  /** Fires the earliest armed timer, moving time to it. Returns false when none is armed. */
  next(): boolean {
    this.runDeferred();
    const next = this.#earliest();
    if (next === undefined) return false;
    this.advanceTo(Math.max(this.#now, next.at));
    return true;
  }

  /** Runs the deferred callbacks, including those they defer in turn, until none is left. */
  runDeferred(): void {
    for (let guard = 0; this.#deferred.length > 0; guard++) {
      if (guard > 10_000_000) throw new Error('ManualClock: deferred callbacks keep deferring (runaway loop)');
      const batch = this.#deferred;
      this.#deferred = [];
      let i = 0;
      try {
        for (; i < batch.length; i++) batch[i]!();
      } finally {
        // A callback threw: keep the ones after it queued, ahead of any it deferred.
        if (i < batch.length) this.#deferred = batch.slice(i + 1).concat(this.#deferred);
      }
    }
  }

  /** The armed timers, earliest first. */
  timers(): ManualTimerInfo[] {
    return [...this.#timers]
      .sort((a, b) => a.at - b.at || a.seq - b.seq)
      .map((t) => ({ at: t.at, ref: t.ref }));
  }

  /** How many timers are armed. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** How many deferred callbacks wait to run. */
  get pendingDeferred(): number {
    return this.#deferred.length;
  }

  #earliest(): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.#timers) {
      if (best === undefined || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
