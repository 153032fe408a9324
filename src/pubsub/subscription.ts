/**
 * A subscription: an async iterable of messages with a bounded queue, or a callback.
 *
 * @module
 */
import { Deque } from '../core/deque.js';
import { ClosedError, OverflowError } from '../core/errors.js';
import { channel } from '../core/diagnostics.js';
import type { Message } from './message.js';

/** What a subscription does when its queue is full and another message arrives. */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'close';

/** Counters of one subscription. */
export interface SubscriptionStats {
  /** Messages handed to the consumer (iterator or callback). */
  readonly delivered: number;
  /** Messages dropped by the overflow policy. */
  readonly dropped: number;
  /** Messages waiting in the queue now. */
  readonly queued: number;
}

/** The diagnostics channels the broker and its subscriptions publish on. */
export const pubsubChannels = {
  /** `{ subscription, message, policy }` when a slow subscriber's policy drops a message. */
  drop: channel('pubsub', 'drop'),
  /** `{ subscription, error }` when a callback subscriber throws. */
  error: channel('pubsub', 'error'),
};

/** Something the broker can deliver a message to. @internal */
export interface Receiver {
  push(message: Message): void;
}

/** Hooks between a subscription and its broker. @internal */
export interface SubscriptionHost {
  detach(subscription: Subscription): void;
  countDrop(): void;
  reportError(error: unknown, subscription: Subscription): void;
}

/**
 * A subscription's broker and its queue bound and overflow policy: one object shared by every
 * subscription of the broker that has the same ones. @internal
 */
export interface SubscriptionContext {
  readonly host: SubscriptionHost;
  readonly maxQueuedMessages: number;
  readonly policy: OverflowPolicy;
  /** What few subscriptions have: a context of their own carries it (the shared ones do not). */
  readonly group?: string | undefined;
  readonly identity?: string | undefined;
  readonly canRead?: ((topic: string) => boolean) | undefined;
}

/** While replaying: live messages held, and how many of them were handed over. */
interface ReplayState {
  readonly held: Message[];
  pos: number;
}

/** What only an iterated (or replaying) subscription needs, made on first need. */
class IteratorState {
  /** While replaying, what {@link Subscription._startReplay} began; `null` when live. */
  replay: ReplayState | null = null;
  readonly queue = new Deque<Message>();
  waiter: { resolve: (r: IteratorResult<Message>) => void; reject: (e: unknown) => void } | null = null;
  /** The error the iterator throws once the queue is drained. */
  error: unknown = undefined;
  dropped = 0;
}

/**
 * A live subscription. Iterate it with `for await`, or give `onMessage` when subscribing.
 * Closing it (or breaking out of the loop) unsubscribes at once.
 *
 * A full queue applies the overflow policy: `drop-oldest` and `drop-newest` drop and count;
 * `close` ends the subscription with an {@link OverflowError} thrown from the iterator, after the
 * messages already queued, so the consumer can resume from the last id it saw and lose nothing.
 *
 * @typeParam T - The type of message data.
 */
export class Subscription<T = unknown> implements AsyncIterable<Message<T>> {
  /** The pattern subscribed to. */
  readonly pattern: string;
  // Six fields, none allocated up front: a broker may hold a great many subscriptions. What only
  // an iterated or replaying subscription needs (its queue, a waiting consumer, the error to
  // throw, the live messages held during a replay) is made on first need; what few subscriptions
  // have (a group, an identity, a topic check) rides in a context of their own, while every
  // subscription with the broker's defaults shares one; and `closed` is `#lastSeq` at Infinity,
  // so a plain callback subscription carries nothing else, and a delivery makes one comparison
  // for "closed, or already handed over".
  readonly #context: SubscriptionContext;
  // Internals hold Message (not Message<T>) so Subscription<T> stays assignable to Subscription.
  readonly #onMessage: ((message: Message) => void) | undefined;
  #delivered = 0;
  /**
   * The seq of the last message handed over, to drop duplicates at the replay seam; `Infinity`
   * once closed (nothing more is handed over).
   */
  #lastSeq = 0;
  #iter: IteratorState | null = null;

  /** @internal */
  constructor(
    context: SubscriptionContext,
    pattern: string,
    group: string | undefined,
    onMessage: ((message: Message<T>) => void) | undefined,
    canRead?: (topic: string) => boolean,
    identity?: string,
  ) {
    this.pattern = pattern;
    this.#context = group === undefined && canRead === undefined && identity === undefined ? context : { ...context, group, identity, canRead };
    this.#onMessage = onMessage as ((message: Message) => void) | undefined;
  }

  /** The queue group, if any. */
  get group(): string | undefined {
    return this.#context.group;
  }

  /** Who subscribed: the `identity` of the `authorize.subscribe` hook's grant, if it gave one. */
  get identity(): string | undefined {
    return this.#context.identity;
  }

  /** `true` once closed, by the consumer, the broker, or the overflow policy. */
  get closed(): boolean {
    return this.#lastSeq === Infinity;
  }

