/**
 * One WebSocket connection of a {@link WsHandler}: its subscriptions, its bounded send buffer
 * and its inbound frames.
 *
 * ## Sending
 *
 * Frames are queued as bytes and written once per event-loop turn by the handler (a broadcast
 * hands every connection the same `Buffer`); the writes of one turn go out corked, as one
 * `writev`. What the socket holds (`bufferedAmount`) plus what is queued may not pass
 * `maxBufferedBytes`; past it the overflow policy decides (the queue, its policies and the replay
 * budget are the connection's outbox, in `outbox.ts`; this module feeds it and reads the client):
 *
 * - `close` (the default): the connection is closed with code 1013 and its subscriptions end at
 *   once. The client reconnects and resubscribes from the last id it has: nothing is lost.
 * - `drop-oldest`: queued messages make room, oldest first.
 * - `coalesce`: a message replaces a queued one of the same subscription and topic (latest value
 *   wins), at any time; past the limit, as `drop-oldest`.
 *
 * ## Replays
 *
 * A subscription with a cursor is first fed from the log, page by page
 * (`broker.read(target, cursor, limit, { canRead })`), as the socket lets go of what it was
 * given: the replays of one connection, however many, hold at most `maxBufferedBytes` together
 * (queued or in the socket, plus one page read and not yet framed), and take turns a page at a
 * time. A replay is never dropped or cut by the overflow policy: it waits for the client to read
 * instead. Live messages and replies get `maxBufferedBytes` of their own on top of what replays
 * hold. When a page says the log holds no more, the subscription goes live from the last cursor
 * read (the broker replays what was published meanwhile and drops duplicates at the seam), so
 * nothing is lost or repeated, and a list of topics stays in publish order.
 *
 * A message this connection cannot frame (data JSON cannot carry, from a custom backend or a
 * record of another version) is skipped, replayed or live, with an `error` frame for its
 * subscription; it never reaches the broker's error path.
 *
 * A dropped message is never silent: before the subscription's next message (or at the next
 * flush) the client gets `{"type":"gap","sid","reason":"overflow","dropped":n}`. Replies
 * (`subscribed`, `published`, `error`...) are never dropped: one that cannot fit even in an
 * emptied queue closes the connection, whatever the policy, so the buffer stays bounded.
 *
 * ## Receiving
 *
 * Frames are handled one at a time, in order (a publish is stored before the next frame is
 * read). While `maxInFlightFrames` frames wait, the socket is paused: a fast sender gets TCP
 * backpressure, not an unbounded queue.
 *
 * @module
 */
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket } from 'ws';
import { channel } from '../core/diagnostics.js';
import { ClosedError, ForbiddenError, InvalidArgumentError, InvalidStateError, NotFoundError, OverflowError, PatchbayError } from '../core/errors.js';
import { replayPageSize } from '../http/push-pacing.js';
import { type AccessVerdict, type Authorize, authorizeAccess, toAccess } from '../pubsub/access.js';
import { type Message, parseCursor, parseTopic, type PubSubBroker, type Subscription, type TopicTarget } from '../pubsub/index.js';
import { parseTarget } from '../pubsub/target.js';
import {
  errorFrame,
  isRefused,
  logGapFrame,
  parseClientFrame,
  pongFrame,
  publishedFrame,
  subscribedFrame,
  unsubscribedFrame,
  type WsPublishFrame,
  type WsRef,
  type WsSubscribeFrame,
} from './protocol.js';
import { wireLength, WsOutbox } from './outbox.js';

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
  /** Bytes queued now (not yet handed to the socket), replays included. */
  readonly bytesQueued: number;
  /** Of what is queued or in the socket, the bytes of replays (at most `maxBufferedBytes`, plus one frame). */
  readonly bytesReplaying: number;
  /** Subscriptions still being fed from the log. */
  readonly replaying: number;
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
  /** What it follows: one pattern, or topics (one broker subscription each). */
  readonly patterns: readonly string[];
  readonly subs: Subscription[];
  /** The subscribe hook's grant. */
  readonly canRead: ((topic: string) => boolean) | undefined;
  readonly identity: string | undefined;
  /** Messages delivered while subscribing: sent, in publish order, after `subscribed`. */
  staged: Message[] | null;
  /** While it is fed from the log: where it is. */
  replay: Replay | null;
  /** Messages dropped since the last gap frame. */
  dropped: number;
  closed: boolean;
}

