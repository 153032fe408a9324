/**
 * The pub-sub broker: many-to-many topics with wildcards, history, queue groups, request/reply
 * and an explicit slow-subscriber policy, over a pluggable {@link Backend}.
 *
 * Delivery is in publish order per subscription. A subscription that starts from a cursor first
 * replays the log after it, then goes live: live messages that arrive during the replay are held
 * and handed over after it, and anything already replayed is skipped, so there is no gap and no
 * duplicate at the seam.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { onAbort, abortReason } from '../core/abort.js';
import type { Clock, ClockTimer } from '../core/clock.js';
import { InvalidArgumentError, TimeoutError, ClosedError } from '../core/errors.js';
import { checkMaxDepth, DEFAULT_MAX_JSON_DEPTH, RESERVED_JSON_KEY } from '../core/json.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { type Access, authorizeAccess, type Authorize, bothTopicChecks, cachedTopicCheck, OPEN_ACCESS, targetOf } from './access.js';
import { type Backend, type BackendRead, type BackendStats, MemoryBackend } from './backend.js';
import { type Cursor, type Message, type MessageHeaders, checkedSize, parseCursor } from './message.js';
import type { MessageLogLimits } from './message-log.js';
import { type OverflowPolicy, pubsubChannels, type Receiver, Subscription, type SubscriptionContext, type SubscriptionHost } from './subscription.js';
import type { TopicTarget } from './target.js';
import { INBOX_PREFIX, isWildcard, parsePattern, parseTopic, TopicIndex } from './topic.js';

/**
 * Authorization hooks of a broker, in the one shape every primitive uses
 * (`(target, context)`, see {@link Authorize}): `target` is `{ topics: [topic] }` for a topic and
 * `{ pattern }` for a pattern with wildcards; `context` is the call's `context` option. Anything
 * but `true` or a grant refuses with a {@link ForbiddenError}.
 */
export interface PubSubAuthorize {
  /** May `context` publish on the target's topic? */
  readonly publish?: Authorize;
  /**
   * May `context` subscribe to the target? A grant's `canRead` is applied to every message the
   * subscription meets, and its `identity` is kept as the subscription's.
   */
  readonly subscribe?: Authorize;
}

/** Options for {@link PubSubBroker}. */
export interface PubSubBrokerOptions {
  /**
   * Where messages live.
   * @defaultValue a new {@link MemoryBackend} with `history` and `clock`, closed with the broker
   */
  readonly backend?: Backend;
  /** Log bounds per topic, for the default backend. */
  readonly history?: MessageLogLimits;
  /**
   * The time source (request timeouts; the default backend's age limits).
   * @defaultValue the real clock (`realClock`)
   */
  readonly clock?: Clock;
  /**
   * Default queue bound per subscription.
   * @defaultValue 1000
   */
  readonly maxQueuedMessages?: number;
  /**
   * Default overflow policy per subscription.
   * @defaultValue `'close'` (the consumer resumes from its last id: nothing is lost)
   */
  readonly overflow?: OverflowPolicy;
  /** Authorization hooks for publish and subscribe. */
  readonly authorize?: PubSubAuthorize;
  /**
   * The deepest nesting of objects and arrays a published value may have (the outermost counts
   * 1). Deeper data is refused at `publish`, before it is stored: serializing it could overflow the
   * stack of whichever transport (or process) delivers it.
   * @defaultValue {@link DEFAULT_MAX_JSON_DEPTH} (64)
   */
  readonly maxDataDepth?: number;
  /**
   * Called when a callback subscriber throws. Without it, the error is rethrown in a microtask
   * (an uncaught exception), as an EventEmitter listener's would be.
   */
  readonly onError?: (error: unknown, subscription: Subscription) => void;
}

/** Options for {@link PubSubBroker.publish}. */
export interface PublishOptions {
  /** Headers carried with the message (string values). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Passed to the `authorize.publish` hook (the request, a user, ...). */
  readonly context?: unknown;
}

