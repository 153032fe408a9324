/**
 * {@link SidecarChannel}: one end of a framed, correlated, acknowledged conversation with a
 * sidecar over any byte stream.
 *
 * What it guarantees, and how:
 *
 * - **Order.** Every `send` and `request` gets the next sequence number of the channel's session
 *   and is written in that order; the peer handles them in that order.
 * - **Nothing lost within the bound.** A sent message stays in the channel until the peer
 *   acknowledges it (ACK, cumulative, after its handler has settled). While the peer is away,
 *   new messages wait in the same bounded queue (count and bytes). When a connection is lost the
 *   unacknowledged messages go back to the head of the queue and are replayed on the next one.
 *   Only the overflow policy removes a message, and every removal is counted.
 * - **Nothing duplicated.** The HELLO that opens a connection names the session; the peer answers
 *   with the last seq of that session it has taken (WELCOME), and the replay starts after it. A
 *   peer also ignores a seq it has already taken. A sidecar process that restarts remembers
 *   nothing, so a durable sidecar reports what it persisted through `serveSidecar`'s
 *   `lastHandled` hook; without one, delivery across a crash is at least once.
 * - **Requests are not replayed.** A request written on a connection that is then lost is
 *   rejected with `UnavailableError` (it may or may not have run); one still waiting in the
 *   queue is sent on the next connection. Each has a deadline (`timeoutMs`) and an AbortSignal,
 *   which also cancel it on the peer.
 * - **Backpressure both ways.** What is queued during one synchronous run (a burst of sends,
 *   the frames of one incoming chunk and their replies) goes out in one coalesced buffer, written
 *   in a microtask right after it, and writing stops when the stream says so (`write()` false)
 *   until `'drain'`. Towards the caller, `send`
 *   returns `false` past the high-water mark and {@link SidecarChannel.drain} waits for room.
 * - **A malformed or oversized frame** is a `ProtocolError` that closes that connection (never
 *   the process, never a hang); the channel reconnects as after any other loss.
 *
 * The pieces: the wire encoders and decoder in `protocol.ts`, one open stream in
 * `connection.ts`, the bounded outgoing queue in `outbox.ts`, handling and acknowledging the
 * peer's messages in `inbox.ts`, the request deadlines in `deadlines.ts`, and the two sides of
 * the handshake in `handshake.ts`. This file ties them together: the public class, its options,
 * the write loop, reconnection and the lifecycle.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { Events } from '../core/events.js';
import { onAbort, throwIfAborted } from '../core/abort.js';
import { backoffDelay, resolveBackoff, type Backoff, type BackoffOptions } from '../core/backoff.js';
import type { Clock, ClockTimer } from '../core/clock.js';
import { channel as diagnostics } from '../core/diagnostics.js';
import { ClosedError, InvalidArgumentError, OverflowError, ProtocolError, RemoteError, TimeoutError, UnavailableError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import {
  describe,
  integerInRange,
  oneOf,
  optionalClock,
  optionalFunction,
  optionalSignal,
  optionsObject,
  positiveNumber,
  timeout as timeoutValue,
} from '../core/validate.js';
import { Connection, destroyStream, sidecarConnector, type SidecarConnector, type SidecarStream, type SidecarTarget } from './connection.js';
import { DeadlineHeap } from './deadlines.js';
import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES, MAX_FRAME_BYTES_LIMIT } from './framing.js';
import { appHandshake, checkOpening, HANDSHAKE, type Handshake } from './handshake.js';
import { Inbox, type SidecarHandler } from './inbox.js';
import {
  Outbox,
  OVERFLOW_POLICIES,
  type Entry,
  type PendingRequest,
  type SidecarDropCounts,
  type SidecarDropInfo,
  type SidecarOverflowPolicy,
} from './outbox.js';
import { ackJson, BYE_JSON, cancelJson, checkOutgoing, decodeEnvelope, Kind, pingJson, pongJson, requestJson, sendJson, type Envelope } from './protocol.js';

/**
 * Reconnection backoff of a channel that connects by itself: exponential with jitter, the
 * library's one backoff shape. Defaults here: `initialDelayMs` 50, `maxDelayMs` 5000, `factor` 2,
 * `jitter` 0.2.
 */
export type SidecarReconnectOptions = BackoffOptions;