/** Where a subscription's replay from the log is. @internal */
interface Replay {
  /** What `broker.read` takes. */
  readonly target: string | readonly string[] | { readonly pattern: string };
  /** The cursor the client gave (`undefined` for "oldest"). */
  readonly given: string | undefined;
  readonly ref: WsRef | undefined;
  /** Read after this next (`null`: from the oldest). */
  cursor: string | null;
  /** No page read yet: the first one answers the `subscribe` frame. */
  first: boolean;
  /** Settles the `subscribe` frame once the first page is read (or failed). */
  readonly ready: { resolve: () => void; reject: (error: unknown) => void };
}

/** The authorization hooks a connection consults. @internal */
export interface ConnectionAuthorize {
  readonly subscribe?: Authorize<unknown>;
  readonly publish?: (target: TopicTarget, context: unknown, data: unknown) => AccessVerdict | Promise<AccessVerdict>;
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
  readonly maxFrameDepth: number;
  readonly allowPatterns: boolean;
  readonly maxInFlightFrames: number;
  readonly maxSubscriptions: number;
  readonly maxTopics: number;
  readonly counters: Counters;
  /** The overflow policy dropped or replaced a message of subscription `sid`. */
  dropped(connection: WsConnection, sid: string, policy: WsOverflowPolicy): void;
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

/** Most messages one replay page asks for. */
const REPLAY_PAGE = 256;

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
  readonly #entries = new Map<string, Entry>();
  readonly #outbox: WsOutbox;
  /** Subscriptions waiting for their next replay page, in turn. */
  #replays: Entry[] = [];
  #pumping = false;
  #inbox: Buffer[] = [];
  #inboxBinary: boolean[] = [];
  #draining = false;
  #paused = false;
  #closed = false;
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
    this.context = context;
    this.#outbox = new WsOutbox(this, host, ws, socket);
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

  /**
   * Who holds subscription `sid`: the `identity` of the grant `authorize.subscribe` answered it
   * with, if it gave one: who holds that subscription, for the app (and for presence, when it comes).
   *
   * @returns `undefined` when the grant gave none, or there is no such subscription.
   */
  identity(sid: string): string | undefined {
    return this.#entries.get(sid)?.identity;
  }

  /** Subscriptions whose replay is under way (queued for a page, or reading one). */
  #replayingCount(): number {
    let n = 0;
    for (const entry of this.#entries.values()) if (entry.replay !== null) n++;
    return n;
  }

