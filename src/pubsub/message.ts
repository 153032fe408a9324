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
import { describe } from '../core/validate.js';

/** Header names and values carried with a message. */
export type MessageHeaders = Readonly<Record<string, string>>;

/** One published message, as stored and as delivered. The same object goes to every subscriber. */
export class Message<T = unknown> {
  /** The message's id: opaque, URL-safe, and usable as a cursor. */
  readonly id: string;
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

  /** @internal */
  constructor(id: string, seq: number, topic: string, data: T, headers: MessageHeaders | undefined, size: number, time: number) {
    this.id = id;
    this._seq = seq;
    this.topic = topic;
    this.data = data;
    this.headers = headers;
    this._size = size;
    this._time = time;
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
