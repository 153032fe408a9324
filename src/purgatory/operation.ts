/**
 * A {@link DelayedOperation} and the links that tie it to its keys' watcher lists. The operation
 * is its own timer entry (it extends the wheel's {@link TimerEntry}) and its own node in its
 * first key's list, so waiting on one key allocates nothing beyond the operation; each further
 * key costs one {@link WatchNode}. The {@link Purgatory} drives all of it.
 *
 * @module
 */
import * as check from '../core/validate.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Purgatory } from './purgatory.js';
import { TimerEntry } from './timing-wheel.js';

/** @internal */
export const IDLE = 0;
/** @internal */
export const PENDING = 1;
/** @internal */
export const WAITING = 2;
/** @internal */
export const COMPLETED = 3;
/** @internal */
export const EXPIRED = 4;
/** @internal */
export const CANCELED = 5;

/** @internal */
export const IN_TRY = 1;
/** @internal */
export const FORCED = 2;
/** @internal */
export const HAS_SIGNAL = 4;

/** The signal of each operation that has one, and its abort listener while it waits. @internal */
export const signals = new WeakMap<DelayedOperation, AbortSignal>();
/** @internal */
export const aborts = new WeakMap<DelayedOperation, Disposable>();

/**
 * Where a {@link DelayedOperation} is in its life: `idle` until watched, `waiting`, then exactly
 * one of `completed`, `expired` or `canceled`.
 */
export type OperationState = 'idle' | 'waiting' | 'completed' | 'expired' | 'canceled';

const STATE_NAMES: readonly OperationState[] = ['idle', 'waiting', 'waiting', 'completed', 'expired', 'canceled'];

/**
 * One link of a key's watcher list: an operation itself for its first key (so watching one key
 * allocates nothing), a {@link WatchNode} for each further key. @internal
 */
export interface WatchLink {
  /**
   * The list it is in; the key itself (a string) while it is the key's only watcher, stored
   * directly in the purgatory's map with no list; `null` once unlinked.
   */
  _kList: WatchList | string | null;
  _kPrev: WatchLink | null;
  /** Kept after unlinking while an iteration may stand here, so it can move on (see `#stale`). */
  _kNext: WatchLink | null;
  /** The operation this link belongs to. */
  readonly _op: DelayedOperation;
}

/** The link of an operation to its second, third... key. @internal */
export class WatchNode implements WatchLink {
  _kList: WatchList | string | null = null;
  _kPrev: WatchLink | null = null;
  _kNext: WatchLink | null = null;
  constructor(
    readonly _op: DelayedOperation,
    /** The op's next extra node. */
    readonly _opNext: WatchNode | null,
  ) {}
}

/**
 * The watchers of one key, in watch order, once it has had two at a time: a key with one watcher
 * maps straight to that link (most keys of a job-handle style app never get a list). @internal
 */
export class WatchList {
  head: WatchLink | null = null;
  tail: WatchLink | null = null;
  size = 0;
  constructor(readonly key: string) {}
}

