/**
 * One Server-Sent Events connection, over a small sink port so the same stream serves
 * `node:http` and the web `Response` form.
 *
 * ## Writes
 *
 * Events are queued as bytes and flushed once per event-loop turn by the stream's
 * {@link SseHub}: a turn's events go out as one `write()` per connection, which is what makes
 * fan-out cheap in Node (each `write()` costs a syscall and chunk framing). A hub flushes at most
 * `flushSliceSize` connections per turn, so a huge fan-out cannot stall the loop.
 *
 * ## Backpressure
 *
 * What the transport holds plus what the stream queued may not pass `maxBufferedBytes`. Past it
 * the overflow policy decides: `close` (the default: the client reconnects with
 * `Last-Event-ID` and replays, so nothing is lost), `drop-oldest` (queued events make room), or
 * `coalesce` (an event with a `key` replaces a queued one with the same key, else as
 * `drop-oldest`). A connection whose transport takes no bytes for `stallTimeoutMs` is closed.
 *
 * A replay (the log after a client's `Last-Event-ID`, see {@link SseHandler}) is paced, not held
 * to the policy: its reader queues the next event only when it fits under `maxBufferedBytes` (or
 * when nothing at all is held, for one event larger than the bound), and waits for the transport
 * to take bytes otherwise. So a replay never holds more than the bound, and it is never cut by
 * the overflow policy (a resuming client that was cut must be able to catch up, else it would be
 * cut again at once, and forever). When the replay ends and the stream goes live, what the
 * transport still holds of it is allowed on top of `maxBufferedBytes` until it is taken.
 *
 * ## Time
 *
 * One timer per hub, not per connection, sends heartbeat comments to connections that sent
 * nothing for `heartbeatMs` and closes stalled ones.
 *
 * @module
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock, ClockTimer } from '../core/clock.js';
import { channel } from '../core/diagnostics.js';
import { InvalidArgumentError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { FlushSlicer } from '../http/push-pacing.js';
import { serializeComment, serializeEvent, type SseEvent } from './serialize.js';

/**
 * Where a stream writes: the port between {@link SseStream} and a transport.
 * `node:http` and the web `ReadableStream` each implement it.
 */
export interface SseSink {
  /** Sends the status and headers. Called once, before any write. */
  start(status: number, headers: Readonly<Record<string, string>>): void;
  /**
   * Writes bytes.
   * @param written - If given, call it once the transport has taken this chunk (the kernel
   *   accepted it, or the reader read it), if the transport can tell: it paces replays. A sink
   *   that cannot tell may ignore it; replays then wait for the hub's periodic check.
   */
  write(chunk: Buffer, written?: () => void): void;
  /** Bytes written but not yet taken by the other side (the socket's or the stream's queue). */
  readonly buffered: number;
  /** Ends the response cleanly. */
  end(): void;
  /** Tears the connection down. */
  destroy(): void;
  /** Registers the one callback to run when the client goes away (any path). */
  onClose(callback: () => void): void;
}

/** What a stream does when its buffer limit would be passed. */
export type SseOverflowPolicy = 'close' | 'drop-oldest' | 'coalesce';

