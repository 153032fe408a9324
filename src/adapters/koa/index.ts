/**
 * `patchbay/koa`: the handlers as Koa 3 middleware. Install the peer: `npm install koa`.
 *
 * Each middleware sets `ctx.respond = false` and hands `ctx.req` and `ctx.res` (which are
 * `node:http`'s) to the handler, which answers everything itself, errors included, as JSON. Route
 * the topic middleware for every method (with `@koa/router`, `router.all(...)`) so that other
 * methods and CORS preflights reach the handler; give jobs and uploads their `basePath` (requests
 * outside it go on to `next`). Keep body parsers off these paths: the handlers read bodies
 * themselves, with their own limits.
 *
 * Koa is imported for its types only.
 *
 * @example
 * ```ts
 * import Koa from 'koa';
 * import Router from '@koa/router';
 * import { LongPollHandler, PubSubBroker, SseHandler } from 'patchbay';
 * import { longPoll, publish, sse } from 'patchbay/koa';
 *
 * const broker = new PubSubBroker();
 * const router = new Router();
 * router.all('/pub/:topic', publish(broker));
 * router.all('/lp/:topic', longPoll(new LongPollHandler({ broker })));
 * router.all('/sse/:topic', sse(new SseHandler({ broker })));
 * new Koa().use(router.routes()).listen(3000, '127.0.0.1');
 * ```
 *
 * @module patchbay/koa
 */
import type { Context, Middleware, Next } from 'koa';
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
export interface KoaTopicRouteOptions<T> {
  /**
   * What the request follows.
   * @defaultValue `{ topics: [ctx.params.topic] }` when a router gave a `:topic` parameter, else
   *   the handler's own reading of the query (`topic`, repeatable, or `pattern`), only when the handler was made with `queryTarget: true` (and `allowPatterns: true` for `pattern`); without it such a request is a `400`
   */
  readonly target?: (ctx: Context) => T | undefined;
}

/** Options for {@link pollJobs} and {@link uploads}. */
export interface KoaMountOptions {
  /**
   * The handler's `basePath`. When given, a request outside it goes on to `next`, so the
   * middleware can sit in the app's chain without a router. A segment that starts with `:`
   * matches any one segment, as in the handler's own `basePath` (`'/rooms/:room/summarize'`).
   * @defaultValue every request that reaches the middleware is the handler's
   */
  readonly basePath?: string;
}

/** Options for {@link publish}. */
export interface KoaPublishOptions extends AdapterPublishOptions<Context> {
  /**
   * The topic to publish to.
   * @defaultValue `ctx.params.topic` (from a router)
   */
  readonly topic?: (ctx: Context) => string | undefined;
}

/**
 * Long polling (see {@link LongPollHandler.handle}).
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - Where the target comes from.
 * @returns The middleware: route it for every method (`router.all`).
 *
 * @example
 * ```ts
 * router.all('/lp/:topic', longPoll(new LongPollHandler({ broker })));
 * ```
 */
export function longPoll(handler: LongPollHandler, options: KoaTopicRouteOptions<LongPollTarget> = {}): Middleware {
  const target = options.target ?? topicParam;
  return (ctx) => run(ctx, () => handler.handle(ctx.req, ctx.res, target(ctx)));
}

/**
 * Server-Sent Events (see {@link SseHandler.handle}).
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - Where the target comes from.
 * @returns The middleware: route it for every method (`router.all`).
 *
 * @example
 * ```ts
 * router.all('/sse/:topic', sse(new SseHandler({ broker, heartbeatMs: 15_000 })));
 * ```
 */
export function sse(handler: SseHandler, options: KoaTopicRouteOptions<SseTarget> = {}): Middleware {
  const target = options.target ?? topicParam;
  return (ctx) => run(ctx, () => handler.handle(ctx.req, ctx.res, target(ctx)));
}

/**
 * Short-polled jobs (see {@link PollHandler}). The handler routes on the full path
 * (`ctx.originalUrl`).
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - The base path, to let other requests through.
 * @returns The middleware.
 *
 * @example
 * ```ts
 * app.use(pollJobs(new PollHandler({ jobs, basePath: '/jobs', run }), { basePath: '/jobs' }));
 * ```
 */
