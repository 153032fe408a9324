/**
 * Messages and their ids.
 *
 * An id is `<epoch>-<seq>`, both base 36: short and URL-safe. `seq` grows with every publish on a
 * backend (across topics too), so ids are strictly ordered within a topic, and one id is a valid
 * cursor for several topics at once. `epoch` names the log the id came from: a backend started
 * afresh gets a new epoch, so ids from before a restart are recognised as such and never
 * confused with new ones. Treat ids as opaque strings.
 *
 * @module
 */
import { InvalidCursorError } from '../core/errors.js';
import { assertJsonValue, RESERVED_JSON_KEY } from '../core/json.js';
import { describe } from '../core/validate.js';

/** Header names and values carried with a message. */
export type MessageHeaders = Readonly<Record<string, string>>;

/**
 * One published message, as stored and as delivered. The same object goes to every subscriber.
 *
 * Its id is formatted on first read (most messages are delivered and trimmed without anyone
 * asking for it), then kept.
 */
export class Message<T = unknown> {
  /** The topic it was published on. */
  readonly topic: string;
  /** What was published. Treat it as read-only: every subscriber shares it. */
  readonly data: T;
  /** Headers given at publish (`replyTo` for requests), or `undefined`. */
  readonly headers: MessageHeaders | undefined;
  /** Backend-wide sequence number. @internal */
  readonly _seq: number;
  /** Approximate size in bytes, for log limits. @internal */
  readonly _size: number;
  /** Monotonic time of publish, for age limits. @internal */
  readonly _time: number;
  /**
   * The id once formatted, or, before that, the epoch it is formatted from: an epoch has no `-`
   * and an id always has one, so this one field tells which (a retained message is a field
   * smaller: a log holds a great many).
   */
  #id: string;

  /**
   * @param id - The id, or `undefined` to format it from `epoch` and `seq` when first read.
   * @internal
   */
  constructor(id: string | undefined, seq: number, topic: string, data: T, headers: MessageHeaders | undefined, size: number, time: number, epoch = '') {
    this._seq = seq;
    this.topic = topic;
    this.data = data;
    this.headers = headers;
    this._size = size;
    this._time = time;
    this.#id = id ?? epoch;
  }

