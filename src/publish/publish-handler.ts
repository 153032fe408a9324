/**
 * Publishing over HTTP: `POST` a body to a topic, answered `201` with `{ "id" }`, the id the
 * publish returned (the same id SSE events, long-poll messages and WebSocket frames carry). The
 * demo's `POST /pub/:topic` and every adapter's `publish` are this handler.
 *
 * ## In this order, before anything is stored
 *
 * 1. The method (`POST`, else `405`) and the topic (`400`).
 * 2. **The origin.** A browser sends `Origin` with every cross-site `POST`, and a `text/plain` one
 *    needs no CORS preflight: without this check, any page a signed-in user visits could publish
 *    with the user's cookies. A request whose `Origin` is neither this server's own (its host
 *    equals the `Host` header) nor allowed by `cors.origin` is refused with `403`
 *    (`PB_ERR_FORBIDDEN`). Requests without `Origin` (servers, `curl`, tools) are unaffected.
 * 3. **`authorize(target, context)`**, before a byte of the body is read: a refused client cannot
 *    make the server read (or buffer) its body; the connection is closed after the refusal.
 * 4. The body, at most `maxBodyBytes` (`413`), decoded by its `Content-Type` (`text/plain` as a
 *    string, `application/json` as its value through {@link parseJson}: at most `maxDepth` deep,
 *    no `__proto__` key; `400` otherwise; another type `415`).
 * 5. `broker.publish`, which refuses data no transport can carry (`400`).
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ForbiddenError, InvalidArgumentError, MethodNotAllowedError } from '../core/errors.js';
import { checkMaxDepth, DEFAULT_MAX_JSON_DEPTH } from '../core/json.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { applyCors, type CorsOptions, decodeBody, DEFAULT_MAX_BODY_BYTES, isAllowedOrigin, readBody, sendError, sendJson } from '../http/index.js';
import type { Authorize, PubSubBroker } from '../pubsub/index.js';
import { authorizeAccess } from '../pubsub/access.js';
import { parseTopic } from '../pubsub/topic.js';

/** Options for {@link PublishHandler}. */
export interface PublishHandlerOptions<C = IncomingMessage> {
  /** The broker to publish to. The handler does not close it. */
  readonly broker: PubSubBroker;
  /**
   * The largest body, in bytes; a larger one is answered `413` (`PB_ERR_BODY_TOO_LARGE`) without
   * being buffered.
   * @defaultValue 1048576 (1 MiB)
   */
  readonly maxBodyBytes?: number;
  /**
   * The deepest nesting of a JSON body (the outermost object or array counts 1); deeper is `400`
   * (`PB_ERR_PROTOCOL`) before it is parsed.
   * @defaultValue 64
   */
  readonly maxDepth?: number;
  /**
   * May `context` publish on the target (`{ topics: [topic] }`)? Asked before the body is read;
   * anything but `true` or a grant answers `403` (`PB_ERR_FORBIDDEN`). `context` is the last
   * argument of `handle` (the request, by default; an adapter gives its framework's request).
   * @defaultValue anyone may publish
   */
  readonly authorize?: Authorize<C>;
  /**
   * CORS for browsers on other origins: an origin that `cors.origin` names (a list, a predicate,
   * or `'*'` written out for every site) may publish, and is sent the CORS headers; any other
   * cross-site `Origin` is refused with `403`. A `cors` without `origin` lets no other site publish.
   * @defaultValue `undefined`: only requests from this server's own origin, or without `Origin`
   */
  readonly cors?: CorsOptions;
}

/** Counters reported by {@link PublishHandler.stats}. */
export interface PublishHandlerStats {
  /** Messages published. */
  readonly published: number;
  /** Requests refused because of their `Origin`. */
  readonly crossSiteRefused: number;
}