export function pollJobs<I, R>(handler: PollHandler<I, R>, options: KoaMountOptions = {}): Middleware {
  return mounted(options.basePath, (ctx) => handler.handle(ctx.req, ctx.res));
}

/**
 * Resumable uploads (see `UploadHandler` in `patchbay/upload`). The handler routes on the full
 * path (`ctx.originalUrl`).
 *
 * @param handler - The handler; it is not closed by the middleware.
 * @param options - The base path, to let other requests through.
 * @returns The middleware.
 *
 * @example
 * ```ts
 * app.use(uploads(new UploadHandler({ directory, basePath: '/uploads' }), { basePath: '/uploads' }));
 * ```
 */
export function uploads(handler: UploadHandlerLike, options: KoaMountOptions = {}): Middleware {
  return mounted(options.basePath, (ctx) => handler.handle(ctx.req, ctx.res));
}

/**
 * Publishing, as the demo's `POST /pub/:topic`: the body (`text/plain` as a string,
 * `application/json` as its value) is published, answered `201` with `{ "id" }`. Another method
 * is `405`, a bad body `400`/`413`/`415`, a bad topic `400`, all as JSON.
 *
 * @param broker - The broker to publish on.
 * @param options - The topic, the body limit, who may publish.
 * @returns The middleware: route it for every method (`router.all`).
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a bad `maxBodyBytes`.
 *
 * @example
 * ```ts
 * router.all('/pub/:topic', publish(broker, { authorize: (target, ctx) => ctx.get('x-api-key') === key }));
 * ```
 */
export function publish(broker: PubSubBroker, options: KoaPublishOptions = {}): Middleware {
  const handler = publishHandler<Context>(broker, options);
  const topicOf = options.topic ?? ((ctx: Context) => params(ctx)['topic']);
  return (ctx) => run(ctx, () => handler.handle(ctx.req, ctx.res, topicOf(ctx), ctx));
}

/**
 * A middleware that answers errors thrown further down the chain on patchbay's terms: a
 * {@link PatchbayError} with its status and JSON body, a client error (`ctx.throw(400)`, a
 * router's `405`/`501`) with the matching code, anything else `500` `PB_ERR_INTERNAL` (its
 * message is not sent, and the error is re-emitted on the app for logging). Use it first.
 *
 * @returns The middleware.
 *
 * @example
 * ```ts
 * app.use(jsonErrors());
 * ```
 */
export function jsonErrors(): Middleware {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
    } catch (error) {
      if (ctx.headerSent || !ctx.writable) throw error;
      const converted = toPatchbayError(error);
      if (!(converted instanceof PatchbayError)) ctx.app.emit('error', error, ctx);
      ctx.respond = false;
      sendError(ctx.res, converted);
    }
  };
}

function params(ctx: Context): Record<string, string | undefined> {
  return (ctx as Context & { params?: Record<string, string | undefined> }).params ?? {};
}

function topicParam(ctx: Context): { topics: string[] } | undefined {
  const topic = params(ctx)['topic'];
  return typeof topic === 'string' ? { topics: [topic] } : undefined;
}

/** Takes the response away from Koa and runs a handler; a PatchbayError thrown on the way (by a target function) is answered as JSON. */
async function run(ctx: Context, serve: () => Promise<unknown>): Promise<void> {
  if (bodyAlreadyRead(ctx.req)) throw bodyReadError();
  let pending: Promise<unknown>;
  try {
    pending = serve();
  } catch (error) {
    if (!(error instanceof PatchbayError)) throw error;
    ctx.respond = false;
    sendError(ctx.res, error);
    return;
  }
  ctx.respond = false;
  await pending;
}

function mounted(basePath: string | undefined, serve: (ctx: Context) => Promise<unknown>): Middleware {
  return (ctx, next) => {
    if (basePath !== undefined && !within(pathOf(ctx.originalUrl), basePath)) return next();
    // koa-mount and routers with prefixes rewrite ctx.url; the handler routes on the full one.
    ctx.req.url = ctx.originalUrl;
    return run(ctx, () => serve(ctx));
  };
}