/** Options for a stream (and defaults for a {@link SseHub}'s streams). */
export interface SseStreamOptions {
  /**
   * Most bytes held for one connection: the transport's buffer plus the stream's queue.
   * @defaultValue 1 MiB
   */
  readonly maxBufferedBytes?: number;
  /**
   * What to do past `maxBufferedBytes`.
   * @defaultValue `'close'`
   */
  readonly overflow?: SseOverflowPolicy;
  /**
   * Reconnection delay sent to the client (`retry:`) at the start, in ms; `undefined` sends none.
   */
  readonly retryMs?: number;
  /**
   * Spread of `retryMs`, as a fraction: each connection gets `retryMs x (1 ± retryJitter)`, so
   * a mass disconnect does not come back as one wave.
   * @defaultValue 0
   */
  readonly retryJitter?: number;
  /** Extra response headers. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Counters of one stream. */
export interface SseStreamStats {
  /**
   * Events handed to the transport (heartbeats, the opening and stop events excluded). An event
   * queued and then dropped, or discarded when the stream was cut, is not counted.
   */
  readonly eventsSent: number;
  /** Bytes written. */
  readonly bytesSent: number;
  /** Bytes queued now (not yet written). */
  readonly bytesQueued: number;
  /** Events dropped or replaced by the overflow policy. */
  readonly drops: number;
}

/** Why a stream ended. */
export type SseCloseReason = 'server' | 'client' | 'overflow' | 'stall' | 'error';

/** Options for {@link SseStream.close}. */
export interface SseCloseOptions {
  /**
   * `false` asks the client not to come back: the stream's last event (type `patchbay-stop`)
   * carries a stop token as its id, and the hub answers the reconnect carrying it with
   * `204 No Content`, the one answer that makes an `EventSource` stop for good.
   * @defaultValue `true`
   */
  readonly reconnect?: boolean;
}

/** The diagnostics channels SSE publishes on. */
export const sseChannels = {
  /** `{ stream, reason }` when a stream closes. */
  close: channel('sse', 'close'),
  /** `{ stream, policy, bytes }` when the overflow policy drops or replaces an event. */
  drop: channel('sse', 'drop'),
  /**
   * `{ message, error }` when {@link SseHandler} cannot serialize a message and announces a gap
   * in its place.
   */
  skip: channel('sse', 'skip'),
};

const HEARTBEAT = serializeComment('');

/**
 * The key of a queued entry that is not an event (comments, the opening bytes, the stop event):
 * never counted in `eventsSent`, never matched by `coalesce`.
 */
const NOT_EVENT: unique symbol = Symbol('not an event');
type QueueKey = string | undefined | typeof NOT_EVENT;
type OnClose = (reason: SseCloseReason) => void;

/**
 * One SSE connection. Usually made by {@link SseHandler} or {@link sseResponse}; make one
 * directly with {@link SseHub.stream} and a {@link SseSink} for a transport of your own.
 */
export class SseStream {
  /**
   * Who the connection is: the `identity` of the grant its `authorize` hook answered with, if it
   * gave one (see `AccessGrant`): who is on this stream, for the app (and for presence, when it comes).
   */
  readonly identity: string | undefined;
  readonly #hub: SseHub;
  readonly #sink: SseSink;
  readonly #maxBuffered: number;
  readonly #overflow: SseOverflowPolicy;
  // Per connection, so only what a connection needs: no empty arrays or objects for unused options.
  readonly #retryBytes: Buffer | undefined;
  readonly #headers: Record<string, string> | undefined;
  #queue: Buffer[] = [];
  #keys: QueueKey[] = [];
  #queued = 0;
  /** How many of the queued entries are events (counted in `eventsSent` once written). */
  #queuedEvents = 0;
  #started = false;
  #closed = false;
  #ending = false;
  /** @internal */
  _dirty = false;
  /** @internal */
  _lastWrite: number;
  /** @internal */
  _stalledSince = -1;
  /** @internal */
  _lastDrained = 0;
  #eventsSent = 0;
  #bytesSent = 0;
  #drops = 0;
  /** Where (in `#bytesSent + #queued` terms) the latest replay ends; 0 once the transport let go of it. */
  #replayEnd = 0;
  /** While a replay is paced: flushes ask the sink when it took each chunk. */
  #replaying = false;
  /** A paced replay waiting for room: how many bytes it wants to queue, and what to wake. */
  #roomWaiter: { readonly bytes: number; readonly wake: () => void } | null = null;
  /** One callback (the usual case: the subscription to end) or several; no array for one. */
  #onClose: OnClose | OnClose[] | undefined;

