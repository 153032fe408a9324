/**
 * The messages a sidecar connection carries, one per frame, each a JSON array whose first
 * element is its kind. Arrays rather than objects: no key names on the wire, and a check of the
 * shape is a few `typeof`s.
 *
 * ```
 * HELLO    [0, version, session]        the connecting side (the app) opens with it
 * WELCOME  [1, version, resumeSeq]      the accepting side answers: the last seq of that session
 *                                       it has already taken, so the app replays only the rest
 * SEND     [2, seq, type, data?]        fire-and-forget
 * REQUEST  [3, seq, id, type, data?]    expects a REPLY or an ERROR with the same id
 * REPLY    [4, id, data?]
 * ERROR    [5, id, code, message]
 * ACK      [6, seq]                     every SEND/REQUEST up to seq has been handled (cumulative)
 * PING     [7, id]   PONG [8, id]       health check, answered by the connection itself
 * CANCEL   [9, id]                      the requester gave up: abort the handler's signal
 * BYE      [10]                         graceful end: nothing more will be sent
 * ```
 *
 * `seq` numbers the SEND and REQUEST messages of one session (one app-side channel, across its
 * reconnections), from 1 and increasing; the receiver ignores a seq it has already taken, which
 * is what makes a replay after a reconnection free of duplicates.
 *
 * @module
 * @internal
 */
import { InvalidArgumentError, ProtocolError } from '../core/errors.js';
import { DEFAULT_MAX_JSON_DEPTH, parseJson, RESERVED_JSON_KEY } from '../core/json.js';

/** The protocol version sent in HELLO and WELCOME. @internal */
export const PROTOCOL_VERSION = 1;

/** Message kinds. @internal */
export const Kind = {
  HELLO: 0,
  WELCOME: 1,
  SEND: 2,
  REQUEST: 3,
  REPLY: 4,
  ERROR: 5,
  ACK: 6,
  PING: 7,
  PONG: 8,
  CANCEL: 9,
  BYE: 10,
} as const;

/** A decoded message. @internal */
export type Envelope =
  | readonly [typeof Kind.HELLO, number, string]
  | readonly [typeof Kind.WELCOME, number, number]
  | readonly [typeof Kind.SEND, number, string, unknown?]
  | readonly [typeof Kind.REQUEST, number, number, string, unknown?]
  | readonly [typeof Kind.REPLY, number, unknown?]
  | readonly [typeof Kind.ERROR, number, string, string]
  | readonly [typeof Kind.ACK, number]
  | readonly [typeof Kind.PING, number]
  | readonly [typeof Kind.PONG, number]
  | readonly [typeof Kind.CANCEL, number]
  | readonly [typeof Kind.BYE];

/** The data rides one level down, in the envelope's array: it may nest as deep as published data. */
const FRAME_MAX_DEPTH = DEFAULT_MAX_JSON_DEPTH + 1;

/** `parseJson` with the frame's limits: a linear scan of the text for depth and `__proto__`, then `JSON.parse`. */
function parseFrame(text: string): unknown {
  return parseJson(text, { maxDepth: FRAME_MAX_DEPTH, what: 'Malformed sidecar message: the frame' });
}

/** `JSON.parse` of a frame {@link plainlySafe} cleared; text that is not JSON goes to {@link parseFrame} for its error. */
function parseOrCheck(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return parseFrame(text);
  }
}

/**
 * Text shorter than this cannot nest deeper than the limit: each level opens and (in JSON that
 * parses) closes, two characters a level.
 */
const SHALLOW_TEXT_LENGTH = 2 * (FRAME_MAX_DEPTH + 1);

/**
 * Whether the frame's text cannot break `parseJson`'s limits, decided with a few native
 * `indexOf`s instead of its scan of every character (the hot path: most frames are small
 * records). It cannot hold a `__proto__` key when the name appears neither literally nor
 * possibly spelt with a `\u` escape (the only escape that yields its letters): `plain` says the
 * decoder has already seen neither in the frame's chunk. It cannot nest deeper than the limit
 * when it is shorter than {@link SHALLOW_TEXT_LENGTH}, or has no more `{` and `[` in all than
 * the limit (each level opens one, strings included: the count only overestimates). A frame that
 * fails either test takes the full scan, which decides.
 */