/** Options for {@link PubSubBroker.subscribe}. */
export interface SubscribeOptions<T = unknown> {
  /**
   * Where to start: `'now'` (only messages published from now on), `'oldest'` (everything the
   * log still holds, then live), or a message id (everything after it, then live).
   * @defaultValue `'now'`
   */
  readonly from?: string;
  /** A queue group: subscriptions sharing the pattern and group split its messages between them. */
  readonly group?: string;
  /** Receive messages through this callback instead of iterating. */
  readonly onMessage?: (message: Message<T>) => void;
  /**
   * Queue bound for this subscription.
   * @defaultValue the broker's `maxQueuedMessages`
   */
  readonly maxQueuedMessages?: number;
  /**
   * Overflow policy for this subscription.
   * @defaultValue the broker's `overflow`
   */
  readonly overflow?: OverflowPolicy;
  /** Aborting it closes the subscription. */
  readonly signal?: AbortSignal;
  /** Passed to the `authorize.subscribe` hook. */
  readonly context?: unknown;
  /**
   * Only messages whose topic this accepts are delivered (asked once per topic, cached with the
   * subscription); the others are skipped, in the replay and live. Combined with the `canRead` of
   * the `authorize.subscribe` hook's grant, if any.
   */
  readonly canRead?: (topic: string) => boolean;
}

/** Options for {@link PubSubBroker.read}. */
export interface ReadOptions {
  /** Only messages whose topic this accepts are returned (a page may then hold fewer than `limit`, with `more`). */
  readonly canRead?: (topic: string) => boolean;
  /**
   * Who reads. When given, the `authorize.subscribe` hook is asked about the target with it, as
   * for a subscription: a refusal rejects with a ForbiddenError, and a grant's `canRead` filters
   * the page too. Without it, `read` asks no hook (the caller is the app itself).
   */
  readonly context?: unknown;
}

/** Options for {@link PubSubBroker.request}. */
export interface RequestOptions extends PublishOptions {
  /** How long to wait for the first reply, in ms. */
  readonly timeoutMs: number;
  /** Aborting it rejects the request with the signal's reason. */
  readonly signal?: AbortSignal;
}

/** Counters reported by {@link PubSubBroker.stats}. */
export interface PubSubBrokerStats {
  /** Live subscriptions (queue-group members included). */
  readonly subscriptions: number;
  /** Messages published through this broker's backend and dispatched here. */
  readonly published: number;
  /** Deliveries to subscriptions. */
  readonly delivered: number;
  /** Messages dropped by slow subscribers' overflow policies. */
  readonly dropped: number;
  /** Requests waiting for a reply. */
  readonly pendingRequests: number;
  /** The backend's counters. */
  readonly backend: BackendStats;
}

/** The outcome of a replay, exposed on the subscription. */
export interface ReplayInfo {
  /** `true` when messages after the starting cursor were no longer in the log. */
  readonly gap: boolean;
  /** How many messages the replay delivered. */
  readonly replayed: number;
}

