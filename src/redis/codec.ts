/**
 * How messages travel through Redis: the payload encoding (strings verbatim, bytes as base64,
 * anything else as JSON), the feed notification, and stream entry ids.
 *
 * @module
 * @internal
 */
import { InvalidArgumentError } from '../core/errors.js';
import { describe } from '../core/validate.js';
import type { MessageHeaders } from '../pubsub/index.js';

/**
 * Encodes a payload: `s` + a string, `b` + base64 bytes, `j` + JSON.
 * @throws InvalidArgumentError when the value has no JSON form (a function, a cycle, a BigInt).
 */
export function encodeData(data: unknown): string {
  if (typeof data === 'string') return `s${data}`;
  if (data instanceof Uint8Array) return `b${Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64')}`;
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    throw new InvalidArgumentError(`The Redis backend stores data as JSON, and ${describe(data)} has no JSON form: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (json === undefined) throw new InvalidArgumentError(`The Redis backend stores data as JSON, and ${describe(data)} has no JSON form`);
  return `j${json}`;
}

/** Decodes what {@link encodeData} made. */
export function decodeData(encoded: string): unknown {
  const kind = encoded.charCodeAt(0);
  const body = encoded.slice(1);
  if (kind === 115 /* s */) return body;
  if (kind === 106 /* j */) return JSON.parse(body) as unknown;
  if (kind === 98 /* b */) return Buffer.from(body, 'base64');
  throw new Error(`Unknown payload kind ${JSON.stringify(encoded.slice(0, 1))}`);
}

/** Encodes headers as JSON, or `''` for none. */
export function encodeHeaders(headers: MessageHeaders | undefined): string {
  return headers === undefined ? '' : JSON.stringify(headers);
}

/** Decodes headers; `''` is none. */
export function decodeHeaders(encoded: string | undefined): MessageHeaders | undefined {
  if (encoded === undefined || encoded === '') return undefined;
  return Object.freeze(Object.assign(Object.create(null) as Record<string, string>, JSON.parse(encoded) as Record<string, string>));
}

/** A feed notification, parsed. */
export interface FeedEntry {
  readonly epoch: string;
  readonly seq: number;
  readonly topic: string;
  readonly headers: string;
  readonly data: string;
}

/**
 * Parses a feed notification: `epoch \n seq \n topic \n headers \n data` (the data last: it may
 * hold newlines; the other parts never do).
 */
export function parseFeed(payload: string): FeedEntry | undefined {
  const a = payload.indexOf('\n');
  const b = payload.indexOf('\n', a + 1);
  const c = payload.indexOf('\n', b + 1);
  const d = payload.indexOf('\n', c + 1);
  if (a <= 0 || b < 0 || c < 0 || d < 0) return undefined;
  const seq = Number(payload.slice(a + 1, b));
  if (!Number.isSafeInteger(seq)) return undefined;
  return { epoch: payload.slice(0, a), seq, topic: payload.slice(b + 1, c), headers: payload.slice(c + 1, d), data: payload.slice(d + 1) };
}

/** The sequence number of a stream entry id `<seq / 1024>-<seq % 1024>`. */
export function seqOfStreamId(id: string): number {
  const dash = id.indexOf('-');
  return Number(id.slice(0, dash)) * 1024 + Number(id.slice(dash + 1));
}