/** Options for a {@link DelayedOperation}. */
export interface DelayedOperationOptions {
  /** Aborting it cancels the operation; `onCancel` gets the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * An operation that waits in a {@link Purgatory}. Subclass it and implement the hooks, as with
 * Kafka's `DelayedOperation`. The operation is its own timer entry and its own node in its first
 * key's watcher list, so waiting on one key allocates nothing beyond the operation; each further
 * key costs one small node.
 *
 * Operations are single-use: once ended, they cannot be watched again.
 *
 * @example
 * ```ts
 * class FetchOp extends DelayedOperation {
 *   constructor(readonly log: string[], readonly cursor: number, readonly reply: (n: number) => void) {
 *     super(30_000);
 *   }
 *   override tryComplete() { return this.log.length > this.cursor; }
 *   onComplete() { this.reply(this.log.length - this.cursor); }
 * }
 * purgatory.tryCompleteElseWatch(new FetchOp(log, log.length, send), 'topic-a');
 * log.push('x');
 * purgatory.checkAndComplete('topic-a'); // 1: the op's onComplete ran
 * ```
 */
export abstract class DelayedOperation extends TimerEntry {
  /** The timeout this operation was created with, in ms (`Infinity`: no deadline). */
  readonly timeoutMs: number;
  /** Aborting this signal cancels the operation with the signal's reason. */
  get signal(): AbortSignal | undefined {
    // Kept off the object: most operations have no signal, and each field costs every operation.
    return signals.get(this);
  }
  /** @internal */
  _state: number = IDLE;
  /**
   * Bits: 1 = inside its own `tryComplete`; 2 = `forceComplete` asked for meanwhile;
   * 4 = has a signal (so the WeakMaps are only consulted for operations that have one). @internal
   */
  _try = 0;
  /** Its link in the watcher list of its first key (the op is that list's node), or that key while it watches alone. @internal */
  _kList: WatchList | string | null = null;
  /** @internal */
  _kPrev: WatchLink | null = null;
  /** @internal */
  _kNext: WatchLink | null = null;
  /** Its links to its other keys, if it watches more than one. @internal */
  _nodes: WatchNode | null = null;
  /** Watch order, for snapshot iteration. @internal */
  _seq = 0;
  /** @internal */
  _owner: Purgatory | null = null;

  /**
   * @param timeoutMs - How long the operation may wait, in ms. `<= 0` expires it at once (after a
   *   first check of its condition); `Infinity` means no deadline.
   * @param options - `signal`: aborting it cancels the operation; `onCancel` gets the signal's reason.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) when `timeoutMs` is NaN or not a
   *   number, `options` is not an object (a bare AbortSignal included: pass `{ signal }`), or
   *   `signal` is not an AbortSignal.
   */
  constructor(timeoutMs: number, options?: DelayedOperationOptions) {
    super();
    // The common case (a plain number, no options) skips the validating calls.
    this.timeoutMs = typeof timeoutMs === 'number' && timeoutMs === timeoutMs ? timeoutMs : check.timeout('timeoutMs', timeoutMs);
    if (options !== undefined) {
      const signal = (options as DelayedOperationOptions | null)?.signal;
      if (signal !== undefined) {
        signals.set(this, check.optionalSignal('signal', signal)!);
        this._try = HAS_SIGNAL;
      } else if (typeof options !== 'object' || options === null || options instanceof AbortSignal) {
        throw new InvalidArgumentError(`Expected \`options\` to be an object such as \`{ signal }\`, got ${check.describe(options)}`);
      }
    }
  }

  /**
   * The completion condition: return `true` when the operation can complete now. Called when
   * it is watched, and by {@link Purgatory.checkAndComplete} on any of its keys; never called again
   * once it has ended, and never re-entered. It may call {@link DelayedOperation.forceComplete}.
   * A throw cancels the operation with the thrown value as reason.
   *
   * The default completes on the first `checkAndComplete` of any key after watching: a plain
   * wake-up by key.
   */
  tryComplete(): boolean {
    return this._state === WAITING;
  }

  /** Runs exactly once when the operation completes or expires (before `onExpiration`). */
  abstract onComplete(): void;

  /** Runs once, after `onComplete`, when the operation expired at its deadline. */
  onExpiration(): void {}

  /**
   * Runs once when the operation is canceled (by key, by its signal, or by the purgatory
   * closing); neither `onComplete` nor `onExpiration` runs then.
   * @param reason - Why: the signal's reason, a {@link CanceledError}, or a {@link ClosedError}.
   */
  onCancel(reason: unknown): void {
    void reason;
  }

  /** The op is its own link in its first key's list. @internal */
  get _op(): DelayedOperation {
    return this;
  }

  /** Where the operation is in its life. */
  get state(): OperationState {
    return STATE_NAMES[this._state]!;
  }

  /** `true` once the operation has ended, in any way. */
  get isDone(): boolean {
    return this._state >= COMPLETED;
  }

  /**
   * Completes the operation now, whatever its condition says (if it still waits).
   * @returns `true` if this call completed it.
   */
  forceComplete(): boolean {
    return this._owner !== null && this._owner.forceComplete(this);
  }
}
