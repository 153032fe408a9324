/**
 * Server-Sent Events for a {@link PubSubBroker}'s topics, over plain `node:http`.
 *
 * Each event's `id` is the message id its publish returned, so a client that reconnects sends
 * it back as `Last-Event-ID` and the handler replays the log after it, then goes live, with no
 * gap and no duplicate at the seam. A string message is the event's data verbatim; any other
 * value is sent as its JSON.
 *
 * ## The opening event
 *
 * Every stream begins with one event of type `patchbay-open` (empty data, so `onmessage` does not
 * fire for it) whose `id` is where the stream starts: for a fresh client, the broker's head taken
 * just before subscribing from it (so nothing published between the two is lost); for a resume,
 * the id it resumed from. A stream cut before any message (its first burst passed
 * `maxBufferedBytes`, say) therefore still comes back with a `Last-Event-ID` and loses nothing.
 *
 * ## Replays
 *
 * A resume is read from the broker page by page as the client takes bytes (`broker.read`), never
 * more than `maxBufferedBytes` (plus the rest of one page, sized from what the replay has seen so
 * far) held for it, and it is not subject to the overflow policy: a big replay is paced, not cut.
 * When the reads catch up, the stream subscribes from the last cursor read and goes live, so
 * nothing between is lost or repeated. A client that never reads holds at most that much until
 * `stallTimeoutMs` closes it.
 *
 * ## Gaps
 *
 * When the log no longer holds everything after the client's id (it was trimmed, or the id is
 * from before a restart), the response carries `Patchbay-Gap: 1` and, before the replay, one
 * event of type `gap` (configurable) whose data is `{"lastEventId": "<the id sent>"}`.
 *
 * A message this handler cannot serialize (data no JSON can carry, from a custom backend or a
 * `toJSON` that throws) is skipped, never thrown to the broker: in its place every reader gets
 * one `gap` event whose `id` is the message's (so a resume moves past it) and whose data is
 * `{"skipped": "<its id>", "topic": "<its topic>"}`. The loss is announced, never silent, and it
 * is never a 4xx/5xx that would stop an `EventSource` for good.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MethodNotAllowedError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { firstHeader } from '../http/headers.js';
import { applyCors, type CorsOptions, requestQuery, sendError } from '../http/index.js';
import { replayPageSize } from '../http/push-pacing.js';
import { authorizeAccess } from '../pubsub/access.js';
import { type Authorize, type BackendRead, type Message, parseCursor, type PubSubBroker, type TopicTarget } from '../pubsub/index.js';
import { parseTarget, queryTarget } from '../pubsub/target.js';
import { serializeEvent } from './serialize.js';
import { nodeSink } from './sinks.js';
import { sseChannels, SseHub, type SseHubOptions, type SseHubStats, type SseStream } from './sse-stream.js';
import { checkBroker } from '../pubsub/broker.js';

/** The response header set to `1` when the replay found a gap. */
export const SSE_GAP_HEADER = 'Patchbay-Gap';

/** The type of the first event of every stream (see the module's "The opening event"). */
export const SSE_OPEN_EVENT = 'patchbay-open';

/** What one SSE connection follows: one topic (a one-element list), or a pattern. */
export type SseTarget = TopicTarget;

/** Options for {@link SseHandler}. */
export interface SseHandlerOptions extends SseHubOptions {
  /** The broker whose topics are streamed. */
  readonly broker: PubSubBroker;
  /**
   * Also accept the resume id from this query parameter when the header is absent: an
   * `EventSource` cannot set headers on its first connection. Treat it as untrusted input (it is
   * parsed and checked like the header).
   * @defaultValue `undefined` (header only)
   */
  readonly lastEventIdQuery?: string;
  /**
   * The event type announcing a gap.
   * @defaultValue `'gap'`
   */
  readonly gapEvent?: string;
  /** CORS: without it, no CORS headers are sent. `Last-Event-ID` is allowed in preflights. */
  readonly cors?: CorsOptions;
  /**
   * Asked before the first byte with the target and the request (the one shape of every hook, see
   * {@link Authorize}): `true` or a grant allows, anything else answers 403 `PB_ERR_FORBIDDEN`. A
   * grant's `canRead` is applied to every message the stream is sent (replayed and live), and
   * its `identity` becomes the stream's {@link SseStream.identity}.
   */
  readonly authorize?: Authorize<IncomingMessage>;
  /**
   * Take the target from the query string (`topic`, or `pattern` with `allowPatterns`) when
   * {@link SseHandler.handle} is called without one. Off, such a call answers 400
   * `PB_ERR_INVALID_ARGUMENT`: a route that forgot its target must not let clients pick topics.
   * @defaultValue `false`
   */
  readonly queryTarget?: boolean;
  /**
   * Accept a pattern from the client (the `pattern` query, with `queryTarget`). Off, it is refused
   * with 403 `PB_ERR_FORBIDDEN`. A pattern the app passes as the target is always allowed
   * (authorize it with `targetOverlaps` or a grant's `canRead`).
   * @defaultValue `false`
   */
  readonly allowPatterns?: boolean;
}

