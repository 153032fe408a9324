/**
 * How messages travel through Redis: the payload encoding (strings verbatim, bytes as base64,
 * anything else as JSON), the feed notification, and stream entry ids.
 *
 * What is read back from Redis is untrusted input: another process (another version, a bug, a
 * hand-written `XADD` or `PUBLISH`) may have written it. JSON goes through `parseJson` (a depth
 * limit of 1000, the most a broker accepts; no `__proto__` key) and headers must be an object of strings; anything else throws a
 * {@link ProtocolError}, which the backend turns into a skipped record and a gap.
 *
 * @module
 * @internal
 */
import { InvalidArgumentError, ProtocolError } from '../core/errors.js';
import { MAX_JSON_DEPTH_LIMIT, parseJson } from '../core/json.js';
import { describe } from '../core/validate.js';
import type { MessageHeaders } from '../pubsub/index.js';
import { isEpoch } from '../pubsub/message.js';

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

/**
 * Decodes what {@link encodeData} made. JSON may nest up to {@link MAX_JSON_DEPTH_LIMIT} (1000)
 * levels, the most any broker's `maxDataDepth` allows: the check here keeps hand-written records
 * from overflowing the stack, and does not apply a publisher's policy again (a broker that
 * accepted 200 levels must be able to read them back).
 * @throws ProtocolError (`PB_ERR_PROTOCOL`) for an unknown kind, or JSON that is invalid, nests
 *   deeper than {@link MAX_JSON_DEPTH_LIMIT} or has a `__proto__` key.
 */
export function decodeData(encoded: string): unknown {
  const kind = encoded.charCodeAt(0);
  const body = encoded.slice(1);
  if (kind === 115 /* s */) return body;
  if (kind === 106 /* j */) return parseJson(body, { what: 'A payload read back from Redis', maxDepth: MAX_JSON_DEPTH_LIMIT });
  if (kind === 98 /* b */) return Buffer.from(body, 'base64');
  throw new ProtocolError(`A payload read back from Redis has an unknown kind ${JSON.stringify(encoded.slice(0, 1))}`);
}

/** Encodes headers as JSON, or `''` for none. */
export function encodeHeaders(headers: MessageHeaders | undefined): string {
  return headers === undefined ? '' : JSON.stringify(headers);
}

/**
 * Decodes headers; `''` is none.
 * @throws ProtocolError (`PB_ERR_PROTOCOL`) unless they are a JSON object of strings (no
 *   `__proto__` key).
 */
export function decodeHeaders(encoded: string | undefined): MessageHeaders | undefined {
  if (encoded === undefined || encoded === '') return undefined;
  const parsed = parseJson(encoded, { what: 'Headers read back from Redis', maxDepth: 1 });
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ProtocolError('Headers read back from Redis are not a JSON object');
  const headers = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') throw new ProtocolError(`Header ${JSON.stringify(name.slice(0, 40))} read back from Redis is not a string`);
    headers[name] = value;
  }
  return Object.freeze(headers);
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
 * hold newlines; the other parts never do). `undefined` when it is not one (an epoch that no
 * backend issues, a sequence number that is not a non-negative safe integer, an empty topic).
 * Data and headers are decoded later, by {@link decodeData} and {@link decodeHeaders}.
 */
export function parseFeed(payload: string): FeedEntry | undefined {
  const a = payload.indexOf('\n');
  const b = payload.indexOf('\n', a + 1);
  const c = payload.indexOf('\n', b + 1);
  const d = payload.indexOf('\n', c + 1);
  if (a <= 0 || b < 0 || c <= b + 1 || d < 0) return undefined;
  const epoch = payload.slice(0, a);
  const seqText = payload.slice(a + 1, b);
  const seq = Number(seqText);
  if (!isEpoch(epoch) || !/^\d{1,16}$/.test(seqText) || !Number.isSafeInteger(seq)) return undefined;
  return { epoch, seq, topic: payload.slice(b + 1, c), headers: payload.slice(c + 1, d), data: payload.slice(d + 1) };
}

/** The sequence number of a stream entry id `<seq / 1024>-<seq % 1024>`. */
export function seqOfStreamId(id: string): number {
  const dash = id.indexOf('-');
  return Number(id.slice(0, dash)) * 1024 + Number(id.slice(dash + 1));
}
