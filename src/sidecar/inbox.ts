/**
 * The inbox of a sidecar channel: the peer's sends and requests, handed to the handler in seq
 * order, once each, and acknowledged once handled.
 *
 * - **Once.** The peer numbers its messages; a seq at or below the last one taken is a
 *   duplicate (a replay of something already handled) and is dropped, acknowledged again.
 * - **Acknowledged after handling.** ACK is cumulative, so it may only cover a prefix of
 *   settled messages: a message whose handler returned a promise holds a slot in `ackPending`,
 *   and the acknowledged seq advances over the settled prefix. Synchronous handlers (the hot
 *   path) take no slot, no closure and no context object of their own.
 * - **Replies.** A request's handler result becomes a REPLY (or an ERROR carrying the thrown
 *   error's `code`) written as a control frame on the connection it came in on.
 *
 * Its own piece because it is the receiving half of the protocol's guarantees, with its own
 * state (the last seq taken, the acknowledgement slots) that a lost connection resets.
 *
 * @module
 */
import { ErrorCodes, PatchbayError } from '../core/errors.js';
import type { SidecarChannel } from './channel.js';
import { Handling, type Connection } from './connection.js';
import { checkOutgoing, errorJson, Kind, replyJson, type Envelope } from './protocol.js';

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
 * error's `code` (a `RemoteError` on the other side). The message is acknowledged once the
 * handler has settled.
 */
export type SidecarHandler = (message: SidecarMessage, context: SidecarContext) => unknown;

/** What the inbox needs of its channel. @internal */
export interface InboxHost {
  readonly channel: SidecarChannel;
  /** An error no caller waits for. */
  report(error: unknown): void;
  /** Queues a control frame on `conn`. */
  control(conn: Connection, json: string): void;
  /** Whether `conn` is the channel's connection now. */
  isCurrent(conn: Connection): boolean;
  /** Writes soon what is queued (an ACK). */
  scheduleFlush(): void;
}

interface AckSlot {
  readonly seq: number;
  done: boolean;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function';
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 && code.length <= 100 ? code : ErrorCodes.REMOTE;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return typeof err === 'string' ? err : 'The sidecar handler failed';
}

/** The receiving half of a channel. @internal */
export class Inbox {
  /** Sends and requests taken (duplicates not counted). */
  received = 0;
  /** Duplicates ignored. */
  duplicates = 0;
  /** The seq to acknowledge at the next write, or 0. */
  ackToSend = 0;
  readonly #handler: SidecarHandler | undefined;
  readonly #host: InboxHost;
  /** The context of every send: its signal never aborts (a fresh one per read, so no listener piles up). */
  readonly #sendContext: SidecarContext;
  #lastIn = 0;
  #acked = 0;
  #ackPending: AckSlot[] = [];

  constructor(handler: SidecarHandler | undefined, host: InboxHost) {
    this.#handler = handler;
    this.#host = host;
    this.#sendContext = {
      get signal(): AbortSignal {
        return new AbortController().signal;
      },
      channel: host.channel,
    };
  }

  /** A handshake is done: the peer's messages up to `last` are taken already. */
  reset(last: number): void {
    this.#lastIn = last;
    this.#acked = last;
    this.#ackPending = [];
  }

  /** The connection is lost: acknowledgements not yet written are moot. */
  onLost(): void {
    this.#ackPending = [];
    this.ackToSend = 0;
  }

  /** The ACK to write now (0 for none), and forgets it. */
  takeAck(): number {
    const ack = this.ackToSend;
    this.ackToSend = 0;
    return ack;
  }

  /** Takes a SEND or REQUEST that came in on `conn` (its handshake done). */
  receive(conn: Connection, m: Envelope & { 0: typeof Kind.SEND | typeof Kind.REQUEST }): void {
    const seq = m[1];
    if (seq <= this.#lastIn) {
      this.duplicates++;
      // Acknowledge again: the peer's replay means it missed our ACK.
      if (this.#ackPending.length === 0) this.ackToSend = this.#acked;
      return;
    }
    this.#lastIn = seq;
    if (conn.resume !== undefined) conn.resume.last = seq;
    this.received++;
    if (m[0] === Kind.SEND) {
      // The hot path: no closure, no context object of its own.
      const message: SidecarMessage = { kind: 'send', type: m[2], data: m[3], seq, session: conn.messageSession };
      let result: unknown;
      if (this.#handler !== undefined) {
        try {
          result = this.#handler(message, this.#sendContext);
        } catch (err) {
          this.#host.report(err);
        }
      }
      if (isThenable(result)) {
        const slot = { seq, done: false };
        this.#ackPending.push(slot);
        result.then(
          () => this.#settled(conn, slot),
          (err: unknown) => {
            this.#host.report(err);
            this.#settled(conn, slot);
          },
        );
      } else {
        this.#settledNow(seq);
      }
      return;
    }
    this.#request(conn, m as readonly [3, number, number, string, unknown?]);
  }

  #request(conn: Connection, m: readonly [3, number, number, string, unknown?]): void {
    const [, seq, id, type, data] = m;
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
        channel: this.#host.channel,
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
          json = checkOutgoing(replyJson(id, value));
        } catch (err) {
          json = errorJson(id, ErrorCodes.INVALID_ARGUMENT, `The reply does not serialize: ${(err as Error).message}`);
        }
      } else {
        json = errorJson(id, errorCode(value), errorMessage(value));
      }
      this.#host.control(conn, json);
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
      this.#settledNow(seq);
    }
  }

  /** A message handled synchronously: acknowledge it now, or after the slots before it. */
  #settledNow(seq: number): void {
    if (this.#ackPending.length === 0) {
      this.#acked = seq;
      this.ackToSend = seq;
    } else {
      this.#ackPending.push({ seq, done: true });
    }
  }

  #settled(conn: Connection, slot: AckSlot): void {
    slot.done = true;
    if (!this.#host.isCurrent(conn)) return;
    let advanced = false;
    while (this.#ackPending.length > 0 && this.#ackPending[0]!.done) {
      this.#acked = this.#ackPending.shift()!.seq;
      advanced = true;
    }
    if (advanced) {
      this.ackToSend = this.#acked;
      this.#host.scheduleFlush();
    }
  }
}
