/**
 * The O(n) reference model of the Purgatory (research/purgatory.md §5), the generators the
 * model-based suites share, and a ManualClock that counts the timer callbacks it fires.
 *
 * The model is a plain array of operations scanned linearly; it knows nothing of wheels, slots or
 * watcher lists. It encodes the documented semantics only:
 *
 * - a deadline is `ceil((watchTime + delay) / tick) * tick`; the op expires when the clock
 *   reaches it (a ManualClock fires timers exactly at their due time), never earlier;
 * - `delay <= 0` expires inside `tryCompleteElseWatch`, after the condition check fails;
 *   `Infinity` never expires;
 * - `tryCompleteElseWatch` checks the condition, registers, checks again, then schedules;
 * - `checkAndComplete(k)` visits the ops waiting on `k` in watch order, and completes those whose
 *   condition holds (the default condition holds for any op that waits);
 * - `cancelForKey`, `cancel`, an abort, `close()` and `destroy()` cancel, and nothing else fires
 *   for a canceled op.
 */
import fc from 'fast-check';
import { it } from 'vitest';
import { ManualClock, type ClockTimer, type SetTimerOptions } from '../../src/index.js';
import type { PurgatoryStats } from '../../src/index.js';

/** The small key space the commands draw from. */
export const KEYS = ['a', 'b', 'c', 'd'] as const;
export type Key = (typeof KEYS)[number];

/**
 * How an operation decides it can complete:
 * - `flag`: a DelayedOperation subclass whose `tryComplete` returns a flag the test flips;
 * - `default`: a subclass keeping the default `tryComplete` (completes on the first
 *   checkAndComplete of any of its keys);
 * - `promise`: `purgatory.wait()` with a `tryComplete` predicate reading the flag;
 * - `promise-default`: `purgatory.wait()` without a predicate.
 */
export type OpMode = 'flag' | 'default' | 'promise' | 'promise-default';
export type SignalMode = 'none' | 'live' | 'pre-aborted';

export interface WatchSpec {
  /** The keys as passed (duplicates allowed: the purgatory must ignore them). */
  readonly keys: readonly Key[];
  /** Pass `keys[0]` as a bare string instead of the array. */
  readonly asString: boolean;
  readonly delay: number;
  readonly mode: OpMode;
  /** The flag's value at watch time (flag and promise modes). */
  readonly completableNow: boolean;
  readonly signal: SignalMode;
  /** onComplete / onExpiration / onCancel throw (class modes): errors go to `onError`. */
  readonly throwingCallbacks: boolean;
  /** The condition check throws at watch: 1 on the first check, 2 on the last one (0: never). */
  readonly throwAtWatch: 0 | 1 | 2;
}

export type Outcome = 'completed' | 'expired' | 'canceled';
/** Why an op was canceled (or, for `refused`, why its watch threw). */
export type ReasonKind = 'abort' | 'cancelForKey' | 'cancel' | 'closed' | 'destroyed' | 'threw';
export type RefState = 'waiting' | Outcome | 'refused';

export interface RefOp {
  readonly id: number;
  readonly spec: WatchSpec;
  /** The distinct keys it watches. */
  readonly keys: readonly Key[];
  readonly watchedAt: number;
  /** Watch order (Kafka's queue order); `-1` when it never got registered. */
  seq: number;
  /** Quantised deadline in ms: `Infinity` when none. */
  deadline: number;
  /** Held by the timing wheel (a finite deadline). */
  timed: boolean;
  completable: boolean;
  throwNext: boolean;
  aborted: boolean;
  state: RefState;
  endedAt: number;
  reason: ReasonKind | undefined;
  /** How many times its (observable) `tryComplete` ran. */
  tries: number;
}

/** What one model step predicts. */
export interface RefStep<R = unknown> {
  /** The method's return value. */
  readonly result: R;
  /** The method throws ClosedError. */
  readonly throwsClosed: boolean;
  /** Ids whose observable `tryComplete` runs, in call order. */
  readonly visits: readonly number[];
  /** Ops that end during the step, in the order the model ends them. */
  readonly ended: readonly RefOp[];
}

