/**
 * A spec-exact, incremental, bounded parser for `text/event-stream` (WHATWG HTML §9.2.5 "Parsing
 * an event stream" and §9.2.6 "Interpreting an event stream").
 *
 * ## The traps it handles
 *
 * - One leading U+FEFF is dropped, only at the very start of the stream (a second one is part of
 *   the first field name, so the first event is lost, as the spec says).
 * - Lines end with CRLF, LF or a bare CR. A CR at the end of a chunk ends its line at once (the
 *   line is complete either way) and a LF at the start of the next chunk is then swallowed, so a
 *   CRLF split across chunks is one line end, never an extra empty line (which would dispatch).
 * - `data` lines join with LF; an event is dispatched only when its data buffer is non-empty (a
 *   bare `data` line makes an event with empty data; an event of `id`/`event` alone is not
 *   dispatched, but its id still becomes the last event id).
 * - `id` with a NUL is ignored; an empty `id` resets the last event id.
 * - `retry` is honoured only when it is ASCII digits alone (`02000` is 2000; `-1`, `1.5`, `2000 `
 *   are ignored).
 * - One space after the colon is removed, no more; field names are case-sensitive.
 * - An unterminated last event is discarded at the end of the stream ({@link SseParser.reset}).
 *
 * ## Bounds
 *
 * A line longer than `maxLineBytes`, or an event whose data grows past `maxEventBytes`, throws an
 * {@link OverflowError} from {@link SseParser.feed}; both are counted in UTF-16 code units of the
 * decoded text (never more than its UTF-8 bytes). After that the parser must be
 * {@link SseParser.reset} before it is fed again.
 *
 * @module
 */
import { OverflowError } from '../core/errors.js';

/** One dispatched event, as an `EventSource` would fire it. */
export interface SseMessage {
  /** The event type: the `event` field, or `"message"` when there was none (or it was empty). */
  readonly type: string;
  /** The `data` lines joined with LF. */
  readonly data: string;
  /** The last event id when the event was dispatched (it persists across events until an `id` field changes it). */
  readonly lastEventId: string;
}

/** What an {@link SseParser} reports. @internal */
export interface SseParserCallbacks {
  /** A dispatched event. */
  readonly onEvent: (message: SseMessage) => void;
  /** A `retry` field with a valid value, in ms. */
  readonly onRetry?: (ms: number) => void;
  /** A comment line's text (after the colon, the one leading space kept). */
  readonly onComment?: (text: string) => void;
  /**
   * An empty line ended an event with no data: nothing is dispatched, but the last event id may
   * have changed (an id-only "checkpoint").
   */
  readonly onDispatch?: (lastEventId: string) => void;
}

/** Limits of an {@link SseParser}. @internal */
export interface SseParserLimits {
  readonly maxLineBytes: number;
  readonly maxEventBytes: number;
}

const LF = 10;
const DIGITS = /^[0-9]+$/;

/**
 * The parser. Feed it decoded text ({@link SseParser.feed}) or bytes through {@link SseDecoder};
 * it calls back synchronously for each event. @internal
 */
export class SseParser {
  readonly #cb: SseParserCallbacks;
  readonly #limits: SseParserLimits;
  /** The start of the line that the next chunk continues. */
  #pending = '';
  #data = '';
  #hasData = false;
  #type = '';
  /** The last event id buffer (kept across reset: a reconnect resumes from it). */
  #lastEventId: string;
  /** Still to see whether the stream starts with a BOM. */
  #atStart = true;
  /** The last chunk ended with a CR: a LF opening the next one belongs to it. */
  #skipLf = false;
  #broken = false;

  constructor(callbacks: SseParserCallbacks, limits: SseParserLimits, lastEventId = '') {
    this.#cb = callbacks;
    this.#limits = limits;
    this.#lastEventId = lastEventId;
  }

