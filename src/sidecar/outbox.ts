/**
 * The outbox of a sidecar channel: every message the channel has taken and the peer has not yet
 * acknowledged, in seq order, within one bound (a count and bytes), and the overflow policy that
 * keeps it there.
 *
 * An entry lives in one of two queues: `waiting` (to be written, replays first) and `unacked`
 * (written, not yet acknowledged). Written sends move to `unacked` and leave on the peer's
 * cumulative ACK; written requests leave at once (they are not replayed: their reply settles
 * them). When a connection is lost, `unacked` goes back to the head of `waiting`, marked as
 * replays; the WELCOME of the next connection says how much of it the peer already has.
 *
 * Removal is lazy: an entry removed while queued (dropped, timed out, aborted) is marked `dead`
 * and skipped when it reaches the head, so no removal scans a queue.
 *
 * Its own piece because the bound is an invariant of its own (`held <= maxMessages`,
 * `heldBytes <= maxBytes` after every call, every removal counted), checked by the model test.
 *
 * @module
 */
import type { Clock } from '../core/clock.js';
import { Deque } from '../core/deque.js';
import { OverflowError } from '../core/errors.js';
import type { Connection } from './connection.js';
import type { Deadlined } from './deadlines.js';
import type { Kind } from './protocol.js';

/**
 * What the overflow policy does when a new message would exceed the queue's bound:
 * `drop-oldest` removes the oldest queued messages to make room, `drop-newest` refuses the new
 * one (`send` returns `false`), `reject` throws {@link OverflowError}. Every drop is counted.
 */
export type SidecarOverflowPolicy = 'drop-oldest' | 'drop-newest' | 'reject';

/** The overflow policies, for validation. @internal */
export const OVERFLOW_POLICIES: readonly SidecarOverflowPolicy[] = ['drop-oldest', 'drop-newest', 'reject'];

/** Messages removed by the overflow policy, by policy. */
export interface SidecarDropCounts {
  /** Removed by `drop-oldest` to make room. */
  readonly oldest: number;
  /** Refused by `drop-newest`. */
  readonly newest: number;
  /** Refused by `reject` (or too large for the byte bound), with an `OverflowError`. */
  readonly rejected: number;
}

/** What the `'drop'` event tells about a removed message. */
export interface SidecarDropInfo {
  /** Its type. */
  readonly type: string;
  /** Its sequence number (for `drop-newest`, the one it would have had). */
  readonly seq: number;
  /** The policy that removed it. */
  readonly policy: SidecarOverflowPolicy;
}

/** A request waiting for its reply. @internal */
export interface PendingRequest extends Deadlined {
  readonly id: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
  readonly type: string;
  readonly timeoutMs: number;
  abort: Disposable | undefined;
  /** The queue entry while it waits to be written; undefined once written. */
  entry: Entry | undefined;
  /** The connection it was written on. */
  written: Connection | undefined;
}

/** A message in the outbox. @internal */
export interface Entry {
  readonly seq: number;
  readonly kind: typeof Kind.SEND | typeof Kind.REQUEST;
  readonly type: string;
  readonly json: string;
  readonly bytes: number;
  readonly request: PendingRequest | undefined;
  /** Removed (dropped, timed out, aborted) while in a queue: skip it. */
  dead: boolean;
  /** Written before on a connection that was lost: the next write is a replay. */
  replay: boolean;
}

/** What the outbox tells its channel. @internal */
export interface OutboxHost {
  /** The policy removed (or refused) `entry`. */
  dropped(entry: Entry): void;
  /** `drop-oldest` removed a queued request: settle it with `error`. */
  evicted(request: PendingRequest, error: OverflowError): void;
  /** The held messages fell to half the high-water mark after a producer was told to wait. */
  drained(): void;
}

/** The bound of an outbox. @internal */
export interface OutboxLimits {
  readonly maxMessages: number;
  readonly maxBytes: number;
  readonly highWater: number;
  readonly policy: SidecarOverflowPolicy;
}

/** The bounded queue of a channel's outgoing messages. @internal */
export class Outbox {
  /** Messages waiting to be written, in seq order (replays first). */
  readonly waiting = new Deque<Entry>();
  /** Sends written and not yet acknowledged, in seq order. */
  readonly unacked = new Deque<Entry>();
  held = 0;
  heldBytes = 0;
  /** Called (each once) when nothing is held any more. */
  readonly idleWaiters: (() => void)[] = [];
  accepted = 0;
  delivered = 0;
  replayed = 0;
  droppedOldest = 0;
  droppedNewest = 0;
  rejected = 0;
  undelivered = 0;
  readonly #limits: OutboxLimits;
  readonly #host: OutboxHost;
  #needDrain = false;

  constructor(limits: OutboxLimits, host: OutboxHost) {
    this.#limits = limits;
    this.#host = host;
  }

