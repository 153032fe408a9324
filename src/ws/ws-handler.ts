/**
 * Push over WebSocket for a {@link PubSubBroker}'s topics, on the `ws` package.
 *
 * One socket subscribes and unsubscribes to topics and patterns under ids of its own choosing,
 * publishes (when `authorize.publish` allows), and receives each message with its broker id. The
 * protocol is small JSON text frames (see {@link WS_SUBPROTOCOL} and `protocol.ts`): a client
 * that reconnects resubscribes with the last id it received as `cursor` and gets the log after
 * it, then live messages, with no gap and no duplicate at the seam, as long polling and SSE do;
 * when the log no longer holds everything after the cursor, a `gap` frame says so first.
 *
 * Upgrades are authorized before they are accepted (`authorize.upgrade`, which also gives the
 * connection its context), and each subscription and publish again (`authorize.subscribe`,
 * `authorize.publish`). One timer, on the injected clock, pings every connection each
 * `heartbeatMs` and terminates those that did not answer the previous ping. Each connection's
 * send buffer is bounded, with the same overflow policies as SSE (see {@link WsConnection}), and
 * frames are size-limited: a frame over `maxMessageBytes` is answered with an error and
 * ignored, one over `maxPayloadBytes` is not even read (the socket closes with 1009).
 *
 * @module
 */
import { type IncomingMessage, type Server as HttpServer, STATUS_CODES } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { Clock, ClockTimer } from '../core/clock.js';
import { ClosedError, ErrorCodes, ForbiddenError, InvalidArgumentError, InvalidStateError, MethodNotAllowedError, NotFoundError, PatchbayError, ProtocolError } from '../core/errors.js';
import { Resource } from '../core/lifecycle.js';
import * as check from '../core/validate.js';
import { checkMaxDepth, DEFAULT_MAX_JSON_DEPTH } from '../core/json.js';
import { errorStatus } from '../http/respond.js';
import { FlushSlicer } from '../http/push-pacing.js';
import type { AccessVerdict, Authorize, Message, PubSubBroker, TopicTarget } from '../pubsub/index.js';
import { type ConnectionHost, type Counters, WsConnection, wsChannels, type WsCloseReason, type WsOverflowPolicy } from './connection.js';
import { messageTail, WS_SUBPROTOCOL } from './protocol.js';
import { checkBroker } from '../pubsub/broker.js';

/** Authorization hooks of a {@link WsHandler}. */
export interface WsAuthorize {
  /**
   * Called with the upgrade request before it is accepted (nothing is written to the socket
   * before it returns). Return a truthy value to accept: it becomes the connection's `context`,
   * passed to the other hooks and to the broker's own `authorize` hooks (return `true` when you
   * need none). A falsy value refuses with `403`; a thrown {@link PatchbayError} refuses with its
   * status (`errorStatus`), anything else thrown with `500`. Check `Origin` here: browsers send
   * cookies with cross-site WebSocket upgrades.
   */
  readonly upgrade?: (req: IncomingMessage) => unknown;
  /**
   * May this connection subscribe to `target` (`{ topics }`, or `{ pattern }` when
   * `allowPatterns` is set)? `context` is what `upgrade` returned. `true` allows; a grant
   * (`{ identity?, canRead? }`) allows and says more: `canRead(topic)` is asked for every topic
   * the subscription meets, and a message of a topic it refuses is never sent, replayed or live;
   * `identity` is kept with the subscription ({@link WsConnection.identity}). Anything else
   * answers `PB_ERR_FORBIDDEN`.
   *
   * A pattern is a set of topics: test it with `targetOverlaps(target, 'admin.>')`, never by
   * its text (`admin.*`, `>` and `*.secret` all reach `admin.secret`), or answer with `canRead`.
   *
   * @example
   * ```ts
   * subscribe: (target, context) => !targetOverlaps(target, 'admin.>') || isAdmin(context)
   * ```
   */
  readonly subscribe?: Authorize<unknown>;
  /**
   * May this connection publish `data` on the topic `target.topics[0]`? `context` is what
   * `upgrade` returned. `true` (or a grant) allows; anything else answers `PB_ERR_FORBIDDEN`.
   * Without this hook nobody may publish over the WebSocket.
   */
  readonly publish?: (target: TopicTarget, context: unknown, data: unknown) => AccessVerdict | Promise<AccessVerdict>;
}

