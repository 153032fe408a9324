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
 * restart, and the batch holds what is left. Several topics or a pattern share one cursor.
 *
 * ## Waking many at once
 *
 * Polls parked with the same cursor get the same answer, so the body is built once per
 * (keys, cursor, limit) and the same bytes are written to every woken request; the cache entry
 * lives until the next message on its keys.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Clock, realClock } from '../core/clock.js';
import { ClosedError, ForbiddenError, InvalidArgumentError, MethodNotAllowedError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { applyCors, type CorsOptions, sendError } from '../http/index.js';
import { noStore } from '../http/respond.js';
import { DelayedOperation, Purgatory } from '../purgatory/index.js';
import {
  type BackendRead,
  type Message,
  parseCursor,
  type PubSubBroker,
  type Subscription,
  TopicIndex,
  type TopicTarget,
} from '../pubsub/index.js';
import { parseTarget } from '../pubsub/target.js';

/** The response header carrying the cursor to poll with next. */
export const CURSOR_HEADER = 'Patchbay-Cursor';
/** The response header set to `1` when a gap was detected. */
export const GAP_HEADER = 'Patchbay-Gap';

/** What one long poll waits on: topics (sharing one cursor), or a pattern. */
export type LongPollTarget = TopicTarget;

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
  readonly maxBatch?: number;
  /** CORS: without it, no CORS headers are sent. */
  readonly cors?: CorsOptions;
  /**
   * May this request poll this target? Return `false` to answer 403.
   */
  readonly authorize?: (req: IncomingMessage, target: LongPollTarget) => boolean | Promise<boolean>;
}

/** Counters reported by {@link LongPollHandler.stats}. */
export interface LongPollStats {
  /** Polls parked in the purgatory now. */
  readonly parked: number;
  /** Polls answered with messages (200) so far. */
  readonly answered: number;
  /** Polls whose hold ended without a message (204) so far. */
  readonly timedOut: number;
  /** Topics and patterns that polls are waiting on or reading now. */
  readonly interests: number;
}

interface Interest {
  refs: number;
  lastSeq: number;
  /** Bumped by every message on the key: reads started before it are stale. */
  gen: number;
  /** Built answers by (cursor, limit), valid until the next message on the key. */
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
  readonly count: number;
}

const EXPOSED = [CURSOR_HEADER, GAP_HEADER];

/**
 * Long polling for a {@link PubSubBroker}, over plain `node:http`.
 *
 * @example
 * ```ts
 * const broker = new PubSubBroker();
 * const longPoll = new LongPollHandler({ broker });
 * http.createServer((req, res) => {
 *   const m = /^\/lp\/([^/?]+)/.exec(req.url ?? '');
 *   if (m) void longPoll.handle(req, res, { topics: [decodeURIComponent(m[1]!)] });
 * });
 * ```
 */
