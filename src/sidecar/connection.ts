/**
 * The connection of a sidecar channel: what a channel runs over ({@link SidecarStream}), how it
 * reaches the peer ({@link SidecarTarget}, {@link sidecarConnector}), and `Connection`, one open
 * stream with its frame decoder, its listeners and its write state.
 *
 * Its own piece because a connection comes and goes while the channel stays: the channel's
 * queues outlive every connection, and everything here belongs to one of them and is thrown
 * away with it (its listeners removed, its streams destroyed, its handlers' signals aborted).
 *
 * @module
 */
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Clock } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import { integerInRange } from '../core/validate.js';
import { FRAME_HEADER_BYTES, FrameDecoder } from './framing.js';

/** A readable and a writable used as one connection, such as a child's stdout and stdin. */
export interface SidecarStreamPair {
  /** Where the peer's bytes come from. */
  readonly readable: Readable;
  /** Where bytes for the peer go. */
  readonly writable: Writable;
}

/** What a channel runs over: a duplex stream (a socket), or a readable and a writable (stdio). */
export type SidecarStream = (Readable & Writable) | SidecarStreamPair;

/** A TCP port to connect to. */
export interface SidecarTcpTarget {
  /** The port. */
  readonly port: number;
  /** The host. @defaultValue `'127.0.0.1'` */
  readonly host?: string;
}

/** Opens a new connection to the peer; called again after each loss when reconnecting. */
export type SidecarConnector = () => SidecarStream | Promise<SidecarStream>;

/** Where to connect: a connector, a Unix socket path, or a TCP port on loopback. */
export type SidecarTarget = SidecarConnector | string | SidecarTcpTarget;

/** Opens a connection to a Unix socket path or a loopback TCP port, settling on connect or error. */
function connectTo(target: string | SidecarTcpTarget): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket =
      typeof target === 'string' ? net.createConnection({ path: target }) : net.createConnection({ port: target.port, host: target.host ?? '127.0.0.1' });
    const onError = (err: Error): void => {
      socket.off('connect', onConnect);
      socket.destroy();
      reject(err);
    };
    const onConnect = (): void => {
      socket.off('error', onError);
      socket.setNoDelay?.(true);
      resolve(socket);
    };
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}

/**
 * Makes a {@link SidecarConnector} for a Unix socket path or a TCP port on loopback.
 *
 * @param target - A socket path, or `{ port, host }` (host `127.0.0.1` by default).
 * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for an empty path or a port out of 1 to 65535.
 */
export function sidecarConnector(target: string | SidecarTcpTarget): SidecarConnector {
  if (typeof target === 'string') {
    if (target.length === 0) throw new InvalidArgumentError('Expected a socket path, got an empty string');
  } else {
    integerInRange('port', target?.port, 1, 65535);
  }
  return () => connectTo(target);
}

/** Length prefixes of small frames as 4-character Latin-1 strings, made on first use. */
const PREFIX_CACHE_LIMIT = 4096;
const prefixes: string[] = [];

