/**
 * `patchbay/express`: the handlers as Express 5 middleware. Install the peer: `npm install express`.
 *
 * Each function returns a middleware that hands Express's `req` and `res` (which are `node:http`'s)
 * to the handler, which answers everything itself, errors included, as JSON. Mount the topic
 * routes with `app.all` so that other methods and CORS preflights reach the handler (it answers
 * `405` with `Allow`), and mount jobs and uploads under the handler's `basePath` with `app.use`.
 * Put them before any body-parsing middleware (or keep it off these paths): the handlers read
 * bodies themselves, with their own limits. {@link routes} registers them all on a router.
 *
 * Express is imported for its types only.
 *
 * @example
 * ```ts
 * import express from 'express';
 * import { LongPollHandler, PollHandle, PollHandler, PubSubBroker, SseHandler } from 'patchbay';
 * import { jsonErrors, longPoll, pollJobs, publish, sse } from 'patchbay/express';
 *
 * const broker = new PubSubBroker();
 * const app = express();
 * app.all('/pub/:topic', publish(broker));
 * app.all('/lp/:topic', longPoll(new LongPollHandler({ broker })));
 * app.all('/sse/:topic', sse(new SseHandler({ broker })));
 * app.use('/jobs', pollJobs(new PollHandler({ jobs: new PollHandle(), run: async () => 42 })));
 * app.use(jsonErrors());
 * app.listen(3000, '127.0.0.1');
 * ```
 *
 * @module patchbay/express
 */
import type { ErrorRequestHandler, IRouter, NextFunction, Request, RequestHandler, Response } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PatchbayError } from '../../core/index.js';
import { sendError } from '../../http/index.js';
import type { LongPollHandler, LongPollTarget } from '../../longpoll/index.js';
import type { PollHandler } from '../../poll/index.js';
import type { PubSubBroker } from '../../pubsub/index.js';
import type { SseHandler, SseTarget } from '../../sse/index.js';
import { bodyAlreadyRead, bodyReadError, toPatchbayError } from '../shared/errors.js';
import { pathOf, within } from '../shared/mount.js';
import { publishHandler, type AdapterPublishOptions } from '../shared/publish.js';
import type { UploadHandlerLike } from '../shared/upload.js';

export type { AdapterPublishOptions } from '../shared/publish.js';
export type { UploadHandlerLike } from '../shared/upload.js';

/** Options for {@link longPoll} and {@link sse}. */
export interface ExpressTopicRouteOptions<T> {
  /**
   * What the request follows.
   * @defaultValue `{ topics: [req.params.topic] }` when the route has a `:topic` parameter, else
   *   the handler's own reading of the query (`topic`, repeatable, or `pattern`), only when the handler was made with `queryTarget: true` (and `allowPatterns: true` for `pattern`); without it such a request is a `400`
   */
  readonly target?: (req: Request) => T | undefined;
}

/** Options for {@link pollJobs} and {@link uploads}. */
export interface ExpressMountOptions {
  /**
   * The handler's `basePath`. When given, a request outside it goes to the next middleware, so
   * the middleware may be mounted without a path (`app.use(pollJobs(handler, { basePath: '/jobs' }))`).
   * A segment that starts with `:` matches any one segment, as in the handler's own `basePath`
   * (`'/rooms/:room/summarize'`).
   * @defaultValue every request that reaches the middleware is the handler's
   */
  readonly basePath?: string;
}

/** Options for {@link publish}. */
export interface ExpressPublishOptions extends AdapterPublishOptions<Request> {
  /**
   * The topic to publish to.
   * @defaultValue `req.params.topic`
   */
  readonly topic?: (req: Request) => string | undefined;
}

/**
 * Long polling (see {@link LongPollHandler.handle}).
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - Where the target comes from.
 * @returns The middleware: mount it with `app.all(path, ...)`.
 *
 * @example
 * ```ts
 * app.all('/lp/:topic', longPoll(new LongPollHandler({ broker })));
 * ```
 */
export function longPoll(handler: LongPollHandler, options: ExpressTopicRouteOptions<LongPollTarget> = {}): RequestHandler {
  const target = options.target ?? topicParam;
  return (req, res, next) => run(req, res, next, () => handler.handle(req, res, target(req)));
}