/**
 * Serves `POST` publishes to a broker's topics, over plain `node:http`.
 *
 * @typeParam C - What `authorize` is given as `context`: the request unless
 *   {@link PublishHandler.handle} is given another (an adapter passes its framework's request).
 *
 * @example
 * ```ts
 * const publish = new PublishHandler({ broker, authorize: (target, req) => req.headers['x-api-key'] === key });
 * http.createServer((req, res) => {
 *   const m = /^\/pub\/([^/?]+)$/.exec(req.url ?? '');
 *   if (m) void publish.handle(req, res, decodePathSegment(m[1]!)); // undefined (a 400) when malformed
 * });
 * ```
 */
export class PublishHandler<C = IncomingMessage> extends Resource {
  readonly #broker: PubSubBroker;
  readonly #maxBodyBytes: number;
  readonly #maxDepth: number;
  readonly #authorize: Authorize<C> | undefined;
  readonly #cors: CorsOptions | undefined;
  #published = 0;
  #crossSiteRefused = 0;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: PublishHandlerOptions<C>) {
    super();
    const opts = check.optionsObject('options', options) as PublishHandlerOptions<C>;
    if (opts.broker === undefined || typeof opts.broker.publish !== 'function') {
      throw new InvalidArgumentError(`Expected \`broker\` to be a PubSubBroker, got ${check.describe(opts.broker)}`);
    }
    this.#broker = opts.broker;
    this.#maxBodyBytes = check.integerInRange('maxBodyBytes', opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, 0, Number.MAX_SAFE_INTEGER);
    this.#maxDepth = checkMaxDepth('maxDepth', opts.maxDepth ?? DEFAULT_MAX_JSON_DEPTH);
    this.#authorize = check.optionalFunction('authorize', opts.authorize);
    this.#cors = opts.cors === undefined ? undefined : check.optionsObject('cors', opts.cors);
  }

  /** Counters. */
  stats(): PublishHandlerStats {
    return { published: this.#published, crossSiteRefused: this.#crossSiteRefused };
  }

  /**
   * Serves one publish. Errors are answered as JSON (`{ "error": { "code", "message" } }`) with
   * their status; never rejects.
   *
   * @param topic - The topic, from the route (never from the query string).
   * @param context - What `authorize` is given; the request when left out.
   */
  async handle(req: IncomingMessage, res: ServerResponse, topic: string | undefined, context?: C): Promise<void> {
    try {
      if (applyCors(req, res, this.#cors, ['POST'], ['Content-Type'])) return;
      if (req.method !== 'POST') throw new MethodNotAllowedError(req.method ?? '?', ['POST']);
      this.assertOpen('handle');
      if (topic === undefined || topic === '') throw new InvalidArgumentError('Expected a topic in the path');
      parseTopic(topic);
      this.#checkOrigin(req);
      await authorizeAccess(this.#authorize, { topics: [topic] }, context ?? (req as unknown as C), `publish on ${JSON.stringify(topic)}`);
      const body = await readBody(req, this.#maxBodyBytes);
      const data = decodeBody(req.headers['content-type'], body, { maxDepth: this.#maxDepth });
      const message = await this.#broker.publish(topic, data);
      this.#published++;
      sendJson(res, 201, { id: message.id });
    } catch (error) {
      // Refused before the body was read (or part-way): the connection is closed after the
      // answer instead of reading a stranger's body to the end.
      sendError(res, error, req.readableEnded ? undefined : { connection: 'close' });
    }
  }

  protected onClose(): void {
    // Nothing held between requests: publishes in flight finish on their own.
  }

  protected onDestroy(): void {
    // As onClose.
  }

  #checkOrigin(req: IncomingMessage): void {
    // Only origins the app named: a `cors` without `origin` allows reads from anywhere, not publishes.
    if (isAllowedOrigin(req, this.#cors?.origin)) return;
    this.#crossSiteRefused++;
    throw new ForbiddenError('Cross-site publish refused: the request comes from a page of another origin that is not allowed (see the `cors` option)');
  }
}
