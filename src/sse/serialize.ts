/**
 * The Server-Sent Events serializer (WHATWG HTML 9.2.5): strict, so nothing a caller passes can
 * inject a field or an event.
 *
 * - `data` is split on CRLF, CR and LF into `data: ` lines (always with the space, so a leading
 *   space survives); an empty string still makes one `data:` line, or the event would not fire.
 * - `event` and `id` holding CR or LF, and `id` holding NUL, are refused with
 *   {@link InvalidArgumentError}: written through, they would let a value forge other fields.
 * - `retry` is a non-negative integer in ASCII digits.
 * - Comments are split into `:` lines. Output uses LF only and never a BOM.
 *
 * Each event becomes one `Buffer`, built once; a broadcast writes the same bytes to everyone.
 *
 * @module
 */
import { InvalidArgumentError } from '../core/errors.js';
import { describe } from '../core/validate.js';

/** One event to send. */
export interface SseEvent {
  /**
   * The payload. A string is sent verbatim (split into lines); any other value as its JSON.
   * Leave it out for an id-only checkpoint (moves the client's `Last-Event-ID` without an event).
   */
  readonly data?: unknown;
  /** The event type (`message` when left out). Must not hold CR or LF. */
  readonly event?: string;
  /** The event id, the client's next `Last-Event-ID`. Must not hold CR, LF or NUL. */
  readonly id?: string;
  /** The client's reconnection delay in ms: a non-negative integer. */
  readonly retry?: number;
}

const LINE_BREAK = /\r\n|\r|\n/;
const FORBIDDEN_IN_NAME = /[\r\n]/;

function wellFormed(name: string, text: string): string {
  // A lone surrogate cannot be encoded as UTF-8: it would arrive as U+FFFD, not as sent.
  if (!text.isWellFormed()) throw new InvalidArgumentError(`SSE \`${name}\` holds a lone surrogate, which UTF-8 cannot carry`);
  return text;
}

function checkField(name: 'event' | 'id', value: unknown): string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(`Expected SSE \`${name}\` to be a string, got ${describe(value)}`);
  }
  wellFormed(name, value);
  if (FORBIDDEN_IN_NAME.test(value)) {
    throw new InvalidArgumentError(`SSE \`${name}\` must not contain CR or LF (it would inject fields), got ${describe(value)}`);
  }
  if (name === 'id' && value.includes('\0')) {
    throw new InvalidArgumentError(`SSE \`id\` must not contain NUL (clients ignore such an id), got ${describe(value)}`);
  }
  return value;
}

/**
 * `JSON.stringify`, with what it throws turned into the one documented error: a cycle or a BigInt
 * (`TypeError`), nesting too deep for the stack (`RangeError`), a `toJSON` that throws.
 */
function stringify(data: unknown): string | undefined {
  try {
    return JSON.stringify(data);
  } catch (error) {
    throw new InvalidArgumentError(`SSE \`data\` cannot be serialized as JSON (${error instanceof Error ? error.message : describe(error)})`, { cause: error });
  }
}

/**
 * The text of one event, fields in a fixed order, terminated by a blank line.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for an event the serializer refuses: a
 *   field holding CR or LF (or NUL in `id`), a lone surrogate, a `retry` that is not a
 *   non-negative integer, `data` that is not a string or a JSON value (a BigInt, a function or
 *   symbol, a cycle, nesting too deep, a `toJSON` that throws). Never a bare `TypeError` or
 *   `RangeError`.
 */
export function formatEvent(event: SseEvent): string {
  if (typeof event !== 'object' || event === null) {
    throw new InvalidArgumentError(`Expected an SSE event object, got ${describe(event)}`);
  }
  let out = '';
  if (event.retry !== undefined) {
    const r = event.retry;
    if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 0) {
      throw new InvalidArgumentError(`Expected SSE \`retry\` to be a non-negative integer of ms, got ${describe(r)}`);
    }
    out += `retry: ${r}\n`;
  }
  if (event.event !== undefined) out += `event: ${checkField('event', event.event)}\n`;
  if (event.id !== undefined) out += `id: ${checkField('id', event.id)}\n`;
  if (event.data !== undefined) {
    const text = typeof event.data === 'string' ? event.data : stringify(event.data);
    if (typeof text !== 'string') {
      throw new InvalidArgumentError(`SSE \`data\` must be a string or a JSON value, got ${describe(event.data)}`);
    }
    for (const line of wellFormed('data', text).split(LINE_BREAK)) out += `data: ${line}\n`;
  }
  if (out === '') throw new InvalidArgumentError('An SSE event needs at least one of data, event, id or retry');
  return `${out}\n`;
}

/**
 * Serializes one event to bytes, once.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for an event the serializer refuses (see {@link formatEvent}).
 */
export function serializeEvent(event: SseEvent): Buffer {
  return Buffer.from(formatEvent(event), 'utf8');
}

/** Serializes a comment (ignored by clients; keeps intermediaries from timing out), one `:` line per line. */
export function serializeComment(text = ''): Buffer {
  if (typeof text !== 'string') throw new InvalidArgumentError(`Expected an SSE comment to be a string, got ${describe(text)}`);
  let out = '';
  for (const line of wellFormed('comment', text).split(LINE_BREAK)) out += line === '' ? ':\n' : `: ${line}\n`;
  return Buffer.from(out, 'utf8');
}
