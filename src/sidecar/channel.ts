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
 * @module
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { EventEmitter } from 'eventemitter3';
import { onAbort, throwIfAborted } from '../core/abort.js';
import { realClock, type Clock, type ClockTimer } from '../core/clock.js';
import { channel as diagnostics } from '../core/diagnostics.js';
import {
  ClosedError,
  ErrorCodes,
  InvalidArgumentError,
  OverflowError,
  PatchbayError,
  ProtocolError,
  RemoteError,
  TimeoutError,
  UnavailableError,
} from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import {
  describe,
  integerInRange,
  optionalFunction,
  optionalSignal,
  optionsObject,
  positiveNumber,
  timeout as timeoutValue,
} from '../core/validate.js';
import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES, FrameDecoder, MAX_FRAME_BYTES_LIMIT } from './framing.js';
import { decodeEnvelope, Kind, PROTOCOL_VERSION, requestJson, sendJson, type Envelope } from './protocol.js';

/** A readable and a writable used as one connection, such as a child's stdout and stdin. */
export interface SidecarStreamPair {
  /** Where the peer's bytes come from. */
  readonly readable: Readable;
  /** Where bytes for the peer go. */
  readonly writable: Writable;
}

/** What a channel runs over: a duplex stream (a socket), or a readable and a writable (stdio). */
export type SidecarStream = (Readable & Writable) | SidecarStreamPair;

/** A TCP port to connect to. */
export interface SidecarTcpTarget {
  /** The port. */
  readonly port: number;
  /** The host. @defaultValue `'127.0.0.1'` */
  readonly host?: string;
}

/** Opens a new connection to the peer; called again after each loss when reconnecting. */
export type SidecarConnector = () => SidecarStream | Promise<SidecarStream>;

/** Where to connect: a connector, a Unix socket path, or a TCP port on loopback. */
export type SidecarTarget = SidecarConnector | string | SidecarTcpTarget;

/**
 * What the overflow policy does when a new message would exceed the queue's bound:
 * `drop-oldest` removes the oldest queued messages to make room, `drop-newest` refuses the new
 * one (`send` returns `false`), `reject` throws {@link OverflowError}. Every drop is counted.
 */
export type SidecarOverflowPolicy = 'drop-oldest' | 'drop-newest' | 'reject';

/** A message from the peer, as a {@link SidecarHandler} sees it. */
export interface SidecarMessage {
  /** `send` (fire-and-forget: the return value is ignored) or `request` (the return value is the reply). */
  readonly kind: 'send' | 'request';
  /** The message type the sender chose, such as `log` or `metrics.count`. */
  readonly type: string;
  /** The payload, as JSON gave it back (`undefined` when none was sent). */
  readonly data: unknown;
  /** The message's sequence number in its session: increasing, never repeated. */
  readonly seq: number;
  /** The sender's session id (stable across its reconnections). */
  readonly session: string;
}

/** What a handler gets besides the message. */
export interface SidecarContext {
  /**
   * For a request: aborted when the requester cancels or times out, or the connection is lost.
   * For a send: never aborted.
   */
  readonly signal: AbortSignal;
  /** The channel the message came in on: send or request back to the peer through it. */
  readonly channel: SidecarChannel;
}

/**
 * Handles a message from the peer. For a request, the returned value (or the value the returned
 * promise resolves to) is the reply, and a throw or rejection is an error reply carrying the
 * error's `code` (a {@link RemoteError} on the other side). The message is acknowledged once the
 * handler has settled.
 */
export type SidecarHandler = (message: SidecarMessage, context: SidecarContext) => unknown;

/** Reconnection backoff of a channel that connects by itself. */
export interface SidecarReconnectOptions {
  /**
   * The delay before the first retry.
   * @defaultValue `50`
   */
  readonly initialDelayMs?: number;
  /**
   * The longest delay between retries.
   * @defaultValue `5000`
   */
  readonly maxDelayMs?: number;
  /**
   * The share of each delay taken at random (0 to 1), so many apps do not retry in step.
   * @defaultValue `0.2`
   */
  readonly jitter?: number;
}

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
   * @defaultValue `{ initialDelayMs: 50, maxDelayMs: 5000, jitter: 0.2 }`
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

/** Options of {@link SidecarChannel.ping}. */
export interface SidecarPingOptions {
  /** How long to wait for the PONG. @defaultValue `1000` */
  readonly timeoutMs?: number;
  /** Gives up waiting. */
  readonly signal?: AbortSignal;
}

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

// --- internals -------------------------------------------------------------------------------

interface PendingRequest {
  readonly id: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (reason: unknown) => void;
  /** When it times out, by the channel's clock. */
  readonly deadline: number;
  readonly type: string;
  readonly timeoutMs: number;
  /** Settled: its place in the deadline heap is stale. */
  done: boolean;
  abort: Disposable | undefined;
  /** The queue entry while it waits to be written; undefined once written. */
  entry: Entry | undefined;
  /** The connection it was written on. */
  written: Connection | undefined;
}

