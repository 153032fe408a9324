/**
 * An array queue with a moving head: O(1) `push` and `shift`, compacted now and then. The one
 * queue of the library (subscription queues, message logs, the sidecar outbox), so the
 * compaction rule lives in one place: when the queue empties it starts over, and when more than
 * half of a large array is dead head it is sliced away.
 *
 * Shifted slots are cleared at once, so a consumed item is garbage as soon as it leaves.
 *
 * @module
 * @internal
 */

/** Dead head slots below which the array is never sliced (slicing small arrays is waste). */
const COMPACT_AT = 1024;

/** An array queue with a moving head. @internal */
export class Deque<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** How many items are queued. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Appends `item` at the tail. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** The head item, or `undefined` when empty. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** The item `index` places after the head (0 is the head), or `undefined` out of range. */
  at(index: number): T | undefined {
    return index >= 0 && index < this.length ? this.#items[this.#head + index] : undefined;
  }

  /**
   * The items from `start` to `end` (exclusive) places after the head, as a new array, like
   * `Array.prototype.slice` with indexes clamped to [0, length].
   */
  slice(start: number, end: number = this.length): T[] {
    const from = this.#head + Math.min(Math.max(start, 0), this.length);
    const to = this.#head + Math.min(Math.max(end, 0), this.length);
    return this.#items.slice(from, Math.max(from, to)) as T[];
  }

  /**
   * For a queue ordered by `key` (ascending): how many items from the head have a key of at most
   * `value`, that is the index of the first item whose key is above it (`length` when none is).
   * A binary search: O(log n).
   */
  countAtMost(key: (item: T) => number, value: number): number {
    const items = this.#items;
    let lo = this.#head;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (key(items[mid] as T) <= value) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.#head;
  }

  /** Replaces the item `index` places after the head. The index must be in range. */
  set(index: number, item: T): void {
    if (!(index >= 0 && index < this.length)) throw new RangeError(`Deque index ${index} out of range`);
    this.#items[this.#head + index] = item;
  }

  /** The tail item, or `undefined` when empty. */
  last(): T | undefined {
    return this.length === 0 ? undefined : this.#items[this.#items.length - 1];
  }

  /** Removes and returns the head item, or `undefined` when empty. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#advance(this.#head + 1);
    return item;
  }

  /** Removes `count` items from the head (all of them when `count` is larger). */
  drop(count: number): void {
    const end = Math.min(this.#items.length, this.#head + Math.max(0, count));
    for (let i = this.#head; i < end; i++) this.#items[i] = undefined;
    this.#advance(end);
  }

  /** Puts `items` (in order) before the current head. */
  unshiftAll(items: readonly T[]): void {
    if (items.length === 0) return;
    this.#items = [...items, ...this.#items.slice(this.#head)];
    this.#head = 0;
  }

  /** Removes and returns every item, head first. */
  drain(): T[] {
    const all = this.#items.slice(this.#head) as T[];
    this.clear();
    return all;
  }

  /** Removes every item. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }

  /** The items, head first. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as T;
  }

  /** Moves the head to `head`: starts over when empty, slices when the dead part is over half. */
  #advance(head: number): void {
    if (head >= this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (head > COMPACT_AT && head * 2 > this.#items.length) {
      this.#items = this.#items.slice(head);
      this.#head = 0;
    } else {
      this.#head = head;
    }
  }
}