/** The 4-byte big-endian length prefix of `n` as a Latin-1 string. */
function prefix(n: number): string {
  if (n < PREFIX_CACHE_LIMIT) return (prefixes[n] ??= String.fromCharCode(0, 0, n >>> 8, n & 0xff));
  return String.fromCharCode(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/**
 * Frames `parts` (of `lengths` UTF-8 bytes, `total` with the headers) into one buffer. When
 * every part is ASCII (its UTF-8 length is its string length: any other character takes more
 * bytes than code units), prefixes and parts are joined as one Latin-1 string and encoded with
 * one native call, instead of one call per part (the send path's largest cost after
 * `JSON.stringify`).
 */
function framesOf(parts: readonly string[], lengths: readonly number[], total: number): Buffer {
  let ascii = parts.length > 1;
  for (let i = 0; ascii && i < parts.length; i++) ascii = parts[i]!.length === lengths[i];
  if (ascii) {
    let text = '';
    for (let i = 0; i < parts.length; i++) text += prefix(lengths[i]!) + parts[i]!;
    return Buffer.from(text, 'latin1');
  }
  const buf = Buffer.allocUnsafe(total);
  let offset = 0;
  for (let i = 0; i < parts.length; i++) {
    const n = lengths[i]!;
    buf.writeUInt32BE(n, offset);
    buf.write(parts[i]!, offset + FRAME_HEADER_BYTES, n, 'utf8');
    offset += FRAME_HEADER_BYTES + n;
  }
  return buf;
}

function isPair(stream: SidecarStream): stream is SidecarStreamPair {
  return 'readable' in stream && 'writable' in stream && typeof (stream as { readable: unknown }).readable === 'object';
}

/** Destroys a stream the channel will not use (it closed while connecting). @internal */
export function destroyStream(stream: SidecarStream): void {
  if (isPair(stream)) {
    stream.readable.destroy();
    stream.writable.destroy();
  } else {
    stream.destroy();
  }
}

/**
 * An incoming request being handled. Its AbortController is made only if the handler reads
 * `context.signal` (most do not); a cancel that comes first is kept and applied then.
 * @internal
 */
export class Handling {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** One open stream. @internal */
export class Connection {
  readonly readable: Readable;
  readonly writable: Writable;
  readonly decoder: FrameDecoder;
  /** Handshake done. */
  ready = false;
  /** `write()` said false: wait for 'drain'. */
  blocked = false;
  closed = false;
  /** Control frames (replies, acks, pongs...) to write before queued messages. */
  control: string[] = [];
  /** Incoming requests being handled, by id, for CANCEL. */
  readonly handling = new Map<number, Handling>();
  /** The session handlers see: the peer's (accepting side) or the channel's own. */
  messageSession = '';
  /** The accepting side's resume record of the peer's session. */
  resume: { last: number } | undefined;
  readonly #cleanup: (() => void)[] = [];

  constructor(stream: SidecarStream, maxFrameBytes: number) {
    if (isPair(stream)) {
      this.readable = stream.readable;
      this.writable = stream.writable;
    } else {
      this.readable = stream;
      this.writable = stream;
    }
    this.decoder = new FrameDecoder({ maxFrameBytes });
  }

  /** Whether one duplex stream carries both directions. */
  get duplex(): boolean {
    return this.writable === (this.readable as unknown);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- stream listeners take what each event gives
  on(target: Readable | Writable, event: string, listener: (...args: any[]) => void): void {
    target.on(event, listener);
    this.#cleanup.push(() => target.off(event, listener));
  }

  /** Aborts the signals of the requests being handled and forgets them. */
  abortHandling(reason: unknown): void {
    for (const c of this.handling.values()) c.abort(reason);
    this.handling.clear();
  }

  /**
   * Writes `parts` (JSON texts of `lengths` UTF-8 bytes, `total` bytes with their headers) as
   * frames in one buffer; notes when the stream pushes back.
   */
  writeFrames(parts: readonly string[], lengths: readonly number[], total: number): void {
    if (!this.writable.write(framesOf(parts, lengths, total))) this.blocked = true;
  }

  /**
   * Ends the stream after `parts` (the last control frames and BYE), and destroys it if the
   * peer has not closed its side within `graceMs` by `clock`.
   */
  endWith(parts: readonly string[], clock: Clock, graceMs: number): void {
    const lengths = parts.map((json) => Buffer.byteLength(json));
    this.writable.end(framesOf(parts, lengths, lengths.reduce((sum, n) => sum + FRAME_HEADER_BYTES + n, 0)));
    // The peer closes its side after BYE; do not wait on it forever.
    const timer = clock.setTimer(() => this.destroy(), graceMs);
    this.on(this.readable, 'close', () => timer.cancel());
    this.readable.resume();
  }

  destroy(error?: Error): void {
    for (const off of this.#cleanup.splice(0)) off();
    // Keep a listener so a late error of a destroyed stream is not an uncaught exception.
    const ignore = (): void => {};
    this.readable.on('error', ignore);
    this.writable.on('error', ignore);
    this.readable.destroy(error);
    if (!this.duplex) this.writable.destroy(error);
  }
}