/**
 * Server-Sent Events (see {@link SseHandler.handle}).
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - Where the target comes from.
 * @returns The middleware: mount it with `app.all(path, ...)`.
 *
 * @example
 * ```ts
 * app.all('/sse/:topic', sse(new SseHandler({ broker, heartbeatMs: 15_000 })));
 * ```
 */
export function sse(handler: SseHandler, options: ExpressTopicRouteOptions<SseTarget> = {}): RequestHandler {
  const target = options.target ?? topicParam;
  return (req, res, next) => run(req, res, next, () => handler.handle(req, res, target(req)));
}

/**
 * Short-polled jobs (see {@link PollHandler}): starts, status reads, results and cancels. The
 * handler sees the full path (`req.originalUrl`), so mount it at its `basePath`.
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - The base path, to let other requests through.
 * @returns The middleware: mount it with `app.use(basePath, ...)`.
 *
 * @example
 * ```ts
 * app.use('/jobs', pollJobs(new PollHandler({ jobs, basePath: '/jobs', run })));
 * ```
 */
export function pollJobs<I, R>(handler: PollHandler<I, R>, options: ExpressMountOptions = {}): RequestHandler {
  return mounted(options.basePath, (req, res) => handler.handle(req, res));
}

/**
 * Resumable uploads (see `UploadHandler` in `patchbay/upload`). The handler sees the full path
 * (`req.originalUrl`), so mount it at its `basePath`.
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - The base path, to let other requests through.
 * @returns The middleware: mount it with `app.use(basePath, ...)`.
 *
 * @example
 * ```ts
 * app.use('/uploads', uploads(new UploadHandler({ directory, basePath: '/uploads' })));
 * ```
 */
export function uploads(handler: UploadHandlerLike, options: ExpressMountOptions = {}): RequestHandler {
  return mounted(options.basePath, (req, res) => handler.handle(req, res));
}

/**
 * Publishing, as the demo's `POST /pub/:topic`: the body (`text/plain` as a string,
 * `application/json` as its value) is published, answered `201` with `{ "id" }`. Another method
 * is `405`, a bad body `400`/`413`/`415`, a bad topic `400`, all as JSON.
 *
 * @param broker - The broker to publish on.
 * @param options - The topic, the body limit, who may publish.
 * @returns The middleware: mount it with `app.all(path, ...)`.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad `maxBodyBytes`.
 *
 * @example
 * ```ts
 * app.all('/pub/:topic', publish(broker, { authorize: (target, req) => req.get('x-api-key') === key }));
 * ```
 */
export function publish(broker: PubSubBroker, options: ExpressPublishOptions = {}): RequestHandler {
  const handler = publishHandler<Request>(broker, options);
  const topicOf = options.topic ?? ((req: Request) => topicParam(req)?.topics[0]);
  return (req, res, next) => run(req, res, next, () => handler.handle(req, res, topicOf(req), req));
}

/** Options for {@link routes}: the routes to register, each optional, at the demo's paths by default. */
export interface RoutesOptions {
  /** `POST /pub/:topic`: publish the body, `201` with `{ "id" }`. */
  readonly publish?: ExpressPublishOptions & {
    /** The broker to publish on. */
    readonly broker: PubSubBroker;
    /**
     * The route's path.
     * @defaultValue `'/pub/:topic'`
     */
    readonly path?: string;
  };
  /** `GET /lp/:topic`: long polling. */
  readonly longPoll?: ExpressTopicRouteOptions<LongPollTarget> & {
    /** The handler; it is not closed by the router. */
    readonly handler: LongPollHandler;
    /**
     * The route's path.
     * @defaultValue `'/lp/:topic'`
     */
    readonly path?: string;
  };
  /** `GET /sse/:topic`: Server-Sent Events. */
  readonly sse?: ExpressTopicRouteOptions<SseTarget> & {
    /** The handler; it is not closed by the router. */
    readonly handler: SseHandler;
    /**
     * The route's path.
     * @defaultValue `'/sse/:topic'`
     */
    readonly path?: string;
  };
  /** `/jobs`: short-polled jobs. */
  readonly jobs?: {
    /** The handler (a `PollHandler` whose `basePath` is this path, under wherever the router is mounted). */
    readonly handler: Pick<PollHandler, 'handle'>;
    /**
     * The path the routes live under.
     * @defaultValue `'/jobs'`
     */
    readonly path?: string;
  };
  /** `/uploads`: resumable uploads. */
  readonly uploads?: {
    /** The handler (an `UploadHandler` from `patchbay/upload` whose `basePath` is this path, under wherever the router is mounted). */
    readonly handler: UploadHandlerLike;
    /**
     * The path the routes live under.
     * @defaultValue `'/uploads'`
     */
    readonly path?: string;
  };
}