export class LongPollHandler extends Resource {
  readonly #broker: PubSubBroker;
  readonly #purgatory: Purgatory;
  readonly #ownsPurgatory: boolean;
  readonly #clock: Clock;
  readonly #maxHoldMs: number;
  readonly #maxBatch: number;
  readonly #cors: CorsOptions | undefined;
  readonly #authorize: LongPollHandlerOptions['authorize'];
  readonly #interest = new Map<string, Interest>();
  readonly #patterns = new TopicIndex<string>();
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
    if (opts.broker === undefined || typeof opts.broker.read !== 'function') {
      throw new InvalidArgumentError(`Expected \`broker\` to be a PubSubBroker, got ${check.describe(opts.broker)}`);
    }
    this.#broker = opts.broker;
    this.#ownsPurgatory = opts.purgatory === undefined;
    this.#clock = opts.clock ?? realClock;
    this.#purgatory = opts.purgatory ?? new Purgatory({ name: 'longpoll', clock: this.#clock });
    this.#maxHoldMs = check.integerInRange('maxHoldMs', opts.maxHoldMs ?? 30_000, 0, 2 ** 31 - 1);
    this.#maxBatch = check.integerInRange('maxBatch', opts.maxBatch ?? 100, 1, 10_000);
    this.#cors = opts.cors === undefined ? undefined : check.optionsObject('cors', opts.cors);
    this.#authorize = check.optionalFunction('authorize', opts.authorize);
  }

  /** Counters. */
  stats(): LongPollStats {
    return { parked: this.#parked, answered: this.#answered, timedOut: this.#timedOut, interests: this.#interest.size };
  }

  /**
   * Serves one long poll. Query: `cursor` (an id), `timeout` (ms, at most `maxHoldMs`), `limit`
   * (at most `maxBatch`), and, when `target` is not given, `topic` (repeatable) or `pattern`.
   *
   * Bad input answers 4xx with a JSON error body; a client that disconnects leaves the purgatory
   * at once and gets no answer. Resolves once the request is answered or parked (parked polls
   * cost no pending promise); never rejects.
   */
  async handle(req: IncomingMessage, res: ServerResponse, target?: LongPollTarget): Promise<void> {
    try {
      if (applyCors(req, res, this.#cors, ['GET'], [], EXPOSED)) return;
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method ?? '?', ['GET']);
      this.assertOpen('handle');
      const url = new URL(req.url ?? '/', 'http://localhost');
      const q = url.searchParams;
      const resolved = this.#resolveTarget(target ?? { topics: q.getAll('topic'), pattern: q.get('pattern') ?? undefined });
      const hold = intParam(q.get('timeout'), 'timeout', 0, this.#maxHoldMs, this.#maxHoldMs);
      const limit = intParam(q.get('limit'), 'limit', 1, this.#maxBatch, this.#maxBatch);
      const rawCursor = q.get('cursor');
      const cursor = rawCursor !== null && rawCursor !== '' ? rawCursor : null;
      if (cursor !== null) parseCursor(cursor);
      if (this.#authorize !== undefined && (await this.#authorize(req, resolved.target)) !== true) {
        throw new ForbiddenError('Not allowed to poll this target');
      }
      await this.#ensureFeed();
      this.assertOpen('handle');
      // Interest is registered before the first read, so a publish racing the read still wakes us.
      this.#retain(resolved);
      const poll: Poll = { res, t: resolved, cursor: cursor ?? '', deadline: this.#clock.now() + hold, limit };
      if (cursor === null) {
        try {
          poll.cursor = await this.#broker.head();
        } catch (error) {
          this.#release(resolved);
          throw error;
        }
      }
      await this.#attempt(poll); // a failed read releases the interest itself
    } catch (error) {
      sendError(res, error);
    }
  }

  /**
   * Reads after the poll's cursor, then answers or parks it. Polls on one key with one cursor
   * share one read: the first starts it, the rest join its waiting list, and all are answered
   * in one loop with the same bytes (a woken herd costs one read and no promise per poll). The
   * returned promise settles when this poll is answered or parked; it rejects only if the read
   * fails, after the poll's interest is released.
   */
  #attempt(poll: Poll): Promise<void> {
    const t = poll.t;
    const cursor = poll.cursor;
    const shared = t.keys.length === 1 ? this.#interest.get(t.keys[0]!) : undefined;
    const cacheKey = `${cursor}\u0000${poll.limit}`;
    const ready = shared?.answers.get(cacheKey);
    if (ready !== undefined) {
      this.#afterAnswer(poll, ready);
      return Promise.resolve();
    }
    let batch = shared?.reading.get(cacheKey);
    if (batch !== undefined) {
      batch.polls.push(poll);
      return batch.done;
    }
    const polls = [poll];
    const gen = shared?.gen ?? 0;
    const done = this.#broker.read(t.readTarget, cursor, poll.limit).then(
      (read) => {
        const answer = buildAnswer(read);
        if (shared !== undefined) {
          shared.reading.delete(cacheKey);
          // Keep it only if no message arrived meanwhile (it would be stale for later polls).
          if (shared.gen === gen) shared.answers.set(cacheKey, answer);
        }
        for (const p of polls) this.#afterAnswer(p, answer);
      },
      (error: unknown) => {
        shared?.reading.delete(cacheKey);
        // Each waiting poll's caller answers the error; the interest is released here, once.
        for (const p of polls) this.#release(p.t);
        throw error;
      },
    );
    batch = { polls, done };
    shared?.reading.set(cacheKey, batch);
    return done;
  }

  /** Answers a poll that has something (or a gap); parks one that has nothing yet. */
  #afterAnswer(poll: Poll, answer: Answer): void {
    const res = poll.res;
    if (res.destroyed || res.writableEnded) {
      this.#release(poll.t); // the client left while we read
      return;
    }
    if (answer.count > 0 || answer.gap) {
      this.#send(res, answer);
      this.#release(poll.t);
      return;
    }
    poll.cursor = answer.cursor;
    const op = new LongPollOp(this.#ops, poll, answer.seq, Math.max(0, poll.deadline - this.#clock.now()));
    const parked = res as ParkedResponse;
    if (!(kOp in parked)) parked.on('close', onResponseClose); // once per response, however often it re-parks
    parked[kOp] = op;
    this.#parked++;
    op.purgatory = this.#purgatory;
    this.#purgatory.tryCompleteElseWatch(op, poll.t.keys);
  }

  /** What parked operations call back into. */
  readonly #ops: OpHost = {
    lastSeq: (keys) => this.#lastSeq(keys),
    ended: (op, how, reason) => {
      this.#parked--;
      const poll = op.poll;
      (poll.res as ParkedResponse)[kOp] = undefined;
      if (how === 'completed') {
        // Woken: read again (usually one shared, pre-built answer); nothing new re-parks.
        this.#attempt(poll).catch((error: unknown) => sendError(poll.res, error));
        return;
      }
      if (how === 'expired' || this.closed || reason instanceof ClosedError) this.#sendTimeout(poll.res, poll.cursor);
      this.#release(poll.t);
    },
  };

  #send(res: ServerResponse, answer: Answer): void {
    if (res.writableEnded || res.destroyed) return;
    this.#answered++;
    res.writeHead(200, answer.headers); // built once per answer, shared by every poll it goes to
    res.end(answer.body);
  }

  #sendTimeout(res: ServerResponse, cursor: string): void {
    if (res.writableEnded || res.destroyed) return;
    this.#timedOut++;
    res.writeHead(204, { ...noStore, [CURSOR_HEADER]: cursor });
    res.end();
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
        interest = { refs: 0, lastSeq: 0, gen: 0, answers: new Map(), reading: new Map() };
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
      if (t.patternTokens !== undefined) this.#patterns.remove(t.patternTokens, key);
    }
  }

  /** One broker subscription feeds every poll: it records the newest seq per key and wakes it. */
  #ensureFeed(): Promise<Subscription> {
    this.#feed ??= this.#broker.subscribe('>', { onMessage: (m) => this.#onMessage(m) });
    return this.#feed;
  }

  #onMessage(message: Message): void {
    if (this.#interest.size === 0) return;
    this.#touch(`${this.#ns}t:${message.topic}`, message._seq);
    if (this.#patterns.size > 0) for (const key of this.#patterns.match(message.topic)) this.#touch(key, message._seq);
  }

  #touch(key: string, seq: number): void {
    const interest = this.#interest.get(key);
    if (interest === undefined) return;
    interest.lastSeq = seq;
    interest.gen++;
    if (interest.answers.size > 0) interest.answers.clear();
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
}

