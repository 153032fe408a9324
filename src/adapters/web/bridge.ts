/**
 * The bridge from a web `Request` to a `node:http`-style handler and back to a web `Response`.
 *
 * patchbay's handlers speak `(req: IncomingMessage, res: ServerResponse)`. Rather than keep a
 * second, web-standard copy of each, this module hands them a request and a response object with
 * the parts of those two classes that Node code uses, backed by web streams:
 *
 * - The request is a `Readable` that pulls the `Request`'s body on demand (so a body limit stops
 *   reading early), with `method`, `url` (path and query), `headers` (lower-cased, as Node gives
 *   them), `headersDistinct`, `rawHeaders`, `complete`, `aborted` and a stub `socket`.
 * - The response is a `Writable` with `statusCode`, `setHeader`/`appendHeader`/`getHeader`/
 *   `removeHeader`, `writeHead`, `flushHeaders`, `headersSent`, `write`, `end` and `destroy`, the
 *   events `finish`, `close` and `drain`, and `writableLength`.
 *
 * ## When the `Response` exists
 *
 * Node sends the status line and headers with the first byte of the body (or `flushHeaders()`);
 * so does the bridge. `writeHead()` then `end(body)`, which is how every handler answers a JSON
 * request, gives a `Response` with a fixed body (a runtime can send it with `Content-Length` and
 * in one write). A first `write()` or `flushHeaders()` gives a `Response` whose body is a
 * `ReadableStream` fed by later writes: SSE and NDJSON stream. A handler that parks the request
 * (a long poll, a held `Prefer: wait` read) writes nothing yet, so the promise of the `Response`
 * stays pending until it answers, exactly as the socket would stay silent.
 *
 * ## Backpressure
 *
 * The body stream has a byte-length queue (`highWaterMarkBytes`). A write goes into it at once
 * while it has room; when it is full the write's callback waits for the consumer to pull, so the
 * response's own buffer (`writableLength`) grows and `write()` returns `false` past the
 * response's high-water mark, then `drain` follows, as with a socket. SSE's bounded buffer and
 * NDJSON's backpressure work unchanged. (The body is a `ReadableStream` fed through its
 * controller, pulled by the runtime, rather than the readable side of a `TransformStream`: the
 * same backpressure, with one stream per response instead of two.)
 *
 * ## The client going away
 *
 * `request.signal` aborting (runtimes abort it when the client disconnects) or the body stream
 * being canceled (the runtime stopped reading it) destroys the response and the request: the
 * response emits `close` with `writableFinished` false, which is what handlers watch to drop a
 * parked long poll, a held read or an SSE stream. A `Response` that was still pending then
 * resolves to an empty `499` (nginx's "client closed request"; nobody reads it).
 *
 * ## What does not carry over
 *
 * Web `Headers` join repeated request headers into one value, so `headersDistinct` holds one
 * value per name (two `Idempotency-Key` headers look like one with a comma). Hop-by-hop response
 * headers (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `Upgrade`) are the runtime's to set
 * and are dropped. There are no trailers, no `1xx` answers (`writeContinue()` and friends do
 * nothing), and `setTimeout()` on the response or socket does nothing: the runtime owns the
 * connection. A response destroyed by the handler before its headers went out (Node would reset
 * the connection) rejects the promise, so the runtime answers its own error.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { Readable, Writable } from 'node:stream';
import { onAbort } from '../../core/index.js';
import { bodyReadError } from '../shared/errors.js';

/** A `node:http`-style request handler, as patchbay's handlers are. */
export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

/** Options for {@link serveNode}. */
export interface ServeNodeOptions {
  /**
   * The most body bytes queued in the `Response`'s stream before writes wait for the client to
   * read (the response then buffers up to its own high-water mark and `write()` returns `false`).
   * @defaultValue 65536
   */
  readonly highWaterMarkBytes?: number;
  /** The client's address, for `req.socket.remoteAddress` (the runtime knows it; a `Request` does not). */
  readonly remoteAddress?: string;
}

