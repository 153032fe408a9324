/**
 * Length-prefixed framing: how a byte stream (a Unix socket, a child's stdio, a TCP socket)
 * carries whole messages.
 *
 * A frame is a 4-byte unsigned big-endian length `N` followed by `N` bytes of payload. The
 * length comes first so the reader knows, after four bytes, how much to wait for and whether
 * to wait at all: a length of zero or above the limit is refused at once, before a single
 * payload byte is buffered, so a peer cannot make us hold a gigabyte by announcing one. This is
 * the framing of many binary protocols (Kafka's, the Postgres wire protocol's); it is binary-safe
 * (a payload may hold any byte, newlines included), unlike the newline-delimited JSON of MCP's
 * stdio transport, and simpler than the `Content-Length:` headers of LSP.
 *
 * The stream may cut frames anywhere: a chunk can hold half a length, three frames and the first
 * byte of a fourth. {@link FrameDecoder} keeps a copy of each piece of an incomplete frame (the
 * caller may reuse its chunk once `push` returns), takes from the next chunk only the bytes that
 * frame still lacks, and joins the pieces once, when the frame is complete: a large frame
 * arriving in many small chunks is not re-joined on every chunk, and the frames after it are not
 * copied at all. Complete frames inside a chunk are handed over as views of that chunk.
 *
 * A decoder that refused a frame is spent: after a protocol error the stream is out of step and
 * nothing later in it can be trusted, so the connection is closed (see `SidecarChannel`).
 *
 * @module
 */
import { ProtocolError } from '../core/errors.js';
import { integerInRange } from '../core/validate.js';

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** The largest payload a frame can announce (2^32 - 1), the ceiling of `maxFrameBytes`. */
export const MAX_FRAME_BYTES_LIMIT = 0xffff_ffff;

/** The default payload limit of a frame: 1 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

/**
 * Frames `payload` with its length prefix.
 *
 * @param payload - The payload: a string is encoded as UTF-8.
 * @returns One buffer holding the prefix and the payload.
 * @throws {@link ProtocolError} (`PB_ERR_PROTOCOL`) if the payload is empty or longer than 2^32 - 1 bytes.
 */