/** Options of {@link SidecarChannel}. */
export interface SidecarChannelOptions {
  /**
   * Where the peer is. The channel connects at once and, after a loss, again (see `reconnect`).
   * Leave it out to hand the channel streams yourself with {@link SidecarChannel.attach}, as
   * `SidecarSupervisor` does.
   */
  readonly connect?: SidecarTarget;
  /**
   * Reconnect after a loss when `connect` is given; `false` to stay disconnected.
   * @defaultValue `{ initialDelayMs: 50, maxDelayMs: 5000, factor: 2, jitter: 0.2 }`
   */
  readonly reconnect?: boolean | SidecarReconnectOptions;
  /** Handles sends and requests from the peer. Without one, their requests are answered with an error. */
  readonly handler?: SidecarHandler;
  /**
   * The most messages the channel holds: waiting to be written plus written and not yet acknowledged.
   * @defaultValue `10000`
   */
  readonly maxQueuedMessages?: number;
  /**
   * The most bytes (of encoded messages) the channel holds, counted as `maxQueuedMessages` is.
   * @defaultValue `16777216` (16 MiB)
   */
  readonly maxQueuedBytes?: number;
  /**
   * Past this many held messages `send` returns `false`: wait for {@link SidecarChannel.drain}.
   * @defaultValue half of `maxQueuedMessages`
   */
  readonly highWaterMark?: number;
  /**
   * What to do when the bound is reached.
   * @defaultValue `'drop-oldest'`
   */
  readonly overflow?: SidecarOverflowPolicy;
  /**
   * The default deadline of a request, from the call to the reply, queueing included.
   * @defaultValue `30000`
   */
  readonly requestTimeoutMs?: number;
  /**
   * The largest frame payload taken from the peer, and the largest message sent to it.
   * @defaultValue `1048576` (1 MiB)
   */
  readonly maxFrameBytes?: number;
  /**
   * How long `close()` waits for the queue to be written and acknowledged before it gives up
   * on what is left (counted as `undelivered`).
   * @defaultValue `5000`
   */
  readonly drainTimeoutMs?: number;
  /** The session id sent in HELLO. @defaultValue a random id */
  readonly session?: string;
  /** The clock for request deadlines, reconnection delays and the drain deadline. @defaultValue `realClock` */
  readonly clock?: Clock;
  /** The random source for jitter, in [0, 1). @defaultValue `Math.random` */
  readonly random?: () => number;
  /**
   * Called with each error that no caller waits for: protocol errors (the connection is then
   * closed), connection failures, a send handler that threw. They are also emitted as `'error'`
   * events when someone listens.
   */
  readonly onError?: (error: unknown) => void;
}

/** Options of {@link SidecarChannel.request}. */
export interface SidecarRequestOptions {
  /** The deadline, from now to the reply. @defaultValue the channel's `requestTimeoutMs` */
  readonly timeoutMs?: number;
  /** Cancels the request: it is removed from the queue, or the peer's handler is aborted. */
  readonly signal?: AbortSignal;
}

