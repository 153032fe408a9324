/**
 * The purgatory: delayed operations that wait on keys until their condition holds, their
 * deadline passes, or they are canceled. Modelled on Kafka's `DelayedOperationPurgatory`,
 * redesigned for one JS thread.
 *
 * ## Life of an operation
 *
 * `idle` → (`tryCompleteElseWatch`) → `waiting` → exactly one of `completed`, `expired`,
 * `canceled`. `tryCompleteElseWatch` checks the condition, registers the operation on every
 * key, checks again (Kafka's last completion check, so a condition that turned true during
 * registration is never lost), then schedules the deadline on a {@link TimingWheel}. Every way out
 * goes through one function that sets the terminal state first, unlinks the operation from the
 * wheel and from every key's watcher list in O(1 + keys), and only then runs the callbacks: so a
 * callback that re-enters the purgatory sees it consistent, and an ended operation leaves nothing
 * behind. No purge pass exists because nothing stale is ever kept.
 *
 * ## Time
 *
 * Deadlines are rounded *up* to the tick, so nothing fires early. One timer is armed at a time,
 * for the earliest non-empty slot, `unref()`ed unless asked, and none while nothing is timed.
 * Expiry drains at most `expiryBatchSize` operations per turn, then yields to the event loop.
 *
 * ## Re-entrancy
 *
 * Callbacks may call back into the purgatory. `checkAndComplete(key)` visits the watchers that
 * were on the key when it started, in watch order (a snapshot: operations added meanwhile wait
 * for the next call). `tryComplete` is never entered twice for one operation, and `onComplete`
 * never runs while that operation's `tryComplete` is on the stack.
 *
 * @module
 */
