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
 * Text frames (the sidecar channel's JSON) are decoded a chunk at a time, not a frame at a time:
 * the run of complete frames in a chunk becomes one Latin-1 string (one native call, a plain
 * widening copy), and each payload is a slice of it (no copy). Latin-1 gives every byte one
 * character, so byte offsets are character offsets, and a payload's slice equals its UTF-8
 * decoding exactly when the payload is ASCII. One more native call proves that for the whole
 * run: the UTF-8 length of the Latin-1 text exceeds its byte count by the number of bytes at or
 * above 0x80, and when that number equals the count of such bytes in the length prefixes (read
 * anyway), no payload holds one. Otherwise the run falls back to decoding each payload as UTF-8.
 *
 * A decoder that refused a frame is spent: after a protocol error the stream is out of step and
 * nothing later in it can be trusted, so the connection is closed (see `SidecarChannel`).
 *
 * @module
 */
import { ProtocolError } from '../core/errors.js';
import { RESERVED_JSON_KEY as RESERVED_KEY } from '../core/json.js';
import { integerInRange } from '../core/validate.js';

/**
 * Complete frames in a chunk from which {@link FrameDecoder.pushText} decodes them together
 * (below it, two native calls for the run would cost more than one per frame saves).
 */
const REGION_MIN_FRAMES = 3;

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
   * {@link FrameDecoder.push}, handing each payload over as a UTF-8 string. The complete frames
   * of a chunk are decoded together (see the module's notes); `onText`'s second argument says
   * whether the payload is known to hold neither `__proto__` nor a `\u` escape (checked once
   * for the whole run: `false` means unknown, not present). @internal
   */
  pushText(chunk: Uint8Array, onText: (payload: string, plain: boolean) => void): void {
    if (this.#failed !== undefined) throw this.#failed;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let offset = 0;
    if (this.#buffered > 0) {
      offset = this.#finishStraddling(buf, (joined, start, end) => onText(joined.toString('utf8', start, end), false));
      if (this.#buffered > 0) return;
    }
    // The run of complete frames from `offset`: its end, its count, and how many bytes of its
    // length prefixes are 0x80 or above (for the ASCII proof).
    const size = buf.length;
    let end = offset;
    let count = 0;
    let highHeaderBytes = 0;
    let refused = -1;
    while (size - end >= FRAME_HEADER_BYTES) {
      const length = buf.readUInt32BE(end);
      if (length === 0 || length > this.#maxFrameBytes) {
        refused = length;
        break;
      }
      if (end + FRAME_HEADER_BYTES + length > size) break;
      highHeaderBytes += (length >>> 31) + ((length >>> 23) & 1) + ((length >>> 15) & 1) + ((length >>> 7) & 1);
      end += FRAME_HEADER_BYTES + length;
      count++;
    }
    if (count > 0) {
      let text: string | undefined;
      let plain = false;
      if (count >= REGION_MIN_FRAMES) {
        text = buf.toString('latin1', offset, end);
        if (Buffer.byteLength(text, 'utf8') !== end - offset + highHeaderBytes) text = undefined;
        else plain = !text.includes(RESERVED_KEY) && !text.includes('\\u');
      }
      const base = offset;
      while (offset < end) {
        const length = buf.readUInt32BE(offset);
        const start = offset + FRAME_HEADER_BYTES;
        offset = start + length;
        this.#frames++;
        onText(text === undefined ? buf.toString('utf8', start, offset) : text.slice(start - base, offset - base), plain);
      }
    }
    if (refused !== -1) this.#fail(refused);
    this.#keepRest(buf, offset);
  }

  #push(chunk: Uint8Array, onFrame: (buf: Buffer, start: number, end: number) => void): void {
    if (this.#failed !== undefined) throw this.#failed;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let offset = 0;
    if (this.#buffered > 0) {
      offset = this.#finishStraddling(buf, onFrame);
      if (this.#buffered > 0) return;
    }
    const end = buf.length;
    while (end - offset >= FRAME_HEADER_BYTES) {
      const length = buf.readUInt32BE(offset);
      if (length === 0 || length > this.#maxFrameBytes) {
        this.#fail(length);
      }
      const frameEnd = offset + FRAME_HEADER_BYTES + length;
      if (frameEnd > end) break;
      offset = frameEnd;
      this.#frames++;
      onFrame(buf, frameEnd - length, frameEnd);
    }
    this.#keepRest(buf, offset);
  }

  /**
   * Finishes the frame that straddles the previous chunk, taking (copying) only its bytes, and
   * the frames after it that also start in held pieces. Returns the offset in `buf` where the
   * held bytes end; `#buffered > 0` afterwards means `buf` is used up and a frame is still incomplete.
   */
  #finishStraddling(buf: Buffer, onFrame: (buf: Buffer, start: number, end: number) => void): number {
    let offset = 0;
    while (this.#buffered > 0 && offset < buf.length) {
      const take = Math.min(this.#needed - this.#buffered, buf.length - offset);
      this.#pieces.push(Buffer.from(buf.subarray(offset, offset + take)));
      this.#buffered += take;
      offset += take;
      if (this.#buffered < this.#needed) return offset;
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
    return offset;
  }

  /** Keeps a copy of the incomplete frame from `offset` (the caller may reuse its chunk once push returns). */
  #keepRest(buf: Buffer, offset: number): void {
    if (offset < buf.length) {
      const rest = Buffer.from(buf.subarray(offset));
      this.#needed = rest.length < FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES : FRAME_HEADER_BYTES + rest.readUInt32BE(0);
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