  /** The message's id: opaque, URL-safe, and usable as a cursor. */
  get id(): string {
    const id = this.#id;
    return id.includes('-') ? id : (this.#id = formatId(id, this._seq));
  }

  /**
   * The message as JSON writes it: the same fields as when the id was a plain property (the
   * internal ones too, untyped), the id formatted if it was not yet.
   */
  toJSON(): Pick<Message<T>, 'id' | 'topic' | 'data' | 'headers'> {
    const json = { id: this.id, _seq: this._seq, topic: this.topic, data: this.data, headers: this.headers, _size: this._size, _time: this._time };
    return json;
  }
}

/** A parsed cursor. */
export interface Cursor {
  /** The epoch of the log that issued it. */
  readonly epoch: string;
  /** Everything after this sequence number is "after the cursor". */
  readonly seq: number;
}

// The id format, in one place for every backend: `<epoch>-<seq>`, both base 36.
const ID = /^([0-9a-z]{1,16})-([0-9a-z]{1,11})$/;
const EPOCH = /^[0-9a-z]{1,16}$/;

/** Whether `epoch` is one a backend could have issued (1 to 16 base-36 characters). @internal */
export function isEpoch(epoch: string): boolean {
  return EPOCH.test(epoch);
}

/** The epoch part of an id this library formatted. @internal */
export function epochOf(id: string): string {
  return id.slice(0, id.lastIndexOf('-'));
}

/** Formats an id. @internal */
export function formatId(epoch: string, seq: number): string {
  return `${epoch}-${seq.toString(36)}`;
}

/**
 * Parses an id or cursor.
 * @throws InvalidCursorError (`PB_ERR_INVALID_CURSOR`) when it is not one.
 */
export function parseCursor(cursor: unknown): Cursor {
  if (typeof cursor !== 'string') throw new InvalidCursorError(`Invalid cursor ${describe(cursor)}: expected a string`);
  const m = ID.exec(cursor);
  const seq = m ? Number.parseInt(m[2]!, 36) : Number.NaN;
  if (!m || !Number.isSafeInteger(seq)) {
    throw new InvalidCursorError(`Invalid cursor ${describe(cursor)}: expected an id this server issued, like "k3x9q-1b"`);
  }
  return { epoch: m[1]!, seq };
}

/**
 * The error for a cursor of the current epoch past everything published: not one this backend
 * issued. @internal
 */
export function aheadError(cursor: Cursor): InvalidCursorError {
  return new InvalidCursorError(`Cursor ${JSON.stringify(formatId(cursor.epoch, cursor.seq))} is ahead of every message published: it was not issued here`);
}

/** A random epoch: 8 base-36 characters. @internal */
export function newEpoch(): string {
  const n = Math.floor(Math.random() * 36 ** 8);
  return n.toString(36).padStart(8, '0');
}

/** Approximate byte size of a message's data, for log limits. @internal */
export function sizeOf(data: unknown): number {
  if (typeof data === 'string') return Buffer.byteLength(data);
  if (typeof data === 'number' || typeof data === 'boolean' || data === null) return 8;
  if (data instanceof Uint8Array) return data.byteLength;
  if (data === undefined) return 0;
  try {
    return Buffer.byteLength(JSON.stringify(data) ?? '');
  } catch {
    return 1024;
  }
}

/**
 * Checks published data as `assertJsonValue` does (with `maxDepth`) and returns its size as
 * {@link sizeOf} counts it, in one pass for the common case: a string, a number, a boolean,
 * `null`, or a flat plain object of such values (the size is then its JSON length, escapes in
 * strings not counted). Anything else is checked by `assertJsonValue` and sized by `sizeOf`.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) as `assertJsonValue` does.
 * @internal
 */
export function checkedSize(data: unknown, maxDepth: number): number {
  switch (typeof data) {
    case 'string':
      if (data.isWellFormed()) return Buffer.byteLength(data);
      break;
    case 'number':
    case 'boolean':
      return 8;
    case 'object': {
      if (data === null) return 8;
      const size = flatObjectSize(data);
      if (size !== -1) return size;
      break;
    }
    default:
  }
  assertJsonValue(data, { maxDepth });
  return sizeOf(data);
}

/**
 * The JSON length of a plain object whose own values are all strings (well-formed), numbers,
 * booleans, `null` or `undefined`, with well-formed keys and no `__proto__` key: nothing that
 * could be refused. `-1` for anything else (the caller checks it the slow way). Allocates nothing.
 */
function flatObjectSize(data: object): number {
  const proto = Object.getPrototypeOf(data) as unknown;
  if ((proto !== Object.prototype && proto !== null) || typeof (data as { toJSON?: unknown }).toJSON === 'function') return -1;
  let size = 2; // {}
  let fields = 0;
  for (const key in data) {
    // (hasOwnProperty inside for-in is what V8 optimizes best.)
    if (!hasOwnProperty.call(data, key) || key === RESERVED_JSON_KEY || !key.isWellFormed()) return -1;
    const value = (data as Record<string, unknown>)[key];
    let n: number;
    switch (typeof value) {
      case 'undefined':
        continue; // JSON leaves it out
      case 'string':
        if (!value.isWellFormed()) return -1;
        n = Buffer.byteLength(value) + 2;
        break;
      case 'number':
        n = numberLength(value);
        break;
      case 'boolean':
        n = value ? 4 : 5;
        break;
      case 'object':
        if (value !== null) return -1;
        n = 4;
        break;
      default:
        return -1;
    }
    size += Buffer.byteLength(key) + 3 + n; // "key":value
    fields++;
  }
  return fields > 1 ? size + fields - 1 : size; // the commas
}

const { hasOwnProperty } = Object.prototype;

/** The length of a number as JSON writes it; integers without formatting one. */
function numberLength(n: number): number {
  if (!Number.isFinite(n)) return 4; // null
  if (!Number.isSafeInteger(n)) return String(n).length;
  let digits = n < 0 ? 2 : 1;
  for (let a = Math.abs(n); a >= 10; a = Math.floor(a / 10)) digits++;
  return digits;
}
