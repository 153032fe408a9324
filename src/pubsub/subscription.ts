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
  /** The queue group, if any. */
  readonly group: string | undefined;
  readonly #host: SubscriptionHost;
  readonly #maxQueuedMessages: number;
  readonly #policy: OverflowPolicy;
  // Internals hold Message (not Message<T>) so Subscription<T> stays assignable to Subscription.
  readonly #onMessage: ((message: Message) => void) | undefined;
  readonly #queue = new Deque<Message>();
  #waiter: { resolve: (r: IteratorResult<Message>) => void; reject: (e: unknown) => void } | null = null;
  #closed = false;
  #error: unknown = undefined;
  #delivered = 0;
  #dropped = 0;
  /** While replaying: live messages wait here. @internal */
  _held: Message[] | null = null;
  #heldPos = 0;
  /** The seq of the last message handed over, to drop duplicates at the replay seam. @internal */
  _lastSeq = 0;
  /** Tokens of the pattern. @internal */
  readonly _tokens: readonly string[];
  /** Who subscribed: the `identity` of the `authorize.subscribe` hook's grant, if it gave one. */
  readonly identity: string | undefined;
  readonly #canRead: ((topic: string) => boolean) | undefined;

  /** @internal */
  constructor(
    host: SubscriptionHost,
    pattern: string,
    tokens: readonly string[],
    group: string | undefined,
    maxQueuedMessages: number,
    policy: OverflowPolicy,
    onMessage: ((message: Message<T>) => void) | undefined,
    canRead?: (topic: string) => boolean,
    identity?: string,
  ) {
    this.#host = host;
    this.pattern = pattern;
    this._tokens = tokens;
    this.group = group;
    this.#maxQueuedMessages = maxQueuedMessages;
    this.#policy = policy;
    this.#onMessage = onMessage as ((message: Message) => void) | undefined;
    this.#canRead = canRead;
    this.identity = identity;
  }

  /** `true` once closed, by the consumer, the broker, or the overflow policy. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Counters. */
  stats(): SubscriptionStats {
    return { delivered: this.#delivered, dropped: this.#dropped, queued: this.#queue.length };
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
    if (this.#closed) return;
    if (this._held !== null) {
      this._held.push(message);
      return;
    }
    this._accept(message);
  }

  /** Hands a message over, dropping duplicates at the replay seam. @internal */
  _accept(message: Message): void {
    if (this.#closed || message._seq <= this._lastSeq) return;
    this._lastSeq = message._seq;
    if (this.#canRead !== undefined && !this.#canRead(message.topic)) return;
    if (this.#onMessage !== undefined) {
      this.#delivered++;
      try {
        this.#onMessage(message);
      } catch (error) {
        this.#host.reportError(error, this);
      }
      return;
    }
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      this.#delivered++;
      waiter.resolve({ value: message, done: false });
      return;
    }
    if (this.#queue.length >= this.#maxQueuedMessages) {
      this.#overflow(message);
      return;
    }
    this.#queue.push(message);
  }

  /**
   * Hands over one replayed message. Live messages held since the subscription began that are
   * older than it go first: they were trimmed from the log before the read could see them, but
   * were published after the subscription began, so they are owed, and in order. @internal
   */
  _replay(message: Message): void {
    const held = this._held;
    if (held !== null) {
      while (this.#heldPos < held.length && held[this.#heldPos]!._seq < message._seq) this._accept(held[this.#heldPos++]!);
    }
    this._accept(message);
  }

  /** Ends replay: hands over the live messages held meanwhile (those replayed are skipped). @internal */
  _goLive(): void {
    const held = this._held;
    this._held = null;
    if (held !== null) for (let i = this.#heldPos; i < held.length; i++) this._accept(held[i]!);
    this.#heldPos = 0;
  }

  /** Ends the subscription with an error the iterator will throw. @internal */
  _fail(error: unknown): void {
    this.#end(error, false);
  }

  #overflow(message: Message): void {
    this.#dropped++;
    this.#host.countDrop();
    let dropped = message;
    if (this.#policy === 'drop-oldest') {
      dropped = this.#queue.shift()!;
      this.#queue.push(message);
    }
    if (pubsubChannels.drop.hasSubscribers) {
      pubsubChannels.drop.publish({ subscription: this, message: dropped, policy: this.#policy });
    }
    if (this.#policy === 'close') {
      this.#end(
        new OverflowError(
          `Subscription to ${JSON.stringify(this.pattern)} fell ${this.#maxQueuedMessages} messages behind and was closed (overflow policy "close"); resubscribe from the last id you processed`,
        ),
        false,
      );
    }
  }

  #end(error: unknown, discard: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#error = error;
    this._held = null;
    if (discard) this.#queue.clear();
    this.#host.detach(this);
    const waiter = this.#waiter;
    if (waiter !== null) {
      this.#waiter = null;
      if (error === undefined) waiter.resolve({ value: undefined, done: true });
      else waiter.reject(error);
    }
  }

  #next(): Promise<IteratorResult<Message<T>>> {
    return this.#take() as Promise<IteratorResult<Message<T>>>;
  }

  #take(): Promise<IteratorResult<Message>> {
    const message = this.#queue.shift();
    if (message !== undefined) {
      this.#delivered++;
      return Promise.resolve({ value: message, done: false });
    }
    if (this.#closed) {
      const error = this.#error;
      if (error === undefined) return Promise.resolve({ value: undefined, done: true });
      this.#error = undefined; // throw once, then report done
      return Promise.reject(error);
    }
    if (this.#waiter !== null) {
      return Promise.reject(new ClosedError('Only one consumer may iterate a subscription at a time'));
    }
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
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