import { onAbort, abortReason } from '../core/abort.js';
import type { Clock, ClockTimer } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import { CanceledError, ClosedError, InvalidArgumentError, InvalidStateError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import {
  aborts,
  CANCELED,
  COMPLETED,
  DelayedOperation,
  EXPIRED,
  FORCED,
  HAS_SIGNAL,
  IDLE,
  IN_TRY,
  PENDING,
  WAITING,
  type WatchLink,
  WatchList,
  WatchNode,
} from './operation.js';
import { MAX_TICK, TimingWheel } from './timing-wheel.js';

export { DelayedOperation, type DelayedOperationOptions, type OperationState } from './operation.js';

/** What {@link Purgatory.wait} resolves with: how the wait ended. */
export type WaitOutcome = 'completed' | 'expired';

/** Options for {@link Purgatory.wait}. */
export interface WaitOptions {
  /** How long to wait, in ms: `<= 0` checks once, `Infinity` waits until woken or canceled. */
  readonly timeoutMs: number;
  /** Aborting it rejects the wait with the signal's reason and removes it at once. */
  readonly signal?: AbortSignal;
  /**
   * The completion condition, checked when the wait starts and on each `checkAndComplete` of its
   * keys. Without it, the first `checkAndComplete` of any of its keys completes the wait.
   */
  readonly tryComplete?: () => boolean;
}

/** Options for {@link Purgatory}. */
export interface PurgatoryOptions {
  /**
   * A name for stats and diagnostics events.
   * @defaultValue `'purgatory'`
   */
  readonly name?: string;
  /**
   * The timing wheel's tick in ms, a positive integer. Deadlines are rounded up to it: a larger
   * tick means fewer timer wake-ups and later expiry (by less than one tick plus timer lag).
   * @defaultValue 10
   */
  readonly tickMs?: number;
  /**
   * Slots per wheel level, 2 to 64.
   * @defaultValue 64
   */
  readonly wheelSize?: number;
  /**
   * The time source. Pass a {@link ManualClock} in tests.
   * @defaultValue {@link realClock}
   */
  readonly clock?: Clock;
  /**
   * Expirations handled per event-loop turn; past it, the rest wait for the next turn so one
   * burst cannot stall the loop.
   * @defaultValue 10000
   */
  readonly expiryBatchSize?: number;
  /**
   * Keep the process alive while operations wait for their deadline.
   * @defaultValue `false`
   */
  readonly ref?: boolean;
  /**
   * Called when an operation's `onComplete`, `onExpiration` or `onCancel` throws. The purgatory
   * stays consistent either way. Without it, the error is rethrown in a microtask, where it
   * becomes an uncaught exception, as an EventEmitter listener's would.
   */
  readonly onError?: (error: unknown, operation: DelayedOperation) => void;
}

/** Counters reported by {@link Purgatory.stats}. */
export interface PurgatoryStats {
  /** The purgatory's name. */
  readonly name: string;
  /** The tick in ms. */
  readonly tickMs: number;
  /** Operations waiting now (Kafka's `NumDelayedOperations`). */
  readonly waiting: number;
  /** (operation, key) watch links now: the sum of keys over waiting operations. */
  readonly watched: number;
  /** Keys with at least one watcher. */
  readonly keys: number;
  /** Waiting operations with a finite deadline, i.e. held by the timing wheel. */
  readonly timed: number;
  /** Operations completed so far (by their condition or forced). */
  readonly completed: number;
  /** Operations expired at their deadline so far. */
  readonly expired: number;
  /** Operations canceled so far (by key, signal, callback error or close). */
  readonly canceled: number;
  /** Whether the one driving timer is armed. */
  readonly timerArmed: boolean;
}

/** The diagnostics channels the purgatory publishes on. */
export const purgatoryChannels = {
  /** `{ purgatory, operation }` when an operation completes. */
  complete: channel('purgatory', 'complete'),
  /** `{ purgatory, operation, latenessMs }` when an operation expires. */
  expire: channel('purgatory', 'expire'),
  /** `{ purgatory, operation, reason }` when an operation is canceled. */
  cancel: channel('purgatory', 'cancel'),
  /** `{ purgatory, operation, error }` when an operation's callback throws. */
  error: channel('purgatory', 'error'),
};

class PromiseOperation extends DelayedOperation {
  readonly #predicate: (() => boolean) | undefined;
  readonly #resolve: (outcome: WaitOutcome) => void;
  readonly #reject: (reason: unknown) => void;

  constructor(
    options: WaitOptions,
    resolve: (outcome: WaitOutcome) => void,
    reject: (reason: unknown) => void,
  ) {
    super(options.timeoutMs, options.signal === undefined ? undefined : options); // no allocation: WaitOptions carries `signal`
    this.#predicate = check.optionalFunction('tryComplete', options.tryComplete);
    this.#resolve = resolve;
    this.#reject = reject;
  }

  override tryComplete(): boolean {
    return this.#predicate === undefined ? this._state === WAITING : this.#predicate();
  }

  onComplete(): void {
    this.#resolve(this._state === EXPIRED ? 'expired' : 'completed');
  }

  override onCancel(reason: unknown): void {
    this.#reject(reason);
  }
}

/**
 * A Kafka-style purgatory: operations wait on keys with a deadline on a hierarchical timing
 * wheel, complete exactly once, and are woken by key.
 *
 * @example
 * ```ts
 * const purgatory = new Purgatory({ tickMs: 10 });
 * const messages: string[] = [];
 * const outcome = purgatory.wait('chat', { timeoutMs: 30_000, tryComplete: () => messages.length > 0 });
 * messages.push('hello');
 * purgatory.checkAndComplete('chat');
 * await outcome; // 'completed'
 * ```
 */
export class Purgatory extends Resource {
  /** The name given in the options. */
  readonly name: string;
  /** The tick in ms. */
  readonly tickMs: number;
  readonly #clock: Clock;
  readonly #wheel: TimingWheel<DelayedOperation>;
  /** A key's watchers: its one link while it has one watcher (no list needed), else its list. */
  readonly #watchers = new Map<string, WatchList | WatchLink>();
  readonly #batch: number;
  readonly #ref: boolean;
  readonly #onError: ((error: unknown, operation: DelayedOperation) => void) | undefined;
  #timer: ClockTimer | null = null;
  #canceledByKey: CanceledError | undefined;
  #armedTick = Infinity;
  #draining = false;
  /**
   * The tick the wheel counts from: the purgatory's creation. Ticks relative to it stay small
   * integers (an absolute `Date.now()` tick would be a boxed double in every operation).
   */
  readonly #origin: number;
  /** `checkAndComplete` calls on the stack. */
  #iterating = 0;
  /** Links unlinked while an iteration ran: their `_kNext` is cleared when the last one ends. */
  readonly #stale: WatchLink[] = [];
  /** The link the innermost `checkAndComplete` is checking now. */
  #cursor: WatchLink | null = null;
  #seq = 0;
  #waiting = 0;
  #watched = 0;
  #completed = 0;
  #expired = 0;
  #canceled = 0;

  /**
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option.
   */
  constructor(options?: PurgatoryOptions) {
    super();
    const opts = check.optionsObject('options', options);
    this.name = opts.name ?? 'purgatory';
    if (typeof this.name !== 'string') {
      throw new InvalidArgumentError(`Expected \`name\` to be a string, got ${check.describe(this.name)}`);
    }
    this.tickMs = check.integerInRange('tickMs', opts.tickMs ?? 10, 1, 2 ** 31 - 1);
    this.#wheel = new TimingWheel({ wheelSize: opts.wheelSize ?? 64 });
    this.#clock = check.optionalClock('clock', opts.clock);
    this.#batch = check.integerInRange('expiryBatchSize', opts.expiryBatchSize ?? 10_000, 1, 2 ** 31 - 1);
    this.#ref = opts.ref === true;
    this.#onError = check.optionalFunction('onError', opts.onError);
    this.#origin = Math.floor(this.#clock.now() / this.tickMs);
    this.#wheel.advance(this.#nowTick());
  }

  /**
   * Completes `op` now if its condition holds; otherwise watches it on every key and schedules
   * its deadline, checking the condition once more after registering (so a condition that turned
   * true meanwhile is not lost).
   *
   * An operation whose timeout is `<= 0` and whose condition does not hold expires before this
   * returns. One whose signal already aborted is canceled before this returns.
   *
   * @param op - A new operation (operations are single-use).
   * @param keys - One key or a non-empty list of keys (duplicates are ignored).
   * @returns `true` if the operation completed during this call by its condition.
   * @throws ClosedError (`PB_ERR_CLOSED`) after `close()`.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for an empty key list or a key that
   *   is not a string.
   * @throws InvalidStateError (`PB_ERR_INVALID_STATE`) when `op` was already watched.
   */
  tryCompleteElseWatch(op: DelayedOperation, keys: string | readonly string[]): boolean {
    this.assertOpen('tryCompleteElseWatch');
    if (!(op instanceof DelayedOperation)) {
      throw new InvalidArgumentError(`Expected \`op\` to be a DelayedOperation, got ${check.describe(op)}`);
    }
    if (op._state !== IDLE) {
      throw new InvalidStateError(`The operation is already ${op.state}: operations are single-use`);
    }
    const keyList = typeof keys === 'string' ? null : normalizeKeys(keys);
    op._owner = this;
    op._state = PENDING;
    const signal = (op._try & HAS_SIGNAL) !== 0 ? op.signal : undefined;
    if (signal?.aborted) {
      this.#end(op, CANCELED, abortReason(signal));
      return false;
    }
    if (this.#check(op) || this.#ended(op)) return op._state === COMPLETED;

    op._seq = this.#seq++;
    if (keyList === null) this.#link(op, keys as string);
    else for (let i = 0; i < keyList.length; i++) this.#link(i === 0 ? op : (op._nodes = new WatchNode(op, op._nodes)), keyList[i]!);
    this.#waiting++;

    if (this.#check(op) || this.#ended(op)) return op._state === COMPLETED;
    op._state = WAITING;
    // The signal may have aborted from inside tryComplete, before a listener could see it.
    if (signal?.aborted) {
      this.#end(op, CANCELED, abortReason(signal));
      return false;
    }

    const timeoutMs = op.timeoutMs;
    if (timeoutMs <= 0) {
      this.#end(op, EXPIRED, undefined);
      return false;
    }
    const now = this.#clock.now();
    const when = Math.max(0, Math.ceil((now + timeoutMs) / this.tickMs) - this.#origin);
    if (when <= MAX_TICK) {
      if (this.#wheel.size === 0) this.#wheel.advance(Math.floor(now / this.tickMs) - this.#origin);
      const fireTick = this.#wheel.add(op, when);
      if (fireTick <= this.#wheel.elapsed) this.#scheduleDrain();
      else if (!this.#draining && fireTick < this.#armedTick) this.#arm(fireTick);
    }
    if (signal !== undefined) aborts.set(op, onAbort(signal, (reason) => this.#end(op, CANCELED, reason)));
    return false;
  }

  /**
   * After a `tryComplete` call during watching: true if the op has ended. An op whose
   * `tryComplete` closed the purgatory is canceled here, as close() could not see it yet.
   */
  #ended(op: DelayedOperation): boolean {
    if (op._state === PENDING && this.closed) {
      this.#end(op, CANCELED, new ClosedError(`Purgatory ${JSON.stringify(this.name)} was closed`));
    }
    return op._state !== PENDING;
  }

  /**
   * Checks the condition of every operation watching `key` and completes those whose condition
   * holds, in watch order. Operations that start watching `key` during the call are not visited.
   *
   * @returns How many operations this call completed.
   * @throws ClosedError (`PB_ERR_CLOSED`) after `close()`.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) when `key` is not a string.
   */
  checkAndComplete(key: string): number {
    this.assertOpen('checkAndComplete');
    if (typeof key !== 'string') {
      throw new InvalidArgumentError(`Expected \`key\` to be a string, got ${check.describe(key)}`);
    }
    const list = this.#watchers.get(key);
    if (list === undefined) return 0;
    if (!(list instanceof WatchList)) {
      // The key's only watcher: no list to walk, no snapshot to keep.
      const op = list._op;
      return op._state === WAITING && (op._try & IN_TRY) === 0 && this.#check(op) ? 1 : 0;
    }
    const limit = this.#seq;
    let completed = 0;
    // A link unlinked meanwhile keeps its `_kNext` until the outermost iteration ends, which
    // leads to the next link still linked (or to one added later, which the seq check stops
    // at), so callbacks may unlink anything meanwhile.
    // The link being checked is not pushed to `#stale` when it leaves: this loop clears it.
    const outer = this.#cursor;
    this.#iterating++;
    try {
      for (let node = list.head; node !== null; ) {
        const op = node._op;
        if (op._seq >= limit) break;
        if (node._kList === null || op._state !== WAITING || (op._try & IN_TRY) !== 0) {
          node = node._kNext;
          continue;
        }
        this.#cursor = node;
        if (this.#check(op)) completed++;
        this.#cursor = outer;
        const next: WatchLink | null = node._kNext;
        if (node._kList === null) node._kNext = null;
        node = next;
      }
    } finally {
      this.#cursor = outer;
      if (--this.#iterating === 0) this.#clearStale();
    }
    return completed;
  }

  /**
   * Completes `op` now if it is still waiting here, whatever its condition says. Called from the
   * operation's own `tryComplete`, the completion happens right after `tryComplete` returns
   * (unless the operation is canceled before then: cancellation wins).
   *
   * @returns `true` if the operation completed (or will, as just described).
   */
  forceComplete(op: DelayedOperation): boolean {
    if (op._owner !== this || (op._state !== WAITING && op._state !== PENDING)) return false;
    if ((op._try & IN_TRY) !== 0) {
      op._try |= FORCED;
      return true;
    }
    this.#end(op, COMPLETED, undefined);
    return true;
  }

  /**
   * Cancels one waiting operation: it leaves every key and the wheel, and its `onCancel` runs.
   *
   * @param reason - Passed to `onCancel` (a promise from {@link Purgatory.wait} rejects with it).
   * @defaultValue `reason` is a {@link CanceledError}
   * @returns `true` if the operation was waiting here and is now canceled.
   */
  cancel(op: DelayedOperation, reason?: unknown): boolean {
    if (op._owner !== this || (op._state !== WAITING && op._state !== PENDING)) return false;
    this.#end(op, CANCELED, reason ?? new CanceledError('The operation was canceled'));
    return true;
  }

  /**
   * Cancels every operation watching `key`, removing each from all its keys and the wheel,
   * without completing it (Kafka's `cancelForKey`).
   *
   * @param reason - Passed to each `onCancel`.
   * @defaultValue `reason` is a {@link CanceledError} (one instance, shared)
   * @returns The operations canceled, in watch order; empty for an unknown key.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) when `key` is not a string.
   */
  cancelForKey(key: string, reason?: unknown): DelayedOperation[] {
    if (typeof key !== 'string') {
      throw new InvalidArgumentError(`Expected \`key\` to be a string, got ${check.describe(key)}`);
    }
    const list = this.#watchers.get(key);
    if (list === undefined) return [];
    const ops: DelayedOperation[] = [];
    if (list instanceof WatchList) for (let node = list.head; node !== null; node = node._kNext) ops.push(node._op);
    else ops.push(list._op);
    // One shared error by default: building one (and its stack) per call would cost more than the cancel.
    const why = reason ?? (this.#canceledByKey ??= new CanceledError('The operation was canceled by cancelForKey()'));
    const canceled: DelayedOperation[] = [];
    for (const op of ops) {
      if (op._state === WAITING || op._state === PENDING) {
        this.#end(op, CANCELED, why);
        canceled.push(op);
      }
    }
    return canceled;
  }

  /**
   * Waits on one or more keys: the promise form of {@link Purgatory.tryCompleteElseWatch}.
   *
   * @returns `'completed'` when the condition held (or, without one, when a key was checked),
   *   `'expired'` when the timeout passed first.
   * @throws (rejects) the signal's reason when aborted; {@link CanceledError} when canceled by
   *   key; {@link ClosedError} (`PB_ERR_CLOSED`) when the purgatory is or gets closed;
   *   {@link InvalidArgumentError} for bad keys or options; whatever `tryComplete` throws.
   */
  wait(keys: string | readonly string[], options: WaitOptions): Promise<WaitOutcome> {
    return new Promise<WaitOutcome>((resolve, reject) => {
      const opts = check.optionsObject('options', options) as WaitOptions;
      this.tryCompleteElseWatch(new PromiseOperation(opts, resolve, reject), keys);
    });
  }

  /** Operations waiting now (Kafka's `numDelayed`). */
  get size(): number {
    return this.#waiting;
  }

  /** Operations waiting now; the same as {@link Purgatory.size}. */
  numDelayed(): number {
    return this.#waiting;
  }

  /** (operation, key) watch links now: exact, since ended operations are unlinked at once. */
  watched(): number {
    return this.#watched;
  }

  /** How many operations watch `key` now. */
  watcherCount(key: string): number {
    const list = this.#watchers.get(key);
    return list === undefined ? 0 : list instanceof WatchList ? list.size : 1;
  }

  /** A snapshot of the counters. */
  stats(): PurgatoryStats {
    return {
      name: this.name,
      tickMs: this.tickMs,
      waiting: this.#waiting,
      watched: this.#watched,
      keys: this.#watchers.size,
      timed: this.#wheel.size,
      completed: this.#completed,
      expired: this.#expired,
      canceled: this.#canceled,
      timerArmed: this.#timer !== null,
    };
  }

  /** Checks internal invariants and throws on the first broken one. For tests. @internal */
  checkInvariants(): void {
    this.#wheel.checkInvariants();
    let watched = 0;
    const ops = new Set<DelayedOperation>();
    for (const [key, found] of this.#watchers) {
      if (!(found instanceof WatchList)) {
        if (found._kList !== key || found._kPrev !== null || found._kNext !== null) throw new Error(`broken single watcher for ${key}`);
        if (found._op._state !== WAITING && found._op._state !== PENDING) throw new Error(`ended operation still watches ${key}`);
        ops.add(found._op);
        watched++;
        continue;
      }
      const list = found;
      if (list.size === 0 || list.head === null) throw new Error(`empty watcher list kept for ${key}`);
      let n = 0;
      let prev: WatchLink | null = null;
      for (let node: WatchLink | null = list.head; node !== null; node = node._kNext) {
        if (node._kList !== list || node._kPrev !== prev) throw new Error(`broken watcher list for ${key}`);
        if (node._op._state !== WAITING && node._op._state !== PENDING) {
          throw new Error(`ended operation still watches ${key}`);
        }
        ops.add(node._op);
        prev = node;
        n++;
      }
      if (prev !== list.tail || n !== list.size) throw new Error(`watcher list size/tail wrong for ${key}`);
      watched += n;
    }
    if (watched !== this.#watched) throw new Error(`watched ${this.#watched} but ${watched} links`);
    if (ops.size !== this.#waiting) throw new Error(`waiting ${this.#waiting} but ${ops.size} operations`);
    if (this.#iterating === 0 && this.#stale.length !== 0) throw new Error(`${this.#stale.length} stale links kept`);
    const timerExpected = this.#wheel.size > 0 && !this.#draining && this.#wheel.dueCount === 0;
    if (timerExpected !== (this.#timer !== null)) {
      throw new Error(`timer armed: ${this.#timer !== null}, timed: ${this.#wheel.size}, draining: ${this.#draining}`);
    }
  }

  protected onClose(): void {
    this.#cancelAll(new ClosedError(`Purgatory ${JSON.stringify(this.name)} was closed`));
  }

  protected onDestroy(reason: unknown): void {
    this.#cancelAll(reason ?? new ClosedError(`Purgatory ${JSON.stringify(this.name)} was destroyed`));
  }

  #cancelAll(reason: unknown): void {
    this.#disarm();
    const ops: DelayedOperation[] = [];
    for (const list of this.#watchers.values()) {
      if (list instanceof WatchList) for (let node = list.head; node !== null; node = node._kNext) ops.push(node._op);
      else ops.push(list._op);
    }
    for (const op of ops) {
      if (op._state === WAITING || op._state === PENDING) this.#end(op, CANCELED, reason);
    }
  }

  #nowTick(): number {
    return Math.floor(this.#clock.now() / this.tickMs) - this.#origin;
  }

  /** Appends `link` (an op for its first key, a node for the others) to `key`'s watchers. */
  #link(link: WatchLink, key: string): void {
    // Duplicate keys in a list were removed by normalizeKeys.
    const found = this.#watchers.get(key);
    this.#watched++;
    if (found === undefined) {
      // The key's first watcher is the map's value itself: a unique key costs no list.
      link._kList = key;
      link._kPrev = null;
      this.#watchers.set(key, link);
      return;
    }
    let list: WatchList;
    if (found instanceof WatchList) list = found;
    else {
      // A second watcher: the key gets a list, headed by the first.
      list = new WatchList(key);
      list.head = list.tail = found;
      list.size = 1;
      found._kList = list;
      this.#watchers.set(key, list);
    }
    const tail = list.tail;
    link._kList = list;
    link._kPrev = tail;
    if (tail !== null) tail._kNext = link;
    else list.head = link;
    list.tail = link;
    list.size++;
  }

  /** Runs `op.tryComplete()` guarded; completes the op if it said yes. */
  #check(op: DelayedOperation): boolean {
    op._try |= IN_TRY;
    let ok: boolean;
    try {
      ok = op.tryComplete() === true;
    } catch (error) {
      op._try &= HAS_SIGNAL;
      if (op._state === WAITING || op._state === PENDING) this.#end(op, CANCELED, error);
      return false;
    }
    const forced = (op._try & FORCED) !== 0;
    op._try &= HAS_SIGNAL;
    if ((ok || forced) && (op._state === WAITING || op._state === PENDING)) this.#end(op, COMPLETED, undefined);
    return (ok || forced) && op._state === COMPLETED;
  }

  /** The one way out: terminal state first, unlink everything, then the callbacks. */
  #end(op: DelayedOperation, state: number, reason: unknown): void {
    op._state = state;
    if (op._tSlot !== -1) {
      this.#wheel.remove(op);
      if (this.#wheel.size === 0) this.#disarm();
    }
    if (op._kList !== null) {
      this.#waiting--;
      this.#unlink(op);
      for (let node = op._nodes; node !== null; node = node._opNext) this.#unlink(node);
      op._nodes = null;
    }
    if ((op._try & HAS_SIGNAL) !== 0) {
      const abort = aborts.get(op);
      if (abort !== undefined) {
        aborts.delete(op);
        abort[Symbol.dispose]();
      }
    }
    op._owner = null;
    if (state === COMPLETED) {
      this.#completed++;
      if (purgatoryChannels.complete.hasSubscribers) {
        purgatoryChannels.complete.publish({ purgatory: this, operation: op });
      }
      this.#call(op, 0, undefined);
    } else if (state === EXPIRED) {
      this.#expired++;
      if (purgatoryChannels.expire.hasSubscribers) {
        // A timed op is late by how far past its (rounded-up) slot it fired; one that expired at
        // once (timeout <= 0) never entered the wheel, and is late by how far its timeout was below 0.
        const latenessMs = op._tWhen > 0 ? this.#clock.now() - (op._tWhen + this.#origin) * this.tickMs : Math.max(0, -op.timeoutMs);
        purgatoryChannels.expire.publish({ purgatory: this, operation: op, latenessMs });
      }
      this.#call(op, 0, undefined);
      this.#call(op, 1, undefined);
    } else {
      this.#canceled++;
      if (purgatoryChannels.cancel.hasSubscribers) {
        purgatoryChannels.cancel.publish({ purgatory: this, operation: op, reason });
      }
      this.#call(op, 2, reason);
    }
  }

  #call(op: DelayedOperation, which: 0 | 1 | 2, reason: unknown): void {
    try {
      if (which === 0) op.onComplete();
      else if (which === 1) op.onExpiration();
      else op.onCancel(reason);
    } catch (error) {
      if (purgatoryChannels.error.hasSubscribers) {
        purgatoryChannels.error.publish({ purgatory: this, operation: op, error });
      }
      if (this.#onError !== undefined) this.#onError(error, op);
      else
        queueMicrotask(() => {
          throw error;
        });
    }
  }

  #unlink(link: WatchLink): void {
    const list = link._kList!;
    this.#watched--;
    if (typeof list === 'string') {
      // The key's only watcher (its `_kPrev` and `_kNext` are null): the map held it directly.
      link._kList = null;
      this.#watchers.delete(list);
      return;
    }
    const prev = link._kPrev;
    const next = link._kNext;
    if (prev !== null) prev._kNext = next;
    else list.head = next;
    if (next !== null) next._kPrev = prev;
    else list.tail = prev;
    link._kList = null;
    link._kPrev = null;
    // While an iteration runs, `_kNext` stays so one standing here moves on through it; it is
    // cleared when the iteration ends, so an ended op the app keeps holds no other op.
    if (this.#iterating === 0) link._kNext = null;
    else if (next !== null && link !== this.#cursor) this.#stale.push(link);
    if (--list.size === 0 && this.#watchers.get(list.key) === list) this.#watchers.delete(list.key);
  }

  #clearStale(): void {
    const stale = this.#stale;
    for (let i = 0; i < stale.length; i++) stale[i]!._kNext = null;
    stale.length = 0;
  }

  #arm(tick: number): void {
    if (this.#timer !== null) this.#timer.cancel();
    this.#armedTick = tick;
    this.#timer = this.#clock.setTimer(this.#onTimer, (tick + this.#origin) * this.tickMs - this.#clock.now(), { ref: this.#ref });
  }

  #disarm(): void {
    if (this.#timer !== null) {
      this.#timer.cancel();
      this.#timer = null;
    }
    this.#armedTick = Infinity;
  }

  readonly #onTimer = (): void => {
    this.#timer = null;
    this.#armedTick = Infinity;
    this.#expireDue();
  };

  readonly #continueDrain = (): void => {
    this.#draining = false;
    if (!this.closed) this.#expireDue();
  };

  #scheduleDrain(): void {
    this.#disarm();
    if (!this.#draining) {
      this.#draining = true;
      this.#clock.defer(this.#continueDrain);
    }
  }

  /** Advances the wheel to now and expires what is due, at most one batch per turn. */
  #expireDue(): void {
    const wheel = this.#wheel;
    // Both cascading a coarse slot and expiring count against the batch: one turn does at most
    // `expiryBatchSize` of each, and the rest waits for the next turn.
    const caughtUp = wheel.advance(this.#nowTick(), this.#batch);
    for (let n = 0; n < this.#batch; n++) {
      const op = wheel.popDue();
      if (op === null) break;
      if (op._state === WAITING) this.#end(op, EXPIRED, undefined);
    }
    if (this.closed) return;
    if (!caughtUp || wheel.dueCount > 0) this.#scheduleDrain();
    else if (!this.#draining) {
      const next = wheel.nextTick();
      if (next === Infinity) this.#disarm();
      else if (next < this.#armedTick) this.#arm(next);
    }
  }
}

function normalizeKeys(keys: readonly string[]): readonly string[] {
  if (!Array.isArray(keys)) {
    throw new InvalidArgumentError(`Expected \`keys\` to be a string or an array of strings, got ${check.describe(keys)}`);
  }
  if (keys.length === 0) throw new InvalidArgumentError('Expected `keys` to hold at least one key, got an empty array');
  for (let i = 0; i < keys.length; i++) {
    if (typeof keys[i] !== 'string') {
      throw new InvalidArgumentError(`Expected \`keys[${i}]\` to be a string, got ${check.describe(keys[i])}`);
    }
  }
  if (keys.length === 1) return keys;
  if (keys.length <= 8) {
    for (let i = 1; i < keys.length; i++) if (keys.indexOf(keys[i]!) < i) return [...new Set(keys)];
    return keys;
  }
  return [...new Set(keys)];
}