export function encodeFrame(payload: string | Uint8Array): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (bytes === 0 || bytes > MAX_FRAME_BYTES_LIMIT) {
    throw new ProtocolError(`A frame's payload must be 1 to ${MAX_FRAME_BYTES_LIMIT} bytes, got ${bytes}`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bytes);
  frame.writeUInt32BE(bytes, 0);
  if (typeof payload === 'string') frame.write(payload, FRAME_HEADER_BYTES, 'utf8');
  else frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** Options of {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /**
   * The largest payload accepted, in bytes. A frame that announces more is a protocol error,
   * raised as soon as its length prefix arrives.
   * @defaultValue `1048576` (1 MiB)
   */
  readonly maxFrameBytes?: number;
}

/**
 * Cuts a byte stream into frames. Feed it chunks in order with {@link FrameDecoder.push}; it
 * calls back once per complete frame, in order.
 *
 * @example
 * ```ts
 * const decoder = new FrameDecoder({ maxFrameBytes: 64 * 1024 });
 * socket.on('data', (chunk) => {
 *   try {
 *     decoder.push(chunk, (payload) => handle(JSON.parse(payload.toString('utf8'))));
 *   } catch (err) {
 *     socket.destroy(err as Error); // a ProtocolError: the stream is out of step
 *   }
 * });
 * ```
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  /** Pieces of the incomplete frame at the head of the stream. */
  #pieces: Buffer[] = [];
  #buffered = 0;
  /** Bytes needed before the head frame can be cut: the header, then header + payload. */
  #needed = FRAME_HEADER_BYTES;
  #failed: ProtocolError | undefined;
  #frames = 0;

  /** @param options - See {@link FrameDecoderOptions}. */
  constructor(options: FrameDecoderOptions = {}) {
    this.#maxFrameBytes = integerInRange('maxFrameBytes', options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, 1, MAX_FRAME_BYTES_LIMIT);
  }

  /** Bytes held for a frame that has not arrived whole yet. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  /** Frames decoded so far. */
  get frames(): number {
    return this.#frames;
  }

  /**
   * Takes the next chunk of the stream and calls `onFrame` for every frame it completes. The
   * payload handed to `onFrame` may be a view of `chunk`: use it (or copy it) before returning.
   *
   * @param chunk - The next bytes of the stream.
   * @param onFrame - Called with each complete payload, in order. If it throws, the error
   *   propagates and the frames after it in this chunk are not delivered.
   * @throws {@link ProtocolError} (`PB_ERR_PROTOCOL`) when a frame announces a length of 0 or
   *   more than `maxFrameBytes`; then, and after any earlier such error, the decoder is spent.
   */
  push(chunk: Uint8Array, onFrame: (payload: Buffer) => void): void {
    this.#push(chunk, (buf, start, end) => onFrame(buf.subarray(start, end)));
  }

  /**
   * {@link FrameDecoder.push}, handing each payload over as a UTF-8 string (decoded straight
   * from the chunk, without a Buffer view per frame). @internal
   */
  pushText(chunk: Uint8Array, onText: (payload: string) => void): void {
    this.#push(chunk, (buf, start, end) => onText(buf.toString('utf8', start, end)));
  }

  #push(chunk: Uint8Array, onFrame: (buf: Buffer, start: number, end: number) => void): void {
    if (this.#failed !== undefined) throw this.#failed;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let offset = 0;
    // First finish the frame that straddles the previous chunk, taking (copying) only its bytes.
    while (this.#buffered > 0 && offset < buf.length) {
      const take = Math.min(this.#needed - this.#buffered, buf.length - offset);
      this.#pieces.push(Buffer.from(buf.subarray(offset, offset + take)));
      this.#buffered += take;
      offset += take;
      if (this.#buffered < this.#needed) return;
      const joined = this.#pieces.length === 1 ? this.#pieces[0]! : Buffer.concat(this.#pieces, this.#buffered);
      if (joined.length === FRAME_HEADER_BYTES) {
        // The header is whole: now we know the frame's length (and can refuse it).
        const length = joined.readUInt32BE(0);
        if (length === 0 || length > this.#maxFrameBytes) this.#fail(length);
        this.#pieces = [joined];
        this.#needed = FRAME_HEADER_BYTES + length;
        continue;
      }
      this.#pieces = [];
      this.#buffered = 0;
      this.#needed = FRAME_HEADER_BYTES;
      this.#frames++;
      onFrame(joined, FRAME_HEADER_BYTES, joined.length);
    }
    const end = buf.length;
    while (end - offset >= FRAME_HEADER_BYTES) {
      const length = buf.readUInt32BE(offset);
      if (length === 0 || length > this.#maxFrameBytes) {
        this.#fail(length);
      }
      const frameEnd = offset + FRAME_HEADER_BYTES + length;
      if (frameEnd > end) {
        this.#needed = FRAME_HEADER_BYTES + length;
        break;
      }
      offset = frameEnd;
      this.#frames++;
      onFrame(buf, frameEnd - length, frameEnd);
    }
    if (offset < end) {
      // A copy: the caller may reuse its chunk once push returns.
      const rest = Buffer.from(buf.subarray(offset));
      if (rest.length < FRAME_HEADER_BYTES) this.#needed = FRAME_HEADER_BYTES;
      this.#pieces.push(rest);
      this.#buffered = rest.length;
    } else {
      this.#needed = FRAME_HEADER_BYTES;
    }
  }

  #fail(length: number): never {
    this.#pieces = [];
    this.#buffered = 0;
    this.#failed = new ProtocolError(
      length === 0
        ? 'A frame announced an empty payload (length 0)'
        : `A frame announced ${length} bytes, more than the limit of ${this.#maxFrameBytes} (maxFrameBytes)`,
    );
    throw this.#failed;
  }
}