/** Options of {@link SidecarChannel.drain}. */
export interface SidecarDrainOptions {
  /** Stops waiting: `drain` rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Options of {@link SidecarChannel.ping}. */
export interface SidecarPingOptions {
  /** How long to wait for the PONG. @defaultValue `1000` */
  readonly timeoutMs?: number;
  /** Gives up waiting. */
  readonly signal?: AbortSignal;
}

/** Counters and gauges of a channel. */
export interface SidecarChannelStats {
  /** Whether a connection is open and its handshake done. */
  readonly connected: boolean;
  /** The session id. */
  readonly session: string;
  /** Messages held: waiting to be written plus written and not yet acknowledged. */
  readonly queuedMessages: number;
  /** Bytes of the held messages. */
  readonly queuedBytes: number;
  /** Of the held messages, those written and waiting for an ACK. */
  readonly unacked: number;
  /** Requests waiting for a reply. */
  readonly pendingRequests: number;
  /** Sends and requests accepted. */
  readonly accepted: number;
  /** Sends acknowledged by the peer. */
  readonly delivered: number;
  /** Messages written again after a reconnection. */
  readonly replayed: number;
  /** Messages removed by the overflow policy, by policy. */
  readonly dropped: SidecarDropCounts;
  /** Messages still held when `close()` gave up waiting. */
  readonly undelivered: number;
  /** Sends and requests taken from the peer (duplicates not counted). */
  readonly received: number;
  /** Duplicate messages from the peer, ignored. */
  readonly duplicates: number;
  /** Connections made (handshakes completed). */
  readonly connections: number;
  /** Connections closed for a protocol error. */
  readonly protocolErrors: number;
}

/** The events of a {@link SidecarChannel}. */
export interface SidecarChannelEvents {
  /** A connection is open and its handshake done; queued messages are being written. */
  connect: [];
  /** The connection was lost (with the error, if any); held messages wait for the next one. */
  disconnect: [error: unknown];
  /** The held messages fell to half the high-water mark after `send` returned `false`. */
  drain: [];
  /** The overflow policy removed a message. */
  drop: [info: SidecarDropInfo];
  /** An error no caller waits for (see `onError`). */
  error: [error: unknown];
  /** The peer said BYE: it will send nothing more on this connection. */
  bye: [];
}

/** `node:diagnostics_channel` channels of the sidecar primitives. */
export const sidecarChannels = {
  /** `{ channel, type, seq, policy }` when the overflow policy removes a message. */
  drop: diagnostics('sidecar', 'drop'),
  /** `{ channel, error }` when a connection is closed for a protocol error. */
  protocolError: diagnostics('sidecar', 'protocol-error'),
};

/**
 * The internal option that makes a channel the sidecar's side of one accepted connection
 * (`acceptSidecarStream`). @internal
 */
export interface AcceptingChannelOptions extends SidecarChannelOptions {
  readonly [HANDSHAKE]: Handshake;
}

const DEFAULTS = {
  maxQueuedMessages: 10_000,
  maxQueuedBytes: 16 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  drainTimeoutMs: 5_000,
  pingTimeoutMs: 1_000,
  reconnect: { initialDelayMs: 50, maxDelayMs: 5_000, factor: 2, jitter: 0.2 } satisfies Backoff,
} as const;

/**
 * Bytes per write: large batches are cut so backpressure gets a say between them, and kept small
 * enough that each one's buffer comes from the allocator's heap rather than a fresh mapping
 * (in a framing micro-benchmark, 256 KiB batches cost about twice as much per message as 32 KiB
 * ones; the end-to-end sidecar bench showed no difference either way).
 */
const WRITE_BATCH_BYTES = 32 * 1024;

/** How long a connection that said BYE waits for the peer to close its side. */
const BYE_GRACE_MS = 1000;

/**
 * One end of a sidecar conversation: sends, requests with correlated replies, and the peer's
 * sends and requests to a handler, over length-prefixed frames; a bounded queue with an overflow
 * policy while the peer is away; acknowledgements, replay and deduplication across reconnections.
 *
 * The app usually gets one from `SidecarSupervisor`, which spawns and watches the sidecar
 * process; make one directly to reach a sidecar someone else runs (a container of the same Pod,
 * say). The sidecar end is `serveSidecar`.
 *
 * @example
 * ```ts
 * const channel = new SidecarChannel({ connect: '/var/run/patchbay/log-shipper.sock' });
 * channel.send('log', { level: 'info', msg: 'started' }); // queued if the sidecar is not up yet
 * const rtt = await channel.ping();
 * const stats = await channel.request('stats', undefined, { timeoutMs: 500 });
 * await channel.close(); // waits (up to drainTimeoutMs) for the queue to be acknowledged
 * ```
 */
export class SidecarChannel extends Resource {
  readonly #events = new Events<SidecarChannelEvents>();
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #onError: ((error: unknown) => void) | undefined;
  readonly #connector: SidecarConnector | undefined;
  readonly #reconnect: Backoff | undefined;
  readonly #policy: SidecarOverflowPolicy;
  readonly #requestTimeoutMs: number;
  readonly #maxFrameBytes: number;
  readonly #drainTimeoutMs: number;
  readonly #session: string;
  readonly #handshake: Handshake;
  readonly #outbox: Outbox;
  readonly #inbox: Inbox;
  readonly #deadlines: DeadlineHeap<PendingRequest>;

  #conn: Connection | undefined;
  #drainWaiters: (() => void)[] = [];
  readonly #pending = new Map<number, PendingRequest>();
  readonly #pings = new Map<number, { resolve: (rtt: number) => void; reject: (e: unknown) => void; start: number; timer: ClockTimer; abort: Disposable | undefined }>();
  #nextSeq = 1;
  #nextId = 1;
  #flushScheduled = false;
  #reconnectTimer: ClockTimer | undefined;
  #reconnectAttempt = 0;
  #connecting = false;
  readonly #endCallbacks: (() => void)[] = [];
  #connections = 0;
  #protocolErrors = 0;

