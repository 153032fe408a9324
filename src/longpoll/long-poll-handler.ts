/**
 * Long polling over the purgatory.
 *
 * `GET …?cursor=ID` answers at once with the messages after the cursor (up to a batch limit) and
 * the next cursor; when there are none it parks the request in the {@link Purgatory}, keyed by
 * topic, until a publish wakes it or the hold time passes, which answers `204 No Content` with
 * the cursor to reuse. Without a cursor the poll waits for the next message.
 *
 * Answers are JSON: `{ "messages": [{ "id", "topic", "data", "headers"? }], "cursor", "gap", "more" }`.
 * The cursor also travels in the `Patchbay-Cursor` header (on 204 too); `gap: true` (and
 * `Patchbay-Gap: 1`) says messages after the given cursor were lost to the log's bounds or to a
 * restart, or could not be carried as JSON and were skipped, and the batch holds what is left.
 * Several topics or a pattern share one cursor.
 *
 * ## Bounded answers
 *
 * Each message is serialized on its own: one that cannot be (a record from a custom backend, a
 * `toJSON` that throws) is skipped and announced as a gap, with a cursor past it, so no message
 * can stall a cursor. An answer's body stops growing at `maxAnswerBytes` (it always holds at
 * least one message, so a client always moves on) and says `more: true`.
 *
 * ## Waking many at once
 *
 * Polls parked with the same cursor get the same answer, so the body is built once per
 * (key, cursor, limit) and the same bytes are written to every woken request: on plain
 * `node:http`, the whole response (status line, headers, body) as one Buffer, built by node for
 * the first request and replayed to the next ones in the same connection state and second
 * (`http/raw-response.ts`); elsewhere (HTTP/2, adapters' bridges, a response with headers the app
 * set) through `writeHead` with the headers built once. An answer is kept for later polls only
 * when it can be shared: it went to several polls at once, or it is a quiet answer (no message:
 * it parks the polls that get it). Kept answers count their bytes (and room for their raw
 * response) against `maxCachedBytes` across every key (the oldest goes first), live until the next message on
 * their key or until nobody waits on the key, and are never kept for a caller whose grant
 * filters topics (`canRead`): a filtered answer is never served to anyone else.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../core/clock.js';
import { ClosedError, InvalidArgumentError, MethodNotAllowedError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { applyCors, type CorsOptions, requestQuery, sendError } from '../http/index.js';
import { noStore } from '../http/respond.js';
import { endShared, RAW_HEAD_ALLOWANCE, type RawAnswer } from '../http/raw-response.js';
import { DelayedOperation, Purgatory } from '../purgatory/index.js';
import { type Authorize, authorizeAccess } from '../pubsub/access.js';
import {
  type BackendRead,
  type Message,
  parseCursor,
  type PubSubBroker,
  type Subscription,
  TopicIndex,
  type TopicTarget,
} from '../pubsub/index.js';
import { parseTarget, queryTarget } from '../pubsub/target.js';
import { checkBroker } from '../pubsub/broker.js';

/** The response header carrying the cursor to poll with next. */
export const CURSOR_HEADER = 'Patchbay-Cursor';
/** The response header set to `1` when a gap was detected. */
export const GAP_HEADER = 'Patchbay-Gap';

/** What one long poll waits on: topics (sharing one cursor), or a pattern. */
export type LongPollTarget = TopicTarget;

/** The default of {@link LongPollHandlerOptions.maxAnswerBytes}: 1 MiB. */
export const DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024;
/** The default of {@link LongPollHandlerOptions.maxCachedBytes}: 8 MiB. */
export const DEFAULT_MAX_CACHED_BYTES = 8 * 1024 * 1024;
/**
 * How many pages one poll reads on when a grant's `canRead` filtered every message of a page that
 * says more follow; past it, the poll is answered with no messages, `more: true` and a cursor past
 * what was read, so the client polls on at once.
 */
const MAX_FILTERED_PAGES = 16;

