/**
 * `patchbay/web`: the handlers as web-standard `(request: Request) => Promise<Response>`
 * functions, for Hono, Bun, Deno, Cloudflare-style `fetch` exports and anything else built on
 * `Request` and `Response`.
 *
 * Each function runs the same handler object that serves `node:http` (one handler, every
 * framework) through {@link serveNode}, a bridge that gives it a request and a response object
 * backed by web streams: bodies stream both ways with backpressure, and the client going away
 * (`request.signal`, or the runtime canceling the body) reaches the handler as a closed
 * response, so a parked long poll or an SSE stream is dropped at once. See {@link serveNode}
 * for what maps and what does not.
 *
 * @example
 * ```ts
 * import { Hono } from 'hono';
 * import { LongPollHandler, PubSubBroker, SseHandler } from 'patchbay';
 * import { longPoll, publish, sse } from 'patchbay/web';
 *
 * const broker = new PubSubBroker();
 * const lp = longPoll(new LongPollHandler({ broker }));
 * const events = sse(new SseHandler({ broker }));
 * const pub = publish(broker);
 * const app = new Hono();
 * app.all('/pub/:topic', (c) => pub(c.req.raw, c.req.param('topic')));
 * app.all('/lp/:topic', (c) => lp(c.req.raw, { topics: [c.req.param('topic')] }));
 * app.all('/sse/:topic', (c) => events(c.req.raw, { topics: [c.req.param('topic')] }));
 * export default app;
 * ```
 *
 * @module patchbay/web
 */
import type { LongPollHandler, LongPollTarget } from '../../longpoll/index.js';
import type { PollHandler } from '../../poll/index.js';
import type { PubSubBroker } from '../../pubsub/index.js';
import type { SseHandler, SseTarget } from '../../sse/index.js';
import { publishHandler, type AdapterPublishOptions } from '../shared/publish.js';
import type { UploadHandlerLike } from '../shared/upload.js';
import { serveNode, type ServeNodeOptions } from './bridge.js';

export { serveNode, type NodeHandler, type ServeNodeOptions } from './bridge.js';
export type { AdapterPublishOptions } from '../shared/publish.js';
export type { UploadHandlerLike } from '../shared/upload.js';

/** A web-standard request handler. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** Options for {@link publish}: the body limit and who may publish, asked with the web `Request`. */
export type WebPublishOptions = AdapterPublishOptions<Request> & ServeNodeOptions;

/**
 * Long polling (see {@link LongPollHandler.handle}) as a web handler.
 *
 * @param handler - The handler; it is not closed by this function.
 * @param options - Bridge options.
 * @returns A function of the request and the target (omit it to take `topic`/`pattern` from the query, which the handler does only with `queryTarget: true`).
 *
 * @example
 * ```ts
 * const lp = longPoll(new LongPollHandler({ broker }));
 * app.all('/lp/:topic', (c) => lp(c.req.raw, { topics: [c.req.param('topic')] }));
 * ```
 */
export function longPoll(handler: LongPollHandler, options?: ServeNodeOptions): (request: Request, target?: LongPollTarget) => Promise<Response> {
  return (request, target) => serveNode(request, (req, res) => handler.handle(req, res, target), options);
}

/**
 * Server-Sent Events (see {@link SseHandler.handle}) as a web handler. The `Response` comes once
 * the stream starts (after the replay is queued); the client going away closes the stream.
 *
 * @param handler - The handler; it is not closed by this function.
 * @param options - Bridge options.
 * @returns A function of the request and the target (omit it to take `topic`/`pattern` from the query, which the handler does only with `queryTarget: true`).
 *
 * @example
 * ```ts
 * const events = sse(new SseHandler({ broker, heartbeatMs: 15_000 }));
 * app.all('/sse/:topic', (c) => events(c.req.raw, { topics: [c.req.param('topic')] }));
 * ```
 */
export function sse(handler: SseHandler, options?: ServeNodeOptions): (request: Request, target?: SseTarget) => Promise<Response> {
  return (request, target) => serveNode(request, (req, res) => handler.handle(req, res, target), options);
}

/**
 * Short-polled jobs (see {@link PollHandler}) as a web handler. Route every method under the
 * handler's `basePath` to it: the handler reads the path from `request.url`.
 *
 * @param handler - The handler; it is not closed by this function.
 * @param options - Bridge options.
 * @returns The web handler.
 *
 * @example
 * ```ts
 * const jobs = pollJobs(new PollHandler({ jobs: new PollHandle(), basePath: '/jobs', run }));
 * app.all('/jobs', (c) => jobs(c.req.raw));
 * app.all('/jobs/*', (c) => jobs(c.req.raw));
 * ```
 */
export function pollJobs<I, R>(handler: PollHandler<I, R>, options?: ServeNodeOptions): FetchHandler {
  return (request) => serveNode(request, (req, res) => handler.handle(req, res), options);
}

/**
 * Resumable uploads (see `UploadHandler` in `patchbay/upload`) as a web handler. Route every
 * method under the handler's `basePath` to it. The upload's bytes stream through to the store.
 *
 * @param handler - The handler; it is not closed by this function.
 * @param options - Bridge options.
 * @returns The web handler.
 *
 * @example
 * ```ts
 * const tus = uploads(new UploadHandler({ directory: '/var/lib/app/uploads', basePath: '/uploads' }));
 * app.all('/uploads', (c) => tus(c.req.raw));
 * app.all('/uploads/*', (c) => tus(c.req.raw));
 * ```
 */
export function uploads(handler: UploadHandlerLike, options?: ServeNodeOptions): FetchHandler {
  return (request) => serveNode(request, (req, res) => handler.handle(req, res), options);
}

/**
 * Publishing, as the demo's `POST /pub/:topic`: the body (`text/plain` as a string,
 * `application/json` as its value) is published to the topic, answered `201` with `{ "id" }`.
 * Another method is `405`, a bad body `400`/`413`/`415`, a bad topic `400`, all with a JSON
 * error body.
 *
 * @param broker - The broker to publish on.
 * @param options - The body limit, who may publish, bridge options.
 * @returns A function of the request and the topic.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad `maxBodyBytes`.
 *
 * @example
 * ```ts
 * const pub = publish(broker, { maxBodyBytes: 64 * 1024 });
 * app.all('/pub/:topic', (c) => pub(c.req.raw, c.req.param('topic')));
 * ```
 */
export function publish(broker: PubSubBroker, options: WebPublishOptions = {}): (request: Request, topic: string) => Promise<Response> {
  const handler = publishHandler<Request>(broker, options);
  return (request, topic) => serveNode(request, (req, res) => handler.handle(req, res, topic, request), options);
}