  /** Counters. */
  stats(): SubscriptionStats {
    const iter = this.#iter;
    return { delivered: this.#delivered, dropped: iter?.dropped ?? 0, queued: iter?.queue.length ?? 0 };
  }

  /** Unsubscribes at once. Queued messages are discarded; the iterator ends. Idempotent. */
  close(): void {
    this.#end(undefined, true);
  }

  /** Calls {@link Subscription.close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Delivers a live message (used by the broker). @internal */
  push(message: Message): void {
    const iter = this.#iter;
    if (iter !== null && iter.replay !== null) {
      if (this.#lastSeq !== Infinity) iter.replay.held.push(message);
      return;
    }
    this._accept(message);
  }

  /** Hands a message over, dropping duplicates at the replay seam. @internal */
  _accept(message: Message): void {
    if (message._seq <= this.#lastSeq) return; // closed (Infinity), or handed over already
    this.#lastSeq = message._seq;
    const canRead = this.#context.canRead;
    if (canRead !== undefined && !canRead(message.topic)) return;
    if (this.#onMessage !== undefined) {
      this.#delivered++;
      try {
        this.#onMessage(message);
      } catch (error) {
        this.#context.host.reportError(error, this);
      }
      return;
    }
    const iter = (this.#iter ??= new IteratorState());
    const waiter = iter.waiter;
    if (waiter !== null) {
      iter.waiter = null;
      this.#delivered++;
      waiter.resolve({ value: message, done: false });
      return;
    }
    if (iter.queue.length >= this.#context.maxQueuedMessages) {
      this.#overflow(iter, message);
      return;
    }
    iter.queue.push(message);
  }

  /** Starts a replay: live messages are held until {@link Subscription._goLive}. @internal */
  _startReplay(): void {
    (this.#iter ??= new IteratorState()).replay = { held: [], pos: 0 };
  }

  /**
   * Hands over one replayed message. Live messages held since the subscription began that are
   * older than it go first: they were trimmed from the log before the read could see them, but
   * were published after the subscription began, so they are owed, and in order. @internal
   */
  _replay(message: Message): void {
    const replay = this.#iter?.replay ?? null;
    if (replay !== null) {
      const held = replay.held;
      while (replay.pos < held.length && held[replay.pos]!._seq < message._seq) this._accept(held[replay.pos++]!);
    }
    this._accept(message);
  }

  /** Ends replay: hands over the live messages held meanwhile (those replayed are skipped). @internal */
  _goLive(): void {
    const iter = this.#iter;
    const replay = iter?.replay ?? null;
    if (iter !== null) iter.replay = null;
    if (replay !== null) for (let i = replay.pos; i < replay.held.length; i++) this._accept(replay.held[i]!);
  }

  /** Ends the subscription with an error the iterator will throw. @internal */
  _fail(error: unknown): void {
    this.#end(error, false);
  }

  #overflow(iter: IteratorState, message: Message): void {
    const policy = this.#context.policy;
    iter.dropped++;
    this.#context.host.countDrop();
    let dropped = message;
    if (policy === 'drop-oldest') {
      dropped = iter.queue.shift()!;
      iter.queue.push(message);
    }
    if (pubsubChannels.drop.hasSubscribers) {
      pubsubChannels.drop.publish({ subscription: this, message: dropped, policy });
    }
    if (policy === 'close') {
      this.#end(
        new OverflowError(
          `Subscription to ${JSON.stringify(this.pattern)} fell ${this.#context.maxQueuedMessages} messages behind and was closed (overflow policy "close"); resubscribe from the last id you processed`,
        ),
        false,
      );
    }
  }

  #end(error: unknown, discard: boolean): void {
    if (this.#lastSeq === Infinity) return;
    this.#lastSeq = Infinity;
    const iter = error === undefined ? this.#iter : (this.#iter ??= new IteratorState());
    if (iter !== null) {
      iter.replay = null;
      iter.error = error;
      if (discard) iter.queue.clear();
    }
    this.#context.host.detach(this);
    const waiter = iter?.waiter ?? null;
    if (waiter !== null) {
      iter!.waiter = null;
      if (error === undefined) waiter.resolve({ value: undefined, done: true });
      else waiter.reject(error);
    }
  }

  #next(): Promise<IteratorResult<Message<T>>> {
    return this.#take() as Promise<IteratorResult<Message<T>>>;
  }

  #take(): Promise<IteratorResult<Message>> {
    const iter = (this.#iter ??= new IteratorState());
    const message = iter.queue.shift();
    if (message !== undefined) {
      this.#delivered++;
      return Promise.resolve({ value: message, done: false });
    }
    if (this.#lastSeq === Infinity) {
      const error = iter.error;
      if (error === undefined) return Promise.resolve({ value: undefined, done: true });
      iter.error = undefined; // throw once, then report done
      return Promise.reject(error);
    }
    if (iter.waiter !== null) {
      return Promise.reject(new ClosedError('Only one consumer may iterate a subscription at a time'));
    }
    return new Promise((resolve, reject) => (iter.waiter = { resolve, reject }));
  }

  /** Iterates the messages; leaving the loop early closes the subscription. */
  [Symbol.asyncIterator](): AsyncIterator<Message<T>> {
    return {
      next: () => this.#next(),
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