/** Counters reported by {@link SseHandler.stats}. */
export interface SseHandlerStats extends SseHubStats {
  /** Connections that resumed from a `Last-Event-ID`. */
  readonly replays: number;
  /** Messages replayed in total. */
  readonly replayedMessages: number;
  /** Resumes that found a gap. */
  readonly gaps: number;
  /** Messages that could not be serialized and were announced with a gap event instead. */
  readonly skipped: number;
  /** Connections replaying now (not yet live). */
  readonly replaying: number;
  /**
   * Bytes read from the broker for replays and not yet queued on their streams, now: with
   * `bytesQueued` and `bytesBuffered`, what replays hold (at most about `maxBufferedBytes` per
   * connection, plus the rest of one page).
   */
  readonly replayBytesHeld: number;
}

/** Most messages one replay page asks the broker for. */
const MAX_PAGE = 1000;

/** A replay in progress: what it holds, for stats. */
interface Pump {
  held: number;
}

/**
 * Serves SSE subscriptions to broker topics.
 *
 * @example
 * ```ts
 * const sse = new SseHandler({ broker, heartbeatMs: 15_000, retryMs: 2000, retryJitter: 0.25 });
 * http.createServer((req, res) => {
 *   const m = /^\/sse\/([^/?]+)/.exec(req.url ?? '');
 *   if (m) void sse.handle(req, res, { topics: [decodePathSegment(m[1]!) ?? ''] });
 * });
 * ```
 */