  /** @internal */
  constructor(hub: SseHub, sink: SseSink, options: SseStreamOptions, now: number, identity?: string) {
    this.identity = identity;
    this.#hub = hub;
    this.#sink = sink;
    this.#maxBuffered = check.integerInRange('maxBufferedBytes', options.maxBufferedBytes ?? 1024 * 1024, 1, Number.MAX_SAFE_INTEGER);
    this.#overflow = checkPolicy(options.overflow);
    this.#headers = options.headers === undefined ? undefined : { ...options.headers };
    this._lastWrite = now;
    const retry = options.retryMs;
    if (retry !== undefined) {
      const jitter = options.retryJitter ?? 0;
      if (typeof jitter !== 'number' || !(jitter >= 0 && jitter < 1)) {
        throw new InvalidArgumentError(`Expected \`retryJitter\` to be a fraction from 0 to below 1, got ${check.describe(jitter)}`);
      }
      check.integerInRange('retryMs', retry, 0, 2 ** 31 - 1);
      const spread = Math.round(retry * (1 + jitter * (Math.random() * 2 - 1)));
      this.#retryBytes = serializeEvent({ retry: spread });
    }
    sink.onClose(() => this.#end('client'));
  }

  /** `true` once closed, by either side. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether the headers went out. */
  get started(): boolean {
    return this.#started;
  }

  /** Counters. */
  stats(): SseStreamStats {
    return { eventsSent: this.#eventsSent, bytesSent: this.#bytesSent, bytesQueued: this.#queued, drops: this.#drops };
  }

  /**
   * Sends the headers (`200`, `text/event-stream`, no caching or transforming, no proxy
   * buffering) and a first comment at once, so the client's `open` fires and intermediaries
   * commit the response. Events sent before `start` wait and follow. Idempotent.
   *
   * @param headers - Headers to add for this response (e.g. a gap marker).
   * @param first - Bytes to put before anything queued (e.g. a gap event).
   */
  start(headers?: Readonly<Record<string, string>>, first?: Buffer): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#sink.start(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      ...this.#headers,
      ...headers,
    });
    const lead = [HEARTBEAT];
    if (this.#retryBytes !== undefined) lead.push(this.#retryBytes);
    if (first !== undefined) lead.push(first);
    const bytes = lead.reduce((n, b) => n + b.length, 0);
    this.#queue.unshift(...lead);
    this.#keys.unshift(...lead.map((): QueueKey => NOT_EVENT));
    this.#queued += bytes;
    this.#flushNow();
  }