/** Options for {@link LongPollHandler}. */
export interface LongPollHandlerOptions {
  /** The broker whose topics are polled. */
  readonly broker: PubSubBroker;
  /**
   * The purgatory that holds parked polls.
   * @defaultValue a new one (10 ms tick, on `clock`), closed with the handler
   */
  readonly purgatory?: Purgatory;
  /**
   * The time source, for hold deadlines and the default purgatory; give a custom purgatory the
   * same clock.
   * @defaultValue the real clock
   */
  readonly clock?: Clock;
  /**
   * The longest a poll is held, in ms; a client's `timeout` query may ask for less. Clients
   * should give up later than this (say, 10 s later).
   * @defaultValue 30000
   */
  readonly maxHoldMs?: number;
  /**
   * The most messages in one answer; a client's `limit` query may ask for fewer.
   * @defaultValue 100
   */
  readonly maxBatchMessages?: number;
  /**
   * The most bytes of messages in one answer's body: past it the answer ends early with
   * `more: true` (and the cursor of its last message). An answer always holds at least one
   * message, however large, so a client never gets stuck.
   * @defaultValue 1048576 (1 MiB, {@link DEFAULT_MAX_ANSWER_BYTES})
   */
  readonly maxAnswerBytes?: number;
  /**
   * The most bytes of built answers kept for polls that share them, across every topic; past
   * it, the oldest kept answer is dropped (a later poll then reads again). `0` keeps none: polls
   * woken together still share one answer.
   * @defaultValue 8388608 (8 MiB, {@link DEFAULT_MAX_CACHED_BYTES})
   */
  readonly maxCachedBytes?: number;
  /**
   * Take the target from the query (`topic`, repeatable, or `pattern`) when `handle` is called
   * without one. Off, such a call answers `400 PB_ERR_INVALID_ARGUMENT`: a route that forgot its
   * target must not let clients pick topics.
   * @defaultValue false
   */
  readonly queryTarget?: boolean;
  /**
   * Accept a `pattern` from the query (with `queryTarget`). Off, a client's pattern answers
   * `403 PB_ERR_FORBIDDEN`: patterns reach topics that nobody named. A pattern the app passes as
   * `target` is always allowed.
   * @defaultValue false
   */
  readonly allowPatterns?: boolean;
  /** CORS: without it, no CORS headers are sent. */
  readonly cors?: CorsOptions;
  /**
   * May this request poll this target? Asked as `(target, req)` with the topics or pattern and
   * the request, before anything is read. `true` allows; a grant `{ canRead }` allows and
   * filters: a message whose topic `canRead` refuses is never answered (give it whenever a
   * pattern could reach topics the caller may not read; see `targetOverlaps`). Anything else
   * answers `403 PB_ERR_FORBIDDEN`. A grant's `identity` is accepted and not kept: a long poll
   * has no connection to keep it with.
   * @defaultValue every request may poll every target it names
   */
  readonly authorize?: Authorize<IncomingMessage>;
}

/** Counters reported by {@link LongPollHandler.stats}. */
export interface LongPollHandlerStats {
  /** Polls parked in the purgatory now. */
  readonly parked: number;
  /** Polls answered with messages (200) so far. */
  readonly answered: number;
  /** Polls whose hold ended without a message (204) so far. */
  readonly timedOut: number;
  /** Topics and patterns that polls are waiting on or reading now. */
  readonly interests: number;
  /** Built answers kept for polls that share them. */
  readonly cachedAnswers: number;
  /** Bytes of the kept answers; at most `maxCachedBytes`. */
  readonly cachedBytes: number;
  /** Reads of the broker in flight now (polls that share a read count once). */
  readonly readsInFlight: number;
}

interface Interest {
  /** The purgatory key. */
  readonly key: string;
  refs: number;
  lastSeq: number;
  /** Bumped by every message on the key: reads started before it are stale. */
  gen: number;
  /** Kept answers by (cursor, limit), valid until the next message on the key. */
  readonly answers: Map<string, Answer>;
  /** Reads in flight by (cursor, limit), with the polls waiting on each. */
  readonly reading: Map<string, { readonly polls: Poll[]; readonly done: Promise<void> }>;
}