export class SseHandler extends Resource {
  /** The hub shared by this handler's streams (flushes, timer, stop tokens). */
  readonly hub: SseHub;
  readonly #broker: PubSubBroker;
  readonly #lastEventIdQuery: string | undefined;
  readonly #gapEvent: string;
  readonly #cors: CorsOptions | undefined;
  readonly #authorize: Authorize<IncomingMessage> | undefined;
  readonly #queryTarget: boolean;
  readonly #allowPatterns: boolean;
  /**
   * The last message serialized and its bytes, so a broadcast serializes once and hands every
   * stream the same bytes. Set only once the bytes exist: a failure never leaves a stale pair.
   */
  #lastMessage: Message | undefined;
  #lastBytes: Buffer | undefined;
  readonly #pumps = new Set<Pump>();
  #replays = 0;
  #replayed = 0;
  #gaps = 0;
  #skipped = 0;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: SseHandlerOptions) {
    super();
    const opts = check.optionsObject('options', options) as SseHandlerOptions;
    this.#broker = checkBroker('broker', opts.broker);
    this.hub = new SseHub(opts);
    this.#lastEventIdQuery = opts.lastEventIdQuery;
    this.#gapEvent = opts.gapEvent ?? 'gap';
    serializeEvent({ event: this.#gapEvent, data: '' }); // refuse a bad name now
    this.#cors = opts.cors === undefined ? undefined : check.optionsObject('cors', opts.cors);
    this.#authorize = check.optionalFunction('authorize', opts.authorize);
    this.#queryTarget = check.optionalBoolean('queryTarget', opts.queryTarget);
    this.#allowPatterns = check.optionalBoolean('allowPatterns', opts.allowPatterns);
  }

  /** Counters. */
  stats(): SseHandlerStats {
    let held = 0;
    for (const p of this.#pumps) held += p.held;
    return {
      ...this.hub.stats(),
      replays: this.#replays,
      replayedMessages: this.#replayed,
      gaps: this.#gaps,
      skipped: this.#skipped,
      replaying: this.#pumps.size,
      replayBytesHeld: held,
    };
  }

  /**
   * Serves one SSE connection. Bad input (a malformed `Last-Event-ID`, a bad topic, another
   * method, no target without `queryTarget`) answers 4xx with a JSON body before any stream
   * starts; a client pattern without `allowPatterns`, or a refusal of `authorize`, answers 403; a
   * stop token from `close({ reconnect: false })` answers 204. Nothing a message holds can turn
   * into an error status: once the stream started, problems end it (the client resumes) or are
   * announced as gaps.
   *
   * @param target - The topic or pattern to follow. Without it, taken from the `topic` or
   *   `pattern` query, only with `queryTarget` (and `allowPatterns` for a pattern).
   * @returns The stream (keep it to `close({ reconnect: false })` one client, say; a resume may still be replaying: it goes live by itself), or
   *   `undefined` when the request was refused or answered otherwise. Never rejects.
   */
  async handle(req: IncomingMessage, res: ServerResponse, target?: SseTarget): Promise<SseStream | undefined> {
    let stream: SseStream | undefined;
    try {
      if (applyCors(req, res, this.#cors, ['GET'], ['Last-Event-ID'], [SSE_GAP_HEADER])) return undefined;
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method ?? '?', ['GET']);
      this.assertOpen('handle');
      const query = requestQuery(req);
      const t = this.#resolve(target, query);
      let lastEventId = firstHeader(req.headers['last-event-id']);
      if (lastEventId === undefined && this.#lastEventIdQuery !== undefined) {
        lastEventId = query.get(this.#lastEventIdQuery) ?? undefined;
      }
      if (lastEventId === '') lastEventId = undefined;
      if (this.hub.isStopped(lastEventId)) {
        res.writeHead(204, { 'cache-control': 'no-store' });
        res.end();
        return undefined;
      }
      if (lastEventId !== undefined) parseCursor(lastEventId);
      const access = await authorizeAccess(this.#authorize, t.target, req, 'subscribe to this target');
      this.assertOpen('handle');
      const canRead = access.canRead;

      if (lastEventId === undefined) {
        // A fresh client: its first event carries the head taken before subscribing from it, so a
        // cut before any message resumes without loss (and the subscription loses nothing
        // published between the two).
        const head = await this.#broker.head();
        this.assertOpen('handle'); // closed meanwhile: no stream may join a hub that closed them all
        stream = this.hub.stream(nodeSink(req, res), undefined, access.identity);
        if (!(await this.#goLive(stream, t, head, canRead, req))) return undefined;
        stream.start(undefined, this.#openBytes(head));
        return stream;
      }

      // A resume. The first page is read before the headers go out: an id ahead of the log is
      // still a 400, and a gap is in the headers. One message: its size sizes the next pages.
      // Every read passes the request as the broker's context, so the broker's own
      // `authorize.subscribe` refuses, and its grant filters, the replay as it does live messages.
      const first = await this.#broker.read(t.read, lastEventId, 1, { canRead, context: req });
      this.#replays++;
      this.assertOpen('handle');
      stream = this.hub.stream(nodeSink(req, res), undefined, access.identity);
      if (stream.closed) return undefined;
      const extra: Record<string, string> = {};
      let lead = this.#openBytes(lastEventId);
      if (first.gap) {
        this.#gaps++;
        extra[SSE_GAP_HEADER] = '1';
        lead = Buffer.concat([lead, serializeEvent({ event: this.#gapEvent, data: { lastEventId } })]);
      }
      stream._beginReplay();
      stream.start(extra, lead);
      void this.#replay(stream, t, first, canRead, first.gap, req);
      return stream;
    } catch (error) {
      if (stream?.started === true) stream.close();
      else sendError(res, error); // a stream made but not started ends with the response
      return undefined;
    }
  }

  /**
   * Queues a replay page by page as the stream takes bytes, then goes live from the last cursor
   * read. Never rejects: a failure ends the stream, and the client resumes from what it got.
   */
  async #replay(
    stream: SseStream,
    t: ResolvedTarget,
    first: BackendRead,
    canRead: ((topic: string) => boolean) | undefined,
    gapSeen: boolean,
    req: IncomingMessage,
  ): Promise<void> {
    const pump: Pump = { held: 0 };
    this.#pumps.add(pump);
    try {
      let page = first;
      let limit = 1;
      let bytesSeen = 0;
      let messagesSeen = 0;
      for (;;) {
        const pending = page.messages.map((m) => this.#bytes(m));
        for (const b of pending) pump.held += b.length;
        for (const bytes of pending) {
          if (!stream._replayFits(bytes.length)) await stream._whenFits(bytes.length);
          if (!stream._replayPush(bytes, true)) return;
          pump.held -= bytes.length;
          bytesSeen += bytes.length;
          messagesSeen++;
          this.#replayed++;
        }
        if (!page.more) break;
        // The next page only when there is room for it, sized to the room at the average size
        // seen so far: what a replay holds stays near maxBufferedBytes.
        if (stream._room() === 0) await stream._whenFits(1);
        if (stream.closed) return;
        limit =
          page.messages.length === 0
            ? Math.min(limit * 2, MAX_PAGE) // all of the last page was filtered out: read further
            : replayPageSize(stream._room(), bytesSeen / messagesSeen, MAX_PAGE);
        const at = page.cursor;
        page = await this.#broker.read(t.read, at, limit, { canRead, context: req });
        if (stream.closed) return;
        if (page.gap) {
          // Trimmed while we read: announced where it happened.
          if (!gapSeen) this.#gaps++;
          gapSeen = true;
          stream._replayPush(serializeEvent({ event: this.#gapEvent, data: { lastEventId: at } }), false);
        }
      }
      stream._endReplay();
      await this.#goLive(stream, t, page.cursor, canRead, req);
    } catch {
      stream.close(); // the client resumes from the last id it got
    } finally {
      pump.held = 0;
      this.#pumps.delete(pump);
    }
  }

  /**
   * Subscribes the stream from `from` (the messages after it, then live).
   * @returns `false` when the stream closed meanwhile.
   */
  async #goLive(stream: SseStream, t: ResolvedTarget, from: string, canRead: ((topic: string) => boolean) | undefined, req: IncomingMessage): Promise<boolean> {
    const sub = await this.#broker.subscribe(t.pattern, {
      from,
      canRead,
      context: req,
      maxQueuedMessages: 1, // callback delivery: the stream's own buffer bound applies
      onMessage: (m) => {
        // The live path: one memo check and one queue push per stream, nothing allocated. A
        // failure here is this stream's alone: it must never reach the broker (which rethrows).
        try {
          stream.send(this.#bytes(m));
        } catch {
          stream.close();
        }
      },
    });
    stream._onClose(() => sub.close());
    const info = this.#broker.replayInfo(sub);
    if (info !== undefined) {
      this.#replayed += info.replayed;
      // Trimmed between the last read and the subscription (a narrow window): said late, not never.
      if (info.gap && !stream.closed) stream.send(serializeEvent({ event: this.#gapEvent, data: { lastEventId: from } }));
    }
    return !stream.closed;
  }

  /** The bytes of a message: serialized once per message (a broadcast shares them), never throws. */
  #bytes(m: Message): Buffer {
    if (m === this.#lastMessage) return this.#lastBytes!;
    let bytes: Buffer;
    try {
      bytes = serializeEvent({ id: m.id, data: m.data });
    } catch (error) {
      bytes = this.#skip(m, error);
    }
    this.#lastMessage = m;
    this.#lastBytes = bytes;
    return bytes;
  }

  /** The gap event that stands for a message that cannot be serialized. */
  #skip(m: Message, error: unknown): Buffer {
    this.#skipped++;
    if (sseChannels.skip.hasSubscribers) sseChannels.skip.publish({ message: m, error });
    const data = { skipped: m.id, topic: m.topic };
    try {
      return serializeEvent({ event: this.#gapEvent, id: m.id, data });
    } catch {
      // An id that cannot be an SSE id (a custom backend's): the event still says what was skipped.
      return serializeEvent({ event: this.#gapEvent, data: { skipped: typeof m.id === 'string' ? m.id : '?', topic: typeof m.topic === 'string' ? m.topic : '?' } });
    }
  }

  #openBytes(id: string): Buffer {
    return serializeEvent({ event: SSE_OPEN_EVENT, id, data: '' });
  }

  #resolve(target: SseTarget | undefined, query: URLSearchParams): ResolvedTarget {
    return resolveTarget(target ?? queryTarget(query, { queryTarget: this.#queryTarget, allowPatterns: this.#allowPatterns }, 'SseHandler'));
  }

  protected onClose(): Promise<void> {
    return this.hub.close();
  }

  protected onDestroy(reason: unknown): void {
    this.hub.destroy(reason);
  }
}

interface ResolvedTarget {
  readonly target: SseTarget;
  /** The topic or pattern to subscribe to. */
  readonly pattern: string;
  /** What to read replays from. */
  readonly read: string | { readonly pattern: string };
}

function resolveTarget(target: SseTarget): ResolvedTarget {
  const t = parseTarget(target, 1, 'stream');
  if (t.pattern !== undefined) return { target: { pattern: t.pattern }, pattern: t.pattern, read: { pattern: t.pattern } };
  const topic = t.topics[0]!;
  return { target: { topics: t.topics }, pattern: topic, read: topic };
}