  /**
   * Applies the bound and the policy before `entry` is taken.
   * @returns `false` if the new entry is refused (`drop-newest`).
   * @throws {@link OverflowError} under `reject`, or for an entry larger than the byte bound.
   */
  admit(entry: Entry): boolean {
    const { maxMessages, maxBytes, policy } = this.#limits;
    if (this.held + 1 <= maxMessages && this.heldBytes + entry.bytes <= maxBytes) return true;
    if (policy === 'reject' || entry.bytes > maxBytes) {
      this.rejected++;
      throw new OverflowError(`The sidecar queue is full (${this.held} of ${maxMessages} messages, ${this.heldBytes} of ${maxBytes} bytes)`);
    }
    if (policy === 'drop-newest') {
      this.droppedNewest++;
      this.#host.dropped(entry);
      return false;
    }
    // drop-oldest: oldest first, written-but-unacknowledged ones (they may well have arrived;
    // they lose only their replay), then the head of the waiting queue.
    while (this.held + 1 > maxMessages || this.heldBytes + entry.bytes > maxBytes) {
      const victim = shiftLive(this.unacked) ?? shiftLive(this.waiting);
      if (victim === undefined) break;
      this.droppedOldest++;
      this.release(victim);
      this.#host.dropped(victim);
      if (victim.request !== undefined) {
        this.#host.evicted(victim.request, new OverflowError('The sidecar queue was full; the request was dropped to make room (drop-oldest)'));
      }
    }
    return true;
  }

  /** Takes an admitted entry. */
  enqueue(entry: Entry): void {
    this.accepted++;
    this.held++;
    this.heldBytes += entry.bytes;
    this.waiting.push(entry);
  }

  /** Whether the producer should wait for room (held at or past the high-water mark); if so, the next fall wakes it. */
  overHighWater(): boolean {
    if (this.held < this.#limits.highWater) return false;
    this.#needDrain = true;
    return true;
  }

  /** Marks an entry as no longer held. */
  release(entry: Entry): void {
    entry.dead = true;
    this.held--;
    this.heldBytes -= entry.bytes;
    // Hysteresis: wake a paused producer at half the mark, so it resumes with room for a burst.
    if (this.#needDrain && this.held <= this.#limits.highWater >> 1) {
      this.#needDrain = false;
      this.#host.drained();
    }
    if (this.held === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * Moves waiting entries to `parts`/`lengths` for writing on `conn` until `total` (bytes with
   * frame headers) reaches `budget`. Sends go on to `unacked`; requests leave the outbox.
   * @returns The new total.
   */
  take(conn: Connection, parts: string[], lengths: number[], total: number, budget: number, headerBytes: number): number {
    while (total < budget) {
      const entry = this.waiting.shift();
      if (entry === undefined) break;
      if (entry.dead) continue;
      parts.push(entry.json);
      lengths.push(entry.bytes);
      total += headerBytes + entry.bytes;
      if (entry.replay) this.replayed++;
      if (entry.request !== undefined) {
        entry.request.entry = undefined;
        entry.request.written = conn;
        this.release(entry);
      } else {
        this.unacked.push(entry);
      }
    }
    return total;
  }

  /** The peer's cumulative ACK: every written send up to `upTo` is delivered. */
  ack(upTo: number): void {
    for (let e = this.unacked.peek(); e !== undefined && e.seq <= upTo; e = this.unacked.peek()) {
      this.unacked.shift();
      if (e.dead) continue;
      this.delivered++;
      this.release(e);
    }
  }

  /**
   * The peer already has everything up to `upTo` (its WELCOME): those waiting sends are
   * delivered, not resent; `skippedRequest` is called for each such request.
   */
  skipTo(upTo: number, skippedRequest: (request: PendingRequest) => void): void {
    for (let e = this.waiting.peek(); e !== undefined && e.seq <= upTo; e = this.waiting.peek()) {
      this.waiting.shift();
      if (e.dead) continue;
      if (e.request === undefined) this.delivered++;
      this.release(e);
      if (e.request !== undefined) skippedRequest(e.request);
    }
  }

  /** The connection is lost: unacknowledged sends go back to the head, ahead of what never left. */
  requeueUnacked(): void {
    const replay = this.unacked.drain().filter((e) => !e.dead);
    for (const e of replay) e.replay = true;
    this.waiting.unshiftAll(replay);
  }

  /**
   * Resolves when nothing is held and `alsoIdle()` holds (checked at each time the outbox
   * empties), or after `ms` by `clock`.
   */
  waitIdle(clock: Clock, ms: number, alsoIdle: () => boolean): Promise<void> {
    if (this.held === 0 && alsoIdle()) return Promise.resolve();
    const waiters = this.idleWaiters;
    return new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.held === 0 && alsoIdle()) {
          timer.cancel();
          resolve();
        } else {
          waiters.push(check);
        }
      };
      const timer = clock.setTimer(() => {
        const i = waiters.indexOf(check);
        if (i !== -1) waiters.splice(i, 1);
        resolve();
      }, ms);
      waiters.push(check);
    });
  }

  /** Releases everything held (the channel ends), counting the sends as undelivered. */
  releaseAll(): void {
    const left = [...this.waiting.drain(), ...this.unacked.drain()].filter((e) => !e.dead);
    for (const e of left) {
      if (e.request === undefined) this.undelivered++;
      this.release(e);
    }
  }
}

function shiftLive(queue: Deque<Entry>): Entry | undefined {
  for (let e = queue.shift(); e !== undefined; e = queue.shift()) if (!e.dead) return e;
  return undefined;
}
