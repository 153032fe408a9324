/**
 * The port between the broker and where messages live. A backend stores each topic's log,
 * assigns ids, and hands every published message, from any process sharing it, to the broker
 * that attached to it, in publish order. `MemoryBackend` keeps everything in this process; a
 * Redis backend (`patchbay/redis`) lets many processes share topics. Every backend must pass the
 * conformance kit in `test/conformance/`.
 *
 * @module
 */
import type { Clock } from '../core/clock.js';
import { Deque } from '../core/deque.js';
import { ClosedError } from '../core/errors.js';
import * as check from '../core/validate.js';
import { aheadError, type Cursor, formatId, Message, type MessageHeaders, newEpoch } from './message.js';
import { MessageLog, type MessageLogLimits, readTopics, resolveLimits } from './message-log.js';

/** What the broker asks a backend to publish. */
export interface PublishRecord {
  /** A valid topic. */
  readonly topic: string;
  /** The payload. */
  readonly data: unknown;
  /** Headers, if any. */
  readonly headers: MessageHeaders | undefined;
  /** The payload's approximate size in bytes. */
  readonly size: number;
  /** Whether to keep it in the topic's log (reply-inbox messages are not kept). */
  readonly store: boolean;
}

/** What {@link Backend.read} returns. */
export interface BackendRead {
  /** Messages after the cursor on the topics read, in publish order, at most the limit. */
  readonly messages: Message[];
  /**
   * `true` when messages after the cursor can no longer be read: trimmed from a log, or the
   * cursor is from an earlier epoch (a restart). The messages returned are then what is left.
   */
  readonly gap: boolean;
  /** `true` when more messages follow those returned. */
  readonly more: boolean;
  /** A cursor to read on from: the last message returned, or the head when none was. */
  readonly cursor: string;
}

/** Counters a backend reports. */
export interface BackendStats {
  /** Topics with a log. */
  readonly topics: number;
  /** Messages held in all logs. */
  readonly messages: number;
  /** Bytes held in all logs. */
  readonly bytes: number;
}

/**
 * Where messages live. Implement it to put topics somewhere else; run the conformance kit in
 * `test/conformance/` against your implementation.
 */
export interface Backend {
  /**
   * Called once, by the broker that owns this backend: `deliver` must then receive every message
   * published on the backend (by any process sharing it), once each, in publish order.
   */
  attach(deliver: (message: Message) => void): void;
  /** Assigns the next id, stores the message (if `store`) and delivers it. */
  publish(record: PublishRecord): Promise<Message>;
  /**
   * Messages after `cursor` on every topic that `topics` matches (a topic, or a list of pattern
   * token arrays), oldest first, at most `limit`. A `null` cursor reads from the oldest message.
   * @throws InvalidCursorError (`PB_ERR_INVALID_CURSOR`) for a cursor of this epoch that is ahead
   *   of everything published.
   */
  read(topics: string | readonly (readonly string[])[], cursor: Cursor | null, limit: number): Promise<BackendRead>;
  /** A cursor for "now": reading after it returns only messages published later. */
  head(): Promise<string>;
  /** Counters. */
  stats(): BackendStats;
  /** Releases everything the backend holds. */
  close(): Promise<void>;
}

/** Options for {@link MemoryBackend}. */
export interface MemoryBackendOptions {
  /** Bounds of each topic's log. */
  readonly history?: MessageLogLimits;
  /**
   * Most topic logs kept; past it, the oldest topic's log (the one created first) is dropped,
   * and reads after a cursor older than what it held report a gap.
   * @defaultValue 100000
   */
  readonly maxTopics?: number;
  /**
   * Most bytes of message data kept across every topic's log (counted as `history.maxBytes`
   * counts them). Past it the oldest messages of all, whichever topic holds them, are trimmed
   * first, as a log's own bounds trim them: a read after a cursor older than a trimmed message
   * reports a gap. `0` keeps nothing (live delivery only).
   *
   * The default is half of Nchan's shared memory default (128 MiB), since a JavaScript heap
   * holds about twice the data bytes counted here: 8 topics at the default `history.maxBytes`
   * (8 MiB each), or 64 at 1 MiB, instead of the 100,000 x 8 MiB the other bounds allow.
   * @defaultValue 64 MiB (67108864)
   */
  readonly maxTotalBytes?: number;
  /**
   * The time source for age limits.
   * @defaultValue the real clock (`realClock`)
   */
  readonly clock?: Clock;
}

/**
 * The default of `maxTotalBytes` of {@link MemoryBackendOptions}: 64 MiB. The Redis backend
 * uses the same default.
 * @internal
 */
export const DEFAULT_MAX_TOTAL_BYTES = 64 * 1024 * 1024;

/**
 * The default backend: every topic's log in this process's memory. A new instance has a new
 * epoch, so cursors from before a restart are recognised and answered as a gap.
 *
 * Three bounds hold the memory: each log's own (`history`), the number of logs (`maxTopics`),
 * and the bytes of all logs together (`maxTotalBytes`). For the last, every kept message also
 * joins one queue in publish order; past the budget the queue's front, the oldest message kept
 * anywhere, is trimmed from its log (it is always that log's oldest). Entries whose message a
 * log already trimmed by its own bounds are skipped when they reach the front, and the queue is
 * compacted when they outnumber the live ones, so each publish costs O(1) amortized.
 */
