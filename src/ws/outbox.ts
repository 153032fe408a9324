/**
 * The send side of one {@link WsConnection}: its bounded queue of frames, the overflow policies,
 * the budget of its replays, and the corked write of each turn.
 *
 * It is its own piece because it is the one part of a connection that knows about bytes and not
 * about subscriptions or frames from the client: the connection hands it frames (a reply, a live
 * message of a subscription, a replayed one) and it decides what is kept, dropped or refused, and
 * writes what is kept once per event-loop turn.
 *
 * ## The two budgets
 *
 * What the socket holds (`bufferedAmount`) plus what is queued may not pass `maxBufferedBytes`
 * for live messages and replies; past it the policy decides (`close`, `drop-oldest`, `coalesce`,
 * see {@link WsConnection}). Replayed frames have a budget of their own, the same size: they are
 * never dropped, and are counted from the moment they are queued until the socket lets go of
 * them (the write callback of the last replay frame of a flush tells), so a replay waits for the
 * client ({@link WsOutbox.replayRoom}) instead of being cut.
 *
 * A dropped message is announced, before the subscription's next message or at the next flush,
 * with an overflow `gap` frame.
 *
 * @module
 * @internal
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { ConnectionHost, WsConnection, WsOverflowPolicy } from './connection.js';
import { overflowGapFrame } from './protocol.js';

/** What the outbox needs of a subscription: its id, and its drops not yet announced. @internal */
export interface OutboxSubscription {
  readonly sid: string;
  /** Messages dropped since the last gap frame. */
  dropped: number;
  readonly closed: boolean;
}

const TEXT = { binary: false } as const;

/** Marks a replayed message in the send queue: it is never dropped, and counts in the replay budget. */
const REPLAY = Symbol('replay');
type QueuedFor = OutboxSubscription | null | typeof REPLAY;

/** The bytes a server frame of `len` payload bytes takes on the wire (unmasked). @internal */
export function wireLength(len: number): number {
  return len + (len < 126 ? 2 : len < 65_536 ? 4 : 10);
}

/** The send queue of one connection. @internal */
export class WsOutbox {
  readonly #connection: WsConnection;
  readonly #host: ConnectionHost;
  readonly #ws: WebSocket;
  readonly #socket: Duplex | undefined;
  // The queue: bytes, the subscription of each message frame (null for a reply, REPLAY for a
  // replayed one), and, under `coalesce`, each frame's key.
  #q: Buffer[] = [];
  #qEntry: QueuedFor[] = [];
  #qKey: (string | undefined)[] = [];
  #queued = 0;
  /** Replay bytes in the queue (part of `#queued`). */
  #replayQueued = 0;
  /** The same, as they will take on the wire (with frame headers). */
  #replayQueuedWire = 0;
  /** Replay bytes handed to the socket that it has not let go of yet (wire bytes). */
  #replayInSocket = 0;
  /** Wakes the replay pump when the socket lets go of replay bytes. */
  #roomWaiter: (() => void) | null = null;
  #replayFrameBytes = 512;
  /** Subscriptions with dropped messages not yet announced. */
  #gapEntries: OutboxSubscription[] = [];
  #messagesSent = 0;
  #drops = 0;
  #closed = false;

  constructor(connection: WsConnection, host: ConnectionHost, ws: WebSocket, socket: Duplex | undefined) {
    this.#connection = connection;
    this.#host = host;
    this.#ws = ws;
    this.#socket = socket;
  }

  /** Bytes queued now (not yet handed to the socket), replays included. */
  get bytesQueued(): number {
    return this.#queued;
  }

  /** Message frames written. */
  get messagesSent(): number {
    return this.#messagesSent;
  }

  /** Messages dropped or replaced by the overflow policy. */
  get drops(): number {
    return this.#drops;
  }

  /** Average replay frame size so far: sizes the next page to the room left. */
  get replayFrameBytes(): number {
    return this.#replayFrameBytes;
  }

  /** Replay bytes held now: queued, or in the socket (wire bytes). */
  replayHeld(): number {
    return this.#replayQueuedWire + this.#replayInSocket;
  }

  /** Whether a replay frame of `len` bytes must wait: it does not fit in the replay budget, and some replay bytes are held (a frame alone always goes). */
  replayFull(len: number): boolean {
    const held = this.replayHeld();
    return !this.#closed && held > 0 && held + len > this.#host.maxBufferedBytes;
  }

  /** Resolves once a replay frame of `len` bytes fits in the replay budget (or the outbox closed). One waiter at a time. */
  async replayRoom(len: number): Promise<void> {
    while (this.replayFull(len)) {
      await new Promise<void>((resolve) => {
        this.#roomWaiter = resolve;
      });
    }
  }

