/**
 * A hierarchical timing wheel, after Kafka's `TimingWheel` and tokio's wheel, for one JS thread.
 *
 * ## How it works
 *
 * Time is counted in integer ticks. Level 0 has `wheelSize` slots of one tick each; level `i` has
 * `wheelSize` slots of `wheelSize^i` ticks each. Levels are created on demand, so a wheel holding
 * only short delays stays one level deep, and a delay of years costs a handful of levels, never a
 * loop per tick.
 *
 * An entry due at tick `when` goes into the lowest level `i` whose level-`i+1` block contains both
 * `when` and the wheel's `elapsed` tick (the last tick processed), in the slot of `when`'s digit
 * at that level. Two invariants follow, and everything else rests on them:
 *
 * 1. Every occupied slot starts after `elapsed`: at each level, occupied digits are greater than
 *    `elapsed`'s digit, and lie in `elapsed`'s block of the next level.
 * 2. Every slot of level `i` starts before every slot of level `i+1`.
 *
 * So the next slot to process is the lowest set bit of the lowest non-empty level, found with two
 * 32-bit occupancy masks per level and `Math.clz32`; no heap of buckets is needed. Processing a
 * level-0 slot moves its entries to the due list; processing a higher slot moves `elapsed` to the
 * slot's start and re-inserts its entries, which land in lower levels (or the due list, if due
 * exactly then). An entry is re-inserted at most once per level, so advancing by any amount costs
 * O(expired entries x levels + levels), not O(elapsed ticks).
 *
 * ## Intrusive links
 *
 * Entries carry their own `prev`/`next` links and slot index ({@link TimerEntry}), so insert,
 * remove and move are O(1) with no allocation, and a removed entry leaves nothing behind.
 *
 * ## What it does not do
 *
 * The wheel holds no clock and no timer: its owner converts times to ticks, calls
 * {@link TimingWheel.advance}, and arms one real timer for {@link TimingWheel.nextTick}.
 * Rounding deadlines *up* to a tick (so nothing fires early) is the owner's choice too; the
 * {@link Purgatory} makes it.
 *
 * @module
 */
import { integerInRange, optionsObject } from '../core/validate.js';
import { InvalidArgumentError } from '../core/errors.js';

/** Slot index of an entry in no list. */
const NONE = -1;
/** Slot index of an entry in the due list. */
const DUE = -2;

/**
 * The links a {@link TimingWheel} keeps inside each entry. {@link DelayedOperation} extends it so
 * an operation needs no separate timer object. Not exported: apps see it only as the base of
 * `DelayedOperation` (its one public member is `scheduled`).
 */
export class TimerEntry {
  /** @internal */
  _tPrev: TimerEntry | null = null;
  /** @internal */
  _tNext: TimerEntry | null = null;
  /** Slot index (level x wheelSize + slot), `-2` when due, `-1` when in no list. @internal */
  _tSlot: number = NONE;
  /** The tick the entry is due at. @internal */
  _tWhen = 0;

  /** Whether the entry is in a wheel (scheduled or due). */
  get scheduled(): boolean {
    return this._tSlot !== NONE;
  }
}

/** Options for {@link TimingWheel}. @internal */
export interface TimingWheelOptions {
  /**
   * Slots per level: 2 to 64. More slots mean fewer levels and fewer re-insertions.
   * @defaultValue 64
   */
  readonly wheelSize?: number;
  /**
   * The tick the wheel starts at (its first `elapsed` value).
   * @defaultValue 0
   */
  readonly startTick?: number;
}

/** The largest tick a wheel accepts; past it, float division would no longer be exact. @internal */
export const MAX_TICK = 2 ** 52;

const ctz = (x: number): number => 31 - Math.clz32(x & -x);

/**
 * A hierarchical timing wheel over integer ticks, with levels on demand, O(1) insert and remove,
 * and a due list drained by its owner.
 *
 * @typeParam T - The entry type; any subclass of {@link TimerEntry}.
 *
 * @example
 * ```ts
 * class Job extends TimerEntry { constructor(readonly name: string) { super(); } }
 * const wheel = new TimingWheel<Job>();
 * wheel.add(new Job('a'), 5);
 * wheel.advance(5);
 * wheel.popDue()?.name; // 'a'
 * ```
 * @internal
 */
export class TimingWheel<T extends TimerEntry = TimerEntry> {
  /** Slots per level. */
  readonly wheelSize: number;
  /** `#pow[i]` is `wheelSize ** i`. */
  readonly #pow: number[];
  /** Slot list heads, level by level. */
  readonly #heads: (TimerEntry | null)[] = [];
  /** Occupancy bits of slots 0-31 and 32-63, per level. */
  readonly #lo: number[] = [];
  readonly #hi: number[] = [];
  #levels = 0;
  #elapsed: number;
  /** A slot whose processing ran out of budget, finished first by the next `advance`; -1: none. */
  #partial = -1;
  #size = 0;
  #dueHead: TimerEntry | null = null;
  #dueTail: TimerEntry | null = null;
  #dueCount = 0;