/** Options for {@link WsHandler}. */
export interface WsHandlerOptions {
  /** The broker whose topics are served. The handler does not close it. */
  readonly broker: PubSubBroker;
  /** Authorization hooks: on upgrade, per subscription, per publish. */
  readonly authorize?: WsAuthorize;
  /**
   * Whether a `subscribe` frame may give a `pattern` (`*` one token, `>` the rest). Without it,
   * such a frame is answered with `PB_ERR_FORBIDDEN`, and clients subscribe to lists of topics.
   * Turn it on only with an `authorize.subscribe` hook that tests patterns with
   * `targetOverlaps` or answers with `canRead`, unless every topic is public.
   * @defaultValue `false`
   */
  readonly allowPatterns?: boolean;
  /**
   * Deepest nesting of objects and arrays in a client frame (the frame itself counts 1, so a
   * `publish` frame's `data` may nest one less). A deeper frame is answered with
   * `PB_ERR_PROTOCOL` and ignored.
   * @defaultValue 64 (`DEFAULT_MAX_JSON_DEPTH`)
   */
  readonly maxFrameDepth?: number;
  /**
   * Largest client frame handled, in bytes. A larger one (up to `maxPayloadBytes`) is answered
   * with `PB_ERR_BODY_TOO_LARGE` and ignored; the connection stays open.
   * @defaultValue 65536 (64 KiB)
   */
  readonly maxMessageBytes?: number;
  /**
   * Largest client frame read at all (the `ws` `maxPayload`), in bytes: past it the socket is
   * closed with code 1009 without reading the rest. At least `maxMessageBytes`.
   * @defaultValue 1 MiB, or `maxMessageBytes` when that is larger
   */
  readonly maxPayloadBytes?: number;
  /**
   * Most bytes held for one connection: what its socket holds (`bufferedAmount`) plus what is
   * queued, past which the overflow policy acts. Replays from a cursor have a budget of their
   * own, the same size, shared by all of the connection's replays: the log is read page by page
   * as the client reads, never dropped or cut, so at most twice this is held in all.
   * @defaultValue 1 MiB
   */
  readonly maxBufferedBytes?: number;
  /**
   * What to do past `maxBufferedBytes` (see {@link WsConnection}).
   * @defaultValue `'close'` (the client resumes from its last id: nothing is lost)
   */
  readonly overflow?: WsOverflowPolicy;
  /**
   * Every connection is pinged this often, in ms, and terminated when it did not answer the
   * previous ping (any frame counts as an answer): a dead peer is gone within two intervals.
   * `0` disables heartbeats.
   * @defaultValue 30000
   */
  readonly heartbeatMs?: number;
  /**
   * Most subscriptions one connection may hold.
   * @defaultValue 100
   */
  readonly maxSubscriptions?: number;
  /**
   * Most topics in one subscription's `topics` list.
   * @defaultValue 32
   */
  readonly maxTopics?: number;
  /**
   * Client frames waiting to be handled before the socket stops being read (TCP backpressure);
   * reading resumes when half of them are done.
   * @defaultValue 32
   */
  readonly maxInFlightFrames?: number;
  /**
   * Connections flushed per event-loop turn; the rest wait for the next turn, so a huge fan-out
   * cannot stall the loop.
   * @defaultValue 2000
   */
  readonly flushSliceSize?: number;
  /**
   * How long `close()` waits for clients to answer the close frame, in ms, before terminating
   * the rest.
   * @defaultValue 5000
   */
  readonly closeTimeoutMs?: number;
  /**
   * The time source (heartbeats, the close timeout).
   * @defaultValue the real clock
   */
  readonly clock?: Clock;
  /**
   * Called when a hook throws something other than a {@link PatchbayError} (`connection` is
   * `undefined` for `authorize.upgrade`), or a send fails. The client gets `PB_ERR_INTERNAL`
   * (or a `500`) without the error's message either way; the error is also published on the
   * `patchbay:ws:error` diagnostics channel.
   */
  readonly onError?: (error: unknown, connection: WsConnection | undefined) => void;
}