  /**
   * @param options - See {@link SidecarChannelOptions}.
   * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for an option of the wrong type or range.
   */
  constructor(options: SidecarChannelOptions = {}) {
    super();
    const o = optionsObject('options', options);
    this.#clock = optionalClock('clock', o.clock);
    this.#random = optionalFunction('random', o.random) ?? Math.random;
    this.#onError = optionalFunction('onError', o.onError);
    const maxMessages = integerInRange('maxQueuedMessages', o.maxQueuedMessages ?? DEFAULTS.maxQueuedMessages, 1, 2 ** 31);
    const maxBytes = integerInRange('maxQueuedBytes', o.maxQueuedBytes ?? DEFAULTS.maxQueuedBytes, 1, Number.MAX_SAFE_INTEGER);
    const highWater = integerInRange('highWaterMark', o.highWaterMark ?? Math.max(1, Math.floor(maxMessages / 2)), 1, maxMessages);
    this.#policy = oneOf('overflow', o.overflow, OVERFLOW_POLICIES, 'drop-oldest');
    this.#requestTimeoutMs = positiveNumber('requestTimeoutMs', o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs);
    this.#maxFrameBytes = integerInRange('maxFrameBytes', o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, 16, MAX_FRAME_BYTES_LIMIT);
    this.#drainTimeoutMs = timeoutValue('drainTimeoutMs', o.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs);
    if (this.#drainTimeoutMs < 0) throw new InvalidArgumentError(`Expected \`drainTimeoutMs\` to be >= 0, got ${describe(o.drainTimeoutMs)}`);
    const session = o.session ?? randomUUID();
    if (typeof session !== 'string' || session.length === 0 || session.length > 200) {
      throw new InvalidArgumentError(`Expected \`session\` to be a string of 1 to 200 characters, got ${describe(session)}`);
    }
    this.#session = session;
    this.#handshake = (o as Partial<AcceptingChannelOptions>)[HANDSHAKE] ?? appHandshake;
    if (o.connect !== undefined) {
      this.#connector = typeof o.connect === 'function' ? o.connect : sidecarConnector(o.connect);
    }
    if (o.reconnect !== false && this.#connector !== undefined) {
      this.#reconnect = resolveBackoff('reconnect', o.reconnect === true ? undefined : o.reconnect, DEFAULTS.reconnect);
    }
    this.#outbox = new Outbox(
      { maxMessages, maxBytes, highWater, policy: this.#policy },
      {
        dropped: (entry) => this.#dropped(entry),
        evicted: (request, error) => {
          this.#settleRequest(request);
          request.reject(error);
        },
        drained: () => {
          for (const w of this.#drainWaiters.splice(0)) w();
          this.#events.emit('drain');
        },
      },
    );
    this.#inbox = new Inbox(optionalFunction('handler', o.handler), {
      channel: this,
      report: (error) => this.#report(error),
      control: (conn, json) => this.#control(conn, json),
      isCurrent: (conn) => conn === this.#conn,
      scheduleFlush: () => this.#scheduleFlush(),
    });
    this.#deadlines = new DeadlineHeap<PendingRequest>(this.#clock, (p) =>
      this.#failRequest(p, new TimeoutError(`The sidecar request "${p.type}" got no reply within ${p.timeoutMs} ms`), true),
    );
    if (this.#connector !== undefined) void this.#connectOnce();
  }

  /** The session id this channel sends in HELLO. */
  get session(): string {
    return this.#session;
  }

  /** Whether a connection is open and its handshake done. */
  get connected(): boolean {
    return this.#conn?.ready === true;
  }

  /** Messages held: waiting to be written plus written and not yet acknowledged. */
  get queuedMessages(): number {
    return this.#outbox.held;
  }