interface Entry {
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

/** An array queue with a moving head: O(1) push and shift, compacted now and then. */
class Deque<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  peek(): T | undefined {
    return this.#items[this.#head];
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head]!;
    (this.#items as (T | undefined)[])[this.#head] = undefined;
    this.#head++;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
  /** Puts `items` (in order) before the current head. */
  unshiftAll(items: readonly T[]): void {
    if (items.length === 0) return;
    this.#items = [...items, ...this.#items.slice(this.#head)];
    this.#head = 0;
  }
  drain(): T[] {
    const all = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return all;
  }
}

/** Server-side state shared by the connections of one `serveSidecar`. @internal */
export interface AcceptState {
  /** Per app session: the last seq taken. */
  readonly sessions: Map<string, { last: number }>;
  /** The durable resume point of a session, from the sidecar. */
  readonly lastHandled: ((session: string) => number | undefined) | undefined;
}

/**
 * An incoming request being handled. Its AbortController is made only if the handler reads
 * `context.signal` (most do not); a cancel that comes first is kept and applied then.
 */
class Handling {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** One open stream. */
class Connection {
  readonly readable: Readable;
  readonly writable: Writable;
  readonly decoder: FrameDecoder;
  /** Handshake done. */
  ready = false;
  /** `write()` said false: wait for 'drain'. */
  blocked = false;
  closed = false;
  /** Control frames (replies, acks, pongs...) to write before queued messages. */
  control: string[] = [];
  /** Incoming requests being handled, by id, for CANCEL. */
  readonly handling = new Map<number, Handling>();
  /** The session handlers see: the peer's (accepting side) or the channel's own. */
  messageSession = '';
  /** The accepting side's resume record of the peer's session. */
  resume: { last: number } | undefined;
  readonly #cleanup: (() => void)[] = [];

