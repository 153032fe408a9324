/**
 * Server-Sent Events for a {@link PubSubBroker}'s topics, over plain `node:http`.
 *
 * Each event's `id` is the message id its publish returned, so a client that reconnects sends
 * it back as `Last-Event-ID` and the handler replays the log after it, then goes live, with no
 * gap and no duplicate at the seam. A string message is the event's data verbatim; any other
 * value is sent as its JSON.
 *
 * When the log no longer holds everything after the client's id (it was trimmed, or the id is
 * from before a restart), the response carries `Patchbay-Gap: 1` and, before the replay, one
 * event of type `gap` (configurable) whose data is `{"lastEventId": "<the id sent>"}`: the loss
 * is announced, never silent.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ForbiddenError, InvalidArgumentError, MethodNotAllowedError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { applyCors, type CorsOptions, sendError } from '../http/index.js';
import { type Message, parseCursor, type PubSubBroker, type TopicTarget } from '../pubsub/index.js';
import { parseTarget } from '../pubsub/target.js';
import { serializeEvent } from './serialize.js';
import { nodeSink } from './sinks.js';
import { SseHub, type SseHubOptions, type SseHubStats, type SseStream } from './sse-stream.js';

/** The response header set to `1` when the replay found a gap. */
export const SSE_GAP_HEADER = 'Patchbay-Gap';

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
  /** Called before the first byte: return `false` to answer 403. */
  readonly authorize?: (req: IncomingMessage, target: SseTarget) => boolean | Promise<boolean>;
}

/** Counters reported by {@link SseHandler.stats}. */
export interface SseHandlerStats extends SseHubStats {
  /** Events written, heartbeats excluded. */
  readonly eventsSent: number;
  /** Connections that resumed from a `Last-Event-ID`. */
  readonly replays: number;
  /** Messages replayed in total. */
  readonly replayedMessages: number;
  /** Resumes that found a gap. */
  readonly gaps: number;
}

/**
 * Serves SSE subscriptions to broker topics.
 *
 * @example
 * ```ts
 * const sse = new SseHandler({ broker, heartbeatMs: 15_000, retryMs: 2000, retryJitter: 0.25 });
 * http.createServer((req, res) => {
 *   const m = /^\/sse\/([^/?]+)/.exec(req.url ?? '');
 *   if (m) void sse.handle(req, res, { topics: [decodeURIComponent(m[1]!)] });
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
  readonly #authorize: SseHandlerOptions['authorize'];
  #lastMessage: Message | undefined;
  #lastBytes: Buffer | undefined;
  #eventsSent = 0;
  #replays = 0;
  #replayed = 0;
  #gaps = 0;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: SseHandlerOptions) {
    super();
    const opts = check.optionsObject('options', options) as SseHandlerOptions;
    if (opts.broker === undefined || typeof opts.broker.subscribe !== 'function') {
      throw new InvalidArgumentError(`Expected \`broker\` to be a PubSubBroker, got ${check.describe(opts.broker)}`);
    }
    this.#broker = opts.broker;
    this.hub = new SseHub(opts);
    this.#lastEventIdQuery = opts.lastEventIdQuery;
    this.#gapEvent = opts.gapEvent ?? 'gap';
    serializeEvent({ event: this.#gapEvent, data: '' }); // refuse a bad name now
    this.#cors = opts.cors === undefined ? undefined : check.optionsObject('cors', opts.cors);
    this.#authorize = check.optionalFunction('authorize', opts.authorize);
  }

  /** Counters. */
  stats(): SseHandlerStats {
    return { ...this.hub.stats(), eventsSent: this.#eventsSent, replays: this.#replays, replayedMessages: this.#replayed, gaps: this.#gaps };
  }

  /**
   * Serves one SSE connection. Without `target`, the topics come from the `topic` query
   * (repeatable) or `pattern`. Bad input (a malformed `Last-Event-ID`, a bad topic, another
   * method) answers 4xx with a JSON body before any stream starts; a stop token from
   * `close({ reconnect: false })` answers 204.
   *
   * @returns The live stream (keep it to `close({ reconnect: false })` one client, say), or
   *   `undefined` when the request was refused or answered otherwise. Never rejects.
   */
  async handle(req: IncomingMessage, res: ServerResponse, target?: SseTarget): Promise<SseStream | undefined> {
    try {
      if (applyCors(req, res, this.#cors, ['GET'], ['Last-Event-ID'], [SSE_GAP_HEADER])) return undefined;
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method ?? '?', ['GET']);
      this.assertOpen('handle');
      const url = new URL(req.url ?? '/', 'http://localhost');
      const t = resolveTarget(target ?? { topics: url.searchParams.getAll('topic'), pattern: url.searchParams.get('pattern') ?? undefined });
      let lastEventId = headerValue(req.headers['last-event-id']);
      if (lastEventId === undefined && this.#lastEventIdQuery !== undefined) {
        lastEventId = url.searchParams.get(this.#lastEventIdQuery) ?? undefined;
      }
      if (lastEventId === '') lastEventId = undefined;
      if (this.hub.isStopped(lastEventId)) {
        res.writeHead(204, { 'cache-control': 'no-store' });
        res.end();
        return undefined;
      }
      if (lastEventId !== undefined) parseCursor(lastEventId);
      if (this.#authorize !== undefined && (await this.#authorize(req, t.target)) !== true) {
        throw new ForbiddenError('Not allowed to subscribe to this target');
      }
      this.assertOpen('handle');

      const stream = this.hub.stream(nodeSink(req, res));
      // The replay is staged and queued whole (see SseStream): held to maxBufferedBytes, a backlog
      // larger than the bound would cut the resuming client before its first byte, every time.
      let staged: Message[] | null = [];
      const sub = await this.#broker.subscribe(t.pattern, {
        from: lastEventId ?? 'now',
        maxQueue: 1, // callback delivery: the stream's own buffer bound applies
        onMessage: (m) => {
          if (staged !== null) staged.push(m);
          else if (stream.send(this.#bytes(m))) this.#eventsSent++;
        },
      });
      stream._onClose(() => sub.close());
      if (stream.closed) return undefined;
      const info = this.#broker.replayInfo(sub);
      let first: Buffer | undefined;
      const extra: Record<string, string> = {};
      if (info !== undefined) {
        this.#replays++;
        this.#replayed += info.replayed;
        if (info.gap) {
          this.#gaps++;
          extra[SSE_GAP_HEADER] = '1';
          first = serializeEvent({ event: this.#gapEvent, data: { lastEventId } });
        }
      }
      const replay = staged;
      staged = null;
      this.#eventsSent += stream._replay(replay.map((m) => this.#bytes(m)));
      stream.start(extra, first);
      return stream;
    } catch (error) {
      sendError(res, error);
      return undefined;
    }
  }

  /** Each message is serialized once: a broadcast hands every stream the same bytes. */
  #bytes(m: Message): Buffer {
    if (m !== this.#lastMessage) {
      this.#lastMessage = m;
      this.#lastBytes = serializeEvent({ id: m.id, data: m.data });
    }
    return this.#lastBytes!;
  }

  protected onClose(): void {
    this.hub.closeAll();
  }

  protected onDestroy(): void {
    this.hub.closeAll();
  }
}

interface ResolvedTarget {
  readonly target: SseTarget;
  /** The topic or pattern to subscribe to. */
  readonly pattern: string;
}

function resolveTarget(target: SseTarget): ResolvedTarget {
  const t = parseTarget(target, 1, 'stream');
  return t.pattern !== undefined ? { target: { pattern: t.pattern }, pattern: t.pattern } : { target: { topics: t.topics }, pattern: t.topics[0]! };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
