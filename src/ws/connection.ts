/**
 * One WebSocket connection of a {@link WsHandler}: its subscriptions, its bounded send buffer
 * and its inbound frames.
 *
 * ## Sending
 *
 * Frames are queued as bytes and written once per event-loop turn by the handler (a broadcast
 * hands every connection the same `Buffer`); the writes of one turn go out corked, as one
 * `writev`. What the socket holds (`bufferedAmount`) plus what is queued may not pass
 * `maxBufferedBytes`; past it the overflow policy decides:
 *
 * - `close` (the default): the connection is closed with code 1013 and its subscriptions end at
 *   once. The client reconnects and resubscribes from the last id it has: nothing is lost.
 * - `drop-oldest`: queued messages make room, oldest first.
 * - `coalesce`: a message replaces a queued one of the same subscription and topic (latest value
 *   wins), at any time; past the limit, as `drop-oldest`.
 *
 * A replay (resuming from a cursor) is queued whole, whatever its size: the broker's log limits
 * bound it, and a client that resumes after an overflow must be able to catch up. Until the
 * socket has let go of the replay's last byte, what is left of it is allowed on top of
 * `maxBufferedBytes`.
 *
 * A dropped message is never silent: before the subscription's next message (or at the next
 * flush) the client gets `{"type":"gap","sid","reason":"overflow","dropped":n}`. Replies
 * (`subscribed`, `published`, `error`...) are never dropped: one that cannot fit even in an
 * emptied queue closes the connection, whatever the policy, so the buffer stays bounded.
 *
 * ## Receiving
 *
 * Frames are handled one at a time, in order (a publish is stored before the next frame is
 * read). While `maxInFlight` frames wait, the socket is paused: a fast sender gets TCP
 * backpressure, not an unbounded queue.
 *
 * @module
 */
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { channel } from '../core/diagnostics.js';
import { ClosedError, ForbiddenError, InvalidArgumentError, InvalidStateError, NotFoundError, OverflowError, PatchbayError } from '../core/errors.js';
import { type Message, parseCursor, type PubSubBroker, type Subscription, type TopicTarget } from '../pubsub/index.js';
import { parseTarget } from '../pubsub/target.js';
import {
  errorFrame,
  isRefused,
  logGapFrame,
  overflowGapFrame,
  parseClientFrame,
  pongFrame,
  publishedFrame,
  subscribedFrame,
  unsubscribedFrame,
  type WsPublishFrame,
  type WsRef,
  type WsSubscribeFrame,
} from './protocol.js';

/** What one subscription follows: one or more topics, or a pattern. */
export type WsTarget = TopicTarget;

/** What a connection's send buffer does when it is full. */
export type WsOverflowPolicy = 'close' | 'drop-oldest' | 'coalesce';

/** Why a connection ended. */
export type WsCloseReason = 'client' | 'server' | 'overflow' | 'heartbeat' | 'error';

/** Counters of one connection. */
export interface WsConnectionStats {
  /** Live subscriptions. */
  readonly subscriptions: number;
  /** Message frames written. */
  readonly messagesSent: number;
  /** Bytes queued now (not yet handed to the socket). */
  readonly bytesQueued: number;
  /** Bytes the socket holds now (written, not yet taken by the peer). */
  readonly bytesBuffered: number;
  /** Messages dropped or replaced by the overflow policy. */
  readonly drops: number;
  /** Frames received. */
  readonly framesReceived: number;
}

/** One subscription of a connection. @internal */
interface Entry {
  readonly sid: string;
  readonly subs: Subscription[];
  /** Messages delivered while subscribing: sent, in publish order, after `subscribed`. */
  staged: Message[] | null;
  /** Messages dropped since the last gap frame. */
  dropped: number;
  closed: boolean;
}

/** The authorization hooks a connection consults. @internal */
export interface ConnectionAuthorize {
  readonly subscribe?: (context: unknown, target: WsTarget) => boolean | Promise<boolean>;
  readonly publish?: (context: unknown, topic: string, data: unknown) => boolean | Promise<boolean>;
}

