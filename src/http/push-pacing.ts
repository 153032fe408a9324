/**
 * What the two push transports, SSE (`SseHub`) and WebSocket (`WsHandler`), share
 * about pacing their writes, written once:
 *
 * - {@link FlushSlicer}: a connection that queued bytes is flushed once per event-loop turn, and
 *   at most `slice` connections per turn, so a broadcast to a huge fan-out goes out as one write
 *   per connection without stalling the loop (the rest wait for the next turn, in order).
 * - {@link replayPageSize}: a paced replay from the log reads its next page sized to the room its
 *   connection has left, at the frame size seen so far, so what a replay holds stays near the
 *   connection's byte bound.
 *
 * They live here, under both transports, because each is a policy about bytes going out to many
 * clients, not about one protocol; the hot path of a flush allocates nothing per message.
 *
 * @module
 * @internal
 */
import type { Clock } from '../core/clock.js';

/** A connection a {@link FlushSlicer} flushes. @internal */
export interface Flushable {
  /** Writes what the connection queued (and clears its dirty mark). */
  _flush(): void;
}

/**
 * Flushes marked connections once per event-loop turn, `slice` at most per turn, in the order
 * they were marked. The caller marks a connection once per turn (it keeps its own dirty flag).
 * @internal
 */
export class FlushSlicer<T extends Flushable> {
  readonly #clock: Clock;
  readonly #slice: number;
  #dirty: T[] = [];
  #scheduled = false;

  /**
   * @param clock - Whose `defer` runs the flush.
   * @param slice - Most connections flushed per turn (validated by the caller).
   */
  constructor(clock: Clock, slice: number) {
    this.#clock = clock;
    this.#slice = slice;
  }

  /** Queues `connection` for the next flush. */
  add(connection: T): void {
    this.#dirty.push(connection);
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#clock.defer(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    const dirty = this.#dirty;
    const n = Math.min(dirty.length, this.#slice);
    for (let i = 0; i < n; i++) dirty[i]!._flush();
    this.#dirty = n === dirty.length ? [] : dirty.slice(n);
    if (this.#dirty.length > 0) {
      this.#scheduled = true;
      this.#clock.defer(this.#flush);
    }
  };
}

/**
 * How many messages a replay's next page asks for: as many as fit in `roomBytes` at
 * `frameBytes` each, at least 1 (a replay always moves) and at most `maxPage`.
 *
 * @param roomBytes - Bytes the connection may still hold for the replay (a negative value counts as 0).
 * @param frameBytes - The size of one replayed message so far (an average), > 0.
 * @param maxPage - Most messages one page asks for.
 * @internal
 */
export function replayPageSize(roomBytes: number, frameBytes: number, maxPage: number): number {
  return Math.max(1, Math.min(maxPage, Math.floor(Math.max(0, roomBytes) / frameBytes)));
}