/** Response headers a web runtime sets itself, and that a `Response` should not carry. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'http2-settings']);

/** Statuses whose responses have no body (`Response` refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** The status of the (unread) answer to a client that went away. */
const CLIENT_CLOSED = 499;

/**
 * Runs a `node:http`-style handler on a web `Request` and resolves with its `Response` once the
 * handler sends its status and headers (see the module documentation for how each part maps).
 * The promise rejects only if the handler throws (or rejects) before answering, destroys the
 * response before sending its headers, or if the request's body was already read (`bodyUsed`).
 *
 * @param request - The web request.
 * @param handler - Called with the request and response objects; may return a promise.
 * @param options - Stream sizes and the client's address.
 * @returns The `Response`, whose body streams as the handler writes.
 *
 * @example
 * ```ts
 * import { serveNode } from 'patchbay/web';
 * // Any node:http handler, in a fetch-style runtime:
 * export default { fetch: (request: Request) => serveNode(request, (req, res) => res.end('hello')) };
 * ```
 */
export function serveNode(request: Request, handler: NodeHandler, options: ServeNodeOptions = {}): Promise<Response> {
  const hwm = options.highWaterMarkBytes ?? 65_536;
  if (!Number.isSafeInteger(hwm) || hwm < 1) {
    return Promise.reject(new RangeError(`Expected \`highWaterMarkBytes\` to be a positive integer, got ${String(hwm)}`));
  }
  if (request.signal.aborted) return Promise.resolve(new Response(null, { status: CLIENT_CLOSED }));
  // A body something already read cannot be read again: say so rather than fail mid-handler.
  if (request.bodyUsed) return Promise.reject(bodyReadError());
  return new Promise<Response>((resolve, reject) => {
    const socket = new SocketStub(request, options.remoteAddress);
    const req = new BridgeRequest(request, socket);
    const res = new BridgeResponse(req, socket, hwm, resolve, reject);
    socket.attach(req, res);
    const aborted = onAbort(request.signal, () => res._clientGone());
    res.once('close', () => aborted[Symbol.dispose]());
    let result: unknown;
    try {
      result = handler(req as unknown as IncomingMessage, res as unknown as ServerResponse);
    } catch (error) {
      res._fail(error);
      return;
    }
    if (isPromiseLike(result)) result.then(undefined, (error: unknown) => res._fail(error));
  });
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** What `req.socket` and `res.socket` are: enough for code that reads addresses or sets socket options. */
class SocketStub extends EventEmitter {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined = undefined;
  readonly localAddress: string | undefined = undefined;
  readonly localPort: number | undefined = undefined;
  readonly encrypted: boolean;
  #req: BridgeRequest | undefined;
  #res: BridgeResponse | undefined;

  constructor(request: Request, remoteAddress: string | undefined) {
    super();
    this.remoteAddress = remoteAddress;
    this.encrypted = request.url.startsWith('https:');
  }

  attach(req: BridgeRequest, res: BridgeResponse): void {
    this.#req = req;
    this.#res = res;
  }

  get destroyed(): boolean {
    return this.#res?.destroyed ?? false;
  }

  get readable(): boolean {
    return !this.destroyed;
  }

  get writable(): boolean {
    return !this.destroyed;
  }

  /** Tearing the "connection" down tears the exchange down, as with a socket. */
  destroy(error?: Error): this {
    this.#res?.destroy(error);
    this.#req?.destroy(error);
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  setTimeout(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  address(): Record<string, never> {
    return {};
  }
}

/** An `IncomingMessage` lookalike over a web `Request`; its body is pulled as it is read. */
class BridgeRequest extends Readable {
  method: string;
  url: string;
  readonly headers: IncomingHttpHeaders;
  readonly headersDistinct: Record<string, string[]>;
  readonly rawHeaders: string[];
  readonly trailers: Record<string, string> = {};
  readonly trailersDistinct: Record<string, string[]> = {};
  readonly rawTrailers: string[] = [];
  readonly httpVersion = '1.1';
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  readonly statusCode = null;
  readonly statusMessage = null;
  readonly socket: SocketStub;
  complete: boolean;
  aborted = false;
  readonly #body: ReadableStream<Uint8Array> | null;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;

  constructor(request: Request, socket: SocketStub) {
    super();
    const url = new URL(request.url);
    this.method = request.method;
    this.url = `${url.pathname}${url.search}`;
    this.socket = socket;
    const headers: IncomingHttpHeaders = {};
    const distinct: Record<string, string[]> = {};
    const raw: string[] = [];
    for (const [name, value] of request.headers) {
      // Web Headers join repeats with ", " except Set-Cookie, which getSetCookie() keeps apart.
      if (name === 'set-cookie') continue;
      headers[name] = value;
      distinct[name] = [value];
      raw.push(name, value);
    }
    const cookies = request.headers.getSetCookie();
    if (cookies.length > 0) {
      headers['set-cookie'] = cookies;
      distinct['set-cookie'] = cookies;
      for (const c of cookies) raw.push('set-cookie', c);
    }
    if (headers.host === undefined) {
      headers.host = url.host;
      distinct['host'] = [url.host];
      raw.push('host', url.host);
    }
    this.headers = headers;
    this.headersDistinct = distinct;
    this.rawHeaders = raw;
    this.#body = request.body;
    this.complete = this.#body === null;
  }

  /** The connection, by its old name. */
  get connection(): SocketStub {
    return this.socket;
  }

  setTimeout(): this {
    return this;
  }

  override _read(): void {
    if (this.#body === null) {
      this.push(null);
      return;
    }
    this.#reader ??= this.#body.getReader();
    this.#reader.read().then(
      ({ done, value }) => {
        if (this.destroyed) return;
        if (done) {
          this.complete = true;
          this.push(null);
        } else {
          this.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
        }
      },
      (error: unknown) => this.destroy(error instanceof Error ? error : new Error(String(error))),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.complete) {
      this.aborted = true;
      this.emit('aborted');
    }
    this.#reader?.cancel(error ?? undefined).catch(() => undefined);
    // As IncomingMessage does: an error is emitted only to listeners that asked for it.
    callback(this.listenerCount('error') > 0 ? error : null);
  }
}

/** A `ServerResponse` lookalike whose body becomes a web `Response`. */
class BridgeResponse extends Writable {
  statusCode = 200;
  statusMessage = '';
  sendDate = true;
  readonly req: BridgeRequest;
  readonly socket: SocketStub;
  /** Lower-cased name -> [name as given, value]. */
  readonly #headers = new Map<string, [string, string | string[]]>();
  #headersSent = false;
  /** The `Response` was handed out (or the promise settled otherwise). */
  #settled = false;
  #resolve: (response: Response) => void;
  #reject: (error: unknown) => void;
  readonly #hwm: number;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** No body goes out (HEAD, 204, 304): writes are accepted and dropped. */
  #discard = false;
  #streamDone = false;
  #waiting: (() => void) | undefined;
  #gone = false;

  constructor(req: BridgeRequest, socket: SocketStub, hwm: number, resolve: (response: Response) => void, reject: (error: unknown) => void) {
    super({ highWaterMark: 16_384 });
    this.req = req;
    this.socket = socket;
    this.#hwm = hwm;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** The connection, by its old name. */
  get connection(): SocketStub {
    return this.socket;
  }

  get headersSent(): boolean {
    return this.#headersSent;
  }

  /** Deprecated in Node: `writableEnded`. */
  get finished(): boolean {
    return this.writableEnded;
  }

  setHeader(name: string, value: OutgoingHttpHeader): this {
    this.#assertHeadersOpen('set');
    validateHeaderName(name);
    validateHeaderValue(name, value as string);
    this.#headers.set(name.toLowerCase(), [name, Array.isArray(value) ? value.map(String) : String(value)]);
    return this;
  }

  appendHeader(name: string, value: OutgoingHttpHeader): this {
    this.#assertHeadersOpen('append');
    validateHeaderName(name);
    validateHeaderValue(name, value as string);
    const key = name.toLowerCase();
    const add = Array.isArray(value) ? value.map(String) : [String(value)];
    const had = this.#headers.get(key);
    if (had === undefined) this.#headers.set(key, [name, add.length === 1 ? add[0]! : add]);
    else had[1] = [...(Array.isArray(had[1]) ? had[1] : [had[1]]), ...add];
    return this;
  }

  getHeader(name: string): string | string[] | undefined {
    return this.#headers.get(name.toLowerCase())?.[1];
  }

  getHeaders(): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = Object.create(null) as OutgoingHttpHeaders;
    for (const [key, [, value]] of this.#headers) out[key] = value;
    return out;
  }

  getHeaderNames(): string[] {
    return [...this.#headers.keys()];
  }

  getRawHeaderNames(): string[] {
    return [...this.#headers.values()].map(([name]) => name);
  }

  hasHeader(name: string): boolean {
    return this.#headers.has(name.toLowerCase());
  }

  removeHeader(name: string): void {
    this.#assertHeadersOpen('remove');
    this.#headers.delete(name.toLowerCase());
  }

  /** As `ServerResponse.writeHead`: headers given here override those set before (a flat `[name, value, ...]` list keeps repeats). */
  writeHead(statusCode: number, reason?: string | OutgoingHttpHeaders | OutgoingHttpHeader[], headers?: OutgoingHttpHeaders | OutgoingHttpHeader[]): this {
    if (this.#headersSent) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' });
    if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 999) {
      throw Object.assign(new RangeError(`Invalid status code: ${String(statusCode)}`), { code: 'ERR_HTTP_INVALID_STATUS_CODE' });
    }
    let list = headers;
    if (typeof reason === 'string') this.statusMessage = reason;
    else if (reason !== undefined) list = reason;
    if (Array.isArray(list)) {
      if (list.length % 2 !== 0) throw Object.assign(new TypeError('The headers list must have an even length'), { code: 'ERR_INVALID_ARG_VALUE' });
      for (let i = 0; i < list.length; i += 2) this.#headers.delete(String(list[i]).toLowerCase());
      for (let i = 0; i < list.length; i += 2) {
        const name = list[i];
        if (name !== undefined && name !== '') this.appendHeader(String(name), list[i + 1]!);
      }
    } else if (list !== undefined && list !== null) {
      for (const [name, value] of Object.entries(list)) if (value !== undefined) this.setHeader(name, value);
    }
    this.statusCode = statusCode;
    this.#headersSent = true;
    return this;
  }

  /** Sends the status and headers now, with a streamed body to follow. */
  flushHeaders(): void {
    this.#commit(undefined, true);
  }

  writeContinue(): void {}

  writeProcessing(): void {}

  writeEarlyHints(): void {}

  addTrailers(): void {}

  setTimeout(): this {
    return this;
  }

  override write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    if (!this.destroyed && !this.writableEnded) this.#commit(undefined, true);
    return (super.write as (...args: unknown[]) => boolean)(chunk, encoding, callback);
  }

  override end(chunk?: unknown, encoding?: unknown, callback?: unknown): this {
    if (typeof chunk === 'function') return this.end(undefined, undefined, chunk);
    if (typeof encoding === 'function') return this.end(chunk, undefined, encoding);
    if (!this.#settled && !this.destroyed && !this.writableEnded) {
      // Nothing was written yet: the whole body is known, so the Response gets it as is.
      const body = chunk === undefined || chunk === null ? undefined : toBytes(chunk, encoding);
      this.#commit(body, false);
      return (super.end as (...args: unknown[]) => this)(callback);
    }
    return (super.end as (...args: unknown[]) => this)(chunk, encoding, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const controller = this.#controller;
    if (this.#discard || controller === undefined || this.#streamDone) {
      callback();
      return;
    }
    controller.enqueue(chunk);
    if ((controller.desiredSize ?? 1) > 0) callback();
    else this.#waiting = () => callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#commit(undefined, false);
    if (this.#controller !== undefined && !this.#streamDone) {
      this.#streamDone = true;
      this.#controller.close();
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#waiting = undefined;
    if (!this.#settled) {
      this.#settled = true;
      if (this.#gone) this.#resolve(new Response(null, { status: CLIENT_CLOSED }));
      else this.#reject(error ?? new Error('The response was destroyed before it was sent'));
    } else if (this.#controller !== undefined && !this.#streamDone) {
      this.#streamDone = true;
      if (this.#gone) {
        // Nobody reads any more: end quietly (the runtime has canceled or is canceling it).
        try {
          this.#controller.close();
        } catch {
          // already canceled
        }
      } else {
        // A body cut short by the handler must not look complete: the stream errors rather than closes.
        this.#controller.error(error ?? new Error('The response was destroyed before it ended'));
      }
    }
    this.req.destroy();
    this.socket.emit('close');
    // As ServerResponse does: a destroyed response emits 'close', never 'error'.
    callback(null);
  }

  /** The client went away (its signal aborted, or the runtime canceled the body). */
  _clientGone(): void {
    if (this.#gone) return;
    this.#gone = true;
    if (this.writableFinished) return;
    this.destroy();
  }

  /** The handler threw or rejected. */
  _fail(error: unknown): void {
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(error);
      this.destroy();
      return;
    }
    if (!this.writableEnded) this.destroy(error instanceof Error ? error : new Error(String(error)));
  }

  #assertHeadersOpen(what: string): void {
    if (this.#headersSent) {
      throw Object.assign(new Error(`Cannot ${what} headers after they are sent to the client`), { code: 'ERR_HTTP_HEADERS_SENT' });
    }
  }

  /** Builds the `Response`: `fixed` is the whole body (end() before any write), `streaming` a body to come. */
  #commit(fixed: Uint8Array | undefined, streaming: boolean): void {
    if (this.#settled) return;
    if (!this.#headersSent) this.writeHead(this.statusCode);
    this.#settled = true;
    const headers = new Headers();
    for (const [key, [, value]] of this.#headers) {
      if (HOP_BY_HOP.has(key)) continue;
      if (Array.isArray(value)) for (const v of value) headers.append(key, v);
      else headers.append(key, value);
    }
    const status = this.statusCode;
    const init: ResponseInit = this.statusMessage === '' ? { status, headers } : { status, statusText: this.statusMessage, headers };
    this.#discard = this.req.method === 'HEAD' || NULL_BODY.has(status);
    let response: Response;
    try {
      if (this.#discard) response = new Response(null, init);
      else if (!streaming) response = new Response(fixed ?? null, init);
      else {
        const body = new ReadableStream<Uint8Array>(
          {
            start: (controller) => {
              this.#controller = controller;
            },
            pull: () => {
              const resume = this.#waiting;
              this.#waiting = undefined;
              resume?.();
            },
            cancel: () => {
              this.#streamDone = true;
              this._clientGone();
            },
          },
          new ByteLengthQueuingStrategy({ highWaterMark: this.#hwm }),
        );
        response = new Response(body, init);
      }
    } catch (error) {
      this.#reject(error);
      this.destroy();
      return;
    }
    this.#resolve(response);
  }
}

function toBytes(chunk: unknown, encoding: unknown): Uint8Array {
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk;
  throw Object.assign(new TypeError('The "chunk" argument must be of type string or an instance of Buffer or Uint8Array'), { code: 'ERR_INVALID_ARG_TYPE' });
}