/** The counters of `stats()` that the model tracks. */
export type Counters = Omit<PurgatoryStats, 'name' | 'tickMs' | 'timerArmed'>;

/** Whether the purgatory calls a tryComplete the test can see. */
export const observable = (mode: OpMode): boolean => mode !== 'promise-default';
/** Whether the test holds the DelayedOperation object (so it can force or cancel it). */
export const isClassMode = (mode: OpMode): boolean => mode === 'flag' || mode === 'default';
const usesDefaultCondition = (mode: OpMode): boolean => mode === 'default' || mode === 'promise-default';

export function distinctKeys(spec: WatchSpec): Key[] {
  return spec.asString ? [spec.keys[0]!] : [...new Set(spec.keys)];
}

const MAX_TICK = 2 ** 52;

export class RefModel {
  now: number;
  lifecycle: 'open' | 'closed' | 'destroyed' = 'open';
  readonly ops: RefOp[] = [];
  #seq = 0;
  #ended: RefOp[] = [];
  #visits: number[] = [];

  constructor(
    readonly tickMs: number,
    startMs: number,
  ) {
    this.now = startMs;
  }

  get waiting(): RefOp[] {
    return this.ops.filter((op) => op.state === 'waiting');
  }

  counters(): Counters {
    const waiting = this.waiting;
    const count = (state: RefState): number => this.ops.filter((op) => op.state === state).length;
    return {
      waiting: waiting.length,
      watched: waiting.reduce((n, op) => n + op.keys.length, 0),
      keys: new Set(waiting.flatMap((op) => op.keys)).size,
      timed: waiting.filter((op) => op.timed).length,
      completed: count('completed'),
      expired: count('expired'),
      canceled: count('canceled'),
    };
  }

  /** The earliest quantised deadline among timed waiting ops (Infinity when none). */
  earliestDeadline(): number {
    return Math.min(Infinity, ...this.waiting.filter((op) => op.timed).map((op) => op.deadline));
  }