  /**
   * Queues an event (or pre-serialized event bytes, shared by a broadcast) for the next flush.
   *
   * @param event - The event, or its bytes from {@link serializeEvent}.
   * @param key - For the `coalesce` policy: a queued event with the same key is replaced.
   * @returns `false` when the stream is closed or the overflow policy refused the event.
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for an event the serializer refuses
   *   (nothing is written then): a field holding CR or LF (or NUL in `id`), a lone surrogate, a bad
   *   `retry`, `data` that is neither a string nor a JSON value (a BigInt, a cycle, nesting too
   *   deep for `JSON.stringify`, a `toJSON` that throws). Never a bare `TypeError`/`RangeError`.
   */
  send(event: SseEvent | Buffer, key?: string): boolean {
    const bytes = Buffer.isBuffer(event) ? event : serializeEvent(event);
    if (this.#closed || this.#ending) return false;
    if (!this.#fits(bytes.length, key)) return false;
    if (key !== undefined && this.#overflow === 'coalesce') {
      const i = this.#keys.lastIndexOf(key);
      if (i !== -1) {
        this.#queued += bytes.length - this.#queue[i]!.length;
        this.#queue[i] = bytes;
        this.#count(1, 'coalesce', bytes.length);
        return true;
      }
    }
    this.#queue.push(bytes);
    this.#keys.push(key);
    this.#queued += bytes.length;
    this.#queuedEvents++;
    this.#schedule();
    return true;
  }

  // --- paced replays (used by SseHandler) ---------------------------------------------------

  /** Starts pacing a replay: flushes now ask the sink when each chunk was taken. @internal */
  _beginReplay(): void {
    this.#replaying = true;
  }

  /**
   * Whether `bytes` more fit under `maxBufferedBytes` now. When nothing at all is held, anything
   * fits: one event larger than the bound still goes, alone. @internal
   */
  _replayFits(bytes: number): boolean {
    const held = this.#sink.buffered + this.#queued;
    return held === 0 || held + bytes <= this.#maxBuffered;
  }

  /** Bytes that may still be queued under `maxBufferedBytes` now (0 when full). @internal */
  _room(): number {
    return Math.max(0, this.#maxBuffered - this.#sink.buffered - this.#queued);
  }

  /**
   * Queues replayed bytes, outside the overflow policy (the caller paces with
   * {@link SseStream._replayFits}). @returns `false` when the stream is closed. @internal
   */
  _replayPush(bytes: Buffer, isEvent: boolean): boolean {
    if (this.#closed || this.#ending) return false;
    this.#queue.push(bytes);
    this.#keys.push(isEvent ? undefined : NOT_EVENT);
    this.#queued += bytes.length;
    if (isEvent) this.#queuedEvents++;
    this.#schedule();
    return true;
  }

  /**
   * Resolves once `bytes` fit (see {@link SseStream._replayFits}) or the stream is closed. Woken by
   * the sink's `written` callbacks, and by the hub's periodic check for sinks that cannot tell.
   * One waiter at a time. @internal
   */
  _whenFits(bytes: number): Promise<void> {
    if (this.#closed || this._replayFits(bytes)) return Promise.resolve();
    return new Promise((resolve) => {
      this.#roomWaiter = { bytes, wake: resolve };
    });
  }

  /**
   * Ends pacing: the stream goes live. What the transport still holds of the replay is allowed on
   * top of `maxBufferedBytes` until it is taken, so the first live events do not cut a client that
   * just caught up. @internal
   */
  _endReplay(): void {
    this.#replaying = false;
    const end = this.#bytesSent + this.#queued;
    if (end > this.#bytesSent - this.#sink.buffered) this.#replayEnd = end;
  }

  /** Wakes a waiting replay if its bytes fit now (or the stream closed). */
  #poke(): void {
    const waiter = this.#roomWaiter;
    if (waiter !== null && (this.#closed || this._replayFits(waiter.bytes))) {
      this.#roomWaiter = null;
      waiter.wake();
    }
  }

  /** Made at the first paced flush: a live-only connection holds no such closure. */
  #written: (() => void) | undefined;

  /**
   * Queues a comment (clients ignore it).
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for text that is not a well-formed string.
   */
  comment(text = ''): boolean {
    const bytes = serializeComment(text);
    if (this.#closed || this.#ending || !this.#fits(bytes.length, undefined)) return false;
    this.#queue.push(bytes);
    this.#keys.push(NOT_EVENT);
    this.#queued += bytes.length;
    this.#schedule();
    return true;
  }

  /**
   * Ends the stream after writing what is queued. With `{ reconnect: false }` the client is
   * told not to come back (see {@link SseCloseOptions}). Idempotent.
   */
  close(options?: SseCloseOptions): void {
    if (this.#closed || this.#ending) return;
    if (options?.reconnect === false) {
      // Sent with (empty) data and its own type, not as a bare id: some parsers drop a data-less
      // event along with its id, and the type keeps `onmessage` from firing for it.
      const stop = serializeEvent({ event: 'patchbay-stop', id: this.#hub.stopToken(), data: '' });
      this.#queue.push(stop);
      this.#keys.push(NOT_EVENT);
      this.#queued += stop.length;
    }
    this.#ending = true;
    if (!this.#started) this.start();
    this.#flushNow();
    this.#sink.end();
    this.#end('server');
  }

  /** Registers a callback for when the stream ends, however it ends. @internal */
  _onClose(callback: (reason: SseCloseReason) => void): void {
    if (this.#closed) callback('server');
    else if (this.#onClose === undefined) this.#onClose = callback;
    else if (typeof this.#onClose === 'function') this.#onClose = [this.#onClose, callback];
    else this.#onClose.push(callback);
  }

  /** What the transport holds (0 once closed). @internal */
  _buffered(): number {
    return this.#closed ? 0 : this.#sink.buffered;
  }

  /** Writes what is queued, in one write. @internal */
  _flush(): void {
    this._dirty = false;
    this.#flushNow();
  }

  /** Queues a heartbeat comment if nothing went out for `heartbeatMs`; says whether it did. @internal */
  _heartbeat(now: number, heartbeatMs: number): boolean {
    // Something queued will go out at the next flush anyway: no heartbeat needed (and none piles up).
    if (!this.#started || this.#closed || this.#queued !== 0 || now - this._lastWrite < heartbeatMs) return false;
    // While a replay is paced, so is a heartbeat: it never trips the overflow policy.
    if (this.#replaying) return this._replayFits(HEARTBEAT.length) && this._replayPush(HEARTBEAT, false);
    return this.comment();
  }

  /** Checks for a stall: bytes held by the transport and not moving. @internal */
  _checkStall(now: number, stallTimeoutMs: number): void {
    if (this.#closed) return;
    // Progress is bytes the transport let go of: written minus still buffered.
    const buffered = this.#sink.buffered;
    const drained = this.#bytesSent - buffered;
    this.#poke(); // for sinks that cannot say when they took a chunk
    if (buffered === 0 || drained > this._lastDrained) {
      this._stalledSince = -1;
    } else if (this._stalledSince === -1) {
      this._stalledSince = now;
    } else if (now - this._stalledSince >= stallTimeoutMs) {
      this.#sink.destroy();
      this.#end('stall');
      return;
    }
    this._lastDrained = drained;
  }

  #fits(bytes: number, key: string | undefined): boolean {
    let limit = this.#maxBuffered;
    if (this.#replayEnd > 0) {
      const unreleased = this.#replayEnd - (this.#bytesSent - this.#sink.buffered);
      if (unreleased > 0) limit += unreleased;
      else this.#replayEnd = 0;
    }
    if (this.#sink.buffered + this.#queued + bytes <= limit) return true;
    if (this.#overflow === 'close') {
      this.#count(1, 'close', bytes);
      this.#sink.destroy();
      this.#end('overflow');
      return false;
    }
    if (key !== undefined && this.#overflow === 'coalesce' && this.#keys.includes(key)) {
      const i = this.#keys.lastIndexOf(key);
      if (this.#sink.buffered + this.#queued - this.#queue[i]!.length + bytes <= limit) return true;
    }
    // drop-oldest (and coalesce without a match): queued events make room, oldest first.
    while (this.#queue.length > 0 && this.#sink.buffered + this.#queued + bytes > limit) {
      const dropped = this.#queue.shift()!;
      if (this.#keys.shift() !== NOT_EVENT) this.#queuedEvents--;
      this.#queued -= dropped.length;
      this.#count(1, this.#overflow, dropped.length);
    }
    if (this.#sink.buffered + this.#queued + bytes <= limit) return true;
    this.#count(1, this.#overflow, bytes); // the transport alone is full: this one cannot go
    return false;
  }

  #count(n: number, policy: string, bytes: number): void {
    this.#drops += n;
    this.#hub._countDrop(n);
    if (sseChannels.drop.hasSubscribers) sseChannels.drop.publish({ stream: this, policy, bytes });
  }

  #schedule(): void {
    if (!this._dirty && this.#started) {
      this._dirty = true;
      this.#hub._markDirty(this);
    }
  }

  #flushNow(): void {
    if (!this.#started || this.#closed || this.#queued === 0) return;
    const queue = this.#queue;
    const chunk = queue.length === 1 ? queue[0]! : this.#hub._join(queue, this.#queued);
    const events = this.#queuedEvents;
    this.#queue = [];
    this.#keys = [];
    this.#queued = 0;
    this.#queuedEvents = 0;
    this.#bytesSent += chunk.length;
    this.#eventsSent += events;
    if (events > 0) this.#hub._countSent(events);
    this._lastWrite = this.#hub._now();
    try {
      if (this.#replaying) this.#sink.write(chunk, (this.#written ??= () => this.#poke()));
      else this.#sink.write(chunk);
    } catch {
      this.#sink.destroy();
      this.#end('error');
    }
  }

  #end(reason: SseCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#keys = [];
    this.#queued = 0;
    this.#queuedEvents = 0;
    this.#hub._remove(this);
    this.#poke();
    if (sseChannels.close.hasSubscribers) sseChannels.close.publish({ stream: this, reason });
    const callbacks = this.#onClose;
    this.#onClose = undefined;
    if (typeof callbacks === 'function') callbacks(reason);
    else if (callbacks !== undefined) for (const cb of callbacks) cb(reason);
  }
}

/** Options for {@link SseHub}. */
export interface SseHubOptions extends SseStreamOptions {
  /**
   * A heartbeat comment goes to each connection that sent nothing for this long, in ms.
   * Real traffic pushes it back. `0` disables heartbeats.
   * @defaultValue 15000
   */
  readonly heartbeatMs?: number;
  /**
   * A connection whose transport takes no bytes for this long is closed, in ms.
   * @defaultValue 30000
   */
  readonly stallTimeoutMs?: number;
  /**
   * Connections flushed per event-loop turn; the rest wait for the next turn.
   * @defaultValue 2000
   */
  readonly flushSliceSize?: number;
  /**
   * The secret stop tokens are signed with (HMAC-SHA256), at least 32 characters: give every
   * process that serves the same streams (the workers of a `node:cluster`, the replicas behind a
   * load balancer) the same one, and a client stopped by one is answered 204 by any of them. A
   * token carries its own expiry (a day) and nothing is stored per token. Rotating the secret
   * forgets the tokens signed with the old one (their clients reconnect once, and are stopped
   * again if the app closes them again).
   * @defaultValue a random secret of this hub: its tokens are honored by this hub only
   */
  readonly stopTokenSecret?: string;
  /**
   * The time source.
   * @defaultValue the real clock
   */
  readonly clock?: Clock;
}

/** Counters reported by {@link SseHub.stats}. */
export interface SseHubStats {
  /** Open connections. */
  readonly connections: number;
  /** Bytes queued across connections now (not yet handed to their transports). */
  readonly bytesQueued: number;
  /**
   * Bytes handed to the transports and not yet taken by them, across connections now (Node's
   * `writableLength`). With `bytesQueued`, what the streams hold in memory.
   */
  readonly bytesBuffered: number;
  /**
   * Events handed to transports so far (heartbeats, the opening and stop events excluded; an
   * event dropped or discarded with a cut connection is not counted).
   */
  readonly eventsSent: number;
  /** Events dropped or replaced by overflow policies so far. */
  readonly drops: number;
  /** Heartbeat comments sent so far. */
  readonly heartbeats: number;
}

const POLICIES: readonly SseOverflowPolicy[] = ['close', 'drop-oldest', 'coalesce'];

/**
 * Stop tokens: `stop-` + expiry (9 base-36 digits: ms since the epoch, good until the year 5138)
 * + nonce (16 hex digits) + MAC (32 hex digits, the first 16 bytes of the HMAC-SHA256). Only
 * `[a-z0-9]` after the prefix, and never a valid cursor.
 */
const STOP_PREFIX = 'stop-';
const STOP_EXPIRY_CHARS = 9;
const STOP_NONCE_CHARS = 16;
const STOP_MAC_BYTES = 16;
const STOP_TOKEN_LENGTH = STOP_PREFIX.length + STOP_EXPIRY_CHARS + STOP_NONCE_CHARS + STOP_MAC_BYTES * 2;
const STOP_TOKEN_TTL_MS = 86_400_000;
const MIN_STOP_SECRET_LENGTH = 32;

function stopSecret(value: unknown): Buffer {
  if (value === undefined) return randomBytes(32);
  if (typeof value !== 'string' || value.length < MIN_STOP_SECRET_LENGTH) {
    throw new InvalidArgumentError(`Expected \`stopTokenSecret\` to be a string of at least ${MIN_STOP_SECRET_LENGTH} characters, got ${typeof value === 'string' ? `${value.length} characters` : `a ${typeof value}`} (the value is not shown: it is a secret)`);
  }
  return Buffer.from(value, 'utf8');
}

function checkPolicy(value: unknown): SseOverflowPolicy {
  return check.oneOf('overflow', value, POLICIES, 'close');
}

/**
 * What a set of SSE streams shares: the per-turn flush, the one heartbeat-and-stall timer, stop
 * tokens, and counters.
 *
 * A {@link Resource}: `close()` (or `destroy()`) closes every stream (their clients may
 * reconnect, to another hub) and stops the timer; {@link SseHub.stream} then throws
 * `ClosedError`. {@link SseHub.closeAll} closes the streams and keeps the hub open.
 */
export class SseHub extends Resource {
  readonly #clock: Clock;
  readonly #options: SseStreamOptions;
  readonly #heartbeatMs: number;
  readonly #stallTimeoutMs: number;
  readonly #streams = new Set<SseStream>();
  readonly #flusher: FlushSlicer<SseStream>;
  #timer: ClockTimer | null = null;
  readonly #stopSecret: Buffer;
  #drops = 0;
  #heartbeats = 0;
  #eventsSent = 0;
  /** The last queue joined in this job, and its bytes (see {@link SseHub._join}). */
  #joinedFrom: readonly Buffer[] | undefined;
  #joined: Buffer | undefined;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options?: SseHubOptions) {
    super();
    const opts = check.optionsObject('options', options);
    this.#clock = check.optionalClock('clock', opts.clock);
    this.#heartbeatMs = check.integerInRange('heartbeatMs', opts.heartbeatMs ?? 15_000, 0, 2 ** 31 - 1);
    this.#stallTimeoutMs = check.integerInRange('stallTimeoutMs', opts.stallTimeoutMs ?? 30_000, 1, 2 ** 31 - 1);
    this.#flusher = new FlushSlicer(this.#clock, check.integerInRange('flushSliceSize', opts.flushSliceSize ?? 2000, 1, 2 ** 31 - 1));
    this.#stopSecret = stopSecret(opts.stopTokenSecret);
    this.#options = { ...opts };
    // Validate the stream defaults now, not at the first connection.
    checkPolicy(opts.overflow);
    check.integerInRange('maxBufferedBytes', opts.maxBufferedBytes ?? 1024 * 1024, 1, Number.MAX_SAFE_INTEGER);
  }

  /**
   * Makes a stream over `sink`, with the hub's defaults overridden by `options`.
   * @param identity - Who the connection is (see {@link SseStream.identity}).
   * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option; ClosedError
   *   (`PB_ERR_CLOSED`) after `close()` or `destroy()`.
   */
  stream(sink: SseSink, options?: SseStreamOptions, identity?: string): SseStream {
    this.assertOpen('stream');
    const s = new SseStream(this, sink, { ...this.#options, ...options }, this.#clock.now(), identity);
    if (s.closed) return s; // the client was already gone: nothing to keep
    this.#streams.add(s);
    this.#arm();
    return s;
  }

  /** Counters. */
  stats(): SseHubStats {
    let queued = 0;
    let buffered = 0;
    for (const s of this.#streams) {
      queued += s.stats().bytesQueued;
      buffered += s._buffered();
    }
    return { connections: this.#streams.size, bytesQueued: queued, bytesBuffered: buffered, eventsSent: this.#eventsSent, drops: this.#drops, heartbeats: this.#heartbeats };
  }

  /**
   * Whether `lastEventId` is a stop token from `close({ reconnect: false })` signed with this
   * hub's `stopTokenSecret` (by this hub, or by another with the same secret) and less than a day
   * old: answer such a request with 204. A forged, altered or expired token is not one.
   */
  isStopped(lastEventId: string | undefined): boolean {
    if (lastEventId === undefined || lastEventId.length !== STOP_TOKEN_LENGTH || !lastEventId.startsWith(STOP_PREFIX)) return false;
    const body = lastEventId.slice(STOP_PREFIX.length, STOP_PREFIX.length + STOP_EXPIRY_CHARS + STOP_NONCE_CHARS);
    const mac = Buffer.from(lastEventId.slice(STOP_PREFIX.length + body.length), 'hex');
    if (mac.length !== STOP_MAC_BYTES || !/^[0-9a-z]+$/.test(body)) return false;
    if (!timingSafeEqual(mac, this.#stopMac(body))) return false;
    return Number.parseInt(body.slice(0, STOP_EXPIRY_CHARS), 36) > this.#epochNow();
  }

  /** Closes every stream (they may reconnect) and stops the timer; the hub stays open for new streams. */
  closeAll(): void {
    for (const s of [...this.#streams]) s.close();
    this.#disarm();
  }

  /** Closes every stream; later {@link SseHub.stream} calls throw `ClosedError`. */
  protected onClose(): void {
    this.closeAll();
  }

  /** As {@link SseHub.onClose}: closing a stream is immediate already. */
  protected onDestroy(): void {
    this.closeAll();
  }

  /**
   * A new stop token: `stop-`, its expiry (ms since the epoch, base 36), a random nonce, and the
   * HMAC of both under the hub's secret. Nothing is kept: {@link SseHub.isStopped} checks the MAC.
   * @internal
   */
  stopToken(): string {
    const expiry = Math.floor(this.#epochNow() + STOP_TOKEN_TTL_MS).toString(36).padStart(STOP_EXPIRY_CHARS, '0');
    const body = `${expiry}${randomBytes(STOP_NONCE_CHARS / 2).toString('hex')}`;
    return `${STOP_PREFIX}${body}${this.#stopMac(body).toString('hex')}`;
  }

  #stopMac(body: string): Buffer {
    return createHmac('sha256', this.#stopSecret).update(body).digest().subarray(0, STOP_MAC_BYTES);
  }

  /**
   * Now in ms since the epoch, on the injected clock: the real clock's `performance.now()` counts
   * from `performance.timeOrigin`, so processes on one machine (or synchronized machines) agree
   * on a token's expiry; hubs sharing a manual clock agree with each other.
   */
  #epochNow(): number {
    return performance.timeOrigin + this.#clock.now();
  }

  /** @internal */
  _now(): number {
    return this.#clock.now();
  }

  /** @internal */
  _countDrop(n: number): void {
    this.#drops += n;
  }

  /** @internal */
  _countSent(n: number): void {
    this.#eventsSent += n;
  }

  /**
   * The queued entries of one stream as one chunk. Streams sent the same events in a turn (a
   * broadcast) share one `Buffer`: joined once, and held once by every socket's queue. The join is
   * forgotten when the current job ends (a microtask), so nothing is held between turns.
   * @internal
   */
  _join(queue: readonly Buffer[], bytes: number): Buffer {
    const from = this.#joinedFrom;
    if (from !== undefined && from.length === queue.length && this.#joined!.length === bytes) {
      let i = 0;
      while (i < queue.length && queue[i] === from[i]) i++;
      if (i === queue.length) return this.#joined!;
    }
    const joined = Buffer.concat(queue as Buffer[], bytes);
    if (from === undefined) queueMicrotask(this.#forgetJoin);
    this.#joinedFrom = queue;
    this.#joined = joined;
    return joined;
  }

  readonly #forgetJoin = (): void => {
    this.#joinedFrom = undefined;
    this.#joined = undefined;
  };

  /** @internal */
  _markDirty(stream: SseStream): void {
    this.#flusher.add(stream);
  }

  /** @internal */
  _remove(stream: SseStream): void {
    this.#streams.delete(stream);
    if (this.#streams.size === 0) this.#disarm();
  }

  #arm(): void {
    if (this.#timer !== null) return;
    const every = Math.max(50, Math.floor(Math.min(this.#heartbeatMs || Infinity, this.#stallTimeoutMs) / 4));
    this.#timer = this.#clock.setTimer(this.#sweep, every);
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }

  readonly #sweep = (): void => {
    this.#timer = null;
    const now = this.#clock.now();
    for (const s of this.#streams) {
      s._checkStall(now, this.#stallTimeoutMs);
      if (this.#heartbeatMs > 0 && s._heartbeat(now, this.#heartbeatMs)) this.#heartbeats++;
    }
    if (this.#streams.size > 0) this.#arm();
  };
}