/** Options for {@link WsHandler.attach}. */
export interface WsAttachOptions {
  /**
   * Only upgrades to this path (query string aside) are served. Others are left to the server's
   * other `upgrade` listeners, or answered `404` when this is the only one.
   * @defaultValue every path
   */
  readonly path?: string;
}

/** Counters reported by {@link WsHandler.stats}. */
export interface WsHandlerStats {
  /** Open connections. */
  readonly connections: number;
  /** Live subscriptions over all connections. */
  readonly subscriptions: number;
  /** Message frames written. */
  readonly messagesSent: number;
  /** Bytes queued over all connections now. */
  readonly bytesQueued: number;
  /** Messages dropped or replaced by overflow policies. */
  readonly drops: number;
  /** Connections closed by the `close` overflow policy (or a reply that could not fit). */
  readonly overflowCloses: number;
  /** Connections terminated for not answering a ping. */
  readonly reaped: number;
  /** Pings sent. */
  readonly pings: number;
  /** Messages published by clients. */
  readonly published: number;
  /** Client frames answered with an error. */
  readonly refusedFrames: number;
  /** Upgrades refused (authorization, closed handler, bad handshake). */
  readonly refusedUpgrades: number;
  /** Subscriptions that resumed from a cursor. */
  readonly replays: number;
  /** Messages replayed in total. */
  readonly replayedMessages: number;
  /** Resumes whose cursor had fallen off the log. */
  readonly gaps: number;
}

const POLICIES: readonly WsOverflowPolicy[] = ['close', 'drop-oldest', 'coalesce'];
const MESSAGE_HEAD = '{"type":"message","sid":';

/**
 * Serves the WebSocket push protocol for a broker's topics.
 *
 * @example
 * ```ts
 * import http from 'node:http';
 * import { PubSubBroker, targetOverlaps } from 'patchbay';
 * import { WsHandler } from 'patchbay/ws';
 *
 * const broker = new PubSubBroker();
 * const ws = new WsHandler({
 *   broker,
 *   authorize: {
 *     upgrade: (req) => req.headers.origin === 'https://app.example' && { user: userFrom(req) },
 *     subscribe: (target, context) => !targetOverlaps(target, 'admin.>') || isAdmin(context),
 *     publish: (target) => target.topics?.[0]?.startsWith('chat.') === true,
 *   },
 *   allowPatterns: true, // the subscribe hook above is safe for patterns
 * });
 * const server = http.createServer(app);
 * ws.attach(server, { path: '/ws' });
 * server.listen(3000);
 * // client: new WebSocket('ws://host/ws').send(JSON.stringify({ type: 'subscribe', sid: 's1', pattern: 'chat.*' }))
 * ```
 */