  constructor(stream: SidecarStream, maxFrameBytes: number) {
    if ('readable' in stream && 'writable' in stream && typeof (stream as { readable: unknown }).readable === 'object') {
      this.readable = (stream as { readable: Readable }).readable;
      this.writable = (stream as { writable: Writable }).writable;
    } else {
      this.readable = stream as Readable;
      this.writable = stream as Writable;
    }
    this.decoder = new FrameDecoder({ maxFrameBytes });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- stream listeners take what each event gives
  on(target: Readable | Writable, event: string, listener: (...args: any[]) => void): void {
    target.on(event, listener);
    this.#cleanup.push(() => target.off(event, listener));
  }

  destroy(error?: Error): void {
    for (const off of this.#cleanup.splice(0)) off();
    // Keep a listener so a late error of a destroyed stream is not an uncaught exception.
    const ignore = (): void => {};
    this.readable.on('error', ignore);
    this.writable.on('error', ignore);
    this.readable.destroy(error);
    if (this.writable !== (this.readable as unknown)) this.writable.destroy(error);
  }
}

const DEFAULTS = {
  maxQueuedMessages: 10_000,
  maxQueuedBytes: 16 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  drainTimeoutMs: 5_000,
  pingTimeoutMs: 1_000,
  reconnect: { initialDelayMs: 50, maxDelayMs: 5_000, jitter: 0.2 },
} as const;

/** Bytes per write: large batches are cut so backpressure gets a say between them. */
const WRITE_BATCH_BYTES = 256 * 1024;

const OVERFLOW_POLICIES: readonly SidecarOverflowPolicy[] = ['drop-oldest', 'drop-newest', 'reject'];

function randomSession(): string {
  return randomUUID();
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** Opens a connection to a Unix socket path or a loopback TCP port, settling on connect or error. */
function connectTo(target: string | SidecarTcpTarget): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket =
      typeof target === 'string' ? net.createConnection({ path: target }) : net.createConnection({ port: target.port, host: target.host ?? '127.0.0.1' });
    const onError = (err: Error): void => {
      socket.off('connect', onConnect);
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => {
      socket.off('error', onError);
      socket.setNoDelay?.(true);
      resolve(socket);
    };
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}

/**
 * Makes a {@link SidecarConnector} for a Unix socket path or a TCP port on loopback.
 *
 * @param target - A socket path, or `{ port, host }` (host `127.0.0.1` by default).
 */
export function sidecarConnector(target: string | SidecarTcpTarget): SidecarConnector {
  if (typeof target === 'string') {
    if (target.length === 0) throw new InvalidArgumentError('Expected a socket path, got an empty string');
  } else {
    integerInRange('port', target?.port, 1, 65535);
  }
  return () => connectTo(target);
}

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
  readonly #events = new EventEmitter<SidecarChannelEvents>();
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #handler: SidecarHandler | undefined;
  readonly #onError: ((error: unknown) => void) | undefined;
  readonly #connector: SidecarConnector | undefined;
  readonly #reconnect: Required<SidecarReconnectOptions> | undefined;
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  readonly #highWater: number;
  readonly #policy: SidecarOverflowPolicy;
  readonly #requestTimeoutMs: number;
  readonly #maxFrameBytes: number;
  readonly #drainTimeoutMs: number;
  readonly #session: string;
  readonly #accept: AcceptState | undefined;

  #conn: Connection | undefined;
  /** Messages waiting to be written, in seq order (replays first). */
  readonly #waiting = new Deque<Entry>();
  /** Sends written and not yet acknowledged, in seq order. */
  readonly #unacked = new Deque<Entry>();
  #heldMessages = 0;
  #heldBytes = 0;
  #needDrain = false;
  #drainWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];
  readonly #pending = new Map<number, PendingRequest>();
  readonly #pings = new Map<number, { resolve: (rtt: number) => void; reject: (e: unknown) => void; start: number; timer: ClockTimer; abort: Disposable | undefined }>();
  #nextSeq = 1;
  #nextId = 1;
  #flushScheduled = false;
  #reconnectTimer: ClockTimer | undefined;
  #reconnectAttempt = 0;
  #connecting = false;
  readonly #endCallbacks: (() => void)[] = [];
  /** Pending requests by deadline (a binary min-heap), and the one timer armed for its top. */
  #deadlines: PendingRequest[] = [];
  #staleDeadlines = 0;
  #deadlineTimer: ClockTimer | undefined;
  #deadlineAt = 0;
  /** The context of every send: its signal never aborts (a fresh one per read, so no listener piles up). */
  readonly #sendContext: SidecarContext = {
    get signal(): AbortSignal {
      return new AbortController().signal;
    },
    channel: this,
  };

  // Incoming: the last seq taken from the peer (dedupe) and acknowledgement bookkeeping.
  #lastIn = 0;
  #acked = 0;
  #ackPending: { seq: number; done: boolean }[] = [];
  #ackToSend = 0;

  // counters
  #accepted = 0;
  #delivered = 0;
  #replayed = 0;
  #droppedOldest = 0;
  #droppedNewest = 0;
  #rejected = 0;
  #undelivered = 0;
  #received = 0;
  #duplicates = 0;
  #connections = 0;
  #protocolErrors = 0;

  /**
   * @param options - See {@link SidecarChannelOptions}.
   * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for an option of the wrong type or range.
   */
  constructor(options?: SidecarChannelOptions);
  /** @internal */
  constructor(options: SidecarChannelOptions | undefined, accept: AcceptState);
  constructor(options: SidecarChannelOptions = {}, accept?: AcceptState) {
    super();
    const o = optionsObject('options', options);
    this.#clock = o.clock ?? realClock;
    this.#random = optionalFunction('random', o.random) ?? Math.random;
    this.#handler = optionalFunction('handler', o.handler);
    this.#onError = optionalFunction('onError', o.onError);
    this.#maxMessages = integerInRange('maxQueuedMessages', o.maxQueuedMessages ?? DEFAULTS.maxQueuedMessages, 1, 2 ** 31);
    this.#maxBytes = integerInRange('maxQueuedBytes', o.maxQueuedBytes ?? DEFAULTS.maxQueuedBytes, 1, Number.MAX_SAFE_INTEGER);
    this.#highWater = integerInRange('highWaterMark', o.highWaterMark ?? Math.max(1, Math.floor(this.#maxMessages / 2)), 1, this.#maxMessages);
    const policy = o.overflow ?? 'drop-oldest';
    if (!OVERFLOW_POLICIES.includes(policy)) {
      throw new InvalidArgumentError(`Expected \`overflow\` to be one of ${OVERFLOW_POLICIES.join(', ')}, got ${describe(policy)}`);
    }
    this.#policy = policy;
    this.#requestTimeoutMs = positiveNumber('requestTimeoutMs', o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs);
    this.#maxFrameBytes = integerInRange('maxFrameBytes', o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, 16, MAX_FRAME_BYTES_LIMIT);
    this.#drainTimeoutMs = timeoutValue('drainTimeoutMs', o.drainTimeoutMs ?? DEFAULTS.drainTimeoutMs);
    if (this.#drainTimeoutMs < 0) throw new InvalidArgumentError(`Expected \`drainTimeoutMs\` to be >= 0, got ${describe(o.drainTimeoutMs)}`);
    const session = o.session ?? randomSession();
    if (typeof session !== 'string' || session.length === 0 || session.length > 200) {
      throw new InvalidArgumentError(`Expected \`session\` to be a string of 1 to 200 characters, got ${describe(session)}`);
    }
    this.#session = session;
    this.#accept = accept;
    if (o.connect !== undefined) {
      this.#connector = typeof o.connect === 'function' ? o.connect : sidecarConnector(o.connect);
    }
    if (o.reconnect !== false && this.#connector !== undefined) {
      const r = o.reconnect === true || o.reconnect === undefined ? {} : optionsObject('reconnect', o.reconnect);
      const initialDelayMs = positiveNumber('reconnect.initialDelayMs', r.initialDelayMs ?? DEFAULTS.reconnect.initialDelayMs);
      const maxDelayMs = positiveNumber('reconnect.maxDelayMs', r.maxDelayMs ?? DEFAULTS.reconnect.maxDelayMs);
      const jitter = r.jitter ?? DEFAULTS.reconnect.jitter;
      if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) {
        throw new InvalidArgumentError(`Expected \`reconnect.jitter\` to be a number from 0 to 1, got ${describe(jitter)}`);
      }
      this.#reconnect = { initialDelayMs, maxDelayMs: Math.max(initialDelayMs, maxDelayMs), jitter };
    }
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
    return this.#heldMessages;
  }

  /**
   * Subscribes to an event (see {@link SidecarChannelEvents}).
   * @returns A function that unsubscribes.
   */
  on<E extends keyof SidecarChannelEvents>(event: E, listener: (...args: SidecarChannelEvents[E]) => void): () => void {
    this.#events.on(event, listener as never);
    return () => {
      this.#events.off(event, listener as never);
    };
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
   * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) if `data` does not serialize
   *   or the message is larger than `maxFrameBytes`.
   * @throws {@link ClosedError} (`PB_ERR_CLOSED`) after `close()`.
   */
  send(type: string, data?: unknown): boolean {
    this.assertOpen('send');
    this.#checkType(type);
    const seq = this.#nextSeq;
    const json = this.#serialize(() => sendJson(seq, type, data));
    const entry: Entry = { seq, kind: Kind.SEND, type, json, bytes: Buffer.byteLength(json), request: undefined, dead: false, replay: false };
    if (!this.#admit(entry)) return false;
    this.#nextSeq++;
    this.#enqueue(entry);
    if (this.#heldMessages >= this.#highWater) {
      this.#needDrain = true;
      return false;
    }
    return true;
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
   *   removed it; the signal's reason when it aborts; {@link ClosedError} (`PB_ERR_CLOSED`) when
   *   the channel closes first.
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
      const json = this.#serialize(() => requestJson(seq, id, type, data));
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
        if (!this.#admit(entry)) {
          reject(new OverflowError(`The sidecar queue is full (${this.#heldMessages} messages, ${this.#heldBytes} bytes); the request was refused (drop-newest)`));
          return;
        }
        this.#nextSeq++;
        this.#nextId++;
        this.#pending.set(id, pending);
        this.#addDeadline(pending);
        if (signal !== undefined) pending.abort = onAbort(signal, (reason) => this.#failRequest(pending, reason, true));
        this.#enqueue(entry);
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
        this.#control(conn, JSON.stringify([Kind.PING, id]));
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
   * @param signal - Stops waiting (rejects with its reason).
   * @throws (rejects) {@link ClosedError} (`PB_ERR_CLOSED`) if the channel closes first.
   */
  drain(signal?: AbortSignal): Promise<void> {
    try {
      this.assertOpen('drain');
      optionalSignal('signal', signal);
      throwIfAborted(signal);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#heldMessages < this.#highWater) return Promise.resolve();
    this.#needDrain = true;
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
    if (conn.writable !== (conn.readable as unknown)) {
      conn.on(conn.writable, 'close', () => lost());
      conn.on(conn.writable, 'error', (err: Error) => lost(new UnavailableError(`The sidecar connection failed: ${err.message}`, { cause: err })));
    }
    conn.on(conn.writable, 'drain', () => {
      conn.blocked = false;
      this.#flush();
    });
    if (this.#accept === undefined) this.#control(conn, JSON.stringify([Kind.HELLO, PROTOCOL_VERSION, this.#session]));
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
    return {
      connected: this.connected,
      session: this.#session,
      queuedMessages: this.#heldMessages,
      queuedBytes: this.#heldBytes,
      unacked: this.#unacked.length,
      pendingRequests: this.#pending.size,
      accepted: this.#accepted,
      delivered: this.#delivered,
      replayed: this.#replayed,
      dropped: { oldest: this.#droppedOldest, newest: this.#droppedNewest, rejected: this.#rejected },
      undelivered: this.#undelivered,
      received: this.#received,
      duplicates: this.#duplicates,
      connections: this.#connections,
      protocolErrors: this.#protocolErrors,
    };
  }

  // --- outgoing ------------------------------------------------------------------------------

  #checkType(type: unknown): asserts type is string {
    if (typeof type !== 'string') throw new InvalidArgumentError(`Expected \`type\` to be a string, got ${describe(type)}`);
  }

  #serialize(make: () => string): string {
    let json: string;
    try {
      json = make();
    } catch (err) {
      throw new InvalidArgumentError(`Expected \`data\` to be JSON-serializable: ${(err as Error).message}`, { cause: err });
    }
    if (json.length * 3 > this.#maxFrameBytes && Buffer.byteLength(json) > this.#maxFrameBytes) {
      throw new InvalidArgumentError(`The message is ${Buffer.byteLength(json)} bytes, more than maxFrameBytes (${this.#maxFrameBytes})`);
    }
    return json;
  }

  /** Applies the bound and the policy; false if the new entry is refused (drop-newest). */
  #admit(entry: Entry): boolean {
    if (this.#heldMessages + 1 <= this.#maxMessages && this.#heldBytes + entry.bytes <= this.#maxBytes) return true;
    if (this.#policy === 'reject' || entry.bytes > this.#maxBytes) {
      this.#rejected++;
      throw new OverflowError(
        `The sidecar queue is full (${this.#heldMessages} of ${this.#maxMessages} messages, ${this.#heldBytes} of ${this.#maxBytes} bytes)`,
      );
    }
    if (this.#policy === 'drop-newest') {
      this.#droppedNewest++;
      this.#dropped(entry);
      return false;
    }
    // drop-oldest: the oldest held messages make room, unwritten ones first.
    while (this.#heldMessages + 1 > this.#maxMessages || this.#heldBytes + entry.bytes > this.#maxBytes) {
      // Oldest first: written-but-unacknowledged ones (they may well have arrived; they lose
      // only their replay), then the head of the waiting queue.
      const victim = this.#shiftLive(this.#unacked) ?? this.#shiftLive(this.#waiting);
      if (victim === undefined) break;
      this.#droppedOldest++;
      this.#release(victim);
      this.#dropped(victim);
      if (victim.request !== undefined) {
        this.#settleRequest(victim.request);
        victim.request.reject(new OverflowError('The sidecar queue was full; the request was dropped to make room (drop-oldest)'));
      }
    }
    return true;
  }

  #shiftLive(queue: Deque<Entry>): Entry | undefined {
    for (let e = queue.shift(); e !== undefined; e = queue.shift()) if (!e.dead) return e;
    return undefined;
  }

  #dropped(entry: Entry): void {
    const info = { type: entry.type, seq: entry.seq, policy: this.#policy };
    if (sidecarChannels.drop.hasSubscribers) sidecarChannels.drop.publish({ channel: this, ...info });
    this.#events.emit('drop', info);
  }

  #enqueue(entry: Entry): void {
    this.#accepted++;
    this.#heldMessages++;
    this.#heldBytes += entry.bytes;
    this.#waiting.push(entry);
    this.#scheduleFlush();
  }

  /** Marks an entry as no longer held. */
  #release(entry: Entry): void {
    entry.dead = true;
    this.#heldMessages--;
    this.#heldBytes -= entry.bytes;
    // Hysteresis: wake a paused producer at half the mark, so it resumes with room for a burst.
    if (this.#needDrain && this.#heldMessages <= this.#highWater >> 1) {
      this.#needDrain = false;
      const waiters = this.#drainWaiters.splice(0);
      for (const w of waiters) w();
      this.#events.emit('drain');
    }
    if (this.#heldMessages === 0 && this.#idleWaiters.length > 0) for (const w of this.#idleWaiters.splice(0)) w();
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
    if (this.#ackToSend > 0 && conn.ready) {
      conn.control.push(JSON.stringify([Kind.ACK, this.#ackToSend]));
      this.#ackToSend = 0;
    }
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
      if (conn.ready) {
        while (total < WRITE_BATCH_BYTES) {
          const entry = this.#waiting.shift();
          if (entry === undefined) break;
          if (entry.dead) continue;
          parts.push(entry.json);
          lengths.push(entry.bytes);
          total += FRAME_HEADER_BYTES + entry.bytes;
          if (entry.replay) this.#replayed++;
          if (entry.request !== undefined) {
            entry.request.entry = undefined;
            entry.request.written = conn;
            this.#release(entry);
          } else {
            this.#unacked.push(entry);
          }
        }
      }
      if (parts.length === 0) return;
      const buf = Buffer.allocUnsafe(total);
      let offset = 0;
      for (let i = 0; i < parts.length; i++) {
        const n = lengths[i]!;
        buf.writeUInt32BE(n, offset);
        buf.write(parts[i]!, offset + FRAME_HEADER_BYTES, n, 'utf8');
        offset += FRAME_HEADER_BYTES + n;
      }
      if (!conn.writable.write(buf)) conn.blocked = true;
    }
  }

  // --- incoming ------------------------------------------------------------------------------

  #onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed) return;
    try {
      conn.decoder.pushText(chunk, (payload) => {
        if (!conn.closed) this.#onEnvelope(conn, decodeEnvelope(payload));
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
    if (this.#ackToSend > 0) this.#scheduleFlush();
  }

  #onEnvelope(conn: Connection, m: Envelope): void {
    switch (m[0]) {
      case Kind.HELLO: {
        if (this.#accept === undefined || conn.ready) throw new ProtocolError('Unexpected HELLO');
        if (m[1] !== PROTOCOL_VERSION) throw new ProtocolError(`The peer speaks protocol version ${m[1]}; this side speaks ${PROTOCOL_VERSION}`);
        conn.messageSession = m[2];
        const sessions = this.#accept.sessions;
        let record = sessions.get(m[2]);
        if (record === undefined) {
          const durable = this.#accept.lastHandled?.(m[2]);
          record = { last: typeof durable === 'number' && Number.isSafeInteger(durable) && durable > 0 ? durable : 0 };
          sessions.set(m[2], record);
        }
        conn.resume = record;
        const last = record.last;
        this.#lastIn = last;
        this.#acked = last;
        this.#ackPending = [];
        conn.ready = true;
        this.#connections++;
        this.#control(conn, JSON.stringify([Kind.WELCOME, PROTOCOL_VERSION, last]));
        this.#events.emit('connect');
        return;
      }
      case Kind.WELCOME: {
        if (this.#accept !== undefined || conn.ready) throw new ProtocolError('Unexpected WELCOME');
        if (m[1] !== PROTOCOL_VERSION) throw new ProtocolError(`The peer speaks protocol version ${m[1]}; this side speaks ${PROTOCOL_VERSION}`);
        const resume = m[2];
        // The peer already has everything up to `resume`: those replays are delivered, not resent.
        for (let e = this.#waiting.peek(); e !== undefined && e.seq <= resume; e = this.#waiting.peek()) {
          this.#waiting.shift();
          if (e.dead) continue;
          if (e.request === undefined) this.#delivered++;
          this.#release(e);
          if (e.request !== undefined) this.#failRequest(e.request, new UnavailableError('The sidecar had taken the request before a restart'), false);
        }
        // Sidecar-to-app messages are numbered per connection (the sidecar keeps no queue across them).
        this.#lastIn = 0;
        this.#acked = 0;
        this.#ackPending = [];
        conn.ready = true;
        this.#connections++;
        this.#reconnectAttempt = 0;
        this.#events.emit('connect');
        this.#scheduleFlush();
        return;
      }
      case Kind.SEND:
      case Kind.REQUEST:
        if (!conn.ready) throw new ProtocolError('A message came before the handshake');
        this.#onMessage(conn, m);
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
      case Kind.ACK: {
        const upTo = m[1];
        for (let e = this.#unacked.peek(); e !== undefined && e.seq <= upTo; e = this.#unacked.peek()) {
          this.#unacked.shift();
          if (e.dead) continue;
          this.#delivered++;
          this.#release(e);
        }
        return;
      }
      case Kind.PING:
        this.#control(conn, JSON.stringify([Kind.PONG, m[1]]));
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

  #onMessage(conn: Connection, m: Envelope & { 0: typeof Kind.SEND | typeof Kind.REQUEST }): void {
    const seq = m[1];
    if (seq <= this.#lastIn) {
      this.#duplicates++;
      // Acknowledge again: the peer's replay means it missed our ACK.
      if (this.#ackPending.length === 0) this.#ackToSend = this.#acked;
      return;
    }
    this.#lastIn = seq;
    if (conn.resume !== undefined) conn.resume.last = seq;
    this.#received++;
    if (m[0] === Kind.SEND) {
      // The hot path: no closure, no context object of its own.
      const message: SidecarMessage = { kind: 'send', type: m[2], data: m[3], seq, session: conn.messageSession };
      let result: unknown;
      if (this.#handler !== undefined) {
        try {
          result = this.#handler(message, this.#sendContext);
        } catch (err) {
          this.#report(err);
        }
      }
      if (isThenable(result)) {
        const slot = { seq, done: false };
        this.#ackPending.push(slot);
        result.then(
          () => this.#settled(conn, slot),
          (err: unknown) => {
            this.#report(err);
            this.#settled(conn, slot);
          },
        );
      } else if (this.#ackPending.length === 0) {
        this.#acked = seq;
        this.#ackToSend = seq;
      } else {
        this.#ackPending.push({ seq, done: true });
      }
      return;
    }
    const [, , id, type, data] = m as readonly [3, number, number, string, unknown?];
    const message: SidecarMessage = { kind: 'request', type, data, seq, session: conn.messageSession };
    const handling = new Handling();
    conn.handling.set(id, handling);
    let result: unknown;
    let failed = false;
    try {
      if (this.#handler === undefined) throw new PatchbayError(ErrorCodes.NOT_FOUND, `No handler for sidecar requests (type "${type}")`);
      result = this.#handler(message, {
        get signal() {
          return handling.signal;
        },
        channel: this,
      });
    } catch (err) {
      failed = true;
      result = err;
    }
    const finish = (ok: boolean, value: unknown): void => {
      conn.handling.delete(id);
      if (conn.closed) return;
      let json: string;
      if (ok) {
        try {
          json = value === undefined ? JSON.stringify([Kind.REPLY, id]) : JSON.stringify([Kind.REPLY, id, value]);
        } catch (err) {
          json = JSON.stringify([Kind.ERROR, id, ErrorCodes.INVALID_ARGUMENT, `The reply does not serialize: ${(err as Error).message}`]);
        }
      } else {
        json = JSON.stringify([Kind.ERROR, id, errorCode(value), errorMessage(value)]);
      }
      this.#control(conn, json);
    };
    if (!failed && isThenable(result)) {
      const slot = { seq, done: false };
      this.#ackPending.push(slot);
      Promise.resolve(result).then(
        (value) => {
          finish(true, value);
          this.#settled(conn, slot);
        },
        (err: unknown) => {
          finish(false, err);
          this.#settled(conn, slot);
        },
      );
    } else {
      finish(!failed, result);
      if (this.#ackPending.length === 0) {
        this.#acked = seq;
        this.#ackToSend = seq;
      } else {
        this.#ackPending.push({ seq, done: true });
      }
    }
  }

  #settled(conn: Connection, slot: { seq: number; done: boolean }): void {
    slot.done = true;
    if (conn !== this.#conn) return;
    let advanced = false;
    while (this.#ackPending.length > 0 && this.#ackPending[0]!.done) {
      this.#acked = this.#ackPending.shift()!.seq;
      advanced = true;
    }
    if (advanced) {
      this.#ackToSend = this.#acked;
      this.#scheduleFlush();
    }
  }

  // --- connection loss and reconnection -----------------------------------------------------

  #lose(conn: Connection, error: unknown, destroy = true): void {
    if (conn.closed) return;
    conn.closed = true;
    if (destroy) conn.destroy(error instanceof ProtocolError ? error : undefined);
    for (const c of conn.handling.values()) c.abort(new UnavailableError('The sidecar connection was lost'));
    conn.handling.clear();
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    const wasReady = conn.ready;
    // Unacknowledged sends go back to the head of the queue, ahead of what never left.
    const replay = this.#unacked.drain().filter((e) => !e.dead);
    for (const e of replay) e.replay = true;
    this.#waiting.unshiftAll(replay);
    for (const pending of [...this.#pending.values()]) {
      if (pending.written === conn) this.#failRequest(pending, new UnavailableError('The sidecar connection was lost with the request in flight; it may or may not have run'), false);
    }
    for (const p of [...this.#pings.values()]) p.reject(new UnavailableError('The sidecar connection was lost during a ping'));
    this.#ackPending = [];
    this.#ackToSend = 0;
    if (wasReady) this.#events.emit('disconnect', error);
    if (this.#accept !== undefined) {
      // An accepted connection is the whole life of its channel.
      this.destroy(error instanceof ProtocolError ? error : new UnavailableError('The app disconnected'));
      return;
    }
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#connector === undefined || this.#reconnect === undefined || this.#reconnectTimer !== undefined) return;
    if (this.state === 'destroyed' || this.state === 'closed') return;
    const r = this.#reconnect;
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** Math.min(this.#reconnectAttempt, 30));
    const delay = base * (1 - r.jitter * this.#random());
    this.#reconnectAttempt++;
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
    if (!pending.done) {
      pending.done = true;
      this.#staleDeadlines++;
      // Settled requests leave their heap entries behind (lazy removal); sweep when they dominate.
      if (this.#staleDeadlines > 1024 && this.#staleDeadlines * 2 > this.#deadlines.length) {
        this.#deadlines = this.#deadlines.filter((p) => !p.done);
        this.#staleDeadlines = 0;
        for (let i = (this.#deadlines.length >> 1) - 1; i >= 0; i--) this.#siftDown(i);
      }
    }
    pending.abort?.[Symbol.dispose]();
    pending.abort = undefined;
  }

  // One timer for every request deadline, armed for the earliest: a binary min-heap of pending
  // requests by deadline, settled ones removed lazily (CONVENTIONS.md 7: few timers, reused).

  #addDeadline(pending: PendingRequest): void {
    const heap = this.#deadlines;
    heap.push(pending);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.deadline <= pending.deadline) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = pending;
    if (this.#deadlineTimer === undefined || pending.deadline < this.#deadlineAt) this.#armDeadline(pending.deadline);
  }

  #siftDown(start: number): void {
    const heap = this.#deadlines;
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

  #popDeadline(): PendingRequest | undefined {
    const heap = this.#deadlines;
    const top = heap[0];
    const last = heap.pop();
    if (top !== undefined && last !== undefined && heap.length > 0) {
      heap[0] = last;
      this.#siftDown(0);
    }
    if (top?.done === true) this.#staleDeadlines--;
    return top;
  }

  #armDeadline(at: number): void {
    this.#deadlineTimer?.cancel();
    this.#deadlineAt = at;
    this.#deadlineTimer = this.#clock.setTimer(this.#onDeadline, at - this.#clock.now());
  }

  readonly #onDeadline = (): void => {
    this.#deadlineTimer = undefined;
    const now = this.#clock.now();
    while (this.#deadlines.length > 0 && (this.#deadlines[0]!.done || this.#deadlines[0]!.deadline <= now)) {
      const p = this.#popDeadline()!;
      if (p.done) continue;
      p.done = true; // out of the heap already: not a stale entry
      this.#failRequest(p, new TimeoutError(`The sidecar request "${p.type}" got no reply within ${p.timeoutMs} ms`), true);
    }
    const next = this.#deadlines[0];
    if (next !== undefined) this.#armDeadline(next.deadline);
  };

  /** Ends a request with `reason`; `cancelRemote` sends CANCEL when it was written. */
  #failRequest(pending: PendingRequest, reason: unknown, cancelRemote: boolean): void {
    if (!this.#pending.has(pending.id)) return;
    this.#settleRequest(pending);
    if (pending.entry !== undefined && !pending.entry.dead) this.#release(pending.entry);
    pending.entry = undefined;
    const conn = pending.written;
    if (cancelRemote && conn !== undefined && conn === this.#conn && !conn.closed) this.#control(conn, JSON.stringify([Kind.CANCEL, pending.id]));
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

  /** Resolves when nothing is held, or after `ms`. */
  #waitIdle(ms: number): Promise<void> {
    if (this.#heldMessages === 0 && this.#pending.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let timer: ClockTimer | undefined = undefined;
      const check = (): void => {
        if (this.#heldMessages === 0 && this.#pending.size === 0) {
          timer?.cancel();
          resolve();
        } else {
          this.#idleWaiters.push(check);
        }
      };
      timer = this.#clock.setTimer(() => {
        const i = this.#idleWaiters.indexOf(check);
        if (i !== -1) this.#idleWaiters.splice(i, 1);
        resolve();
      }, ms);
      this.#idleWaiters.push(check);
    });
  }

  /** Waits for the queue to be acknowledged (up to `drainTimeoutMs`), says BYE and ends the stream. */
  protected override async onClose(): Promise<void> {
    await this.#waitIdle(this.#drainTimeoutMs);
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
    this.#deadlineTimer?.cancel();
    this.#deadlineTimer = undefined;
    const left = [...this.#waiting.drain(), ...this.#unacked.drain()].filter((e) => !e.dead);
    for (const e of left) {
      if (e.request === undefined) this.#undelivered++;
      this.#release(e);
    }
    for (const pending of [...this.#pending.values()]) this.#failRequest(pending, reason, false);
    this.#deadlines = [];
    this.#staleDeadlines = 0;
    for (const p of [...this.#pings.values()]) p.reject(reason);
    for (const w of this.#drainWaiters.splice(0)) w();
    for (const w of this.#idleWaiters.splice(0)) w();
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn !== undefined && !conn.closed) {
      conn.closed = true;
      for (const c of conn.handling.values()) c.abort(reason);
      conn.handling.clear();
      if (graceful && !conn.blocked) {
        const bye: string[] = [...conn.control];
        if (this.#ackToSend > 0 && conn.ready) bye.push(JSON.stringify([Kind.ACK, this.#ackToSend]));
        bye.push(JSON.stringify([Kind.BYE]));
        const frames = Buffer.concat(bye.map((j) => frameOf(j)));
        conn.writable.end(frames);
        // The peer closes its side after BYE; do not wait on it forever.
        const timer = setTimeout(() => conn.destroy(), 1000);
        timer.unref();
        conn.on(conn.readable, 'close', () => clearTimeout(timer));
        conn.readable.resume();
      } else {
        conn.destroy();
      }
      if (conn.ready) this.#events.emit('disconnect', reason);
    }
    this.#events.removeAllListeners();
    for (const callback of this.#endCallbacks.splice(0)) callback();
  }
}

function frameOf(json: string): Buffer {
  const n = Buffer.byteLength(json);
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + n);
  buf.writeUInt32BE(n, 0);
  buf.write(json, FRAME_HEADER_BYTES, n, 'utf8');
  return buf;
}

function destroyStream(stream: SidecarStream): void {
  if ('readable' in stream && typeof (stream as { readable: unknown }).readable === 'object' && 'writable' in stream) {
    (stream as { readable: Readable }).readable.destroy();
    (stream as { writable: Writable }).writable.destroy();
  } else {
    (stream as Readable).destroy();
  }
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 && code.length <= 100 ? code : ErrorCodes.REMOTE;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : 'The sidecar handler failed';
}