  constructor(options?: TimingWheelOptions) {
    const opts = optionsObject('options', options);
    this.wheelSize = integerInRange('wheelSize', opts.wheelSize ?? 64, 2, 64);
    this.#elapsed = integerInRange('startTick', opts.startTick ?? 0, 0, MAX_TICK);
    this.#pow = [1, this.wheelSize];
  }

  /** Entries held, scheduled or due. */
  get size(): number {
    return this.#size;
  }

  /** Entries that are due and wait for {@link TimingWheel.popDue}. */
  get dueCount(): number {
    return this.#dueCount;
  }

  /** The last tick processed: every entry due at or before it is in the due list. */
  get elapsed(): number {
    return this.#elapsed;
  }

  /** Levels created so far. */
  get levels(): number {
    return this.#levels;
  }

  /**
   * Schedules `entry` for tick `when`, moving it if it was already in this wheel.
   * An entry due at or before {@link TimingWheel.elapsed} goes straight to the due list.
   *
   * @param entry - The entry; it must not be in another wheel.
   * @param when - An integer tick, at most {@link MAX_TICK}.
   * @returns The tick at which the wheel must next be advanced for this entry: its own tick, the
   *   start of the coarser slot that will cascade it, or `elapsed` when it is due already.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) when `when` is not an integer tick.
   */
  add(entry: T, when: number): number {
    if (!Number.isInteger(when) || when < 0 || when > MAX_TICK) {
      throw new InvalidArgumentError(`Expected \`when\` to be an integer tick from 0 to 2^52, got \`${when}\``);
    }
    if (entry._tSlot !== NONE) this.remove(entry);
    entry._tWhen = when;
    this.#size++;
    return this.#place(entry);
  }

  /**
   * Removes `entry` from the wheel in O(1).
   * @returns `false` when the entry was not in the wheel.
   */
  remove(entry: T): boolean {
    const slot = entry._tSlot;
    if (slot === NONE) return false;
    const prev = entry._tPrev;
    const next = entry._tNext;
    if (next !== null) next._tPrev = prev;
    if (slot === DUE) {
      if (prev !== null) prev._tNext = next;
      else this.#dueHead = next;
      if (next === null) this.#dueTail = prev;
      this.#dueCount--;
    } else if (prev !== null) {
      prev._tNext = next;
    } else {
      this.#heads[slot] = next;
      if (next === null) this.#clearBit(slot);
    }
    entry._tPrev = entry._tNext = null;
    entry._tSlot = NONE;
    this.#size--;
    return true;
  }