/** Counters the handler sums over its connections. @internal */
export interface Counters {
  subscriptions: number;
  messagesSent: number;
  drops: number;
  overflowCloses: number;
  reaped: number;
  published: number;
  refusedFrames: number;
  replays: number;
  replayedMessages: number;
  gaps: number;
  pings: number;
}

/** What a connection needs from its handler. @internal */
export interface ConnectionHost {
  readonly broker: PubSubBroker;
  readonly authorize: ConnectionAuthorize;
  readonly maxBufferedBytes: number;
  readonly overflow: WsOverflowPolicy;
  readonly maxMessageBytes: number;
  readonly maxInFlight: number;
  readonly maxSubscriptions: number;
  readonly maxTopics: number;
  readonly counters: Counters;
  /** The frame of `m` for `sid` (shared by every connection with that sid); `undefined` when `m` cannot be JSON. */
  frame(m: Message, sid: string): Buffer | undefined;
  markDirty(connection: WsConnection): void;
  ended(connection: WsConnection, reason: WsCloseReason): void;
  /** The socket's close event came (the connection may have ended earlier). */
  socketClosed(ws: WebSocket): void;
  reportError(error: unknown, connection: WsConnection): void;
}

/** The diagnostics channels the WebSocket transport publishes on. */
export const wsChannels = {
  /** `{ connection }` when a connection opens. */
  open: channel('ws', 'open'),
  /** `{ connection, reason }` when a connection ends. */
  close: channel('ws', 'close'),
  /** `{ connection, sid, policy }` when the overflow policy drops or replaces a message. */
  drop: channel('ws', 'drop'),
  /** `{ connection, error }` when a hook throws something other than a patchbay error, or a send fails. */
  error: channel('ws', 'error'),
};

const TEXT = { binary: false } as const;

const kConnection = Symbol('patchbay.ws.connection');
type Tagged = WebSocket & { [kConnection]: WsConnection };