export class MemoryBackend implements Backend {
  /** This backend's epoch, the first part of every id it issues. */
  readonly epoch: string = newEpoch();
  readonly #limits: MessageLogLimits;
  readonly #maxTopics: number;
  readonly #maxTotalBytes: number;
  readonly #clock: Clock;
  /** Every kept message in publish order (with some already trimmed by their log). */
  readonly #order = new Deque<Message>();
  /** Messages and bytes held in all logs. */
  #messages = 0;
  #bytes = 0;
  /** Topic logs, oldest topic first (a Map keeps insertion order). */
  readonly #logs = new Map<string, MessageLog>();
  #deliver: ((message: Message) => void) | null = null;
  #seq = 0;
  /** The highest seq in any log dropped whole (by maxTopics or age), for gap reports. */
  #droppedSeq = 0;
  #closed = false;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options?: MemoryBackendOptions) {
    const opts = check.optionsObject('options', options);
    this.#limits = resolveLimits(opts.history);
    this.#maxTopics = check.integerInRange('maxTopics', opts.maxTopics ?? 100_000, 1, 2 ** 31 - 1);
    this.#maxTotalBytes = check.integerInRange('maxTotalBytes', opts.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES, 0, Number.MAX_SAFE_INTEGER);
    this.#clock = check.optionalClock('clock', opts.clock);
  }

  attach(deliver: (message: Message) => void): void {
    this.#deliver = deliver;
  }

  publish(record: PublishRecord): Promise<Message> {
    if (this.#closed) return Promise.reject(new ClosedError('The backend is closed'));
    const seq = ++this.#seq;
    const now = this.#clock.now();
    const message = new Message(undefined, seq, record.topic, record.data, record.headers, record.size, now, this.epoch);
    if (record.store) {
      let log = this.#logs.get(record.topic);
      if (log === undefined) {
        if (this.#logs.size >= this.#maxTopics) this.#dropOldestTopic();
        log = new MessageLog(this.#limits);
        this.#logs.set(record.topic, log);
      }
      const size = log.size;
      const bytes = log.bytes;
      if (log.append(message, now)) this.#order.push(message);
      this.#account(log, size, bytes);
      this.#enforceBudget();
    }
    this.#deliver?.(message);
    return Promise.resolve(message);
  }

  read(topics: string | readonly (readonly string[])[], cursor: Cursor | null, limit: number): Promise<BackendRead> {
    if (this.#closed) return Promise.reject(new ClosedError('The backend is closed'));
    let after = 0;
    let gap = false;
    if (cursor !== null) {
      if (cursor.epoch !== this.epoch) gap = true;
      else if (cursor.seq > this.#seq) return Promise.reject(aheadError(cursor));
      else after = cursor.seq;
    }
    if (after < this.#droppedSeq && cursor !== null) gap = true;
    const { messages, more, gap: trimmedGap, trimmed, trimmedBytes } = readTopics(this.#logs, topics, after, limit, this.#clock.now());
    // A read trims logs by age: the counters follow.
    this.#messages -= trimmed;
    this.#bytes -= trimmedBytes;
    gap ||= cursor !== null && trimmedGap;
    const last = messages[messages.length - 1];
    const next = last !== undefined ? last.id : formatId(this.epoch, more ? after : this.#seq);
    return Promise.resolve({ messages, gap, more, cursor: next });
  }

  head(): Promise<string> {
    return Promise.resolve(formatId(this.epoch, this.#seq));
  }

  /**
   * Counters, kept as messages come and go: `topics` with a log, `messages` and `bytes` (as
   * `maxTotalBytes` counts them) held in all logs. Messages past their age are counted until a
   * read, a publish or the byte budget trims them.
   */
  stats(): BackendStats {
    return { topics: this.#logs.size, messages: this.#messages, bytes: this.#bytes };
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#logs.clear();
    this.#order.clear();
    this.#messages = 0;
    this.#bytes = 0;
    this.#deliver = null;
    return Promise.resolve();
  }

  /** Counts what an operation on `log` changed, from its size and bytes before. */
  #account(log: MessageLog, size: number, bytes: number): void {
    this.#messages += log.size - size;
    this.#bytes += log.bytes - bytes;
  }

  /** Trims the oldest messages of all until the logs fit in `maxTotalBytes`. O(1) amortized. */
  #enforceBudget(): void {
    const order = this.#order;
    while (this.#bytes > this.#maxTotalBytes && order.length > 0) {
      const m = order.shift()!;
      const log = this.#logs.get(m.topic);
      // Skip a message its log already trimmed (or whose log was dropped): it is not the log's oldest.
      if (log === undefined || log.oldest !== m) continue;
      log.dropOldest();
      this.#messages--;
      this.#bytes -= m._size;
    }
    // Drop the entries of messages the logs trimmed themselves when they outnumber the live ones.
    if (order.length > 2 * this.#messages + 1024) order.unshiftAll(order.drain().filter((m) => this.#holds(m)));
  }

  /** Whether a message is still held by its topic's log. */
  #holds(m: Message): boolean {
    const log = this.#logs.get(m.topic);
    const oldest = log?.oldest;
    return oldest !== undefined && m._seq >= oldest._seq;
  }

  #dropOldestTopic(): void {
    for (const [topic, log] of this.#logs) {
      this.#logs.delete(topic);
      this.#droppedSeq = Math.max(this.#droppedSeq, log.lastSeq);
      this.#messages -= log.size;
      this.#bytes -= log.bytes;
      return;
    }
  }
}
