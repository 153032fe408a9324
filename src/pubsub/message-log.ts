/**
 * A topic's bounded history, for replay: a queue of messages in publish order (core's `Deque`), trimmed from the
 * oldest end by count, by bytes and by age. Reading after a cursor says whether the cursor fell
 * off the log (something after it was trimmed) instead of silently skipping.
 *
 * @module
 */
import { Deque } from '../core/deque.js';
import * as check from '../core/validate.js';
import type { Message } from './message.js';
import { matchTokens } from './topic.js';

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

/** A message's sequence number, the key a log is ordered by. */
const seqOf = (m: Message): number => m._seq;

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
  readonly #items = new Deque<Message<T>>();
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
    return this.#items.length;
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
    return this.#items.peek();
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
    const m = this.#items.shift();
    if (m === undefined) return undefined;
    this.#bytes -= m._size;
    if (m._seq > this.#trimmedSeq) this.#trimmedSeq = m._seq; // never below a message dropped on entry
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
    const lo = items.countAtMost(seqOf, afterSeq); // the first message with seq > afterSeq
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
    for (let m = items.peek(); m !== undefined; m = items.peek()) {
      if (items.length > maxCount || this.#bytes > maxBytes || m._time <= oldest) {
        items.shift(); // released now (the queue clears the slot)
        this.#bytes -= m._size;
        if (m._seq > this.#trimmedSeq) this.#trimmedSeq = m._seq; // never below a message dropped on entry
      } else break;
    }
  }
}

/** What {@link readTopics} returns: the merged read, and what the logs trimmed by age meanwhile. @internal */
export interface TopicsRead extends LogRead {
  /** Messages the logs read trimmed by age as they were read: the holder's counters go down by it. */
  readonly trimmed: number;
  /** The bytes of those messages. */
  readonly trimmedBytes: number;
}

/**
 * The one merge-read over topic logs (the memory backend's, and the Redis backend's local
 * reads): messages after `afterSeq` on every topic in `logs` that `topics` names (a topic, or a
 * list of pattern token arrays), in sequence order, at most `limit`. Up to `limit` are read from
 * each log and the `limit` oldest kept; `gap` and `more` are any log's. A read trims a log by
 * age, so it also says how many messages and bytes left the logs meanwhile.
 * @internal
 */
export function readTopics(
  logs: ReadonlyMap<string, MessageLog>,
  topics: string | readonly (readonly string[])[],
  afterSeq: number,
  limit: number,
  now: number,
): TopicsRead {
  if (typeof topics === 'string') {
    const log = logs.get(topics);
    if (log === undefined) return { messages: [], gap: false, more: false, trimmed: 0, trimmedBytes: 0 };
    const size = log.size;
    const bytes = log.bytes;
    const r = log.after(afterSeq, limit, now);
    return { messages: r.messages, gap: r.gap, more: r.more, trimmed: size - log.size, trimmedBytes: bytes - log.bytes };
  }
  const messages: Message[] = [];
  let gap = false;
  let more = false;
  let trimmed = 0;
  let trimmedBytes = 0;
  let read = 0;
  for (const [topic, log] of logs) {
    const tokens = topic.split('.');
    if (!topics.some((p) => matchTokens(p, tokens))) continue;
    const size = log.size;
    const bytes = log.bytes;
    const r = log.after(afterSeq, limit, now);
    trimmed += size - log.size;
    trimmedBytes += bytes - log.bytes;
    gap ||= r.gap;
    more ||= r.more;
    for (const m of r.messages) messages.push(m);
    read++;
  }
  if (read > 1) messages.sort((a, b) => a._seq - b._seq);
  if (messages.length > limit) {
    messages.length = limit;
    more = true;
  }
  return { messages, gap, more, trimmed, trimmedBytes };
}
