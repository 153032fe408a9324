/**
 * `patchbay/fastify`: the handlers as one Fastify 5 plugin. Install the peer: `npm install fastify`.
 *
 * The plugin is encapsulated (it is not wrapped with `fastify-plugin`), so what it sets stays
 * inside it:
 *
 * - **Bodies.** Its routes register one content-type parser for every type that leaves the body
 *   unread, so the handlers read the raw stream themselves with their own limits (a tus `PATCH`
 *   streams to disk, a publish is refused past `maxBodyBytes` without being buffered). Fastify's
 *   `bodyLimit` does not apply to them. The app's other routes keep their parsers.
 * - **Responses.** Each route calls `reply.hijack()` and hands `request.raw` and `reply.raw` to the
 *   handler, which writes the answer (an event stream, a long poll parked for 30 s, a `304`)
 *   straight to the socket; Fastify's `onSend` hooks and serializers do not run for them.
 * - **Errors.** Its error handler answers what fails before a handler runs (a malformed
 *   `Content-Type`, a `target` function that throws) as patchbay's JSON errors; the handlers
 *   answer their own errors. A path that is not valid percent-encoding is refused by Fastify's
 *   router before any plugin sees it (`400` `FST_ERR_BAD_URL`; see Fastify's `frameworkErrors`).
 *
 * Every route takes every method, so other methods and CORS preflights reach the handler (it
 * answers `405` with `Allow`). Fastify is imported for its types only.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { LongPollHandler, PubSubBroker, SseHandler } from 'patchbay';
 * import { patchbayPlugin } from 'patchbay/fastify';
 *
 * const broker = new PubSubBroker();
 * const app = Fastify();
 * await app.register(patchbayPlugin, {
 *   publish: { broker },
 *   longPoll: { handler: new LongPollHandler({ broker }) },
 *   sse: { handler: new SseHandler({ broker }) },
 * });
 * await app.listen({ port: 3000, host: '127.0.0.1' });
 * ```
 *
 * @module patchbay/fastify
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PatchbayError } from '../../core/index.js';
import { sendError } from '../../http/index.js';
import type { LongPollHandler, LongPollTarget } from '../../longpoll/index.js';
import type { PollHandler } from '../../poll/index.js';
import type { PubSubBroker } from '../../pubsub/index.js';
import type { SseHandler, SseTarget } from '../../sse/index.js';
import { toPatchbayError } from '../shared/errors.js';
import { trimSlash } from '../shared/mount.js';
import { publishHandler, type AdapterPublishOptions } from '../shared/publish.js';
import type { UploadHandlerLike } from '../shared/upload.js';

export type { AdapterPublishOptions } from '../shared/publish.js';
export type { UploadHandlerLike } from '../shared/upload.js';

/**
 * The path parameters a route's functions see as `request.params`: Fastify's are strings, one
 * per `:name` in the path. Name them for a route with the type parameter `P` (say
 * `{ room: string }`), as Fastify's own `RouteGenericInterface` does with `Params`.
 */
export type RouteParams = Readonly<Record<string, string | undefined>>;

/** A topic route: long polling or SSE. `P` types `request.params` for `target`. */
export interface TopicRoute<H, T, P = RouteParams> {
  /** The handler; the plugin does not close it. */
  readonly handler: H;
  /**
   * The route's path (under the plugin's prefix).
   * @defaultValue `'/lp/:topic'` for long polling, `'/sse/:topic'` for SSE
   */
  readonly path?: string;
  /**
   * What the request follows.
   * @defaultValue `{ topics: [request.params.topic] }` when the path has a `:topic` parameter,
   *   else the handler's own reading of the query (`topic`, repeatable, or `pattern`), only when the handler was made with `queryTarget: true` (and `allowPatterns: true` for `pattern`); without it such a request is a `400`
   */
  readonly target?: (request: FastifyRequest<{ Params: P }>) => T | undefined;
}

/** A handler that routes under a base path itself: jobs or uploads. */
export interface MountedRoute<H> {
  /** The handler; the plugin does not close it. */
  readonly handler: H;
  /**
   * The path the routes live under (under the plugin's prefix): it takes `path` and `path/*`.
   * The handler sees the full URL, so its `basePath` must be the prefix plus this path.
   * @defaultValue `'/jobs'` for jobs, `'/uploads'` for uploads
   */
  readonly path?: string;
}

/** The publish route. `P` types `request.params` for `topic`. */
export interface PublishRoute<P = RouteParams> extends AdapterPublishOptions<FastifyRequest> {
  /** The broker to publish on. */
  readonly broker: PubSubBroker;
  /**
   * The route's path (under the plugin's prefix).
   * @defaultValue `'/pub/:topic'`
   */
  readonly path?: string;
  /**
   * The topic to publish to.
   * @defaultValue `request.params.topic`
   */
  readonly topic?: (request: FastifyRequest<{ Params: P }>) => string | undefined;
}

/**
 * Options for {@link patchbayPlugin}: the routes to register, each optional. `P` types
 * `request.params` in the routes' `target` and `topic` functions (every string param by default).
 */