export class WsHandler extends Resource {
  readonly #broker: PubSubBroker;
  readonly #authorize: WsAuthorize;
  readonly #clock: Clock;
  readonly #heartbeatMs: number;
  readonly #closeTimeoutMs: number;
  readonly #onError: WsHandlerOptions['onError'];
  readonly #wss: WebSocketServer;
  readonly #host: ConnectionHost;
  readonly #counters: Counters = {
    subscriptions: 0,
    messagesSent: 0,
    drops: 0,
    overflowCloses: 0,
    reaped: 0,
    published: 0,
    refusedFrames: 0,
    replays: 0,
    replayedMessages: 0,
    gaps: 0,
    pings: 0,
  };
  readonly #connections = new Set<WsConnection>();
  /** Every socket until its close event: a connection that ended may still be closing. */
  readonly #sockets = new Set<WebSocket>();
  readonly #detachers = new Set<() => void>();
  #refusedUpgrades = 0;
  #nextId = 1;
  readonly #flusher: FlushSlicer<WsConnection>;
  #timer: ClockTimer | null = null;
  #allClosed: (() => void) | null = null;
  // The frame of the last message, per subscription id: a broadcast serializes once.
  #lastMessage: Message | undefined;
  #lastTail: string | undefined;
  #lastSid = '';
  #lastFrame: Buffer | undefined;
  readonly #frames = new Map<string, Buffer>();

  /** @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) on an invalid option. */
  constructor(options: WsHandlerOptions) {
    super();
    const opts = check.optionsObject('options', options) as WsHandlerOptions;
    this.#broker = checkBroker('broker', opts.broker);
    this.#authorize = check.optionsObject('authorize', opts.authorize);
    check.optionalFunction('authorize.upgrade', this.#authorize.upgrade);
    check.optionalFunction('authorize.subscribe', this.#authorize.subscribe);
    check.optionalFunction('authorize.publish', this.#authorize.publish);
    this.#clock = check.optionalClock('clock', opts.clock);
    const maxMessageBytes = check.integerInRange('maxMessageBytes', opts.maxMessageBytes ?? 64 * 1024, 64, 2 ** 31 - 1);
    const maxPayloadBytes = check.integerInRange('maxPayloadBytes', opts.maxPayloadBytes ?? Math.max(1024 * 1024, maxMessageBytes), maxMessageBytes, 2 ** 31 - 1);
    const maxBufferedBytes = check.integerInRange('maxBufferedBytes', opts.maxBufferedBytes ?? 1024 * 1024, 1, Number.MAX_SAFE_INTEGER);
    const overflow = check.oneOf('overflow', opts.overflow, POLICIES, 'close');
    this.#heartbeatMs = check.integerInRange('heartbeatMs', opts.heartbeatMs ?? 30_000, 0, 2 ** 31 - 1);
    const maxSubscriptions = check.integerInRange('maxSubscriptions', opts.maxSubscriptions ?? 100, 1, 1_000_000);
    const maxTopics = check.integerInRange('maxTopics', opts.maxTopics ?? 32, 1, 10_000);
    const maxInFlightFrames = check.integerInRange('maxInFlightFrames', opts.maxInFlightFrames ?? 32, 1, 1_000_000);
    const maxFrameDepth = checkMaxDepth('maxFrameDepth', opts.maxFrameDepth ?? DEFAULT_MAX_JSON_DEPTH);
    const allowPatterns = check.optionalBoolean('allowPatterns', opts.allowPatterns);
    this.#flusher = new FlushSlicer(this.#clock, check.integerInRange('flushSliceSize', opts.flushSliceSize ?? 2000, 1, 2 ** 31 - 1));
    this.#closeTimeoutMs = check.integerInRange('closeTimeoutMs', opts.closeTimeoutMs ?? 5000, 0, 2 ** 31 - 1);
    this.#onError = check.optionalFunction('onError', opts.onError);

    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false, // one shared Buffer per broadcast; compression would be per socket
      maxPayload: maxPayloadBytes,
      handleProtocols: (protocols: Set<string>) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
    // Handshakes `ws` refuses (bad method, headers or version) are answered here, as JSON.
    this.#wss.on('wsClientError', (error: Error, socket: Duplex, req: IncomingMessage) => {
      this.#refusedUpgrades++;
      if (error.message === 'Invalid HTTP method') refuseUpgrade(socket, new MethodNotAllowedError(String(req?.method ?? 'this').slice(0, 32), ['GET']));
      else refuseUpgrade(socket, new ProtocolError(`Not a valid WebSocket handshake: ${error.message}`), error.message.includes('Version') ? { 'Sec-WebSocket-Version': '13' } : {});
    });

    const counters = this.#counters;
    this.#host = {
      broker: this.#broker,
      authorize: { subscribe: this.#authorize.subscribe, publish: this.#authorize.publish },
      maxBufferedBytes,
      overflow,
      maxMessageBytes,
      maxFrameDepth,
      allowPatterns,
      maxInFlightFrames,
      maxSubscriptions,
      maxTopics,
      counters,
      dropped: (connection, sid, policy) => {
        counters.drops++;
        if (wsChannels.drop.hasSubscribers) wsChannels.drop.publish({ connection, sid, policy });
      },
      frame: (m, sid) => this.#frame(m, sid),
      markDirty: (c) => this.#flusher.add(c),
      ended: (c, reason) => this.#ended(c, reason),
      socketClosed: (ws) => {
        this.#sockets.delete(ws);
        if (this.#sockets.size === 0) this.#allClosed?.();
      },
      reportError: (error, c) => this.#reportError(error, c),
    };
  }

  /** Counters. */
  stats(): WsHandlerStats {
    let bytesQueued = 0;
    for (const c of this.#connections) bytesQueued += c.stats().bytesQueued;
    const k = this.#counters;
    return {
      connections: this.#connections.size,
      subscriptions: k.subscriptions,
      messagesSent: k.messagesSent,
      bytesQueued,
      drops: k.drops,
      overflowCloses: k.overflowCloses,
      reaped: k.reaped,
      pings: k.pings,
      published: k.published,
      refusedFrames: k.refusedFrames,
      refusedUpgrades: this.#refusedUpgrades,
      replays: k.replays,
      replayedMessages: k.replayedMessages,
      gaps: k.gaps,
    };
  }

  /** The open connections. */
  connections(): WsConnection[] {
    return [...this.#connections];
  }

  /**
   * Serves WebSocket upgrades on `server` (its `upgrade` event) until the returned handle is
   * disposed or the handler closes.
   *
   * @returns A `Disposable` that stops serving (open connections stay).
   * @throws ClosedError (`PB_ERR_CLOSED`) after close.
   */
  attach(server: HttpServer | HttpsServer, options?: WsAttachOptions): Disposable {
    this.assertOpen('attach');
    const opts = check.optionsObject('options', options);
    const path = opts.path;
    if (path !== undefined && (typeof path !== 'string' || !path.startsWith('/'))) {
      throw new InvalidArgumentError(`Expected \`path\` to be a path starting with "/", got ${check.describe(path)}`);
    }
    const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      if (path !== undefined) {
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        const pathname = q === -1 ? url : url.slice(0, q);
        if (pathname !== path) {
          if (server.listenerCount('upgrade') === 1) {
            this.#refusedUpgrades++;
            refuseUpgrade(socket, new NotFoundError(`No WebSocket endpoint at ${JSON.stringify(pathname.slice(0, 100))}`));
          }
          return;
        }
      }
      void this.handleUpgrade(req, socket, head);
    };
    server.on('upgrade', listener);
    const detach = (): void => {
      server.off('upgrade', listener);
    };
    this.#detachers.add(detach);
    return {
      [Symbol.dispose]: () => {
        detach();
        this.#detachers.delete(detach);
      },
    };
  }

  /**
   * Serves one upgrade request (from a server's `upgrade` event): runs `authorize.upgrade`, then
   * completes the handshake. A refusal is answered on the socket as HTTP with a JSON error body
   * (`{ "error": { "code", "message" } }`) and the socket is closed.
   *
   * @returns The connection, or `undefined` when the upgrade was refused or the client left
   *   meanwhile. Never rejects.
   */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<WsConnection | undefined> {
    // A reset while the hook runs must not become an uncaught 'error'.
    const swallow = (): void => {};
    socket.on('error', swallow);
    try {
      this.assertOpen('handleUpgrade');
      let context: unknown = true;
      const hook = this.#authorize.upgrade;
      if (hook !== undefined) {
        context = await hook(req);
        if (!context) throw new ForbiddenError('Not allowed to open a WebSocket here');
      }
      if (socket.destroyed) return undefined;
      this.assertOpen('handleUpgrade');
      let connection: WsConnection | undefined;
      // `ws` completes (or refuses, through 'wsClientError') synchronously: no verifyClient.
      this.#wss.handleUpgrade(req, socket, head, (ws) => {
        connection = this.#accept(ws, socket, context);
      });
      return connection;
    } catch (error) {
      this.#refusedUpgrades++;
      if (!(error instanceof PatchbayError)) this.#reportError(error, undefined);
      refuseUpgrade(socket, error instanceof ClosedError ? new ClosedError('The server is shutting down') : error);
      return undefined;
    } finally {
      socket.off('error', swallow);
    }
  }

  /**
   * Serves an already open WebSocket, for apps that run their own `WebSocketServer`
   * (`wss.on('connection', (ws) => handler.accept(ws, context))`). That server's own options
   * (`maxPayload`, compression) and its upgrade checks apply instead of this handler's.
   *
   * @param context - The connection's context for the `subscribe` and `publish` hooks.
   * @defaultValue `context = true`
   * @throws ClosedError (`PB_ERR_CLOSED`) after close; InvalidStateError (`PB_ERR_INVALID_STATE`)
   *   for a socket that is not open.
   */
  accept(ws: WebSocket, context: unknown = true): WsConnection {
    this.assertOpen('accept');
    if (ws.readyState !== ws.OPEN) throw new InvalidStateError('accept() takes an open WebSocket');
    return this.#accept(ws, undefined, context);
  }

  #accept(ws: WebSocket, socket: Duplex | undefined, context: unknown): WsConnection {
    const connection = new WsConnection(this.#host, this.#nextId++, ws, socket, context);
    this.#connections.add(connection);
    this.#sockets.add(ws);
    this.#arm();
    if (wsChannels.open.hasSubscribers) wsChannels.open.publish({ connection });
    return connection;
  }

  /** Each message is serialized once per subscription id: a broadcast hands every socket the same bytes. */
  #frame(m: Message, sid: string): Buffer | undefined {
    if (m !== this.#lastMessage) {
      this.#lastMessage = m;
      this.#lastTail = messageTail(m.id, m.topic, m.data, m.headers);
      this.#lastFrame = undefined;
      this.#frames.clear();
    } else if (sid === this.#lastSid && this.#lastFrame !== undefined) {
      return this.#lastFrame;
    }
    const tail = this.#lastTail;
    if (tail === undefined) return undefined;
    let frame = this.#frames.get(sid);
    if (frame === undefined) {
      frame = Buffer.from(`${MESSAGE_HEAD}${JSON.stringify(sid)},${tail}`);
      this.#frames.set(sid, frame);
    }
    this.#lastSid = sid;
    this.#lastFrame = frame;
    return frame;
  }

  #ended(connection: WsConnection, reason: WsCloseReason): void {
    if (!this.#connections.delete(connection)) return;
    if (this.#connections.size === 0) this.#disarm();
    if (wsChannels.close.hasSubscribers) wsChannels.close.publish({ connection, reason });
  }

  #reportError(error: unknown, connection: WsConnection | undefined): void {
    if (wsChannels.error.hasSubscribers) wsChannels.error.publish({ connection, error });
    this.#onError?.(error, connection);
  }

  #arm(): void {
    if (this.#timer !== null || this.#heartbeatMs === 0 || this.closed) return;
    this.#timer = this.#clock.setTimer(this.#sweep, this.#heartbeatMs);
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }

  readonly #sweep = (): void => {
    this.#timer = null;
    for (const c of [...this.#connections]) c._heartbeat();
    if (this.#connections.size > 0) this.#arm();
  };

  #stopServing(): void {
    for (const detach of this.#detachers) detach();
    this.#detachers.clear();
    this.#disarm();
  }

  protected async onClose(): Promise<void> {
    this.#stopServing();
    for (const c of [...this.#connections]) c._shutdown(false);
    if (this.#sockets.size > 0) {
      let timer: ClockTimer | undefined;
      await new Promise<void>((resolve) => {
        this.#allClosed = resolve;
        timer = this.#clock.setTimer(() => {
          for (const ws of this.#sockets) ws.terminate();
        }, this.#closeTimeoutMs);
      });
      timer?.cancel();
      this.#allClosed = null;
    }
    this.#wss.close();
  }

  protected onDestroy(): void {
    this.#stopServing();
    for (const c of [...this.#connections]) c._shutdown(true);
    for (const ws of this.#sockets) ws.terminate();
    this.#wss.close();
  }
}

/**
 * Answers a refused upgrade as HTTP with a JSON error body, then closes the socket. A
 * {@link PatchbayError} gets its status and code; anything else `500` `PB_ERR_INTERNAL` without
 * its message.
 */
function refuseUpgrade(socket: Duplex, error: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const known = error instanceof PatchbayError;
  const status = known ? (errorStatus[error.code] ?? 500) : 500;
  const body = JSON.stringify({ error: known ? { code: error.code, message: error.message } : { code: ErrorCodes.INTERNAL, message: 'Internal server error' } });
  const extra: Record<string, string> = { ...headers };
  if (error instanceof MethodNotAllowedError) extra['Allow'] = error.allow.join(', ');
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Connection: close',
    'Cache-Control: no-store',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.once('finish', () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
