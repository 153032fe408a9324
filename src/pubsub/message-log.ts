/**
 * A topic's bounded history, for replay: a ring of messages in publish order, trimmed from the
 * oldest end by count, by bytes and by age. Reading after a cursor says whether the cursor fell
 * off the log (something after it was trimmed) instead of silently skipping.
 *
 * @module
 */
import type { Message } from './message.js';
import * as check from '../core/validate.js';

/** Bounds of a {@link MessageLog}. A message is dropped when any bound is exceeded. */
export interface MessageLogLimits {
  /**
   * Most messages kept. `0` keeps none (live delivery only).
   * @defaultValue 1000
   */
  readonly maxCount?: number;
  /**
   * Most bytes of message data kept (approximate: strings and buffers by length, other values as JSON).
   * @defaultValue 8 MiB
   */
  readonly maxBytes?: number;
  /**
   * Oldest message kept, in ms. `Infinity` keeps messages until count or bytes push them out.
   * @defaultValue 3_600_000 (one hour)
   */
  readonly maxAgeMs?: number;
}

/** Limits with every field set. @internal */
export type ResolvedLimits = Required<MessageLogLimits>;

/** Fills in and checks log limits. @internal */
export function resolveLimits(limits: MessageLogLimits | undefined): ResolvedLimits {
  const l = check.optionsObject('history', limits);
  const maxAgeMs = l.maxAgeMs ?? 3_600_000;
  if (maxAgeMs !== Infinity) check.positiveNumber('history.maxAgeMs', maxAgeMs);
  return {
    maxCount: check.integerInRange('history.maxCount', l.maxCount ?? 1000, 0, 2 ** 31 - 1),
    maxBytes: check.integerInRange('history.maxBytes', l.maxBytes ?? 8 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
    maxAgeMs,
  };
}

/** What {@link MessageLog.after} returns. */
export interface LogRead<T = unknown> {
  /** Messages after the cursor, oldest first, at most the limit asked for. */
  readonly messages: Message<T>[];
  /** `true` when messages after the cursor were trimmed before they could be read. */
  readonly gap: boolean;
  /** `true` when more messages follow the ones returned. */
  readonly more: boolean;
}

/**
 * The bounded history of one topic.
 *
 * Sequence numbers must grow with each append (they may skip: they are backend-wide).
 */
export class MessageLog<T = unknown> {
  readonly #limits: ResolvedLimits;
  #items: Message<T>[] = [];
  #head = 0;
  #bytes = 0;
  #trimmedSeq = 0;
  #lastSeq = 0;

  /**
   * @param limits - The log's bounds.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for an invalid bound.
   */
  constructor(limits?: MessageLogLimits) {
    this.#limits = resolveLimits(limits);
  }

  /** Messages held now. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The sequence number of the newest message ever appended (0 if none). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** The sequence number of the newest message trimmed so far (0 if none). */
  get trimmedSeq(): number {
    return this.#trimmedSeq;
  }

  /** The oldest message held, or `undefined` when the log is empty. */
  get oldest(): Message<T> | undefined {
    return this.#items[this.#head];
  }

  /**
   * Appends a message and trims what no longer fits. `now` is the clock reading for age limits.
   * Returns whether the message was kept (it is not when it alone exceeds a bound).
   */
  append(message: Message<T>, now: number): boolean {
    this.#lastSeq = message._seq;
    if (this.#limits.maxCount === 0 || message._size > this.#limits.maxBytes) {
      this.#trimmedSeq = message._seq;
      return false;
    }
    this.#items.push(message);
    this.#bytes += message._size;
    this.#trim(now);
    return true;
  }

  /**
   * Trims the oldest message, as the log's own bounds do: reads after a cursor older than it
   * report a gap. Returns it, or `undefined` when the log is empty. For bounds that span logs
   * (a backend's byte budget).
   */
  dropOldest(): Message<T> | undefined {
    const m = this.#items[this.#head];
    if (m === undefined) return undefined;
    this.#bytes -= m._size;
    if (m._seq > this.#trimmedSeq) this.#trimmedSeq = m._seq; // never below a message dropped on entry
    (this.#items as (Message<T> | undefined)[])[this.#head] = undefined;
    this.#compact(this.#head + 1);
    return m;
  }

  /**
   * Messages with a sequence number above `afterSeq`, oldest first, at most `limit`.
   * `gap` is true when a message after `afterSeq` was trimmed.
   */
  after(afterSeq: number, limit: number, now: number): LogRead<T> {
    this.#trim(now);
    const gap = afterSeq < this.#trimmedSeq;
    const items = this.#items;
    // Binary search for the first message with seq > afterSeq.
    let lo = this.#head;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (items[mid]!._seq <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    const end = Math.min(items.length, lo + limit);
    return { messages: items.slice(lo, end), gap, more: end < items.length };
  }

  /** Drops messages past the age limit; returns whether the log is now empty. */
  expire(now: number): boolean {
    this.#trim(now);
    return this.size === 0;
  }

  #trim(now: number): void {
    const { maxCount, maxBytes, maxAgeMs } = this.#limits;
    const items = this.#items;
    const oldest = now - maxAgeMs;
    let head = this.#head;
    while (head < items.length) {
      const m = items[head]!;
      if (items.length - head > maxCount || this.#bytes > maxBytes || m._time <= oldest) {
        this.#bytes -= m._size;
        if (m._seq > this.#trimmedSeq) this.#trimmedSeq = m._seq; // never below a message dropped on entry
        (items as (Message<T> | undefined)[])[head] = undefined; // release it now, not at compaction
        head++;
      } else break;
    }
    this.#compact(head);
  }

  /** Moves the head to `head`, and compacts the ring when the trimmed part is more than half. */
  #compact(head: number): void {
    const items = this.#items;
    if (head === items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (head > 1024 && head * 2 > items.length) {
      this.#items = items.slice(head);
      this.#head = 0;
    } else {
      this.#head = head;
    }
  }
}