export interface PatchbayPluginOptions<P = RouteParams> {
  /** `POST /pub/:topic`: publish the body, `201` with `{ "id" }`. */
  readonly publish?: PublishRoute<P>;
  /** `GET /lp/:topic`: long polling. */
  readonly longPoll?: TopicRoute<Pick<LongPollHandler, 'handle'>, LongPollTarget, P>;
  /** `GET /sse/:topic`: Server-Sent Events. */
  readonly sse?: TopicRoute<Pick<SseHandler, 'handle'>, SseTarget, P>;
  /** `/jobs`: short-polled jobs (a `PollHandler`). */
  readonly jobs?: MountedRoute<Pick<PollHandler, 'handle'>>;
  /** `/uploads`: resumable uploads (an `UploadHandler` from `patchbay/upload`). */
  readonly uploads?: MountedRoute<UploadHandlerLike>;
}

const METHODS: HTTPMethods[] = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT'];

/**
 * The Fastify plugin: registers the routes named in its options (see the module documentation
 * for how bodies, responses and errors are handled).
 *
 * @param fastify - The (encapsulated) instance Fastify gives the plugin.
 * @param options - The routes.
 * @typeParam P - The shape of `request.params` in the routes' `target` and `topic` functions
 *   (`app.register(patchbayPlugin<{ room: string }>, ...)`); without it, {@link RouteParams}.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad `maxBodyBytes`.
 *
 * @example
 * ```ts
 * await app.register(patchbayPlugin, {
 *   prefix: '/api',
 *   jobs: { handler: new PollHandler({ jobs, basePath: '/api/jobs', run }) },
 * });
 * await app.register(patchbayPlugin<{ room: string }>, {
 *   longPoll: { handler, path: '/lp/:room', target: (request) => ({ topics: [`room.${request.params.room}`] }) },
 * });
 * ```
 */
export function patchbayPlugin<P>(fastify: FastifyInstance, options: PatchbayPluginOptions<P>): Promise<void>;
/** The plugin with every route's `request.params` read as {@link RouteParams}: what `app.register(patchbayPlugin, ...)` infers. */
export function patchbayPlugin(fastify: FastifyInstance, options: PatchbayPluginOptions): Promise<void>;
export async function patchbayPlugin<P = RouteParams>(fastify: FastifyInstance, options: PatchbayPluginOptions<P>): Promise<void> {
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('*', (_request: FastifyRequest, _payload: IncomingMessage, done: (error: Error | null, body?: unknown) => void) => done(null));
  fastify.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const converted = toPatchbayError(error);
    if (!(converted instanceof PatchbayError)) request.log.error({ err: error }, 'patchbay route failed');
    reply.hijack();
    sendError(reply.raw, converted);
  });

  /** `prepare` reads what the route needs (a target function may throw: the error handler answers); then the reply is the handler's. */
  const serve = (path: string, prepare: (request: FastifyRequest<{ Params: P }>) => (res: ServerResponse) => Promise<unknown>): void => {
    fastify.route({
      method: METHODS,
      url: path,
      handler: async (request: FastifyRequest, reply: FastifyReply) => {
        // Fastify fills params from the path: strings, by the names `P` was given for.
        const run = prepare(request as FastifyRequest<{ Params: P }>);
        reply.hijack();
        await run(reply.raw);
      },
    });
  };

  const { publish, longPoll, sse, jobs, uploads } = options;
  if (publish !== undefined) {
    const handler = publishHandler<FastifyRequest>(publish.broker, publish);
    const topicOf: (request: FastifyRequest<{ Params: P }>) => string | undefined = publish.topic ?? topicParam;
    serve(publish.path ?? '/pub/:topic', (request) => {
      const topic = topicOf(request);
      return (res) => handler.handle(request.raw, res, topic, request);
    });
  }
  if (longPoll !== undefined) {
    const target: (request: FastifyRequest<{ Params: P }>) => LongPollTarget | undefined = longPoll.target ?? topicTarget;
    serve(longPoll.path ?? '/lp/:topic', (request) => {
      const t = target(request);
      return (res) => longPoll.handler.handle(request.raw, res, t);
    });
  }
  if (sse !== undefined) {
    const target: (request: FastifyRequest<{ Params: P }>) => SseTarget | undefined = sse.target ?? topicTarget;
    serve(sse.path ?? '/sse/:topic', (request) => {
      const t = target(request);
      return (res) => sse.handler.handle(request.raw, res, t);
    });
  }
  for (const [route, base] of [
    [jobs, '/jobs'],
    [uploads, '/uploads'],
  ] as const) {
    if (route === undefined) continue;
    const path = trimSlash(route.path ?? base);
    const prepare = (request: FastifyRequest<{ Params: P }>) => (res: ServerResponse) => route.handler.handle(request.raw, res);
    serve(path === '' ? '/' : path, prepare);
    serve(`${path}/*`, prepare);
  }
}

function topicParam(request: FastifyRequest<{ Params: unknown }>): string | undefined {
  const params = request.params as Record<string, unknown> | undefined;
  const topic = params?.['topic'];
  return typeof topic === 'string' ? topic : undefined;
}

function topicTarget(request: FastifyRequest<{ Params: unknown }>): { topics: string[] } | undefined {
  const topic = topicParam(request);
  return topic === undefined ? undefined : { topics: [topic] };
}