  watch(spec: WatchSpec): RefStep<boolean> & { readonly op: RefOp } {
    const op: RefOp = {
      id: this.ops.length,
      spec,
      keys: distinctKeys(spec),
      watchedAt: this.now,
      seq: -1,
      deadline: Infinity,
      timed: false,
      completable: spec.completableNow,
      throwNext: false,
      aborted: spec.signal === 'pre-aborted',
      state: 'waiting',
      endedAt: NaN,
      reason: undefined,
      tries: 0,
    };
    this.ops.push(op);
    if (this.lifecycle !== 'open') {
      op.state = 'refused';
      op.reason = 'closed';
      return { ...this.#step(false, true), op };
    }
    if (spec.signal === 'pre-aborted') {
      this.#end(op, 'canceled', 'abort');
      return { ...this.#step(false), op };
    }
    // First check, before registering: the default condition does not hold yet (not waiting).
    // A throwing check cancels the op with the thrown value.
    const first = this.#try(op);
    if (this.#threwAtWatch(op)) return { ...this.#step(false), op };
    if (first && !usesDefaultCondition(spec.mode)) {
      this.#end(op, 'completed');
      return { ...this.#step(true), op };
    }
    op.seq = this.#seq++;
    // Last completion check after registering: nothing changed in between.
    this.#try(op);
    if (this.#threwAtWatch(op)) return { ...this.#step(false), op };
    if (spec.delay <= 0) {
      this.#end(op, 'expired');
      return { ...this.#step(false), op };
    }
    const tick = Math.ceil((this.now + spec.delay) / this.tickMs);
    op.deadline = tick * this.tickMs;
    op.timed = tick <= MAX_TICK;
    return { ...this.#step(false), op };
  }

  /** Sets the op's condition (`true`/`false`) or makes its next check throw. */
  flip(op: RefOp, how: 'true' | 'false' | 'throw'): void {
    if (how === 'throw') op.throwNext = true;
    else op.completable = how === 'true';
  }

  checkAndComplete(key: Key): RefStep<number> {
    if (this.lifecycle !== 'open') return this.#step(0, true);
    let completed = 0;
    for (const op of this.#onKey(key)) {
      this.#try(op);
      if (op.throwNext && observable(op.spec.mode)) this.#end(op, 'canceled', 'threw');
      else if (usesDefaultCondition(op.spec.mode) || op.completable) {
        this.#end(op, 'completed');
        completed++;
      }
    }
    return this.#step(completed);
  }

  /** Moves the clock to `t`: exactly the ops with deadline <= t expire, each at its deadline. */
  advanceTo(t: number): RefStep<undefined> {
    const due = this.waiting.filter((op) => op.timed && op.deadline <= t).sort((a, b) => a.deadline - b.deadline);
    for (const op of due) {
      this.now = op.deadline;
      this.#end(op, 'expired');
    }
    this.now = t;
    return this.#step(undefined);
  }

  cancelForKey(key: Key): RefStep<number[]> {
    const ops = this.#onKey(key);
    for (const op of ops) this.#end(op, 'canceled', 'cancelForKey');
    return this.#step(ops.map((op) => op.id));
  }

  cancel(op: RefOp): RefStep<boolean> {
    if (op.state !== 'waiting') return this.#step(false);
    this.#end(op, 'canceled', 'cancel');
    return this.#step(true);
  }

  forceComplete(op: RefOp): RefStep<boolean> {
    if (op.state !== 'waiting') return this.#step(false);
    this.#end(op, 'completed');
    return this.#step(true);
  }

  abort(op: RefOp): RefStep<undefined> {
    if (op.spec.signal === 'live' && !op.aborted) {
      op.aborted = true;
      if (op.state === 'waiting') this.#end(op, 'canceled', 'abort');
    }
    return this.#step(undefined);
  }

  close(kind: 'close' | 'destroy'): RefStep<undefined> {
    if (this.lifecycle === 'open') {
      this.lifecycle = kind === 'close' ? 'closed' : 'destroyed';
      const reason = kind === 'close' ? 'closed' : 'destroyed';
      for (const op of this.waiting) this.#end(op, 'canceled', reason);
    }
    return this.#step(undefined);
  }

  /** The waiting ops on `key`, in watch order. */
  #onKey(key: Key): RefOp[] {
    return this.waiting.filter((op) => op.keys.includes(key)).sort((a, b) => a.seq - b.seq);
  }

  #threwAtWatch(op: RefOp): boolean {
    if (!observable(op.spec.mode) || op.tries !== op.spec.throwAtWatch) return false;
    this.#end(op, 'canceled', 'threw');
    return true;
  }

  /** Records an observable tryComplete call; returns the flag condition. */
  #try(op: RefOp): boolean {
    if (observable(op.spec.mode)) {
      op.tries++;
      this.#visits.push(op.id);
    }
    return op.completable;
  }

  #end(op: RefOp, state: Outcome, reason?: ReasonKind): void {
    op.state = state;
    op.endedAt = this.now;
    op.reason = reason;
    this.#ended.push(op);
  }

  #step<R>(result: R, throwsClosed = false): RefStep<R> {
    const step = { result, throwsClosed, visits: this.#visits, ended: this.#ended };
    this.#visits = [];
    this.#ended = [];
    return step;
  }
}

/** A ManualClock that counts the timer callbacks it fires (for the cost of a jump, P14). */
export class CountingClock extends ManualClock {
  fired = 0;
  armed = 0;
  override setTimer(callback: () => void, delayMs: number, options?: SetTimerOptions): ClockTimer {
    this.armed++;
    return super.setTimer(
      () => {
        this.fired++;
        callback();
      },
      delayMs,
      options,
    );
  }
}

/** An upper bound on the wheel's levels for ticks up to `maxTick`. */
export function levelBound(wheelSize: number, maxTick: number): number {
  return Math.ceil(Math.log(maxTick + 2) / Math.log(wheelSize)) + 2;
}

// ---------------------------------------------------------------------------------------------
// Generators

export interface ModelConfig {
  readonly tickMs: number;
  readonly wheelSize: number;
  readonly expiryBatchSize: number | undefined;
  readonly startMs: number;
  readonly ref: boolean | undefined;
}

export const configArb: fc.Arbitrary<ModelConfig> = fc.record({
  tickMs: fc.constantFrom(10, 1, 7),
  wheelSize: fc.oneof(fc.integer({ min: 2, max: 64 }), fc.constantFrom(2, 3, 64)),
  expiryBatchSize: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined, freq: 2 }),
  startMs: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 1_000_000 }) },
    { weight: 1, arbitrary: fc.constant(2 ** 40 + 3) },
  ),
  ref: fc.option(fc.boolean(), { nil: undefined }),
});