interface Answer {
  readonly body: Buffer;
  /** The response headers, as a flat [name, value, ...] list built with the body. */
  readonly headers: string[];
  readonly cursor: string;
  /** The cursor's sequence number, parsed once. */
  readonly seq: number;
  readonly gap: boolean;
  readonly more: boolean;
  readonly count: number;
  /**
   * The whole HTTP/1.1 response (header and body) as written to the last woken poll, reused for
   * the next one in the same connection state and second; see `http/raw-response.ts`.
   */
  raw: RawAnswer | undefined;
  /** What keeping it costs: the body and the headers, and for an answer with something to say, room for `raw`. */
  readonly bytes: number;
}

/** One kept answer, in the handler-wide list (oldest first). */
interface CacheEntry {
  readonly interest: Interest;
  readonly cacheKey: string;
  readonly bytes: number;
}

const EXPOSED = [CURSOR_HEADER, GAP_HEADER];
const ID_SHAPE = /^[0-9a-z]{1,16}-[0-9a-z]{1,11}$/;
const RESOLVED = Promise.resolve();

/**
 * Long polling for a {@link PubSubBroker}, over plain `node:http`.
 *
 * @example
 * ```ts
 * const broker = new PubSubBroker();
 * const longPoll = new LongPollHandler({ broker });
 * http.createServer((req, res) => {
 *   const m = /^\/lp\/([^/?]+)/.exec(req.url ?? '');
 *   if (m) void longPoll.handle(req, res, { topics: [decodePathSegment(m[1]!) ?? ''] });
 * });
 * ```
 */