function plainlySafe(text: string, plain: boolean): boolean {
  if (!plain && (text.includes(RESERVED_JSON_KEY) || text.includes('\\u'))) return false;
  if (text.length < SHALLOW_TEXT_LENGTH) return true;
  let opens = 0;
  for (let i = text.indexOf('{'); i !== -1; i = text.indexOf('{', i + 1)) if (++opens > FRAME_MAX_DEPTH) return false;
  for (let i = text.indexOf('['); i !== -1; i = text.indexOf('[', i + 1)) if (++opens > FRAME_MAX_DEPTH) return false;
  return true;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

function bad(what: string): never {
  throw new ProtocolError(`Malformed sidecar message: ${what}`);
}

/**
 * Parses one frame's payload into an {@link Envelope}, checking its shape.
 * @param plain - The payload is known to hold neither `__proto__` nor a `\u` escape (the frame
 *   decoder's check of the whole chunk); `false` when unknown.
 * @throws {@link ProtocolError} when the payload is not JSON (or nests deeper than 65 levels, or has a
 *   `__proto__` key) or is not a known message. @internal
 */
export function decodeEnvelope(payload: Buffer | string, plain = false): Envelope {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  const value = plainlySafe(text, plain) ? parseOrCheck(text) : parseFrame(text);
  if (!Array.isArray(value) || value.length === 0) bad('expected a non-empty array');
  const m = value as unknown[];
  const len = m.length;
  switch (m[0]) {
    case Kind.HELLO:
      if (len !== 3 || !isCount(m[1]) || typeof m[2] !== 'string' || m[2].length === 0 || m[2].length > 200) bad('HELLO');
      break;
    case Kind.WELCOME:
      if (len !== 3 || !isCount(m[1]) || !isCount(m[2])) bad('WELCOME');
      break;
    case Kind.SEND:
      if ((len !== 3 && len !== 4) || !isId(m[1]) || typeof m[2] !== 'string') bad('SEND');
      break;
    case Kind.REQUEST:
      if ((len !== 4 && len !== 5) || !isId(m[1]) || !isId(m[2]) || typeof m[3] !== 'string') bad('REQUEST');
      break;
    case Kind.REPLY:
      if ((len !== 2 && len !== 3) || !isId(m[1])) bad('REPLY');
      break;
    case Kind.ERROR:
      if (len !== 4 || !isId(m[1]) || typeof m[2] !== 'string' || typeof m[3] !== 'string') bad('ERROR');
      break;
    case Kind.ACK:
      if (len !== 2 || !isCount(m[1])) bad('ACK');
      break;
    case Kind.PING:
    case Kind.PONG:
    case Kind.CANCEL:
      if (len !== 2 || !isId(m[1])) bad(m[0] === Kind.PING ? 'PING' : m[0] === Kind.PONG ? 'PONG' : 'CANCEL');
      break;
    case Kind.BYE:
      if (len !== 1) bad('BYE');
      break;
    default:
      bad(`unknown kind ${JSON.stringify(m[0])?.slice(0, 20) ?? String(m[0])}`);
  }
  return m as unknown as Envelope;
}

// --- encoders: the JSON of each message, written in one place ------------------------------
// Plain functions of their fields (no closure, no intermediate object but the array
// JSON.stringify needs), so the send path pays nothing for having them here.

/**
 * Refuses, at the sender, JSON the receiver would refuse: a `__proto__` key at any depth
 * (`parseJson` closes the connection on one). Cheap: the text is scanned for the name only, and
 * parsed (exactly as the receiver does) only when the name appears.
 * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) when the receiver would refuse it.
 * @internal
 */
export function checkOutgoing(json: string): string {
  if (json.includes(RESERVED_JSON_KEY)) {
    try {
      parseJson(json, { maxDepth: DEFAULT_MAX_JSON_DEPTH + 1, what: 'The message' });
    } catch (err) {
      throw new InvalidArgumentError(`Expected \`data\` to be JSON the peer accepts: ${(err as Error).message}`, { cause: err });
    }
  }
  return json;
}

/** The JSON of a HELLO. @internal */
export function helloJson(session: string): string {
  return JSON.stringify([Kind.HELLO, PROTOCOL_VERSION, session]);
}

/** The JSON of a WELCOME. @internal */
export function welcomeJson(resumeSeq: number): string {
  return JSON.stringify([Kind.WELCOME, PROTOCOL_VERSION, resumeSeq]);
}

/** The JSON of a SEND. @throws what `JSON.stringify` throws for `data`. @internal */
export function sendJson(seq: number, type: string, data: unknown): string {
  return data === undefined ? JSON.stringify([Kind.SEND, seq, type]) : JSON.stringify([Kind.SEND, seq, type, data]);
}

/** The JSON of a REQUEST. @throws what `JSON.stringify` throws for `data`. @internal */
export function requestJson(seq: number, id: number, type: string, data: unknown): string {
  return data === undefined ? JSON.stringify([Kind.REQUEST, seq, id, type]) : JSON.stringify([Kind.REQUEST, seq, id, type, data]);
}

/** The JSON of a REPLY. @throws what `JSON.stringify` throws for `data`. @internal */
export function replyJson(id: number, data: unknown): string {
  return data === undefined ? JSON.stringify([Kind.REPLY, id]) : JSON.stringify([Kind.REPLY, id, data]);
}

/** The JSON of an ERROR. @internal */
export function errorJson(id: number, code: string, message: string): string {
  return JSON.stringify([Kind.ERROR, id, code, message]);
}

/** The JSON of an ACK. @internal */
export function ackJson(seq: number): string {
  return JSON.stringify([Kind.ACK, seq]);
}

/** The JSON of a PING. @internal */
export function pingJson(id: number): string {
  return JSON.stringify([Kind.PING, id]);
}

/** The JSON of a PONG. @internal */
export function pongJson(id: number): string {
  return JSON.stringify([Kind.PONG, id]);
}

/** The JSON of a CANCEL. @internal */
export function cancelJson(id: number): string {
  return JSON.stringify([Kind.CANCEL, id]);
}

/** The JSON of a BYE. @internal */
export const BYE_JSON = JSON.stringify([Kind.BYE]);