  /** The last event id buffer: the id of the last dispatch, or one set since. */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /**
   * Parses the next piece of the stream.
   * @throws {@link OverflowError} (`PB_ERR_OVERFLOW`) for a line or an event past its bound.
   */
  feed(chunk: string): void {
    if (this.#broken) throw new OverflowError('The SSE parser overflowed: reset it before feeding it again');
    if (chunk.length === 0) return;
    let start = 0;
    if (this.#atStart) {
      this.#atStart = false;
      if (chunk.charCodeAt(0) === 0xfeff) start = 1;
    }
    if (this.#skipLf) {
      this.#skipLf = false;
      if (chunk.charCodeAt(start) === LF) start++;
    }
    // Line ends are searched with indexOf: LF alone when the chunk has no CR (the common case).
    let cr = chunk.indexOf('\r', start);
    let lf = chunk.indexOf('\n', start);
    for (;;) {
      const end = cr === -1 ? lf : lf === -1 ? cr : cr < lf ? cr : lf;
      if (end === -1) {
        const rest = chunk.length > start ? chunk.slice(start) : '';
        if (this.#pending.length + rest.length > this.#limits.maxLineBytes) this.#overflow('line', this.#limits.maxLineBytes);
        this.#pending += rest;
        return;
      }
      let line = chunk.slice(start, end);
      if (this.#pending !== '') {
        line = this.#pending + line;
        this.#pending = '';
      }
      if (line.length > this.#limits.maxLineBytes) this.#overflow('line', this.#limits.maxLineBytes);
      let next = end + 1;
      if (end === cr) {
        if (next === chunk.length) this.#skipLf = true;
        else if (chunk.charCodeAt(next) === LF) next++;
      }
      start = next;
      this.#line(line);
      if (start >= chunk.length) return;
      if (cr !== -1 && cr < start) cr = chunk.indexOf('\r', start);
      if (lf !== -1 && lf < start) lf = chunk.indexOf('\n', start);
    }
  }

  /**
   * Ends the stream: an unterminated event is discarded (the spec's end of file), and the parser is
   * ready for a new stream. The last event id is kept (a reconnect resumes from it).
   */
  reset(): void {
    this.#pending = '';
    this.#data = '';
    this.#hasData = false;
    this.#type = '';
    this.#atStart = true;
    this.#skipLf = false;
    this.#broken = false;
  }

  #line(line: string): void {
    if (line.length === 0) {
      this.#dispatch();
      return;
    }
    if (line.startsWith('data:')) {
      // The common line, without slicing out its name.
      this.#appendData(line.slice(line.charCodeAt(5) === 0x20 ? 6 : 5));
      return;
    }
    const colon = line.indexOf(':');
    if (colon === 0) {
      this.#cb.onComment?.(line.slice(1));
      return;
    }
    let field: string;
    let value: string;
    if (colon === -1) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      value = line.slice(line.charCodeAt(colon + 1) === 0x20 ? colon + 2 : colon + 1);
    }
    switch (field) {
      case 'data':
        this.#appendData(value);
        break;
      case 'event':
        this.#type = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.#lastEventId = value;
        break;
      case 'retry':
        if (DIGITS.test(value)) this.#cb.onRetry?.(Number.parseInt(value, 10));
        break;
      default:
      // an unknown field is ignored
    }
  }

  #appendData(value: string): void {
    const size = this.#hasData ? this.#data.length + 1 + value.length : value.length;
    if (size > this.#limits.maxEventBytes) this.#overflow('event', this.#limits.maxEventBytes);
    this.#data = this.#hasData ? `${this.#data}\n${value}` : value;
    this.#hasData = true;
  }

  #dispatch(): void {
    const hasData = this.#hasData;
    const data = this.#data;
    const type = this.#type === '' ? 'message' : this.#type;
    this.#data = '';
    this.#hasData = false;
    this.#type = '';
    if (hasData) this.#cb.onEvent({ type, data, lastEventId: this.#lastEventId });
    else this.#cb.onDispatch?.(this.#lastEventId);
  }

  #overflow(what: 'line' | 'event', max: number): never {
    this.#broken = true;
    this.#pending = '';
    this.#data = '';
    this.#hasData = false;
    throw new OverflowError(
      what === 'line'
        ? `An SSE line is longer than maxLineBytes (${max}); the connection is dropped`
        : `An SSE event's data is larger than maxEventBytes (${max}); the connection is dropped`,
    );
  }
}

/**
 * Bytes to text for an {@link SseParser}: UTF-8 always (a `charset` parameter is ignored, as the
 * spec says), invalid sequences replaced with U+FFFD, a character split across chunks kept whole,
 * and the BOM left for the parser to drop. @internal
 */
export class SseDecoder {
  readonly #parser: SseParser;
  #decoder = new TextDecoder('utf-8', { ignoreBOM: true });

  constructor(parser: SseParser) {
    this.#parser = parser;
  }

  /** Decodes and parses one chunk. @throws {@link OverflowError} as {@link SseParser.feed}. */
  feed(bytes: Uint8Array): void {
    this.#parser.feed(this.#decoder.decode(bytes, { stream: true }));
  }

  /** Ends the stream (bytes of an unfinished character and an unterminated event are discarded). */
  reset(): void {
    this.#decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    this.#parser.reset();
  }
}