export class LongPollHandler extends Resource {
  readonly #broker: PubSubBroker;
  readonly #purgatory: Purgatory;
  readonly #ownsPurgatory: boolean;
  readonly #clock: Clock;
  readonly #maxHoldMs: number;
  readonly #maxBatchMessages: number;
  readonly #maxAnswerBytes: number;
  readonly #maxCachedBytes: number;
  readonly #queryTarget: boolean;
  readonly #allowPatterns: boolean;
  readonly #cors: CorsOptions | undefined;
  readonly #authorize: LongPollHandlerOptions['authorize'];
  readonly #interest = new Map<string, Interest>();
  readonly #patterns = new TopicIndex<string>();
  /** Every kept answer, by interest key and cache key, oldest first. */
  readonly #cache = new Map<string, CacheEntry>();
  #cachedBytes = 0;
  #readsInFlight = 0;
  #parked = 0;
  /** Keys are namespaced per handler, so a shared purgatory never mixes two handlers' waiters. */
  readonly #ns = `lp${++handlerCount}:`;
  #feed: Promise<Subscription> | undefined;
  #answered = 0;
  #timedOut = 0;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: LongPollHandlerOptions) {
    super();
    const opts = check.optionsObject('options', options) as LongPollHandlerOptions;
    this.#broker = checkBroker('broker', opts.broker);
    this.#ownsPurgatory = opts.purgatory === undefined;
    this.#clock = check.optionalClock('clock', opts.clock);
    this.#maxHoldMs = check.integerInRange('maxHoldMs', opts.maxHoldMs ?? 30_000, 0, 2 ** 31 - 1);
    this.#maxBatchMessages = check.integerInRange('maxBatchMessages', opts.maxBatchMessages ?? 100, 1, 10_000);
    this.#maxAnswerBytes = check.integerInRange('maxAnswerBytes', opts.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES, 1, 2 ** 31 - 1);
    this.#maxCachedBytes = check.integerInRange('maxCachedBytes', opts.maxCachedBytes ?? DEFAULT_MAX_CACHED_BYTES, 0, Number.MAX_SAFE_INTEGER);
    this.#queryTarget = check.optionalBoolean('queryTarget', opts.queryTarget);
    this.#allowPatterns = check.optionalBoolean('allowPatterns', opts.allowPatterns);
    this.#cors = opts.cors === undefined ? undefined : check.optionsObject('cors', opts.cors);
    this.#authorize = check.optionalFunction('authorize', opts.authorize);
    this.#purgatory = opts.purgatory ?? new Purgatory({ name: 'longpoll', clock: this.#clock });
  }

  /** Counters. */
  stats(): LongPollHandlerStats {
    return {
      parked: this.#parked,
      answered: this.#answered,
      timedOut: this.#timedOut,
      interests: this.#interest.size,
      cachedAnswers: this.#cache.size,
      cachedBytes: this.#cachedBytes,
      readsInFlight: this.#readsInFlight,
    };
  }

  /**
   * Serves one long poll. Query: `cursor` (an id), `timeout` (ms, at most `maxHoldMs`), `limit`
   * (at most `maxBatchMessages`), and, when `target` is not given and `queryTarget` is set, `topic`
   * (repeatable) or `pattern` (with `allowPatterns`).
   *
   * Bad input answers 4xx with a JSON error body: `400 PB_ERR_INVALID_ARGUMENT` for a bad
   * `timeout`, `limit` or target, or no target at all; `400 PB_ERR_INVALID_CURSOR` for a bad
   * cursor; `403 PB_ERR_FORBIDDEN` when `authorize` refuses or a client's pattern is not allowed.
   * A client that disconnects leaves the purgatory at once and gets no answer. Resolves once the
   * request is answered or parked (parked polls cost no pending promise); never rejects.
   */
  async handle(req: IncomingMessage, res: ServerResponse, target?: LongPollTarget): Promise<void> {
    try {
      if (applyCors(req, res, this.#cors, ['GET'], [], EXPOSED)) return;
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method ?? '?', ['GET']);
      this.assertOpen('handle');
      const q = requestQuery(req);
      const resolved = this.#resolveTarget(target ?? queryTarget(q, { queryTarget: this.#queryTarget, allowPatterns: this.#allowPatterns }, 'LongPollHandler'));
      const hold = intParam(q.get('timeout'), 'timeout', 0, this.#maxHoldMs, this.#maxHoldMs);
      const limit = intParam(q.get('limit'), 'limit', 1, this.#maxBatchMessages, this.#maxBatchMessages);
      const rawCursor = q.get('cursor');
      const cursor = rawCursor !== null && rawCursor !== '' ? rawCursor : null;
      if (cursor !== null) parseCursor(cursor);
      // The identity of a grant is not kept: a long poll has no connection to keep it with.
      const { canRead } = await authorizeAccess(this.#authorize, resolved.target, req, 'poll this target');
      await this.#ensureFeed();
      this.assertOpen('handle');
      // Interest is registered before the first read, so a publish racing the read still wakes us.
      this.#retain(resolved);
      const poll: Poll = { res, t: resolved, cursor: cursor ?? '', deadline: this.#clock.now() + hold, limit, canRead };
      if (cursor === null) {
        try {
          poll.cursor = await this.#broker.head();
        } catch (error) {
          this.#release(resolved);
          throw error;
        }
      }
      await this.#attempt(poll); // contained: answers or parks the poll, and never rejects
    } catch (error) {
      answerError(res, error);
    }
  }

  /**
   * Reads after the poll's cursor, then answers or parks it. Polls on one key with one cursor
   * share one read: the first starts it, the rest join its waiting list, and all are answered
   * in one loop with the same bytes (a woken herd costs one read and no promise per poll). The
   * returned promise settles when this poll is answered or parked, and never rejects: a failed
   * read answers each of its polls with the error and releases their interest.
   */
  #attempt(poll: Poll): Promise<void> {
    const t = poll.t;
    // A caller whose grant filters topics reads alone: what it is shown is for it only.
    const shared = poll.canRead === undefined && t.keys.length === 1 ? this.#interest.get(t.keys[0]!) : undefined;
    let cacheKey = '';
    if (shared !== undefined) {
      cacheKey = `${poll.cursor}\u0000${poll.limit}`;
      const ready = shared.answers.get(cacheKey);
      if (ready !== undefined) {
        this.#afterAnswer(poll, ready);
        return RESOLVED;
      }
      const batch = shared.reading.get(cacheKey);
      if (batch !== undefined) {
        batch.polls.push(poll);
        return batch.done;
      }
    }
    const polls = [poll];
    const gen = shared?.gen ?? 0;
    this.#readsInFlight++;
    const done = this.#read(t, poll.cursor, poll.limit, poll.canRead).then(
      (answer) => this.#settle(shared, cacheKey, gen, polls, answer, undefined),
      (error: unknown) => this.#settle(shared, cacheKey, gen, polls, undefined, error),
    );
    shared?.reading.set(cacheKey, { polls, done });
    return done;
  }

  /**
   * Reads a page and builds its answer. A page that a grant's `canRead` emptied, but after which
   * more follow, is read on (up to {@link MAX_FILTERED_PAGES} pages), so a poll never parks
   * behind messages it may not see.
   */
  async #read(t: ResolvedTarget, cursor: string, limit: number, canRead: TopicCheck | undefined): Promise<Answer> {
    const options = canRead === undefined ? undefined : { canRead };
    let at = cursor;
    for (let page = 1; ; page++) {
      const read = await this.#broker.read(t.readTarget, at, limit, options);
      if (read.messages.length > 0 || !read.more || read.gap || read.cursor === at || page >= MAX_FILTERED_PAGES) {
        return buildAnswer(read, this.#maxAnswerBytes);
      }
      at = read.cursor;
    }
  }

  /** A read ended: forget it, keep its answer if it can be shared, and answer its polls. */
  #settle(shared: Interest | undefined, cacheKey: string, gen: number, polls: readonly Poll[], answer: Answer | undefined, error: unknown): void {
    this.#readsInFlight--;
    if (shared !== undefined) {
      shared.reading.delete(cacheKey);
      // Kept only if no message arrived meanwhile (it would be stale), someone still waits on
      // the key, and later polls are likely to ask for it.
      if (answer !== undefined && shared.gen === gen && this.#interest.get(shared.key) === shared && (polls.length > 1 || isQuiet(answer))) {
        this.#keep(shared, cacheKey, answer);
      }
    }
    for (const p of polls) {
      if (answer !== undefined) this.#afterAnswer(p, answer);
      else this.#fail(p, error);
    }
  }

  /** Answers a poll that has something (or a gap); parks one that has nothing yet. Contained. */
  #afterAnswer(poll: Poll, answer: Answer): void {
    const res = poll.res;
    if (res.destroyed || res.writableEnded) {
      this.#release(poll.t); // the client left while we read
      return;
    }
    if (!isQuiet(answer)) {
      this.#release(poll.t);
      this.#send(res, answer);
      return;
    }
    if (this.closed) {
      this.#release(poll.t);
      this.#sendTimeout(res, answer.cursor);
      return;
    }
    poll.cursor = answer.cursor;
    const op = new LongPollOp(this.#ops, poll, answer.seq, Math.max(0, poll.deadline - this.#clock.now()));
    const parked = res as ParkedResponse;
    if (!(kOp in parked)) parked.on('close', onResponseClose); // once per response, however often it re-parks
    parked[kOp] = op;
    this.#parked++;
    op.purgatory = this.#purgatory;
    try {
      this.#purgatory.tryCompleteElseWatch(op, poll.t.keys);
    } catch (error) {
      if (op.isDone) return; // it ended (and was accounted for) before the failure
      // Never watched (a shared purgatory closed under us): undo, and answer this poll only.
      this.#parked--;
      parked[kOp] = undefined;
      this.#fail(poll, error);
    }
  }

  /** Answers one poll with an error, and releases its interest. */
  #fail(poll: Poll, error: unknown): void {
    this.#release(poll.t);
    answerError(poll.res, error);
  }

  /** What parked operations call back into. */
  readonly #ops: OpHost = {
    lastSeq: (keys) => this.#lastSeq(keys),
    ended: (op, how, reason) => {
      this.#parked--;
      const poll = op.poll;
      (poll.res as ParkedResponse)[kOp] = undefined;
      if (how === 'completed') {
        // Woken: read again (usually one shared, pre-built answer). Nothing new re-parks, except a
        // poll whose grant's canRead refuses every topic that woke it.
        void this.#attempt(poll);
        return;
      }
      if (how === 'expired' || this.closed || reason instanceof ClosedError) this.#sendTimeout(poll.res, poll.cursor);
      this.#release(poll.t);
    },
  };

  #send(res: ServerResponse, answer: Answer): void {
    if (res.writableEnded || res.destroyed) return;
    try {
      // Built once per answer, shared by every poll it goes to: the headers, and where the
      // response allows it, the whole response's bytes.
      answer.raw = endShared(res, 200, answer.headers, answer.body, answer.raw, RAW_HEAD_ALLOWANCE + answer.cursor.length);
      this.#answered++;
    } catch (error) {
      answerError(res, error); // a cursor no header can carry, from a custom backend
    }
  }

  #sendTimeout(res: ServerResponse, cursor: string): void {
    if (res.writableEnded || res.destroyed) return;
    try {
      res.writeHead(204, { ...noStore, [CURSOR_HEADER]: cursor });
      res.end();
      this.#timedOut++;
    } catch (error) {
      answerError(res, error);
    }
  }

  #resolveTarget(target: LongPollTarget): ResolvedTarget {
    return resolveTarget(target, this.#ns);
  }

  #lastSeq(keys: readonly string[]): number {
    let max = 0;
    for (const k of keys) max = Math.max(max, this.#interest.get(k)?.lastSeq ?? 0);
    return max;
  }

  #retain(t: ResolvedTarget): void {
    for (const key of t.keys) {
      let interest = this.#interest.get(key);
      if (interest === undefined) {
        interest = { key, refs: 0, lastSeq: 0, gen: 0, answers: new Map(), reading: new Map() };
        this.#interest.set(key, interest);
        if (t.patternTokens !== undefined) this.#patterns.add(t.patternTokens, key);
      }
      interest.refs++;
    }
  }

  #release(t: ResolvedTarget): void {
    for (const key of t.keys) {
      const interest = this.#interest.get(key);
      if (interest === undefined || --interest.refs > 0) continue;
      this.#interest.delete(key);
      this.#forget(interest);
      if (t.patternTokens !== undefined) this.#patterns.remove(t.patternTokens, key);
    }
  }

  /** Keeps an answer for later polls, within `maxCachedBytes` (the oldest kept answers go first). */
  #keep(interest: Interest, cacheKey: string, answer: Answer): void {
    if (answer.bytes > this.#maxCachedBytes) return;
    const id = `${interest.key}\u0001${cacheKey}`;
    const old = this.#cache.get(id);
    if (old !== undefined) this.#drop(id, old);
    while (this.#cachedBytes + answer.bytes > this.#maxCachedBytes) {
      const oldest = this.#cache.entries().next().value;
      if (oldest === undefined) break;
      this.#drop(oldest[0], oldest[1]);
    }
    interest.answers.set(cacheKey, answer);
    this.#cache.set(id, { interest, cacheKey, bytes: answer.bytes });
    this.#cachedBytes += answer.bytes;
  }

  #drop(id: string, entry: CacheEntry): void {
    this.#cache.delete(id);
    this.#cachedBytes -= entry.bytes;
    entry.interest.answers.delete(entry.cacheKey);
  }

  /** Drops every answer kept for `interest`. */
  #forget(interest: Interest): void {
    if (interest.answers.size === 0) return;
    for (const [cacheKey, answer] of interest.answers) {
      this.#cache.delete(`${interest.key}\u0001${cacheKey}`);
      this.#cachedBytes -= answer.bytes;
    }
    interest.answers.clear();
  }

  /** One broker subscription feeds every poll: it records the newest seq per key and wakes it. */
  #ensureFeed(): Promise<Subscription> {
    this.#feed ??= this.#broker.subscribe('>', { onMessage: (m) => this.#onMessage(m) });
    return this.#feed;
  }

  /** The feed's callback: contained, so nothing here can reach the broker's error path. */
  #onMessage(message: Message): void {
    if (this.#interest.size === 0) return;
    try {
      this.#touch(`${this.#ns}t:${message.topic}`, message._seq);
      if (this.#patterns.size > 0) for (const key of this.#patterns.match(message.topic)) this.#touch(key, message._seq);
    } catch {
      // Only a purgatory closed under us throws here; the handler's own close answers the polls.
    }
  }

  #touch(key: string, seq: number): void {
    const interest = this.#interest.get(key);
    if (interest === undefined) return;
    interest.lastSeq = seq;
    interest.gen++;
    this.#forget(interest);
    this.#purgatory.checkAndComplete(key);
  }

  protected async onClose(): Promise<void> {
    await this.#shutdown();
  }

  protected onDestroy(): void {
    void this.#shutdown();
  }

  async #shutdown(): Promise<void> {
    // Parked polls are answered 204 with their cursor, so clients poll again (elsewhere).
    if (this.#ownsPurgatory) await this.#purgatory.close();
    else for (const key of [...this.#interest.keys()]) this.#purgatory.cancelForKey(key);
    const feed = this.#feed;
    this.#feed = undefined;
    if (feed !== undefined) (await feed.catch(() => undefined))?.close();
  }
}

let handlerCount = 0;

/** One poll in flight. */
interface Poll {
  readonly res: ServerResponse;
  readonly t: ResolvedTarget;
  /** The cursor to read after (and to hand back on a 204). */
  cursor: string;
  /** When the hold ends, on the handler's clock. */
  readonly deadline: number;
  readonly limit: number;
  /** The grant's topic check, when the caller may not read every topic of its target. */
  readonly canRead: TopicCheck | undefined;
}

type TopicCheck = (topic: string) => boolean;

interface OpHost {
  lastSeq(keys: readonly string[]): number;
  ended(op: LongPollOp, how: 'completed' | 'expired' | 'canceled', reason: unknown): void;
}

const kOp = Symbol('patchbay.longpoll.op');
type ParkedResponse = ServerResponse & { [kOp]?: LongPollOp | undefined };

/** One listener function for every parked response: no closure per request. */
function onResponseClose(this: ParkedResponse): void {
  const op = this[kOp];
  if (op !== undefined) op.forceCancel();
}

/** A parked poll, as a purgatory operation: the callback form, the lean one. */
class LongPollOp extends DelayedOperation {
  constructor(
    readonly host: OpHost,
    readonly poll: Poll,
    readonly seq: number,
    timeoutMs: number,
  ) {
    super(timeoutMs);
  }
  override tryComplete(): boolean {
    return this.host.lastSeq(this.poll.t.keys) > this.seq;
  }
  onComplete(): void {
    this.host.ended(this, this.state === 'expired' ? 'expired' : 'completed', undefined);
  }
  override onCancel(reason: unknown): void {
    this.host.ended(this, 'canceled', reason);
  }
  /** The client went away: leave the purgatory now. */
  forceCancel(): void {
    if (!this.isDone) this.purgatory?.cancel(this, new Error('client disconnected'));
  }
  purgatory: Purgatory | undefined;
}

interface ResolvedTarget {
  readonly target: LongPollTarget;
  readonly keys: readonly string[];
  readonly readTarget: string | readonly string[] | { readonly pattern: string };
  readonly patternTokens: readonly string[] | undefined;
}

function resolveTarget(target: LongPollTarget, ns: string): ResolvedTarget {
  const t = parseTarget(target, 32, 'poll');
  if (t.pattern !== undefined) {
    return { target: { pattern: t.pattern }, keys: [`${ns}p:${t.pattern}`], readTarget: { pattern: t.pattern }, patternTokens: t.tokens };
  }
  return {
    target: { topics: t.topics },
    keys: t.topics.map((topic) => `${ns}t:${topic}`),
    readTarget: t.topics.length === 1 ? t.topics[0]! : t.topics,
    patternTokens: undefined,
  };
}

/** Answers one response with an error as JSON, whatever state it is in; never throws. */
function answerError(res: ServerResponse, error: unknown): void {
  try {
    sendError(res, error);
  } catch {
    res.destroy();
  }
}

/** An answer with nothing to say yet: the poll parks at its cursor. */
function isQuiet(answer: Answer): boolean {
  return answer.count === 0 && !answer.gap && !answer.more;
}

/** A non-negative integer query parameter; values above `max` are capped to it. */
function intParam(raw: string | null, name: string, min: number, max: number, fallback: number): number {
  if (raw === null || raw === '') return fallback;
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < min) {
    throw new InvalidArgumentError(`Expected query \`${name}\` to be an integer of at least ${min}, got ${JSON.stringify(raw.slice(0, 40))}`);
  }
  return Math.min(Number(raw), max);
}