  /** Counters. */
  stats(): WsConnectionStats {
    return {
      subscriptions: this.#entries.size,
      messagesSent: this.#outbox.messagesSent,
      bytesQueued: this.#outbox.bytesQueued,
      bytesReplaying: this.#outbox.replayHeld(),
      replaying: this.#replayingCount(),
      bytesBuffered: this.#closed ? 0 : this.#ws.bufferedAmount,
      drops: this.#outbox.drops,
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
    this.#outbox.flush();
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
    this.#outbox.flush();
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
      if (entry.staged === null && entry.replay === null && entry.subs.some((s) => s.closed)) {
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
    if (!this.#paused && this.#inbox.length >= this.#host.maxInFlightFrames) {
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
        if (this.#paused && this.#inbox.length < this.#host.maxInFlightFrames >> 1) {
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
    const frame = parseClientFrame(data, binary, this.#host.maxMessageBytes, this.#host.maxFrameDepth);
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
    if (frame.pattern !== undefined && !host.allowPatterns) {
      throw new ForbiddenError('Patterns are not allowed on this WebSocket: subscribe with `topics`, or have the server set `allowPatterns: true`');
    }
    const t = parseTarget(frame.pattern !== undefined ? { pattern: frame.pattern } : { topics: frame.topics }, host.maxTopics, 'subscribe');
    const target: WsTarget = t.pattern !== undefined ? { pattern: t.pattern } : { topics: t.topics };
    const given = cursor !== undefined && cursor !== 'now' && cursor !== 'oldest' ? cursor : undefined;
    if (given !== undefined) parseCursor(given);
    const shown = t.pattern !== undefined ? JSON.stringify(t.pattern) : JSON.stringify(t.topics);
    const access = await authorizeAccess(host.authorize.subscribe, target, this.context, `subscribe to ${shown}`);
    if (this.#closed) return;

    const patterns = t.pattern !== undefined ? [t.pattern] : t.topics;
    const entry: Entry = { sid, patterns, subs: [], canRead: access.canRead, identity: access.identity, staged: [], replay: null, dropped: 0, closed: false };
    this.#entries.set(sid, entry);
    host.counters.subscriptions++;

    if (given !== undefined || cursor === 'oldest') {
      // From the log first, page by page as the socket drains; live from where the log ends.
      // The broker's own authorize.subscribe is asked by every page read (the connection's context
      // goes with it), so a refusal refuses and its grant filters the replay as it filters live messages.
      entry.staged = null;
      await new Promise<void>((resolve, reject) => {
        entry.replay = {
          target: t.pattern !== undefined ? { pattern: t.pattern } : t.topics.length === 1 ? t.topics[0]! : t.topics,
          given,
          ref: frame.ref,
          cursor: given ?? null,
          first: true,
          ready: { resolve, reject },
        };
        this.#replays.push(entry);
        void this.#pump();
      });
      return;
    }

    // Without a cursor the subscription starts now, and `resume` (the head before it started) is
    // where a client that got nothing resumes from. Several topics all start from that head, so
    // they share one starting point and are merged in publish order.
    let resume: string;
    try {
      resume = await host.broker.head();
      const from = patterns.length > 1 ? resume : 'now';
      if (!(await this.#subscribeLive(entry, from))) return;
    } catch (error) {
      this.#closeEntry(entry);
      throw error;
    }
    this.#reply(subscribedFrame(sid, resume, 0, frame.ref));
    this.#sendStaged(entry);
  }

  /**
   * Subscribes `entry` on the broker from `from`, messages staged meanwhile.
   * @returns `false` when the entry or the connection ended meanwhile (the entry is then closed).
   */
  async #subscribeLive(entry: Entry, from: string): Promise<boolean> {
    const host = this.#host;
    entry.staged = [];
    const onMessage = (m: Message): void => {
      // Contained here: nothing this connection does with a message reaches the broker's error path.
      try {
        if (entry.staged !== null) entry.staged.push(m);
        else this.#send(entry, m);
      } catch (error) {
        this.#skip(entry, m, error);
      }
    };
    let gap = false;
    for (const pattern of entry.patterns) {
      const sub = await host.broker.subscribe(pattern, { from, maxQueuedMessages: 1, context: this.context, canRead: entry.canRead, onMessage });
      entry.subs.push(sub);
      if (this.#closed || entry.closed) {
        // Unsubscribed or disconnected while the broker was subscribing: #closeEntry may have run
        // already, before this subscription existed, so it is closed here.
        sub.close();
        this.#closeEntry(entry);
        return false;
      }
      gap ||= from !== 'now' && host.broker.replayInfo(sub)?.gap === true;
    }
    if (gap) {
      host.counters.gaps++;
      this.#reply(logGapFrame(entry.sid, from));
    }
    return true;
  }

  /** Sends what was staged while subscribing, in publish order (exempt from the overflow policy, as a replay). */
  #sendStaged(entry: Entry): void {
    const staged = entry.staged;
    entry.staged = null;
    if (staged === null || entry.closed) return;
    if (entry.subs.length > 1) staged.sort((a, b) => a._seq - b._seq);
    for (const m of staged) this.#sendReplayed(entry, m);
  }

  // --- replays ---------------------------------------------------------------------------------

  /** Feeds the subscriptions in replay from the log, one page at a time each, in turn. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (!this.#closed && this.#replays.length > 0) {
        const entry = this.#replays.shift()!;
        const r = entry.replay;
        if (r === null || entry.closed) {
          r?.ready.resolve();
          continue;
        }
        try {
          await this.#replayPage(entry, r);
        } catch (error) {
          // A bug of ours, or of a backend: this subscription ends, the others go on.
          this.#replayFailed(entry, r, error);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Reads and sends one page of `entry`'s replay; then queues its next turn, or takes it live. */
  async #replayPage(entry: Entry, r: Replay): Promise<void> {
    const outbox = this.#outbox;
    if (outbox.replayFull(outbox.replayFrameBytes)) await outbox.replayRoom(outbox.replayFrameBytes);
    if (this.#closed || entry.closed) {
      r.ready.resolve();
      return;
    }
    const limit = replayPageSize(this.#host.maxBufferedBytes - outbox.replayHeld(), outbox.replayFrameBytes, REPLAY_PAGE);
    let page;
    try {
      page = await this.#host.broker.read(r.target, r.cursor, limit, { canRead: entry.canRead, context: this.context });
    } catch (error) {
      this.#replayFailed(entry, r, error);
      return;
    }
    if (this.#closed || entry.closed) {
      r.ready.resolve();
      return;
    }
    const from = r.cursor;
    r.cursor = page.cursor;
    if (r.given !== undefined) this.#host.counters.replayedMessages += page.messages.length;
    if (r.first) {
      r.first = false;
      if (r.given !== undefined) this.#host.counters.replays++;
      this.#reply(subscribedFrame(entry.sid, r.given ?? 'oldest', page.messages.length, r.ref, page.more));
      r.ready.resolve();
    }
    if (page.gap && from !== null) {
      this.#host.counters.gaps++;
      this.#reply(logGapFrame(entry.sid, from));
    }
    for (const m of page.messages) {
      const bytes = this.#frameReplayed(entry, m);
      if (bytes === undefined) continue;
      const wire = wireLength(bytes.length);
      if (outbox.replayFull(wire)) await outbox.replayRoom(wire);
      if (this.#closed || entry.closed) break;
      outbox.appendReplayed(bytes);
    }
    if (this.#closed || entry.closed) return;
    if (page.more) {
      this.#replays.push(entry); // its next page after the others' turn
      return;
    }
    // The log is read to its end: live from the last cursor read. The broker replays what was
    // published since (staged, sent in publish order) and drops duplicates at the seam.
    entry.replay = null;
    try {
      if (await this.#subscribeLive(entry, page.cursor)) this.#sendStaged(entry);
    } catch (error) {
      this.#replayFailed(entry, null, error);
    }
  }

  /** A replay could not go on: the `subscribe` frame is refused, or (later) the subscription ends with why. */
  #replayFailed(entry: Entry, r: Replay | null, error: unknown): void {
    if (r?.first === true) {
      r.ready.reject(error); // before closeEntry, which would resolve it
      this.#closeEntry(entry);
      return;
    }
    this.#closeEntry(entry);
    if (!(error instanceof PatchbayError)) this.#host.reportError(error, this);
    this.#reply(unsubscribedFrame(entry.sid, undefined, error));
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
    parseTopic(frame.topic);
    toAccess(await hook({ topics: [frame.topic] }, this.context, frame.data), `publish on ${JSON.stringify(frame.topic)}`);
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
    entry.replay?.ready.resolve();
    entry.replay = null;
    for (const sub of entry.subs) sub.close();
    if (this.#entries.get(entry.sid) === entry) {
      this.#entries.delete(entry.sid);
      this.#host.counters.subscriptions--;
    }
  }

  // --- outbound --------------------------------------------------------------------------------

  #reply(text: string): void {
    if (!this.#outbox.push(Buffer.from(text), null, undefined)) this.#overflow();
  }

  /** A live message. */
  #send(entry: Entry, m: Message): void {
    if (entry.closed) return;
    const bytes = this.#host.frame(m, entry.sid);
    if (bytes === undefined) this.#skip(entry, m, undefined);
    else if (!this.#outbox.push(bytes, entry, this.#host.overflow === 'coalesce' ? `${entry.sid}\u0000${m.topic}` : undefined)) this.#overflow();
  }

  /** A message of a replay, or staged while subscribing: never dropped, counted in the replay budget. */
  #sendReplayed(entry: Entry, m: Message): void {
    const bytes = this.#frameReplayed(entry, m);
    if (bytes !== undefined) this.#outbox.appendReplayed(bytes);
  }

  /** The frame of a replayed message; `undefined` (and the client told) when it cannot be framed. */
  #frameReplayed(entry: Entry, m: Message): Buffer | undefined {
    if (entry.closed || this.#closed) return undefined;
    let bytes: Buffer | undefined;
    let error: unknown;
    try {
      bytes = this.#host.frame(m, entry.sid);
    } catch (e) {
      error = e;
    }
    if (bytes === undefined) this.#skip(entry, m, error);
    return bytes;
  }

  /** Skips a message this connection cannot send, telling the client which (an `error` frame for its subscription). */
  #skip(entry: Entry, m: Message, error: unknown): void {
    if (error !== undefined) this.#host.reportError(error, this);
    let what: string;
    try {
      what = `Message ${String(m.id).slice(0, 64)} on ${JSON.stringify(String(m.topic).slice(0, 256))}`;
    } catch {
      what = 'A message';
    }
    this.#reply(errorFrame(new InvalidArgumentError(`${what} has data that JSON cannot carry; it was skipped`), undefined, entry.sid));
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

  #end(reason: WsCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const entry of [...this.#entries.values()]) this.#closeEntry(entry);
    this.#outbox.close();
    this.#replays = [];
    this.#inbox = [];
    this.#inboxBinary = [];
    this.#host.ended(this, reason);
  }
}
