/**
 * {@link DeadlineHeap}: one timer for every request deadline of a channel.
 *
 * A channel may have thousands of requests in flight, each with its own deadline. Instead of a
 * timer each (CONVENTIONS.md 7: few timers, reused), the pending requests sit in a binary
 * min-heap by deadline and one timer is armed for the earliest. A request settled before its
 * deadline is not dug out of the heap: it is marked `done` and skipped when it reaches the top
 * (lazy removal), and the heap is swept when such stale entries are most of it, so a steady
 * stream of fast replies cannot make it grow without bound.
 *
 * Its own piece because it is a data structure with its own invariant (every live item is in the
 * heap, the timer is armed for the top) that the channel's message logic need not see.
 *
 * @module
 * @internal
 */
import type { Clock, ClockTimer } from '../core/clock.js';

/** What the heap orders: an item with a deadline that is marked `done` once settled. @internal */
export interface Deadlined {
  /** When it expires, by the heap's clock. */
  readonly deadline: number;
  /** Settled (by the owner) or expired (by the heap): its place in the heap is stale. */
  done: boolean;
}

/** Stale entries below which the heap is never swept. */
const SWEEP_AT = 1024;

/** A min-heap of items by deadline with one timer for its top. @internal */
export class DeadlineHeap<T extends Deadlined> {
  readonly #clock: Clock;
  readonly #onExpire: (item: T) => void;
  #heap: T[] = [];
  #stale = 0;
  #timer: ClockTimer | undefined;
  #armedAt = 0;

  /**
   * @param clock - The clock of the deadlines and the timer.
   * @param onExpire - Called with each item whose deadline has come (marked `done` first).
   */
  constructor(clock: Clock, onExpire: (item: T) => void) {
    this.#clock = clock;
    this.#onExpire = onExpire;
  }

  /** Adds a live item, arming the timer if it is the earliest. */
  add(item: T): void {
    const heap = this.#heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.deadline <= item.deadline) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
    if (this.#timer === undefined || item.deadline < this.#armedAt) this.#arm(item.deadline);
  }

  /** Marks `item` settled (once): its entry stays until it surfaces or a sweep. */
  settle(item: T): void {
    if (item.done) return;
    item.done = true;
    this.#stale++;
    if (this.#stale > SWEEP_AT && this.#stale * 2 > this.#heap.length) {
      this.#heap = this.#heap.filter((p) => !p.done);
      this.#stale = 0;
      for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#siftDown(i);
    }
  }

  /** Forgets every item and cancels the timer. */
  clear(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#heap = [];
    this.#stale = 0;
  }

  #siftDown(start: number): void {
    const heap = this.#heap;
    const item = heap[start]!;
    let i = start;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= heap.length) break;
      if (child + 1 < heap.length && heap[child + 1]!.deadline < heap[child]!.deadline) child++;
      if (heap[child]!.deadline >= item.deadline) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = item;
  }

  #pop(): T | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (top !== undefined && last !== undefined && heap.length > 0) {
      heap[0] = last;
      this.#siftDown(0);
    }
    if (top?.done === true) this.#stale--;
    return top;
  }

  #arm(at: number): void {
    this.#timer?.cancel();
    this.#armedAt = at;
    this.#timer = this.#clock.setTimer(this.#fire, at - this.#clock.now());
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    const now = this.#clock.now();
    while (this.#heap.length > 0 && (this.#heap[0]!.done || this.#heap[0]!.deadline <= now)) {
      const item = this.#pop()!;
      if (item.done) continue;
      item.done = true; // out of the heap already: not a stale entry
      this.#onExpire(item);
    }
    const next = this.#heap[0];
    if (next !== undefined) this.#arm(next.deadline);
  };
}