/**
 * Registers the routes named in `options` on a router (every method each), then
 * {@link jsonErrors} after them: pass a fresh `express.Router()` and mount it, so the error
 * handler covers these routes only.
 *
 * @param router - The router (or app) to register on.
 * @param options - The routes.
 * @returns `router`.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad `maxBodyBytes`.
 *
 * @example
 * ```ts
 * app.use(routes(express.Router(), {
 *   publish: { broker },
 *   longPoll: { handler: new LongPollHandler({ broker }) },
 *   sse: { handler: new SseHandler({ broker }) },
 *   jobs: { handler: new PollHandler({ jobs, basePath: '/jobs', run }) },
 * }));
 * ```
 */
export function routes<T extends IRouter>(router: T, options: RoutesOptions): T {
  const { publish: pub, longPoll: lp, sse: events, jobs, uploads: files } = options;
  if (pub !== undefined) router.all(pub.path ?? '/pub/:topic', publish(pub.broker, pub));
  if (lp !== undefined) router.all(lp.path ?? '/lp/:topic', longPoll(lp.handler, lp));
  if (events !== undefined) router.all(events.path ?? '/sse/:topic', sse(events.handler, events));
  if (jobs !== undefined) router.use(jobs.path ?? '/jobs', mounted(undefined, (req, res) => jobs.handler.handle(req, res)));
  if (files !== undefined) router.use(files.path ?? '/uploads', mounted(undefined, (req, res) => files.handler.handle(req, res)));
  router.use(jsonErrors());
  return router;
}

/**
 * An error-handling middleware that answers what reaches Express's error path on patchbay's
 * terms: a {@link PatchbayError} with its status and JSON body, a client error from Express
 * itself (a path parameter that is not valid percent-encoding, a body parser's `400`) with the
 * matching code, anything else `500` `PB_ERR_INTERNAL` (its message is not sent). Mount it last.
 *
 * @returns The error middleware.
 *
 * @example
 * ```ts
 * app.use(jsonErrors());
 * ```
 */
export function jsonErrors(): ErrorRequestHandler {
  return (error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    sendError(res, toPatchbayError(error));
  };
}

function topicParam(req: Request): { topics: string[] } | undefined {
  const topic = (req.params as Record<string, unknown>)['topic'];
  return typeof topic === 'string' ? { topics: [topic] } : undefined;
}

/** Runs a handler; a PatchbayError thrown on the way (by a target function) is answered as JSON, anything else goes to `next`. */
function run(req: Request, res: Response, next: NextFunction, serve: () => Promise<unknown>): void {
  if (bodyAlreadyRead(req)) {
    next(bodyReadError());
    return;
  }
  let pending: Promise<unknown>;
  try {
    pending = serve();
  } catch (error) {
    if (error instanceof PatchbayError) sendError(res, error);
    else next(error);
    return;
  }
  pending.catch(next);
}

function mounted(basePath: string | undefined, serve: (req: IncomingMessage, res: ServerResponse) => Promise<unknown>): RequestHandler {
  return (req, res, next) => {
    if (basePath !== undefined && !within(pathOf(req.originalUrl), basePath)) {
      next();
      return;
    }
    const url = req.url;
    // A mounted middleware sees req.url without the mount path; the handler routes on the full one.
    req.url = req.originalUrl;
    run(req, res, (error?: unknown) => {
      req.url = url;
      next(error);
    }, () => serve(req, res));
  };
}
