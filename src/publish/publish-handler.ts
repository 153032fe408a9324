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
 * 4. **The media type**, before a byte of the body is read: one not in `contentTypes` is `415`
 *    (`PB_ERR_UNSUPPORTED_MEDIA_TYPE`). A request without `Content-Type` counts as `text/plain`.
 * 5. The body, at most `maxBodyBytes` (`413`), decoded by its type: a `text/*` type as a UTF-8
 *    string, `application/json` (and every `+json` type) as its value through {@link parseJson}:
 *    at most `maxDepth` deep, no `__proto__` key; `400` otherwise.
 * 6. **`parse(data, topic, context)`**, when given: validates or transforms the decoded body; what
 *    it returns (or resolves to) is published. As with `PollHandler`'s `parse`, what it throws is
 *    answered like any other error: a `PatchbayError` with its status (throw an
 *    `InvalidArgumentError` for a `400`, a `ForbiddenError` for a `403`), anything else as `500`
 *    `PB_ERR_INTERNAL` with its message hidden (a bug in the hook is not the client's fault).
 * 7. `broker.publish`, which refuses data no transport can carry (`400`).
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ForbiddenError, InvalidArgumentError, MethodNotAllowedError, UnsupportedMediaTypeError } from '../core/errors.js';
import { checkMaxDepth, DEFAULT_MAX_JSON_DEPTH } from '../core/json.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { applyCors, type CorsOptions, decodeBody, DEFAULT_MAX_BODY_BYTES, isAllowedOrigin, readBody, sendError, sendJson } from '../http/index.js';
import type { Authorize, PubSubBroker } from '../pubsub/index.js';
import { authorizeAccess } from '../pubsub/access.js';
import { parseTopic } from '../pubsub/topic.js';
import { checkBroker } from '../pubsub/broker.js';

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
  /**
   * The media types a publish may carry (`Content-Type`, without its parameters, compared
   * case-insensitively); another is answered `415` (`PB_ERR_UNSUPPORTED_MEDIA_TYPE`) before the
   * body is read. Only types the handler can decode may be named: `text/*` types (decoded as
   * UTF-8 text) and JSON (`application/json`, which also admits every `+json` type, or a
   * `+json` type alone). A request without `Content-Type` counts as `text/plain`.
   * @defaultValue `['text/plain', 'application/json']`
   */
  readonly contentTypes?: readonly string[];
  /**
   * Validates or transforms the decoded body before it is published: what it returns (or
   * resolves to) is published. Throw an `InvalidArgumentError` to answer `400`, or any other
   * `PatchbayError` to answer its status; anything else thrown answers `500` (`PB_ERR_INTERNAL`,
   * message hidden), as `PollHandler`'s `parse` does. Called after `authorize`.
   * @param data - The decoded body: a string for a `text/*` type, the JSON value for JSON.
   * @param topic - The topic it is published to.
   * @param context - What `authorize` is given: the request, or an adapter's framework request.
   * @defaultValue the decoded body, as is
   */
  readonly parse?: (data: unknown, topic: string, context: C) => unknown;
}

/** The media types a {@link PublishHandler} accepts by default. */
const DEFAULT_CONTENT_TYPES: readonly string[] = Object.freeze(['text/plain', 'application/json']);

/** `application/json`, or a structured `+json` type. */
function isJsonType(type: string): boolean {
  return type === 'application/json' || type.endsWith('+json');
}

/** The media type of a `Content-Type` header, lower case, without parameters; `text/plain` when absent. */
function mediaTypeOf(header: string | undefined): string {
  if (header === undefined) return 'text/plain';
  const semi = header.indexOf(';');
  const type = (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase();
  return type === '' ? 'text/plain' : type;
}

/** Checks `contentTypes`: a non-empty list of `type/subtype` names the handler can decode. */
function contentTypesOption(value: readonly string[] | undefined): { readonly types: ReadonlySet<string>; readonly anyJson: boolean } {
  if (value === undefined) return { types: new Set(DEFAULT_CONTENT_TYPES), anyJson: true };
  if (!Array.isArray(value) || value.length === 0) {
    throw new InvalidArgumentError(`Expected \`contentTypes\` to be a non-empty array of media types, got ${check.describe(value)}`);
  }
  const types = new Set<string>();
  for (const t of value as unknown[]) {
    const type = typeof t === 'string' ? t.trim().toLowerCase() : '';
    if (!/^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/.test(type) || !(type.startsWith('text/') || isJsonType(type))) {
      throw new InvalidArgumentError(
        `Expected \`contentTypes\` to name text/* or JSON media types (the ones a publish can decode), got ${check.describe(t)}`,
      );
    }
    types.add(type);
  }
  return { types, anyJson: types.has('application/json') };
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
  readonly #contentTypes: ReadonlySet<string>;
  /** `application/json` is listed: every `+json` type is accepted too. */
  readonly #anyJson: boolean;
  readonly #parse: ((data: unknown, topic: string, context: C) => unknown) | undefined;
  #published = 0;
  #crossSiteRefused = 0;

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: PublishHandlerOptions<C>) {
    super();
    const opts = check.optionsObject('options', options) as PublishHandlerOptions<C>;
    this.#broker = checkBroker('broker', opts.broker);
    this.#maxBodyBytes = check.integerInRange('maxBodyBytes', opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, 0, Number.MAX_SAFE_INTEGER);
    this.#maxDepth = checkMaxDepth('maxDepth', opts.maxDepth ?? DEFAULT_MAX_JSON_DEPTH);
    this.#authorize = check.optionalFunction('authorize', opts.authorize);
    this.#cors = opts.cors === undefined ? undefined : check.optionsObject('cors', opts.cors);
    const accepted = contentTypesOption(opts.contentTypes);
    this.#contentTypes = accepted.types;
    this.#anyJson = accepted.anyJson;
    this.#parse = check.optionalFunction('parse', opts.parse);
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
      const ctx = context ?? (req as unknown as C);
      await authorizeAccess(this.#authorize, { topics: [topic] }, ctx, `publish on ${JSON.stringify(topic)}`);
      const json = this.#acceptedType(req.headers['content-type']);
      const body = await readBody(req, this.#maxBodyBytes);
      let data = decodeBody(json ? 'application/json' : 'text/plain', body, { maxDepth: this.#maxDepth });
      if (this.#parse !== undefined) data = await this.#parse(data, topic, ctx);
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

  /**
   * Whether the request's media type is JSON (else text), once it is one of `contentTypes`.
   * @throws UnsupportedMediaTypeError (`PB_ERR_UNSUPPORTED_MEDIA_TYPE`) for another type.
   */
  #acceptedType(header: string | undefined): boolean {
    const type = mediaTypeOf(header);
    const json = isJsonType(type);
    if (this.#contentTypes.has(type) || (json && this.#anyJson)) return json;
    throw new UnsupportedMediaTypeError(`Content-Type ${JSON.stringify(type)} is not supported: send ${[...this.#contentTypes].join(' or ')}`);
  }

  #checkOrigin(req: IncomingMessage): void {
    // Only origins the app named: a `cors` without `origin` allows reads from anywhere, not publishes.
    if (isAllowedOrigin(req, this.#cors?.origin)) return;
    this.#crossSiteRefused++;
    throw new ForbiddenError('Cross-site publish refused: the request comes from a page of another origin that is not allowed (see the `cors` option)');
  }
}
