/**
 * The two transports an {@link SseStream} writes to: a `node:http` (or `node:http2` compat)
 * response, and a web `ReadableStream` inside a `Response`.
 *
 * ## Framed chunks, straight to the socket
 *
 * An SSE response over HTTP/1.1 is chunked. `res.write()` frames each write itself, as four
 * socket writes (size line, CRLF, bytes, CRLF) corked until the next tick: per connection per
 * turn, that is most of the CPU a fan-out spends. So once the headers are out, a `node:http`
 * sink frames the chunk once (`<size>\r\n<bytes>\r\n`, shared by every connection the same
 * bytes go to in a turn) and writes it to the socket in one call. It does so only where that is
 * exactly what `res.write()` would have put on the wire: HTTP/1.1 chunked, headers flushed,
 * nothing of the response's own still queued, the response the socket is serving, and
 * `res.write` not replaced by middleware (compression, say); anywhere else it calls `res.write()`.
 * `res.writableLength` counts the socket's buffer, so backpressure and stall checks see these
 * bytes, and `res.end()` still writes the last chunk after them.
 *
 * @module
 */
import { type IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { onAbort } from '../core/abort.js';
import type { SseHub, SseSink, SseStream, SseStreamOptions } from './sse-stream.js';

/** Headers HTTP/2 forbids; a Node http1 response never needs them set by hand either. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

/**
 * A sink over a `node:http` response. Disconnects are seen on every path: the response's
 * `close` (the socket closed or the response ended) and write errors.
 */
export function nodeSink(req: IncomingMessage, res: ServerResponse): SseSink {
  return new NodeSink(req, res);
}

/**
 * {@link nodeSink}'s sink: a class, so its methods live once on the prototype and a connection
 * holds one small object and one listener closure (a factory's object literal held a closure per
 * method per connection). @internal
 */
class NodeSink implements SseSink {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  #closed: (() => void) | undefined;
  // Idempotent, so plain `on` listeners do (no `once` wrapper per connection).
  readonly #fire = (): void => {
    const cb = this.#closed;
    this.#closed = undefined;
    cb?.();
  };

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.#req = req;
    this.#res = res;
    res.on('close', this.#fire);
    res.on('error', this.#fire);
    req.on('error', this.#fire);
  }

  start(status: number, headers: Readonly<Record<string, string>>): void {
    const h2 = this.#req.httpVersionMajor >= 2;
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) if (!(h2 && HOP_BY_HOP.has(name.toLowerCase()))) out[name] = value;
    this.#res.writeHead(status, out);
    this.#res.flushHeaders();
    this.#req.socket?.setNoDelay?.(true);
  }

  write(chunk: Buffer, written?: () => void): void {
    // The callback runs once the socket took the chunk: it paces replays (see SseStream).
    const res = this.#res;
    const socket = chunk.length === 0 ? undefined : rawSocket(res);
    if (socket !== undefined) socket.write(framed(chunk), written);
    else if (written === undefined) res.write(chunk);
    else res.write(chunk, written);
  }

  get buffered(): number {
    return this.#res.writableLength;
  }

  end(): void {
    this.#res.end();
  }

  destroy(): void {
    this.#res.destroy();
  }

  onClose(callback: () => void): void {
    this.#closed = callback;
    if (this.#res.destroyed || this.#res.writableFinished) this.#fire();
  }
}

const writeOfNode = ServerResponse.prototype.write;

/**
 * The socket to write framed chunks to directly, when that puts on the wire exactly what
 * `res.write()` would (see the module's essay); else `undefined`.
 */
function rawSocket(res: ServerResponse): Socket | undefined {
  const socket = res.socket as Socket | null;
  if (
    socket === null ||
    !res.chunkedEncoding ||
    !res.headersSent ||
    res.writableEnded ||
    res.write !== writeOfNode ||
    !socket.writable ||
    // Bytes the response queued itself (before the socket was ready) must go first.
    res.writableLength !== socket.writableLength ||
    (socket as Socket & { _httpMessage?: unknown })._httpMessage !== res
  ) {
    return undefined;
  }
  return socket;
}

/**
 * The last chunk framed, and its frame: a turn's broadcast frames its bytes once for everyone.
 * Forgotten once the current job ends (a microtask), so a caller that reuses a `Buffer` with new
 * bytes later never gets the old frame, and nothing is held between turns.
 */
let lastChunk: Buffer | undefined;
let lastFrame: Buffer | undefined;
const forgetFrame = (): void => {
  lastChunk = undefined;
  lastFrame = undefined;
};

/** `chunk` as one HTTP/1.1 chunk: its size in hex, CRLF, the bytes, CRLF. */
function framed(chunk: Buffer): Buffer {
  if (chunk === lastChunk) return lastFrame!;
  const size = chunk.length.toString(16);
  const frame = Buffer.allocUnsafe(size.length + chunk.length + 4);
  let at = frame.write(size, 0, 'latin1');
  frame[at++] = 13;
  frame[at++] = 10;
  at += chunk.copy(frame, at);
  frame[at++] = 13;
  frame[at] = 10;
  if (lastChunk === undefined) queueMicrotask(forgetFrame);
  lastChunk = chunk;
  lastFrame = frame;
  return frame;
}

/** Options for {@link sseResponse}. */
export interface SseResponseOptions extends SseStreamOptions {
  /** The request's signal (`request.signal`): aborting it ends the stream. */
  readonly signal?: AbortSignal;
}

/**
 * The web-standard form: a `Response` whose body is a `ReadableStream` with a byte-length
 * queuing strategy, so `maxBufferedBytes` is a real cap on what waits for the client. `setup`
 * gets the stream before the response exists: subscribe, replay, then call `stream.start()`
 * (headers given there become the response's); it is started for you if `setup` does not.
 *
 * @example
 * ```ts
 * // hono, or anything with Request -> Response:
 * app.get('/events', (c) => sseResponse(hub, { signal: c.req.raw.signal }, (stream) => {
 *   stream.send({ data: 'hello' });
 * }));
 * ```
 */
export async function sseResponse(hub: SseHub, options: SseResponseOptions, setup: (stream: SseStream) => void | Promise<void>): Promise<Response> {
  const cap = options.maxBufferedBytes ?? 1024 * 1024;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let closed: (() => void) | undefined;
  let status = 200;
  let responseHeaders: Record<string, string> = {};
  let done = false;
  /** A replay waiting for the reader to take bytes: woken when the body is pulled. */
  let written: (() => void) | undefined;
  const wake = (): void => {
    const cb = written;
    written = undefined;
    cb?.();
  };
  const fire = (): void => {
    done = true;
    const cb = closed;
    closed = undefined;
    cb?.();
  };
  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
      },
      pull: wake,
      cancel: fire,
    },
    new ByteLengthQueuingStrategy({ highWaterMark: cap }),
  );
  const sink: SseSink = {
    start(s, headers) {
      status = s;
      responseHeaders = { ...headers };
    },
    write(chunk, whenWritten) {
      if (done) return;
      controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      if (whenWritten === undefined) return;
      written = whenWritten;
      if ((controller.desiredSize ?? 0) > 0) wake();
    },
    get buffered() {
      return done ? 0 : Math.max(0, cap - (controller.desiredSize ?? cap));
    },
    end() {
      if (done) return;
      done = true;
      controller.close();
    },
    destroy() {
      if (done) return;
      done = true;
      controller.error(new Error('The SSE stream was closed'));
    },
    onClose(callback) {
      closed = callback;
      if (done) fire();
    },
  };
  const stream = hub.stream(sink, options);
  const signal = options.signal;
  if (signal !== undefined) {
    const cut = (): void => {
      sink.destroy();
      fire();
    };
    if (signal.aborted) cut();
    else {
      // Removed when the stream ends, however it ends: a long-lived signal keeps no dead stream.
      const listener = onAbort(signal, cut);
      stream._onClose(() => listener[Symbol.dispose]());
    }
  }
  await setup(stream);
  stream.start();
  return new Response(body, { status, headers: responseHeaders });
}