function onMessage(this: WebSocket, data: RawData, binary: boolean): void {
  (this as Tagged)[kConnection]._receive(data, binary);
}
function onPong(this: WebSocket): void {
  (this as Tagged)[kConnection]._alive = true;
}
function onClose(this: WebSocket): void {
  (this as Tagged)[kConnection]._socketClosed();
}
function onError(): void {
  // 'close' follows; nothing to do but not crash.
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * One client connection. Made by {@link WsHandler}; keep the one `handleUpgrade` or `accept`
 * returns to look at it or close it.
 */
export class WsConnection {
  /** A number unique among the handler's connections. */
  readonly id: number;
  /** What `authorize.upgrade` returned for this connection (`true` when there is no hook). */
  readonly context: unknown;
  readonly #host: ConnectionHost;
  readonly #ws: WebSocket;
  readonly #socket: Duplex | undefined;
  readonly #entries = new Map<string, Entry>();
  // The send queue: bytes, the subscription of each message frame (null for a reply), and, under
  // `coalesce`, each frame's key.
  #q: Buffer[] = [];
  #qEntry: (Entry | null)[] = [];
  #qKey: (string | undefined)[] = [];
  #queued = 0;
  /** Bytes handed to the socket so far. */
  #written = 0;
  /** Where (in `#written` terms) the latest replay ends; 0 once the socket has let go of it. */
  #replayEnd = 0;
  /** Subscriptions with dropped messages not yet announced. */
  #gapEntries: Entry[] = [];
  #inbox: Buffer[] = [];
  #inboxBinary: boolean[] = [];
  #draining = false;
  #paused = false;
  #closed = false;
  #messagesSent = 0;
  #drops = 0;
  #framesReceived = 0;
  /** Queued for the handler's next flush. @internal */
  _dirty = false;
  /** A pong (or any frame) came since the last ping. @internal */
  _alive = true;

  /** @internal */
  constructor(host: ConnectionHost, id: number, ws: WebSocket, socket: Duplex | undefined, context: unknown) {
    this.#host = host;
    this.id = id;
    this.#ws = ws;
    this.#socket = socket;
    this.context = context;
    // Shared listeners (they find the connection on the socket): no closures per connection.
    (ws as Tagged)[kConnection] = this;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('close', onClose);
    // A peer that breaks the framing (bad UTF-8, a frame over maxPayloadBytes, no mask) makes `ws`
    // emit 'error' and close with 1002/1007/1009: the close path cleans up.
    ws.on('error', onError);
  }

  /** `true` once the connection ended, by either side. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The ids of the live subscriptions. */
  subscriptions(): string[] {
    return [...this.#entries.keys()];
  }

  /** Counters. */
  stats(): WsConnectionStats {
    return {
      subscriptions: this.#entries.size,
      messagesSent: this.#messagesSent,
      bytesQueued: this.#queued,
      bytesBuffered: this.#closed ? 0 : this.#ws.bufferedAmount,
      drops: this.#drops,
      framesReceived: this.#framesReceived,
    };
  }

  /**
   * Closes the connection gracefully: what is queued is written, then a close frame with `code`
   * and `reason`; the subscriptions end at once. Idempotent.
   *
   * @param code - A WebSocket close code: 1000, or 3000-4999 for your own meanings (an invalid
   *   one terminates the connection instead).
   * @param reason - Said to the client with the code: at most 123 bytes of UTF-8.
   * @defaultValue `code = 1000`, `reason = ''`
   */
  close(code = 1000, reason = ''): void {
    if (this.#closed) return;
    this.#flushQueue();
    this.#end('server');
    try {
      this.#ws.close(code, reason);
    } catch {
      this.#ws.terminate(); // an invalid code: close at once instead
    }
  }

  /** Tears the connection down at once, without a close handshake. Idempotent. */
  terminate(): void {
    if (!this.#closed) this.#end('server');
    this.#ws.terminate();
  }

  // --- what the handler calls ------------------------------------------------------------------

  /** Writes what is queued, corked into one write. @internal */
  _flush(): void {
    this._dirty = false;
    this.#flushQueue();
  }

  /** The heartbeat: terminates a peer that did not answer the last ping, else pings it. @internal */
  _heartbeat(): void {
    if (this.#closed) return;
    if (!this._alive) {
      this.#host.counters.reaped++;
      this.#end('heartbeat');
      this.#ws.terminate();
      return;
    }
    this._alive = false;
    this.#host.counters.pings++;
    try {
      this.#ws.ping();
    } catch {
      // not open any more: the close event follows
    }
    // A subscription the broker ended (the broker was closed) is announced as such.
    for (const entry of this.#entries.values()) {
      if (entry.staged === null && entry.subs.some((s) => s.closed)) {
        this.#closeEntry(entry);
        this.#reply(unsubscribedFrame(entry.sid, undefined, new ClosedError('The broker ended this subscription (it was closed)')));
      }
    }
  }

  /** Ends the connection for the handler's shutdown (1001) or destroy. @internal */
  _shutdown(hard: boolean): void {
    if (hard) this.terminate();
    else this.close(1001, 'The server is shutting down');
  }

  // --- inbound ---------------------------------------------------------------------------------

  /** A frame came. @internal */
  _receive(data: RawData, binary: boolean): void {
    this._alive = true;
    this.#framesReceived++;
    if (this.#closed) return;
    this.#inbox.push(toBuffer(data));
    this.#inboxBinary.push(binary);
    if (!this.#paused && this.#inbox.length >= this.#host.maxInFlight) {
      this.#paused = true;
      this.#ws.pause();
    }
    if (!this.#draining) void this.#drain();
  }

  /** The socket closed (whoever began it). @internal */
  _socketClosed(): void {
    this.#end('client');
    this.#host.socketClosed(this.#ws);
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#inbox.length > 0 && !this.#closed) {
        const data = this.#inbox.shift()!;
        const binary = this.#inboxBinary.shift()!;
        if (this.#paused && this.#inbox.length < this.#host.maxInFlight >> 1) {
          this.#paused = false;
          this.#ws.resume();
        }
        await this.#handle(data, binary);
      }
    } finally {
      this.#draining = false;
    }
  }

  async #handle(data: Buffer, binary: boolean): Promise<void> {
    const frame = parseClientFrame(data, binary, this.#host.maxMessageBytes);
    if (isRefused(frame)) {
      this.#host.counters.refusedFrames++;
      this.#reply(errorFrame(frame.error, frame.ref, frame.sid, frame.message));
      return;
    }
    let sid: string | undefined;
    try {
      switch (frame.type) {
        case 'ping':
          this.#reply(pongFrame(frame.ref));
          return;
        case 'unsubscribe':
          sid = frame.sid;
          this.#unsubscribe(frame.sid, frame.ref);
          return;
        case 'subscribe':
          sid = frame.sid;
          await this.#subscribe(frame);
          return;
        case 'publish':
          await this.#publish(frame);
          return;
      }
    } catch (error) {
      this.#host.counters.refusedFrames++;
      if (!(error instanceof PatchbayError)) this.#host.reportError(error, this);
      this.#reply(errorFrame(error, frame.ref, sid));
    }
  }

  async #subscribe(frame: WsSubscribeFrame): Promise<void> {
    const host = this.#host;
    const { sid, cursor } = frame;
    if (this.#entries.has(sid)) {
      throw new InvalidStateError(`Subscription id ${JSON.stringify(sid)} is in use on this connection: unsubscribe it first, or use another`);
    }
    if (this.#entries.size >= host.maxSubscriptions) {
      throw new OverflowError(`This connection has ${host.maxSubscriptions} subscriptions, the most it may hold: unsubscribe one first`);
    }
    const t = parseTarget(frame.pattern !== undefined ? { pattern: frame.pattern } : { topics: frame.topics }, host.maxTopics, 'subscribe');
    const target: WsTarget = t.pattern !== undefined ? { pattern: t.pattern } : { topics: t.topics };
    const given = cursor !== undefined && cursor !== 'now' && cursor !== 'oldest' ? cursor : undefined;
    if (given !== undefined) parseCursor(given);
    const hook = host.authorize.subscribe;
    if (hook !== undefined && (await hook(this.context, target)) !== true) {
      throw new ForbiddenError(`Not allowed to subscribe to ${t.pattern !== undefined ? JSON.stringify(t.pattern) : JSON.stringify(t.topics)}`);
    }
    if (this.#closed) return;

    const entry: Entry = { sid, subs: [], staged: [], dropped: 0, closed: false };
    this.#entries.set(sid, entry);
    host.counters.subscriptions++;
    let gap = false;
    let replayed = 0;
    let resume: string;
    try {
      // Without a cursor the subscription starts now, and `resume` (the head before it started) is
      // where a client that got nothing resumes from. Several topics all start from that head, so
      // they share one starting point and are merged in publish order.
      resume = given ?? (cursor === 'oldest' ? 'oldest' : await host.broker.head());
      const from = given ?? (cursor === 'oldest' ? 'oldest' : t.topics !== undefined && t.topics.length > 1 ? resume : 'now');
      for (const pattern of t.pattern !== undefined ? [t.pattern] : t.topics) {
        const sub = await host.broker.subscribe(pattern, {
          from,
          maxQueue: 1, // callback delivery: this connection's own buffer bound applies
          context: this.context,
          onMessage: (m) => {
            if (entry.staged !== null) entry.staged.push(m);
            else this.#send(entry, m);
          },
        });
        entry.subs.push(sub);
        if (this.#closed || entry.closed) {
          this.#closeEntry(entry);
          return;
        }
        const info = host.broker.replayInfo(sub);
        if (info !== undefined) {
          gap ||= info.gap;
          replayed += info.replayed;
        }
      }
    } catch (error) {
      this.#closeEntry(entry);
      throw error;
    }
    if (given !== undefined) {
      host.counters.replays++;
      host.counters.replayedMessages += replayed;
    }
    this.#reply(subscribedFrame(sid, resume, replayed, frame.ref));
    if (gap && given !== undefined) {
      host.counters.gaps++;
      this.#reply(logGapFrame(sid, given));
    }
    const staged = entry.staged!;
    entry.staged = null;
    if (entry.subs.length > 1) staged.sort((a, b) => a._seq - b._seq);
    // The replay is bounded by the log's own limits, not by maxBufferedBytes: it goes out whole,
    // and live messages get maxBufferedBytes on top of what of it the socket still holds.
    for (const m of staged) this.#send(entry, m, true);
    if (staged.length > 0) this.#replayEnd = Math.max(this.#replayEnd, this.#written + this.#queued);
  }

  #unsubscribe(sid: string, ref: WsRef | undefined): void {
    const entry = this.#entries.get(sid);
    if (entry === undefined) throw new NotFoundError(`No subscription ${JSON.stringify(sid)} on this connection`);
    this.#closeEntry(entry);
    this.#reply(unsubscribedFrame(sid, ref));
  }

  async #publish(frame: WsPublishFrame): Promise<void> {
    const hook = this.#host.authorize.publish;
    if (hook === undefined) throw new ForbiddenError('Publishing over this WebSocket is not enabled (the server has no authorize.publish hook)');
    if ((await hook(this.context, frame.topic, frame.data)) !== true) throw new ForbiddenError(`Not allowed to publish on ${JSON.stringify(frame.topic)}`);
    // A client gone meanwhile gets no answer: it cannot tell whether its publish went through,
    // so it is not made (a retry after reconnecting would otherwise store it twice).
    if (this.#closed) return;
    const m = await this.#host.broker.publish(frame.topic, frame.data, { context: this.context });
    this.#host.counters.published++;
    this.#reply(publishedFrame(m.id, m.topic, frame.ref));
  }

  #closeEntry(entry: Entry): void {
    if (entry.closed) return;
    entry.closed = true;
    entry.staged = null;
    for (const sub of entry.subs) sub.close();
    if (this.#entries.get(entry.sid) === entry) {
      this.#entries.delete(entry.sid);
      this.#host.counters.subscriptions--;
    }
  }

  // --- outbound --------------------------------------------------------------------------------

  #reply(text: string): void {
    this.#push(Buffer.from(text), null, undefined);
  }

  #send(entry: Entry, m: Message, replay = false): void {
    if (entry.closed) return;
    const bytes = this.#host.frame(m, entry.sid);
    if (bytes === undefined) {
      this.#reply(
        errorFrame(new InvalidArgumentError(`Message ${m.id} on ${JSON.stringify(m.topic)} has data that JSON cannot carry; it was skipped`), undefined, entry.sid),
      );
      return;
    }
    if (replay) this.#append(bytes, entry, undefined);
    else this.#push(bytes, entry, this.#host.overflow === 'coalesce' ? `${entry.sid}\u0000${m.topic}` : undefined);
  }

  #push(bytes: Buffer, entry: Entry | null, key: string | undefined): void {
    if (this.#closed) return;
    const len = bytes.length;
    const buffered = this.#ws.bufferedAmount;
    // Until the socket has let go of a replay's last byte, what is left of the replay is allowed on top.
    const credit = this.#replayEnd === 0 ? 0 : Math.max(0, this.#replayEnd - (this.#written - buffered));
    if (credit === 0) this.#replayEnd = 0;
    let room = this.#host.maxBufferedBytes + credit - buffered - this.#queued;
    if (key !== undefined) {
      const i = this.#qKey.lastIndexOf(key);
      if (i !== -1 && room + this.#q[i]!.length >= len) {
        this.#queued += len - this.#q[i]!.length;
        this.#q[i] = bytes;
        this.#countDrop(entry!, 'coalesce');
        return;
      }
    }
    if (len > room) {
      if (this.#host.overflow === 'close') {
        this.#overflow();
        return;
      }
      room += this.#makeRoom(len - room);
      if (len > room) {
        if (entry === null) this.#overflow();
        else {
          this.#countDrop(entry, this.#host.overflow); // the socket alone holds too much: this one cannot go
          this.#schedule(); // the gap goes out at the next flush
        }
        return;
      }
    }
    this.#append(bytes, entry, key);
  }

  #append(bytes: Buffer, entry: Entry | null, key: string | undefined): void {
    if (this.#closed) return;
    this.#q.push(bytes);
    this.#qEntry.push(entry);
    if (this.#host.overflow === 'coalesce') this.#qKey.push(key);
    this.#queued += bytes.length;
    this.#schedule();
  }

  /** Drops queued messages, oldest first, until `need` bytes are free (or none is left); returns the bytes freed. */
  #makeRoom(need: number): number {
    let freed = 0;
    const q: Buffer[] = [];
    const qe: (Entry | null)[] = [];
    const qk: (string | undefined)[] = [];
    const coalesce = this.#host.overflow === 'coalesce';
    for (let i = 0; i < this.#q.length; i++) {
      const entry = this.#qEntry[i]!;
      if (freed < need && entry !== null) {
        freed += this.#q[i]!.length;
        this.#countDrop(entry, this.#host.overflow);
        continue;
      }
      q.push(this.#q[i]!);
      qe.push(entry);
      if (coalesce) qk.push(this.#qKey[i]);
    }
    this.#q = q;
    this.#qEntry = qe;
    this.#qKey = qk;
    this.#queued -= freed;
    return freed;
  }

  #countDrop(entry: Entry, policy: WsOverflowPolicy): void {
    if (entry.dropped++ === 0) this.#gapEntries.push(entry);
    this.#drops++;
    this.#host.counters.drops++;
    if (wsChannels.drop.hasSubscribers) wsChannels.drop.publish({ connection: this, sid: entry.sid, policy });
  }

  #overflow(): void {
    this.#host.counters.overflowCloses++;
    this.#end('overflow');
    try {
      this.#ws.close(1013, 'PB_ERR_OVERFLOW: the send buffer is full; reconnect and resume from your last id');
    } catch {
      this.#ws.terminate();
    }
  }

  #schedule(): void {
    if (!this._dirty) {
      this._dirty = true;
      this.#host.markDirty(this);
    }
  }

  #flushQueue(): void {
    if (this.#closed) return;
    const q = this.#q;
    const qe = this.#qEntry;
    const n = q.length;
    if (n === 0 && this.#gapEntries.length === 0) return;
    const ws = this.#ws;
    const socket = n > 1 || this.#gapEntries.length > 0 ? this.#socket : undefined;
    let sent = 0;
    socket?.cork();
    try {
      for (let i = 0; i < n; i++) {
        const entry = qe[i]!;
        if (entry !== null) {
          if (entry.dropped > 0) this.#gap(entry);
          sent++;
        }
        ws.send(q[i]!, TEXT);
      }
      this.#written += this.#queued;
      if (this.#gapEntries.length > 0) {
        for (const entry of this.#gapEntries) if (entry.dropped > 0) this.#gap(entry);
        this.#gapEntries = [];
      }
    } catch (error) {
      this.#host.reportError(error, this);
    } finally {
      socket?.uncork();
      q.length = 0;
      qe.length = 0;
      this.#qKey.length = 0;
      this.#queued = 0;
    }
    this.#messagesSent += sent;
    this.#host.counters.messagesSent += sent;
  }

  #gap(entry: Entry): void {
    const dropped = entry.dropped;
    entry.dropped = 0;
    if (entry.closed) return;
    const bytes = Buffer.from(overflowGapFrame(entry.sid, dropped));
    this.#written += bytes.length;
    this.#ws.send(bytes, TEXT);
  }

  #end(reason: WsCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of [...this.#entries.values()]) this.#closeEntry(entry);
    this.#q = [];
    this.#qEntry = [];
    this.#qKey = [];
    this.#queued = 0;
    this.#gapEntries = [];
    this.#inbox = [];
    this.#inboxBinary = [];
    this.#host.ended(this, reason);
  }
}