class QueueGroup implements Receiver {
  readonly members: Subscription[] = [];
  #next = 0;
  constructor(
    readonly key: string,
    readonly tokens: readonly string[],
  ) {}
  push(message: Message): void {
    const n = this.members.length;
    if (n === 0) return;
    const member = this.members[this.#next++ % n]!;
    member.push(message);
  }
}

const POLICIES: readonly OverflowPolicy[] = ['drop-oldest', 'drop-newest', 'close'];
const GROUP = /^[A-Za-z0-9_\-~:@.]{1,128}$/;
const replayInfo = new WeakMap<Subscription, ReplayInfo>();
const NO_OPTIONS: PublishOptions = Object.freeze({});
const INBOX_TOPIC_PREFIX = `${INBOX_PREFIX}.`;

/**
 * Many-to-many topics with wildcards, history, queue groups and request/reply.
 *
 * @example
 * ```ts
 * const broker = new PubSubBroker();
 * const sub = await broker.subscribe('chat.*');
 * await broker.publish('chat.lobby', { text: 'hi' });
 * for await (const message of sub) {
 *   console.log(message.topic, message.id, message.data);
 *   break; // leaving the loop unsubscribes
 * }
 * ```
 */
export class PubSubBroker extends Resource {
  /** The backend in use. */
  readonly backend: Backend;
  readonly #ownsBackend: boolean;
  readonly #clock: Clock;
  readonly #index = new TopicIndex<Receiver>();
  readonly #groups = new Map<string, QueueGroup>();
  /** Live subscriptions, counted (they are held by the index, and queue groups, alone). */
  #subscriptions = 0;
  /** Pending requests by inbox topic: one entry each, removed when the request settles. */
  readonly #requests = new Map<string, { readonly reply: (message: Message) => void; readonly fail: (error: unknown) => void }>();
  /** False when the default backend keeps no history (`maxCount: 0`): sizes are then not needed. */
  readonly #keepsHistory: boolean;
  /** Topics that passed validation lately: publishing on a hot topic skips the checks. */
  readonly #validTopics = new Set<string>();
  readonly #maxQueuedMessages: number;
  readonly #maxDataDepth: number;
  readonly #overflow: OverflowPolicy;
  readonly #defaultContext: SubscriptionContext;
  readonly #authorize: PubSubAuthorize;
  readonly #onError: ((error: unknown, subscription: Subscription) => void) | undefined;
  #published = 0;
  #delivered = 0;
  #dropped = 0;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options?: PubSubBrokerOptions) {
    super();
    const opts = check.optionsObject('options', options);
    this.#clock = check.optionalClock('clock', opts.clock);
    this.#ownsBackend = opts.backend === undefined;
    this.backend = opts.backend ?? new MemoryBackend({ history: opts.history, clock: this.#clock });
    this.#keepsHistory = opts.backend !== undefined || opts.history?.maxCount !== 0;
    this.#maxQueuedMessages = check.integerInRange('maxQueuedMessages', opts.maxQueuedMessages ?? 1000, 1, 2 ** 31 - 1);
    this.#maxDataDepth = checkMaxDepth('maxDataDepth', opts.maxDataDepth ?? DEFAULT_MAX_JSON_DEPTH);
    this.#overflow = check.oneOf('overflow', opts.overflow ?? 'close', POLICIES, 'close');
    this.#authorize = check.optionsObject('authorize', opts.authorize);
    check.optionalFunction('authorize.publish', this.#authorize.publish);
    check.optionalFunction('authorize.subscribe', this.#authorize.subscribe);
    this.#onError = check.optionalFunction('onError', opts.onError);
    this.#defaultContext = Object.freeze({ host: this.#host, maxQueuedMessages: this.#maxQueuedMessages, policy: this.#overflow });
    this.backend.attach(this.#dispatch);
  }

  /**
   * Stores `data` in `topic`'s log and delivers it to every matching subscription.
   *
   * @returns The stored message, with its id.
   * @throws (rejects) InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for an invalid topic, bad
   *   headers (a `__proto__` name among them), or data no transport can carry: `undefined`, a BigInt, function or symbol, a cycle,
   *   a string that is not well-formed Unicode, a `__proto__` key, nesting deeper than
   *   `maxDataDepth`; ForbiddenError (`PB_ERR_FORBIDDEN`) when `authorize.publish` refuses;
   *   ClosedError (`PB_ERR_CLOSED`) after close.
   */
  publish<T = unknown>(topic: string, data: T, options?: PublishOptions): Promise<Message<T>> {
    try {
      this.assertOpen('publish');
      if (!this.#validTopics.has(topic)) {
        parseTopic(topic);
        if (this.#validTopics.size >= 65_536) this.#validTopics.clear();
        this.#validTopics.add(topic);
      }
      if (data === undefined) throw new InvalidArgumentError('Expected `data` to be a value, got `undefined`');
      // Refused here, once, what no transport could carry: a message is stored only if every
      // subscriber (SSE, long poll, WebSocket, another process on Redis) can be sent it. The same
      // pass sizes the data, which a log that keeps the message needs.
      const size = checkedSize(data, this.#maxDataDepth);
      const opts: PublishOptions = options === undefined ? NO_OPTIONS : check.optionsObject('options', options);
      const headers = checkHeaders(opts.headers);
      const store = !(topic.charCodeAt(0) === 95 /* _ */ && topic.startsWith(INBOX_TOPIC_PREFIX));
      const record = { topic, data, headers, size: store && this.#keepsHistory ? size : 0, store };
      const hook = this.#authorize.publish;
      if (hook === undefined) return this.backend.publish(record) as Promise<Message<T>>;
      return authorizeAccess(hook, { topics: [topic] }, opts.context, `publish on ${JSON.stringify(topic)}`).then(
        () => this.backend.publish(record) as Promise<Message<T>>,
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Subscribes to a topic or pattern (`*` one token, `>` the rest). Resolves once the
   * subscription is live, with any replay already queued.
   *
   * @throws (rejects) InvalidArgumentError for a bad pattern or option; InvalidCursorError
   *   (`PB_ERR_INVALID_CURSOR`) for a bad `from`; ForbiddenError (`PB_ERR_FORBIDDEN`) when `authorize.subscribe`
   *   refuses; the signal's reason when aborted; ClosedError after close.
   */
  subscribe<T = unknown>(pattern: string, options?: SubscribeOptions<T>): Promise<Subscription<T>> {
    try {
      this.assertOpen('subscribe');
      const tokens = parsePattern(pattern);
      const opts = check.optionsObject('options', options) as SubscribeOptions<T>;
      // The common case, at once: a live subscription with the defaults, no hook to ask (an
      // async function costs a subscriber more than the rest of subscribing).
      if (
        (opts.from === undefined || opts.from === 'now') &&
        opts.group === undefined &&
        opts.maxQueuedMessages === undefined &&
        opts.overflow === undefined &&
        opts.canRead === undefined &&
        opts.signal === undefined &&
        this.#authorize.subscribe === undefined
      ) {
        const onMessage = check.optionalFunction('onMessage', opts.onMessage);
        const sub = new Subscription<T>(this.#defaultContext, pattern, undefined, onMessage);
        this.#subscriptions++;
        this.#index.add(tokens, sub as Subscription);
        return Promise.resolve(sub);
      }
      return this.#subscribe(pattern, tokens, opts);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #subscribe<T>(pattern: string, tokens: readonly string[], opts: SubscribeOptions<T>): Promise<Subscription<T>> {
    const from = opts.from ?? 'now';
    let cursor: Cursor | null | 'now' = 'now';
    if (from === 'oldest') cursor = null;
    else if (from !== 'now') cursor = parseCursor(from);
    const group = opts.group;
    if (group !== undefined) {
      if (typeof group !== 'string' || !GROUP.test(group)) {
        throw new InvalidArgumentError(`Expected \`group\` to be 1-128 letters, digits or _ - ~ : @ ., got ${check.describe(group)}`);
      }
      if (cursor !== 'now') throw new InvalidArgumentError('A queue-group subscription starts from "now": replay would repeat messages across members');
    }
    const maxQueuedMessages = check.integerInRange('maxQueuedMessages', opts.maxQueuedMessages ?? this.#maxQueuedMessages, 1, 2 ** 31 - 1);
    const policy = check.oneOf('overflow', opts.overflow ?? this.#overflow, POLICIES, this.#overflow);
    const onMessage = check.optionalFunction('onMessage', opts.onMessage);
    const canRead = check.optionalFunction('canRead', opts.canRead);
    const signal = check.optionalSignal('signal', opts.signal);
    if (signal?.aborted) throw abortReason(signal);
    const hook = this.#authorize.subscribe;
    const access: Access = hook === undefined ? OPEN_ACCESS : await authorizeAccess(hook, targetOf(pattern), opts.context, `subscribe to ${JSON.stringify(pattern)}`);
    if (signal?.aborted) throw abortReason(signal);
    this.assertOpen('subscribe');

    const filter = bothTopicChecks(access.canRead, canRead === undefined ? undefined : cachedTopicCheck(canRead));
    const sub = new Subscription<T>(this.#subscriptionContext(maxQueuedMessages, policy), pattern, group, onMessage, filter, access.identity);
    this.#subscriptions++;
    if (group === undefined) this.#index.add(tokens, sub as Subscription);
    else this.#joinGroup(sub as Subscription, tokens, group);
    if (signal !== undefined) {
      const listener = onAbort(signal, () => sub.close());
      this.#abortListeners.set(sub as Subscription, listener);
    }

    if (cursor !== 'now') {
      sub._startReplay();
      let gap = false;
      let replayed = 0;
      try {
        const spec = isWildcard(pattern) ? [tokens] : pattern;
        let at: Cursor | null = cursor;
        for (;;) {
          const page = await this.backend.read(spec, at, 1000);
          gap ||= page.gap;
          for (const m of page.messages) {
            sub._replay(m);
            replayed++;
          }
          if (!page.more || sub.closed) break;
          at = parseCursor(page.cursor);
        }
      } catch (error) {
        sub.close();
        throw error;
      }
      replayInfo.set(sub as Subscription, { gap, replayed });
      sub._goLive();
    }
    return sub;
  }

  /**
   * How a subscription's replay went: whether it found a gap (its cursor fell off the log, or came
   * from before a restart) and how many messages it replayed. `undefined` for a subscription that
   * started from "now".
   */
  replayInfo(subscription: Subscription): ReplayInfo | undefined {
    return replayInfo.get(subscription);
  }

  /**
   * Publishes a request with a private reply topic in its `replyTo` header and resolves with the
   * first reply. Responders answer with {@link PubSubBroker.reply}.
   *
   * @throws (rejects) TimeoutError (`PB_ERR_TIMEOUT`) when no reply comes in time; the signal's
   *   reason when aborted; ClosedError when the broker closes first; what `publish` rejects with.
   */
  request<T = unknown, R = unknown>(topic: string, data: T, options: RequestOptions): Promise<Message<R>> {
    return new Promise<Message<R>>((resolve, reject) => {
      this.assertOpen('request');
      const opts = check.optionsObject('options', options) as RequestOptions;
      const timeoutMs = check.positiveNumber('timeoutMs', opts.timeoutMs);
      const signal = check.optionalSignal('signal', opts.signal);
      if (signal?.aborted) throw abortReason(signal);
      const inbox = `${INBOX_PREFIX}.${randomUUID().replaceAll('-', '')}`;
      let abort: Disposable | undefined;
      const settle = (): void => {
        this.#requests.delete(inbox);
        timer.cancel();
        abort?.[Symbol.dispose]();
      };
      this.#requests.set(inbox, {
        reply: (message) => {
          settle();
          resolve(message as Message<R>);
        },
        fail: (error) => {
          settle();
          reject(error);
        },
      });
      // A no-op once the request has settled (its entry is gone).
      const fail = (error: unknown): void => this.#requests.get(inbox)?.fail(error);
      const timer: ClockTimer = this.#clock.setTimer(
        () => fail(new TimeoutError(`No reply to the request on ${JSON.stringify(topic)} within ${timeoutMs} ms`)),
        timeoutMs,
        // A caller awaits this: keep the process alive until the reply or the timeout.
        { ref: true },
      );
      if (signal !== undefined) abort = onAbort(signal, fail);
      this.publish(topic, data, { headers: { ...opts.headers, replyTo: inbox }, context: opts.context }).catch(fail);
    });
  }

  /**
   * Answers a request received by a subscriber: publishes `data` on its `replyTo` topic.
   * @throws (rejects) InvalidArgumentError when `request` carries no `replyTo` header.
   */
  reply<T = unknown>(request: Message, data: T, options?: PublishOptions): Promise<Message<T>> {
    const replyTo = request?.headers?.['replyTo'];
    if (typeof replyTo !== 'string' || !replyTo.startsWith(INBOX_TOPIC_PREFIX)) {
      return Promise.reject(new InvalidArgumentError('The message has no `replyTo` header: it is not a request'));
    }
    return this.publish(replyTo, data, options);
  }

  /**
   * Reads stored messages after `cursor` on a topic, several topics, or a pattern: the one-shot
   * form of a replay, for pollers.
   *
   * @param target - A topic, a list of topics, or `{ pattern }`.
   * @param cursor - An id to read after, or `null` for the oldest message kept.
   * @param limit - The most messages to return.
   * @param options - A topic check (`canRead`) for what the caller may read, and who reads (`context`).
   * @throws (rejects) InvalidArgumentError for a bad target or limit; InvalidCursorError
   *   (`PB_ERR_INVALID_CURSOR`) for a bad cursor; ForbiddenError (`PB_ERR_FORBIDDEN`) when a
   *   `context` is given and `authorize.subscribe` refuses it.
   */
  read(target: string | readonly string[] | { readonly pattern: string }, cursor: string | null, limit: number, options?: ReadOptions): Promise<BackendRead> {
    try {
      this.assertOpen('read');
      check.integerInRange('limit', limit, 1, 100_000);
      const opts = check.optionsObject('options', options);
      const canRead = check.optionalFunction('canRead', opts.canRead);
      const at = cursor === null ? null : parseCursor(cursor);
      const spec = readSpec(target);
      const hook = this.#authorize.subscribe;
      if (opts.context === undefined || hook === undefined) return this.#read(spec, at, limit, canRead);
      const asked: TopicTarget = typeof spec === 'string' ? { topics: [spec] } : Array.isArray(target) ? { topics: target as readonly string[] } : { pattern: (target as { pattern: string }).pattern };
      return authorizeAccess(hook, asked, opts.context, 'read this target').then((access) => this.#read(spec, at, limit, bothTopicChecks(access.canRead, canRead)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #read(spec: string | (readonly string[])[], at: Cursor | null, limit: number, canRead: ((topic: string) => boolean) | undefined): Promise<BackendRead> {
    const read = this.backend.read(spec, at, limit);
    if (canRead === undefined) return read;
    return read.then((page) => {
      const messages = page.messages.filter((m) => canRead(m.topic));
      return messages.length === page.messages.length ? page : { ...page, messages };
    });
  }

  /** A cursor for "now": messages published later are after it. */
  head(): Promise<string> {
    return this.backend.head();
  }

  /** Counters. */
  stats(): PubSubBrokerStats {
    return {
      subscriptions: this.#subscriptions,
      published: this.#published,
      delivered: this.#delivered,
      dropped: this.#dropped,
      pendingRequests: this.#requests.size,
      backend: this.backend.stats(),
    };
  }

  // --- what subscriptions call back -------------------------------------------------------

  readonly #abortListeners = new WeakMap<Subscription, Disposable>();
  readonly #host: SubscriptionHost = {
    detach: (sub) => this.#detach(sub),
    countDrop: () => void this.#dropped++,
    reportError: (error, sub) => this.#reportError(error, sub),
  };

  #detach(sub: Subscription): void {
    // A subscription detaches once (it closes once), and only after the broker counted it.
    this.#subscriptions--;
    this.#abortListeners.get(sub)?.[Symbol.dispose]();
    if (sub.group === undefined) {
      // The tokens are not kept per subscription (memory): split again, as parsePattern did.
      this.#index.remove(sub.pattern.split('.'), sub);
      return;
    }
    const key = groupKey(sub.pattern, sub.group);
    const group = this.#groups.get(key);
    if (group === undefined) return;
    const i = group.members.indexOf(sub);
    if (i !== -1) group.members.splice(i, 1);
    if (group.members.length === 0) {
      this.#groups.delete(key);
      this.#index.remove(group.tokens, group);
    }
  }

  #reportError(error: unknown, subscription: Subscription): void {
    if (pubsubChannels.error.hasSubscribers) pubsubChannels.error.publish({ subscription, error });
    if (this.#onError !== undefined) this.#onError(error, subscription);
    else
      queueMicrotask(() => {
        throw error;
      });
  }

  // --- internals --------------------------------------------------------------------------

  readonly #dispatch = (message: Message): void => {
    this.#published++;
    const topic = message.topic;
    if (topic.charCodeAt(0) === 95 /* _ */ && topic.startsWith(INBOX_TOPIC_PREFIX)) {
      this.#requests.get(topic)?.reply(message);
      return;
    }
    const receivers = this.#index.match(topic);
    for (let i = 0; i < receivers.length; i++) receivers[i]!.push(message);
    this.#delivered += receivers.length;
  };

  /** With the broker's default queue limits, one shared object; with others, one per subscription. */
  #subscriptionContext(maxQueuedMessages: number, policy: OverflowPolicy): SubscriptionContext {
    const defaults = this.#defaultContext;
    if (maxQueuedMessages === defaults.maxQueuedMessages && policy === defaults.policy) return defaults;
    return Object.freeze({ host: this.#host, maxQueuedMessages, policy });
  }

  #joinGroup(sub: Subscription, tokens: readonly string[], name: string): void {
    const key = groupKey(sub.pattern, name);
    let group = this.#groups.get(key);
    if (group === undefined) {
      group = new QueueGroup(key, tokens);
      this.#groups.set(key, group);
      this.#index.add(tokens, group);
    }
    group.members.push(sub);
  }

  protected async onClose(): Promise<void> {
    this.#shutdown(new ClosedError('The broker was closed'));
    if (this.#ownsBackend) await this.backend.close();
  }

  protected onDestroy(reason: unknown): void {
    this.#shutdown(reason ?? new ClosedError('The broker was destroyed'));
    if (this.#ownsBackend) void this.backend.close();
  }

  #shutdown(reason: unknown): void {
    const subs: Subscription[] = [];
    for (const receiver of this.#index.values()) {
      if (receiver instanceof QueueGroup) subs.push(...receiver.members);
      else subs.push(receiver as Subscription);
    }
    for (const sub of subs) sub.close();
    for (const request of [...this.#requests.values()]) request.fail(reason);
  }
}

/** Turns a read target into what `Backend.read` takes, validating it. @internal */
export function readSpec(target: string | readonly string[] | { readonly pattern: string }): string | (readonly string[])[] {
  if (typeof target === 'string') {
    parseTopic(target);
    return target;
  }
  if (Array.isArray(target)) {
    if (target.length === 0) throw new InvalidArgumentError('Expected at least one topic, got an empty list');
    if (target.length === 1) return readSpec(target[0] as string);
    return target.map((t: unknown) => parseTopic(t));
  }
  if (typeof target === 'object' && target !== null && 'pattern' in target) {
    const tokens = parsePattern(target.pattern);
    return isWildcard(target.pattern) ? [tokens] : target.pattern;
  }
  throw new InvalidArgumentError(`Expected a topic, a list of topics or { pattern }, got ${check.describe(target)}`);
}

function groupKey(pattern: string, group: string): string {
  return `${pattern}\u0000${group}`;
}

function checkHeaders(headers: unknown): MessageHeaders | undefined {
  if (headers === undefined) return undefined;
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
    throw new InvalidArgumentError(`Expected \`headers\` to be an object of strings, got ${check.describe(headers)}`);
  }
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string') {
      throw new InvalidArgumentError(`Expected header ${JSON.stringify(name)} to be a string, got ${check.describe(value)}`);
    }
    if (!name.isWellFormed() || !value.isWellFormed()) throw new InvalidArgumentError('Expected headers to be well-formed Unicode (no lone surrogates)');
    // Refused here, as in data: a backend that reads headers back as JSON (Redis) refuses the key.
    if (name === RESERVED_JSON_KEY) throw new InvalidArgumentError(`A header named "${RESERVED_JSON_KEY}" is refused`);
    out[name] = value;
  }
  return Object.freeze(out);
}

/**
 * Throws unless `value` is a {@link PubSubBroker} (or an object with its `publish`, `subscribe`
 * and `read`): the check every handler that takes a `broker` option makes.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`)
 * @internal
 */
export function checkBroker(name: string, value: unknown): PubSubBroker {
  const b = value as Partial<PubSubBroker> | null | undefined;
  if (b === null || typeof b !== 'object' || typeof b.publish !== 'function' || typeof b.subscribe !== 'function' || typeof b.read !== 'function') {
    throw new InvalidArgumentError(`Expected \`${name}\` to be a PubSubBroker, got ${check.describe(value)}`);
  }
  return value as PubSubBroker;
}