interface OpHost {
  lastSeq(keys: readonly string[]): number;
  ended(op: LongPollOp, how: 'completed' | 'expired' | 'cancelled', reason: unknown): void;
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
    this.host.ended(this, 'cancelled', reason);
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

/** A non-negative integer query parameter; values above `max` are capped to it. */
function intParam(raw: string | null, name: string, min: number, max: number, fallback: number): number {
  if (raw === null || raw === '') return fallback;
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < min) {
    throw new InvalidArgumentError(`Expected query \`${name}\` to be an integer of at least ${min}, got ${JSON.stringify(raw.slice(0, 40))}`);
  }
  return Math.min(Number(raw), max);
}

function buildAnswer(read: BackendRead): Answer {
  const messages = read.messages.map((m) => (m.headers === undefined ? { id: m.id, topic: m.topic, data: m.data } : { id: m.id, topic: m.topic, data: m.data, headers: m.headers }));
  const body = Buffer.from(JSON.stringify({ messages, cursor: read.cursor, gap: read.gap, more: read.more }));
  const headers = [
    'cache-control', noStore['cache-control'],
    'content-type', 'application/json; charset=utf-8',
    'content-length', String(body.length),
    CURSOR_HEADER, read.cursor,
  ];
  if (read.gap) headers.push(GAP_HEADER, '1');
  return { body, headers, cursor: read.cursor, seq: parseCursor(read.cursor).seq, gap: read.gap, count: read.messages.length };
}