  /**
   * Processes every slot that starts at or before tick `now`: due entries move to the due list,
   * coarser slots cascade down. Afterwards `elapsed` is `now` (it never moves back).
   *
   * @param budget - The most entries to move (down a level or to the due list) in this call, so
   *   one call cannot stall the event loop. When it runs out, the slot in progress is finished by
   *   the next call, before anything else; {@link TimingWheel.nextTick} says work is due meanwhile.
   * @returns `true` when every slot due by `now` was processed, `false` when the budget ran out.
   */
  advance(now: number, budget = Infinity): boolean {
    const wheelSize = this.wheelSize;
    let moved = 0;
    for (;;) {
      let idx = this.#partial;
      if (idx === -1) {
        const level = this.#lowestLevel();
        if (level === -1) break;
        const slot = this.#firstSlot(level);
        const start = this.#slotStart(level, slot);
        if (start > now) break;
        this.#elapsed = start;
        idx = level * wheelSize + slot;
      }
      const toDue = idx < wheelSize;
      let entry = this.#heads[idx] ?? null;
      while (entry !== null) {
        if (moved >= budget) {
          this.#partial = idx;
          return false;
        }
        const next = entry._tNext;
        this.#heads[idx] = next;
        if (next !== null) next._tPrev = null;
        entry._tPrev = entry._tNext = null;
        if (toDue) this.#pushDue(entry);
        else this.#place(entry); // lands in a lower level (or the due list), never back here
        moved++;
        entry = next;
      }
      this.#clearBit(idx);
      this.#partial = -1;
    }
    if (now > this.#elapsed) this.#elapsed = Math.min(now, MAX_TICK);
    return true;
  }

  /** Takes the first due entry off the due list, or returns `null` when none is due. */
  popDue(): T | null {
    const entry = this.#dueHead;
    if (entry === null) return null;
    this.remove(entry as T);
    return entry as T;
  }

  /**
   * The tick at which the wheel next has work: `elapsed` when entries are due now, the start of
   * the earliest occupied slot otherwise, `Infinity` when the wheel is empty.
   */
  nextTick(): number {
    if (this.#dueCount > 0 || (this.#partial !== -1 && this.#heads[this.#partial] != null)) return this.#elapsed;
    const level = this.#lowestLevel();
    return level === -1 ? Infinity : this.#slotStart(level, this.#firstSlot(level));
  }

  /**
   * Checks the structural invariants and throws on the first broken one. For tests: O(size).
   * @internal
   */
  checkInvariants(): void {
    let count = 0;
    const fail = (msg: string): never => {
      throw new Error(`TimingWheel invariant broken: ${msg}`);
    };
    for (let level = 0; level < this.#levels; level++) {
      const span = this.#pow[level + 1]!;
      const base = Math.floor(this.#elapsed / span) * span;
      for (let slot = 0; slot < this.wheelSize; slot++) {
        const idx = level * this.wheelSize + slot;
        const head = this.#heads[idx] ?? null;
        if ((head !== null) !== this.#hasBit(idx)) fail(`occupancy bit of slot ${idx} disagrees with its list`);
        const start = base + slot * this.#pow[level]!;
        let prev: TimerEntry | null = null;
        for (let e = head; e !== null; e = e._tNext) {
          if (e._tSlot !== idx) fail(`entry in slot ${idx} says it is in ${e._tSlot}`);
          if (e._tPrev !== prev) fail(`broken prev link in slot ${idx}`);
          if (start <= this.#elapsed && !(idx === this.#partial && start === this.#elapsed)) {
            fail(`occupied slot ${idx} starts at ${start}, not after elapsed ${this.#elapsed}`);
          }
          if (e._tWhen < start || e._tWhen >= start + this.#pow[level]!) fail(`entry due ${e._tWhen} outside slot ${idx}`);
          prev = e;
          count++;
        }
      }
    }
    let due = 0;
    let prev: TimerEntry | null = null;
    for (let e = this.#dueHead; e !== null; e = e._tNext) {
      if (e._tSlot !== DUE || e._tPrev !== prev) fail('broken due list');
      if (e._tWhen > this.#elapsed) fail(`due entry ${e._tWhen} is after elapsed ${this.#elapsed}`);
      prev = e;
      due++;
    }
    if (prev !== this.#dueTail) fail('due tail is wrong');
    if (due !== this.#dueCount) fail(`dueCount ${this.#dueCount} but ${due} due entries`);
    if (count + due !== this.#size) fail(`size ${this.#size} but ${count + due} entries`);
  }

  #place(entry: TimerEntry): number {
    const when = entry._tWhen;
    const elapsed = this.#elapsed;
    if (when <= elapsed) {
      this.#pushDue(entry);
      return elapsed;
    }
    let level = 0;
    while (Math.floor(when / this.#span(level + 1)) !== Math.floor(elapsed / this.#span(level + 1))) level++;
    while (this.#levels <= level) this.#addLevel();
    const width = this.#pow[level]!;
    const digit = Math.floor(when / width);
    const idx = level * this.wheelSize + (digit % this.wheelSize);
    const head = this.#heads[idx] ?? null;
    entry._tPrev = null;
    entry._tNext = head;
    if (head !== null) head._tPrev = entry;
    else this.#setBit(idx);
    this.#heads[idx] = entry;
    entry._tSlot = idx;
    return digit * width;
  }

  #pushDue(entry: TimerEntry): void {
    entry._tSlot = DUE;
    entry._tNext = null;
    entry._tPrev = this.#dueTail;
    if (this.#dueTail !== null) this.#dueTail._tNext = entry;
    else this.#dueHead = entry;
    this.#dueTail = entry;
    this.#dueCount++;
  }

  #span(level: number): number {
    while (this.#pow.length <= level) this.#pow.push(this.#pow[this.#pow.length - 1]! * this.wheelSize);
    return this.#pow[level]!;
  }

  #addLevel(): void {
    for (let i = 0; i < this.wheelSize; i++) this.#heads.push(null);
    this.#lo.push(0);
    this.#hi.push(0);
    this.#span(this.#levels + 2);
    this.#levels++;
  }

  #slotStart(level: number, slot: number): number {
    const span = this.#pow[level + 1]!;
    return Math.floor(this.#elapsed / span) * span + slot * this.#pow[level]!;
  }

  #lowestLevel(): number {
    for (let level = 0; level < this.#levels; level++) {
      if (this.#lo[level] !== 0 || this.#hi[level] !== 0) return level;
    }
    return -1;
  }

  #firstSlot(level: number): number {
    const lo = this.#lo[level]!;
    return lo !== 0 ? ctz(lo) : 32 + ctz(this.#hi[level]!);
  }

  #setBit(idx: number): void {
    const level = Math.floor(idx / this.wheelSize);
    const slot = idx - level * this.wheelSize;
    if (slot < 32) this.#lo[level] = this.#lo[level]! | (1 << slot);
    else this.#hi[level] = this.#hi[level]! | (1 << (slot - 32));
  }

  #clearBit(idx: number): void {
    const level = Math.floor(idx / this.wheelSize);
    const slot = idx - level * this.wheelSize;
    if (slot < 32) this.#lo[level] = this.#lo[level]! & ~(1 << slot);
    else this.#hi[level] = this.#hi[level]! & ~(1 << (slot - 32));
  }

  #hasBit(idx: number): boolean {
    const level = Math.floor(idx / this.wheelSize);
    const slot = idx - level * this.wheelSize;
    return slot < 32 ? (this.#lo[level]! & (1 << slot)) !== 0 : (this.#hi[level]! & (1 << (slot - 32))) !== 0;
  }
}