  /**
   * Subscribes to an event (see {@link SidecarChannelEvents}).
   * @returns A function that unsubscribes.
   */
  on<E extends keyof SidecarChannelEvents>(event: E, listener: (...args: SidecarChannelEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /**
   * Sends a fire-and-forget message. It is queued (and written within this event-loop turn when
   * connected), kept until the peer acknowledges it, and replayed after a reconnection.
   *
   * @param type - The message type (any string; the handler branches on it).
   * @param data - A JSON-serializable payload.
   * @returns `true` if the message was taken and the channel holds fewer than `highWaterMark`
   *   messages; `false` if the `drop-newest` policy refused it or the caller should wait for
   *   {@link SidecarChannel.drain} before sending more.
   * @throws {@link OverflowError} (`PB_ERR_OVERFLOW`) under the `reject` policy when the queue is full.
   * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) if `data` does not serialize,
   *   has a `__proto__` key (which the peer would refuse), or the message is larger than `maxFrameBytes`.
   * @throws {@link ClosedError} (`PB_ERR_CLOSED`) after `close()`.
   */
  send(type: string, data?: unknown): boolean {
    this.assertOpen('send');
    this.#checkType(type);
    const seq = this.#nextSeq;
    let json: string;
    try {
      json = sendJson(seq, type, data);
    } catch (err) {
      throw notSerializable(err);
    }
    const entry: Entry = { seq, kind: Kind.SEND, type, json: this.#checkSize(json), bytes: Buffer.byteLength(json), request: undefined, dead: false, replay: false };
    if (!this.#outbox.admit(entry)) return false;
    this.#nextSeq++;
    this.#outbox.enqueue(entry);
    this.#scheduleFlush();
    return !this.#outbox.overHighWater();
  }

  /**
   * Sends a request and resolves with the peer's reply.
   *
   * @param type - The request type.
   * @param data - A JSON-serializable payload.
   * @param options - `timeoutMs` (default `requestTimeoutMs`) and `signal`.
   * @returns The reply's data.
   * @throws (rejects) {@link TimeoutError} (`PB_ERR_TIMEOUT`) after `timeoutMs`;
   *   {@link RemoteError} (`PB_ERR_REMOTE`) when the peer's handler failed;
   *   {@link UnavailableError} (`PB_ERR_UNAVAILABLE`) when the connection was lost after the
   *   request was written; {@link OverflowError} (`PB_ERR_OVERFLOW`) when the queue's policy
   *   removed it; {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) as for `send`; the
   *   signal's reason when it aborts; {@link ClosedError} (`PB_ERR_CLOSED`) when the channel closes first.
   */
  request(type: string, data?: unknown, options?: SidecarRequestOptions): Promise<unknown> {
    try {
      this.assertOpen('request');
      this.#checkType(type);
      const o = optionsObject('options', options);
      const signal = optionalSignal('signal', o.signal);
      const timeoutMs = o.timeoutMs === undefined ? this.#requestTimeoutMs : positiveNumber('timeoutMs', o.timeoutMs);
      throwIfAborted(signal);
      const seq = this.#nextSeq;
      const id = this.#nextId;
      let json: string;
      try {
        json = requestJson(seq, id, type, data);
      } catch (err) {
        throw notSerializable(err);
      }
      this.#checkSize(json);
      return new Promise<unknown>((resolve, reject) => {
        const pending: PendingRequest = {
          id,
          resolve,
          reject,
          deadline: this.#clock.now() + timeoutMs,
          type,
          timeoutMs,
          done: false,
          abort: undefined,
          entry: undefined,
          written: undefined,
        };
        const entry: Entry = { seq, kind: Kind.REQUEST, type, json, bytes: Buffer.byteLength(json), request: pending, dead: false, replay: false };
        pending.entry = entry;
        if (!this.#outbox.admit(entry)) {
          reject(new OverflowError(`The sidecar queue is full (${this.#outbox.held} messages, ${this.#outbox.heldBytes} bytes); the request was refused (drop-newest)`));
          return;
        }
        this.#nextSeq++;
        this.#nextId++;
        this.#pending.set(id, pending);
        this.#deadlines.add(pending);
        if (signal !== undefined) pending.abort = onAbort(signal, (reason) => this.#failRequest(pending, reason, true));
        this.#outbox.enqueue(entry);
        this.#scheduleFlush();
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Measures a round trip: a PING answered by the peer's connection (not by its handler), so it
   * tells whether the peer's event loop is responsive.
   *
   * @param options - `timeoutMs` (default 1000) and `signal`.
   * @returns The round-trip time in ms, by the channel's clock.
   * @throws (rejects) {@link UnavailableError} (`PB_ERR_UNAVAILABLE`) when not connected or the
   *   connection is lost; {@link TimeoutError} (`PB_ERR_TIMEOUT`) when no PONG comes in time.
   */
  ping(options?: SidecarPingOptions): Promise<number> {
    try {
      this.assertOpen('ping');
      const o = optionsObject('options', options);
      const signal = optionalSignal('signal', o.signal);
      const timeoutMs = o.timeoutMs === undefined ? DEFAULTS.pingTimeoutMs : positiveNumber('timeoutMs', o.timeoutMs);
      throwIfAborted(signal);
      const conn = this.#conn;
      if (conn === undefined || !conn.ready) return Promise.reject(new UnavailableError('The sidecar is not connected'));
      const id = this.#nextId++;
      return new Promise<number>((resolve, reject) => {
        const done = (): void => {
          const p = this.#pings.get(id);
          if (p === undefined) return;
          this.#pings.delete(id);
          p.timer.cancel();
          p.abort?.[Symbol.dispose]();
        };
        const timer = this.#clock.setTimer(() => {
          done();
          reject(new TimeoutError(`The sidecar did not answer a ping within ${timeoutMs} ms`));
        }, timeoutMs);
        this.#pings.set(id, {
          resolve: (rtt) => {
            done();
            resolve(rtt);
          },
          reject: (e) => {
            done();
            reject(e);
          },
          start: this.#clock.now(),
          timer,
          abort: undefined,
        });
        if (signal !== undefined) {
          this.#pings.get(id)!.abort = onAbort(signal, (reason) => {
            done();
            reject(reason);
          });
        }
        this.#control(conn, pingJson(id));
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Resolves once the queue has room: at once when the channel holds fewer than `highWaterMark`
   * messages, otherwise when it has fallen to half of it. A producer paces itself with
   * `if (!channel.send(t, d)) await channel.drain()`.
   *
   * @param options - `signal` stops waiting (rejects with its reason).
   * @throws (rejects) {@link ClosedError} (`PB_ERR_CLOSED`) if the channel closes first.
   */
  drain(options?: SidecarDrainOptions): Promise<void> {
    let signal: AbortSignal | undefined;
    try {
      this.assertOpen('drain');
      signal = optionalSignal('signal', optionsObject('options', options).signal);
      throwIfAborted(signal);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.#outbox.overHighWater()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let sub: Disposable | undefined;
      const waiter = (): void => {
        sub?.[Symbol.dispose]();
        if (this.closed) reject(new ClosedError('The sidecar channel closed while waiting for drain'));
        else resolve();
      };
      this.#drainWaiters.push(waiter);
      if (signal !== undefined) {
        sub = onAbort(signal, (reason) => {
          sub?.[Symbol.dispose]();
          const i = this.#drainWaiters.indexOf(waiter);
          if (i !== -1) this.#drainWaiters.splice(i, 1);
          reject(reason);
        });
      }
    });
  }

  /**
   * Uses `stream` as the connection to the peer, replacing the current one (if any, it is
   * closed and its unacknowledged messages are replayed on the new one). The handshake starts
   * at once; `'connect'` fires when it is done.
   *
   * @param stream - A connected duplex stream, or `{ readable, writable }`.
   * @throws {@link ClosedError} (`PB_ERR_CLOSED`) after `close()`.
   */
  attach(stream: SidecarStream): void {
    if (this.state !== 'open' && this.state !== 'closing') this.assertOpen('attach');
    if (typeof stream !== 'object' || stream === null) throw new InvalidArgumentError(`Expected a stream, got ${describe(stream)}`);
    if (this.#conn !== undefined) this.#lose(this.#conn, new UnavailableError('The sidecar connection was replaced'));
    const conn = new Connection(stream, this.#maxFrameBytes);
    conn.messageSession = this.#session;
    this.#conn = conn;
    conn.on(conn.readable, 'data', (chunk: Buffer) => this.#onData(conn, chunk));
    const lost = (err?: unknown): void => this.#lose(conn, err ?? new UnavailableError('The sidecar connection closed'));
    conn.on(conn.readable, 'end', () => lost());
    conn.on(conn.readable, 'close', () => lost());
    conn.on(conn.readable, 'error', (err: Error) => lost(new UnavailableError(`The sidecar connection failed: ${err.message}`, { cause: err })));
    if (!conn.duplex) {
      conn.on(conn.writable, 'close', () => lost());
      conn.on(conn.writable, 'error', (err: Error) => lost(new UnavailableError(`The sidecar connection failed: ${err.message}`, { cause: err })));
    }
    conn.on(conn.writable, 'drain', () => {
      conn.blocked = false;
      this.#flush();
    });
    const opening = this.#handshake.opening(this.#session);
    if (opening !== undefined) this.#control(conn, opening);
  }

  /**
   * Closes the current connection, if any, as if it were lost: unacknowledged messages go back
   * to the queue, requests in flight fail with {@link UnavailableError}, and a channel that
   * connects by itself reconnects.
   */
  disconnect(): void {
    if (this.#conn !== undefined) this.#lose(this.#conn, new UnavailableError('The sidecar connection was closed by disconnect()'));
  }

  /** Runs `callback` once the channel is closed or destroyed. @internal */
  _onEnd(callback: () => void): void {
    if (this.state === 'closed' || this.state === 'destroyed') queueMicrotask(callback);
    else this.#endCallbacks.push(callback);
  }

  /** Counters and gauges; see {@link SidecarChannelStats}. */
  stats(): SidecarChannelStats {
    const out = this.#outbox;
    return {
      connected: this.connected,
      session: this.#session,
      queuedMessages: out.held,
      queuedBytes: out.heldBytes,
      unacked: out.unacked.length,
      pendingRequests: this.#pending.size,
      accepted: out.accepted,
      delivered: out.delivered,
      replayed: out.replayed,
      dropped: { oldest: out.droppedOldest, newest: out.droppedNewest, rejected: out.rejected },
      undelivered: out.undelivered,
      received: this.#inbox.received,
      duplicates: this.#inbox.duplicates,
      connections: this.#connections,
      protocolErrors: this.#protocolErrors,
    };
  }

  // --- outgoing ------------------------------------------------------------------------------

  #checkType(type: unknown): asserts type is string {
    if (typeof type !== 'string') throw new InvalidArgumentError(`Expected \`type\` to be a string, got ${describe(type)}`);
  }

  /** Refuses a message larger than a frame, or one the peer would refuse. */
  #checkSize(json: string): string {
    if (json.length * 3 > this.#maxFrameBytes && Buffer.byteLength(json) > this.#maxFrameBytes) {
      throw new InvalidArgumentError(`The message is ${Buffer.byteLength(json)} bytes, more than maxFrameBytes (${this.#maxFrameBytes})`);
    }
    return checkOutgoing(json);
  }

  #dropped(entry: Entry): void {
    const info: SidecarDropInfo = { type: entry.type, seq: entry.seq, policy: this.#policy };
    if (sidecarChannels.drop.hasSubscribers) sidecarChannels.drop.publish({ channel: this, ...info });
    this.#events.emit('drop', info);
  }

  #control(conn: Connection, json: string): void {
    conn.control.push(json);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(this.#flushTask);
  }

  readonly #flushTask = (): void => {
    this.#flushScheduled = false;
    this.#flush();
  };

  /** Writes control frames, then queued messages, in batches, until the stream pushes back. */
  #flush(): void {
    const conn = this.#conn;
    if (conn === undefined || conn.closed || conn.blocked) return;
    if (this.#inbox.ackToSend > 0 && conn.ready) conn.control.push(ackJson(this.#inbox.takeAck()));
    while (!conn.blocked && !conn.closed) {
      const parts: string[] = [];
      const lengths: number[] = [];
      let total = 0;
      for (const json of conn.control) {
        const n = Buffer.byteLength(json);
        parts.push(json);
        lengths.push(n);
        total += FRAME_HEADER_BYTES + n;
      }
      conn.control = [];
      if (conn.ready) total = this.#outbox.take(conn, parts, lengths, total, WRITE_BATCH_BYTES, FRAME_HEADER_BYTES);
      if (parts.length === 0) return;
      conn.writeFrames(parts, lengths, total);
    }
  }

  // --- incoming ------------------------------------------------------------------------------

  #onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed) return;
    try {
      conn.decoder.pushText(chunk, (payload, plain) => {
        if (!conn.closed) this.#onEnvelope(conn, decodeEnvelope(payload, plain));
      });
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.#protocolErrors++;
        if (sidecarChannels.protocolError.hasSubscribers) sidecarChannels.protocolError.publish({ channel: this, error: err });
        this.#report(err);
        this.#lose(conn, err, true);
      } else {
        this.#report(err);
      }
    }
    if (this.#inbox.ackToSend > 0) this.#scheduleFlush();
  }

  #onEnvelope(conn: Connection, m: Envelope): void {
    switch (m[0]) {
      case Kind.HELLO:
      case Kind.WELCOME: {
        checkOpening(this.#handshake, conn, m);
        const greeting = this.#handshake.greet(conn, m);
        // The peer already has everything up to `peerHas`: those replays are delivered, not resent.
        this.#outbox.skipTo(greeting.peerHas, (request) =>
          this.#failRequest(request, new UnavailableError('The sidecar had taken the request before a restart'), false),
        );
        this.#inbox.reset(greeting.lastIn);
        conn.ready = true;
        this.#connections++;
        this.#reconnectAttempt = 0;
        if (greeting.reply !== undefined) this.#control(conn, greeting.reply);
        this.#events.emit('connect');
        this.#scheduleFlush();
        return;
      }
      case Kind.SEND:
      case Kind.REQUEST:
        if (!conn.ready) throw new ProtocolError('A message came before the handshake');
        this.#inbox.receive(conn, m);
        return;
      case Kind.REPLY:
      case Kind.ERROR: {
        const pending = this.#pending.get(m[1]);
        if (pending === undefined) return; // timed out or canceled meanwhile
        this.#settleRequest(pending);
        if (m[0] === Kind.REPLY) pending.resolve(m[2]);
        else pending.reject(new RemoteError(m[3], { remoteCode: m[2] }));
        return;
      }
      case Kind.ACK:
        this.#outbox.ack(m[1]);
        return;
      case Kind.PING:
        this.#control(conn, pongJson(m[1]));
        return;
      case Kind.PONG: {
        const p = this.#pings.get(m[1]);
        p?.resolve(this.#clock.now() - p.start);
        return;
      }
      case Kind.CANCEL:
        conn.handling.get(m[1])?.abort(new TimeoutError('The requester canceled the request'));
        return;
      case Kind.BYE:
        this.#events.emit('bye');
        return;
    }
  }

  // --- connection loss and reconnection -----------------------------------------------------

  #lose(conn: Connection, error: unknown, destroy = true): void {
    if (conn.closed) return;
    conn.closed = true;
    if (destroy) conn.destroy(error instanceof ProtocolError ? error : undefined);
    conn.abortHandling(new UnavailableError('The sidecar connection was lost'));
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    this.#outbox.requeueUnacked();
    for (const pending of [...this.#pending.values()]) {
      if (pending.written === conn) this.#failRequest(pending, new UnavailableError('The sidecar connection was lost with the request in flight; it may or may not have run'), false);
    }
    for (const p of [...this.#pings.values()]) p.reject(new UnavailableError('The sidecar connection was lost during a ping'));
    this.#inbox.onLost();
    if (conn.ready) this.#events.emit('disconnect', error);
    if (this.#handshake.endsWithConnection) {
      // An accepted connection is the whole life of its channel.
      this.destroy(error instanceof ProtocolError ? error : new UnavailableError('The app disconnected'));
      return;
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#connector === undefined || this.#reconnect === undefined || this.#reconnectTimer !== undefined) return;
    if (this.state === 'destroyed' || this.state === 'closed') return;
    const delay = backoffDelay(this.#reconnect, ++this.#reconnectAttempt, this.#random);
    this.#reconnectTimer = this.#clock.setTimer(() => {
      this.#reconnectTimer = undefined;
      void this.#connectOnce();
    }, delay);
  }

  async #connectOnce(): Promise<void> {
    if (this.#connector === undefined || this.#connecting || this.#conn !== undefined) return;
    this.#connecting = true;
    try {
      const stream = await this.#connector();
      this.#connecting = false;
      if (this.state === 'destroyed' || this.state === 'closed') {
        destroyStream(stream);
        return;
      }
      this.attach(stream);
    } catch (err) {
      this.#connecting = false;
      if (this.#reconnectAttempt === 0) this.#report(new UnavailableError(`Cannot connect to the sidecar: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      this.#scheduleReconnect();
    }
  }

  // --- requests ------------------------------------------------------------------------------

  #settleRequest(pending: PendingRequest): void {
    this.#pending.delete(pending.id);
    this.#deadlines.settle(pending);
    pending.abort?.[Symbol.dispose]();
    pending.abort = undefined;
  }

  /** Ends a request with `reason`; `cancelRemote` sends CANCEL when it was written. */
  #failRequest(pending: PendingRequest, reason: unknown, cancelRemote: boolean): void {
    if (!this.#pending.has(pending.id)) return;
    this.#settleRequest(pending);
    if (pending.entry !== undefined && !pending.entry.dead) this.#outbox.release(pending.entry);
    pending.entry = undefined;
    const conn = pending.written;
    if (cancelRemote && conn !== undefined && conn === this.#conn && !conn.closed) this.#control(conn, cancelJson(pending.id));
    pending.reject(reason);
  }

  #report(error: unknown): void {
    if (this.#onError !== undefined) {
      try {
        this.#onError(error);
      } catch {
        // an onError that throws must not break the channel
      }
    }
    if (this.#events.listenerCount('error') > 0) this.#events.emit('error', error);
  }

  // --- lifecycle -----------------------------------------------------------------------------

  /** Waits for the queue to be acknowledged (up to `drainTimeoutMs`), says BYE and ends the stream. */
  protected override async onClose(): Promise<void> {
    await this.#outbox.waitIdle(this.#clock, this.#drainTimeoutMs, () => this.#pending.size === 0);
    // Pending requests may still settle after the queue emptied: give them the same deadline.
    this.#shutdown(new ClosedError('The sidecar channel closed'), true);
  }

  /** Drops everything at once. */
  protected override onDestroy(reason: unknown): void {
    this.#shutdown(reason ?? new ClosedError('The sidecar channel was destroyed'), false);
  }

  #shutdown(reason: unknown, graceful: boolean): void {
    this.#reconnectTimer?.cancel();
    this.#reconnectTimer = undefined;
    this.#outbox.releaseAll();
    for (const pending of [...this.#pending.values()]) this.#failRequest(pending, reason, false);
    this.#deadlines.clear();
    for (const p of [...this.#pings.values()]) p.reject(reason);
    for (const w of this.#drainWaiters.splice(0)) w();
    for (const w of this.#outbox.idleWaiters.splice(0)) w();
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn !== undefined && !conn.closed) {
      conn.closed = true;
      conn.abortHandling(reason);
      if (graceful && !conn.blocked) {
        const last = [...conn.control];
        const ack = this.#inbox.takeAck();
        if (ack > 0 && conn.ready) last.push(ackJson(ack));
        last.push(BYE_JSON);
        conn.endWith(last, this.#clock, BYE_GRACE_MS);
      } else {
        conn.destroy();
      }
      if (conn.ready) this.#events.emit('disconnect', reason);
    }
    this.#events.removeAllListeners();
    for (const callback of this.#endCallbacks.splice(0)) callback();
  }
}

function notSerializable(err: unknown): InvalidArgumentError {
  return new InvalidArgumentError(`Expected \`data\` to be JSON-serializable: ${(err as Error).message}`, { cause: err });
}