/** Delays in [-5, 2^33] biased to small values and tick boundaries, plus Infinity. */
export function delayArb(tickMs: number): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 2, arbitrary: fc.integer({ min: -5, max: 0 }) },
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 6 * tickMs }) },
    {
      weight: 4,
      arbitrary: fc
        .tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: -1, max: 1 }))
        .map(([k, off]) => Math.max(1, k * tickMs + off)),
    },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 2 ** 33 }) },
    { weight: 1, arbitrary: fc.constantFrom(2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 33) },
    { weight: 1, arbitrary: fc.constant(Infinity) },
  );
}

export const keyArb: fc.Arbitrary<Key> = fc.constantFrom(...KEYS);

export function watchSpecArb(tickMs: number): fc.Arbitrary<WatchSpec> {
  return fc.record({
    keys: fc.array(keyArb, { minLength: 1, maxLength: 3 }),
    asString: fc.boolean(),
    delay: delayArb(tickMs),
    mode: fc.constantFrom<OpMode>('flag', 'flag', 'default', 'promise', 'promise-default'),
    completableNow: fc.boolean(),
    signal: fc.constantFrom<SignalMode>('none', 'none', 'live', 'live', 'pre-aborted'),
    throwingCallbacks: fc.constantFrom(false, false, false, true),
    throwAtWatch: fc.constantFrom<0 | 1 | 2>(0, 0, 0, 0, 0, 0, 1, 2),
  });
}

/**
 * `numRuns` scaled by the `PB_MODEL_RUNS_SCALE` environment variable (default 1), so a long
 * bug hunt is one command: `PB_MODEL_RUNS_SCALE=20 npx vitest run test/purgatory/model`.
 */
export function runs(n: number): number {
  const scale = Number(process.env['PB_MODEL_RUNS_SCALE'] ?? '1');
  return Math.max(1, Math.round(n * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/**
 * `itProp([arbitraries], params)(name, predicate)`: a vitest test that runs `fc.assert` over the
 * arbitraries, the shape of `@fast-check/vitest`'s `it.prop`. That package is not used here
 * because importing it costs about 3 s per test file with vitest 4 (its `buildTest` walks every
 * combination of vitest's chainable test modifiers), more than all these properties take to run.
 */
export function itProp<Ts extends [unknown, ...unknown[]]>(
  arbitraries: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> },
  params: fc.Parameters<[Ts]> = {},
): (name: string, predicate: (...args: Ts) => unknown) => void {
  const tuple = fc.tuple(...(arbitraries as unknown as fc.Arbitrary<unknown>[])) as unknown as fc.Arbitrary<Ts>;
  return (name, predicate) => {
    it(name, async () => {
      await fc.assert(
        fc.asyncProperty(tuple, async (args) => {
          await predicate(...args);
        }),
        params,
      );
    });
  };
}