/** Serializes one message, or `undefined` when it cannot be carried as JSON. */
function messageJson(m: Message): string | undefined {
  // An id that is not an id (a custom backend's) could not be a cursor: such a message is skipped.
  if (typeof m?.id !== 'string' || !ID_SHAPE.test(m.id)) return undefined;
  try {
    const text: unknown = JSON.stringify(m.headers === undefined ? { id: m.id, topic: m.topic, data: m.data } : { id: m.id, topic: m.topic, data: m.data, headers: m.headers });
    return typeof text === 'string' ? text : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Builds the answer to a read: each message serialized on its own (one that cannot be is skipped
 * and reported as a gap, the cursor moving past it), and the body cut after `maxBytes` of
 * messages (at least one message; `more: true` and the cursor of the last message kept).
 */
function buildAnswer(read: BackendRead, maxBytes: number): Answer {
  const parts: string[] = [];
  let bytes = 0;
  let gap = read.gap;
  let more = read.more;
  let cursor = read.cursor;
  let last: string | undefined; // the id of the last message consumed (sent or skipped)
  const messages = read.messages;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const text = messageJson(m);
    if (text === undefined) {
      gap = true; // skipped: the client is told, and moves past it
      if (typeof m?.id === 'string' && ID_SHAPE.test(m.id)) last = m.id;
      continue;
    }
    const size = Buffer.byteLength(text) + 1;
    if (parts.length > 0 && bytes + size > maxBytes) {
      more = true;
      cursor = last!;
      break;
    }
    parts.push(text);
    bytes += size;
    last = m.id;
  }
  const body = Buffer.from(`{"messages":[${parts.join(',')}],"cursor":${JSON.stringify(cursor)},"gap":${gap},"more":${more}}`);
  const headers = [
    'cache-control', noStore['cache-control'],
    'content-type', 'application/json; charset=utf-8',
    'content-length', String(body.length),
    CURSOR_HEADER, cursor,
  ];
  if (gap) headers.push(GAP_HEADER, '1');
  const count = parts.length;
  // An answer with something to say may also hold its raw response: a copy of the body and a
  // header of at most RAW_HEAD_ALLOWANCE plus the cursor (endShared builds no longer one).
  const rawBytes = count === 0 && !gap && !more ? 0 : body.length + RAW_HEAD_ALLOWANCE + cursor.length;
  return { body, headers, cursor, seq: parseCursor(cursor).seq, gap, more, count, raw: undefined, bytes: body.length + 128 + cursor.length + rawBytes };
}