  /**
   * Queues a reply (`sub` null) or a live message of `sub`, under the overflow policy.
   * @param key - Under `coalesce`: a queued frame with the same key is replaced.
   * @returns `false` when it cannot fit and the connection must be closed for overflow.
   */
  push(bytes: Buffer, sub: OutboxSubscription | null, key: string | undefined): boolean {
    if (this.#closed) return true;
    const len = bytes.length;
    // Replays have a budget of their own: what of them is held is not counted here.
    let room = this.#host.maxBufferedBytes + this.#replayQueued + this.#replayInSocket - this.#ws.bufferedAmount - this.#queued;
    if (key !== undefined) {
      const i = this.#qKey.lastIndexOf(key);
      if (i !== -1 && room + this.#q[i]!.length >= len) {
        this.#queued += len - this.#q[i]!.length;
        this.#q[i] = bytes;
        this.#countDrop(sub!, 'coalesce');
        return true;
      }
    }
    if (len > room) {
      if (this.#host.overflow === 'close') return false;
      room += this.#makeRoom(len - room);
      if (len > room) {
        if (sub === null) return false;
        this.#countDrop(sub, this.#host.overflow); // the socket alone holds too much: this one cannot go
        this.#schedule(); // the gap goes out at the next flush
        return true;
      }
    }
    this.#append(bytes, sub, key);
    return true;
  }

  /** Queues a replayed frame: never dropped, counted in the replay budget (the caller paces with {@link WsOutbox.replayRoom}). */
  appendReplayed(bytes: Buffer): void {
    if (this.#closed) return;
    this.#replayFrameBytes = Math.max(64, Math.round((this.#replayFrameBytes * 7 + bytes.length) / 8));
    this.#replayQueued += bytes.length;
    this.#replayQueuedWire += wireLength(bytes.length);
    this.#append(bytes, REPLAY, undefined);
  }

  #append(bytes: Buffer, entry: QueuedFor, key: string | undefined): void {
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
    const qe: QueuedFor[] = [];
    const qk: (string | undefined)[] = [];
    const coalesce = this.#host.overflow === 'coalesce';
    for (let i = 0; i < this.#q.length; i++) {
      const entry = this.#qEntry[i]!;
      if (freed < need && entry !== null && entry !== REPLAY) {
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

  #countDrop(entry: OutboxSubscription, policy: WsOverflowPolicy): void {
    if (entry.dropped++ === 0) this.#gapEntries.push(entry);
    this.#drops++;
    this.#host.dropped(this.#connection, entry.sid, policy);
  }

  #schedule(): void {
    const connection = this.#connection;
    if (!connection._dirty) {
      connection._dirty = true;
      this.#host.markDirty(connection);
    }
  }

  /** Writes what is queued, corked into one write, with the gap frames due. */
  flush(): void {
    if (this.#closed) return;
    const q = this.#q;
    const qe = this.#qEntry;
    const n = q.length;
    if (n === 0 && this.#gapEntries.length === 0) return;
    const ws = this.#ws;
    const socket = n > 1 || this.#gapEntries.length > 0 ? this.#socket : undefined;
    let sent = 0;
    // Replay frames move from the queue to the socket; the socket's callback on the last of them
    // (writes complete in order) tells when it let go of them all, and wakes the replay pump.
    let replayLeft = this.#replayQueued;
    let wire = 0;
    socket?.cork();
    try {
      for (let i = 0; i < n; i++) {
        const entry = qe[i]!;
        if (entry === REPLAY) {
          sent++;
          const len = q[i]!.length;
          replayLeft -= len;
          wire += wireLength(len);
          if (replayLeft === 0) {
            const held = wire;
            this.#replayQueued = 0;
            this.#replayQueuedWire = 0;
            ws.send(q[i]!, TEXT, () => this.#released(held)); // the callback runs later, never inside send
            this.#replayInSocket += held; // counted once send took the frame (a throw leaves the budget as it was)
            continue;
          }
        } else if (entry !== null) {
          if (entry.dropped > 0) this.#gap(entry);
          sent++;
        }
        ws.send(q[i]!, TEXT);
      }
      if (this.#gapEntries.length > 0) {
        for (const entry of this.#gapEntries) if (entry.dropped > 0) this.#gap(entry);
        this.#gapEntries = [];
      }
    } catch (error) {
      this.#host.reportError(error, this.#connection);
    } finally {
      socket?.uncork();
      q.length = 0;
      qe.length = 0;
      this.#qKey.length = 0;
      this.#queued = 0;
      this.#replayQueued = 0;
      this.#replayQueuedWire = 0;
    }
    this.#messagesSent += sent;
    this.#host.counters.messagesSent += sent;
  }

  #gap(entry: OutboxSubscription): void {
    const dropped = entry.dropped;
    entry.dropped = 0;
    if (entry.closed) return;
    this.#ws.send(Buffer.from(overflowGapFrame(entry.sid, dropped)), TEXT);
  }

  /** The socket let go of `wire` bytes of replays. */
  #released(wire: number): void {
    if (this.#closed) return;
    this.#replayInSocket -= wire;
    this.#wakeReplay();
  }

  #wakeReplay(): void {
    const waiter = this.#roomWaiter;
    if (waiter === null) return;
    this.#roomWaiter = null;
    waiter();
  }

  /** Discards what is queued and wakes a waiting replay: the connection ended. */
  close(): void {
    this.#closed = true;
    this.#q = [];
    this.#qEntry = [];
    this.#qKey = [];
    this.#queued = 0;
    this.#replayQueued = 0;
    this.#replayQueuedWire = 0;
    this.#replayInSocket = 0;
    this.#wakeReplay();
    this.#gapEntries = [];
  }
}
