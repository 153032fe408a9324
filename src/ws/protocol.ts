/**
 * The WebSocket protocol of `patchbay/ws`: JSON text frames, one object per frame, told apart by
 * `type`. Its version is the subprotocol name {@link WS_SUBPROTOCOL} (a client may offer it in
 * `Sec-WebSocket-Protocol`; offering nothing is fine too).
 *
 * ## Client → server
 *
 * | frame | meaning |
 * |---|---|
 * | `{"type":"subscribe","sid":"s1","pattern":"chat.*","cursor"?:ID}` | follow a topic or pattern under the client's own subscription id `sid` |
 * | `{"type":"subscribe","sid":"s1","topics":["a","b"],"cursor"?:ID}` | follow several topics under one `sid`, in publish order, sharing one cursor |
 * | `{"type":"unsubscribe","sid":"s1"}` | stop one subscription |
 * | `{"type":"publish","topic":"chat.a","data":VALUE}` | publish any JSON value (only when the server's `authorize.publish` allows it) |
 * | `{"type":"ping"}` | ask for a `pong` (browsers cannot send protocol pings) |
 *
 * Every client frame may carry `ref` (a string of up to 128 printable characters, or a safe
 * integer); the reply to it (`subscribed`, `unsubscribed`, `published`, `pong` or `error`) echoes
 * it. `cursor` is a message id the server sent (resume after it), `"oldest"` (everything the log
 * still holds) or absent (from now on). Unknown fields (`constructor` and `prototype` among them),
 * unknown types, binary frames, frames that are not a JSON object, frames nested deeper than the
 * handler's `maxFrameDepth`, and a `__proto__` key at any depth (in a `publish` frame's `data`
 * too) are refused with an `error` frame `PB_ERR_PROTOCOL`; the connection stays open. A
 * `pattern` is refused with `PB_ERR_FORBIDDEN` unless the server sets `allowPatterns`.
 *
 * ## Server → client
 *
 * | frame | meaning |
 * |---|---|
 * | `{"type":"subscribed","sid","cursor","replayed","more"?}` | the subscription is live; `cursor` is where it resumes from if no message comes before a cut; `replayed` messages of the log follow at once, and with `"more":true` the rest of the log after them follows as the client reads |
 * | `{"type":"message","sid","id","topic","data","headers"?}` | one message; `id` is the broker's id and a valid cursor |
 * | `{"type":"gap","sid","reason":"log","cursor"}` | the log no longer held everything after `cursor` (trimmed, or from before a restart): what follows is what is left |
 * | `{"type":"gap","sid","reason":"overflow","dropped"}` | the send buffer's overflow policy dropped `dropped` messages of this subscription; resubscribe from the last id you have to fetch them again |
 * | `{"type":"unsubscribed","sid","code"?,"message"?}` | the subscription ended: asked for, or (with a code) ended by the server |
 * | `{"type":"published","id","topic"}` | the publish was stored under the broker id `id` |
 * | `{"type":"pong"}` | the answer to `ping` |
 * | `{"type":"error","code","message","sid"?}` | a frame was refused; `code` is one of `docs/errors.md` (or `PB_ERR_INTERNAL`) |
 *
 * Messages of one subscription arrive in publish order, each once; resubscribing with the last id
 * received resumes with no gap and no duplicate.
 *
 * @module
 */
import { BodyTooLargeError, ErrorCodes, PatchbayError, ProtocolError } from '../core/errors.js';
import { DEFAULT_MAX_JSON_DEPTH, parseJson } from '../core/json.js';

/** The subprotocol name of this protocol's version, for `Sec-WebSocket-Protocol`. */
export const WS_SUBPROTOCOL = 'patchbay.v1';

/** A client's correlation token: echoed in the reply to the frame that carried it. */
export type WsRef = string | number;

/** `subscribe`: follow a topic, several topics, or a pattern under a client-chosen `sid`. */
export interface WsSubscribeFrame {
  /** The frame type. */
  readonly type: 'subscribe';
  /** The subscription id, chosen by the client: 1-64 letters, digits or `_ - . : ~ @`, unique on the connection. */
  readonly sid: string;
  /**
   * A topic or pattern (`*` one token, `>` the rest). Give this or `topics`. Refused with
   * `PB_ERR_FORBIDDEN` unless the server sets `allowPatterns`.
   */
  readonly pattern?: string;
  /** One or more topics, delivered in publish order under one cursor. Give this or `pattern`. */
  readonly topics?: readonly string[];
  /** Resume after this message id; `"oldest"` for everything kept; absent for "from now on". */
  readonly cursor?: string;
  /** Echoed in the reply. */
  readonly ref?: WsRef;
}

/** `unsubscribe`: stop the subscription `sid`. */
export interface WsUnsubscribeFrame {
  /** The frame type. */
  readonly type: 'unsubscribe';
  /** The subscription to stop. */
  readonly sid: string;
  /** Echoed in the reply. */
  readonly ref?: WsRef;
}

/** `publish`: store `data` on `topic` and deliver it (when the server allows). */
export interface WsPublishFrame {
  /** The frame type. */
  readonly type: 'publish';
  /** A topic (no wildcards). */
  readonly topic: string;
  /** Any JSON value. */
  readonly data: unknown;
  /** Echoed in the reply. */
  readonly ref?: WsRef;
}

/** `ping`: answered with `pong`. */
export interface WsPingFrame {
  /** The frame type. */
  readonly type: 'ping';
  /** Echoed in the reply. */
  readonly ref?: WsRef;
}

/** Every frame a client may send. */
export type WsClientFrame = WsSubscribeFrame | WsUnsubscribeFrame | WsPublishFrame | WsPingFrame;

/** `subscribed`: the subscription is live. */
export interface WsSubscribedFrame {
  /** The frame type. */
  readonly type: 'subscribed';
  /** The subscription id. */
  readonly sid: string;
  /** Where to resume from if no message of this subscription arrives before a cut: the cursor given, or the head when it started. */
  readonly cursor: string;
  /** How many messages of the log after the cursor follow this frame at once. */
  readonly replayed: number;
  /**
   * `true` when the log holds more after those: they follow (before any live message of this
   * subscription) as fast as the client reads.
   */
  readonly more?: true;
  /** The `ref` of the `subscribe` frame. */
  readonly ref?: WsRef;
}

/** `message`: one message of a subscription. */
export interface WsMessageFrame {
  /** The frame type. */
  readonly type: 'message';
  /** The subscription it is for. */
  readonly sid: string;
  /** The broker's id of the message: a valid cursor. */
  readonly id: string;
  /** The topic it was published on. */
  readonly topic: string;
  /** What was published (a JSON value). */
  readonly data: unknown;
  /** Headers given at publish, if any. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** `gap` (log): the log no longer held everything after the cursor; what follows is what is left. */
export interface WsLogGapFrame {
  /** The frame type. */
  readonly type: 'gap';
  /** The subscription it is for. */
  readonly sid: string;
  /** Why: the log was trimmed past the cursor, or the cursor is from before a restart. */
  readonly reason: 'log';
  /** The cursor the subscription resumed from. */
  readonly cursor: string;
}

/** `gap` (overflow): the send buffer's overflow policy dropped messages of this subscription. */
export interface WsOverflowGapFrame {
  /** The frame type. */
  readonly type: 'gap';
  /** The subscription it is for. */
  readonly sid: string;
  /** Why: the connection's send buffer was full. */
  readonly reason: 'overflow';
  /** How many messages were dropped (since the last message received). */
  readonly dropped: number;
}

/** `unsubscribed`: the subscription ended. */
export interface WsUnsubscribedFrame {
  /** The frame type. */
  readonly type: 'unsubscribed';
  /** The subscription that ended. */
  readonly sid: string;
  /** Set when the server ended it (for example `PB_ERR_CLOSED` when the broker closed). */
  readonly code?: string;
  /** Why the server ended it. */
  readonly message?: string;
  /** The `ref` of the `unsubscribe` frame. */
  readonly ref?: WsRef;
}

/** `published`: the publish was stored. */
export interface WsPublishedFrame {
  /** The frame type. */
  readonly type: 'published';
  /** The broker's id of the stored message. */
  readonly id: string;
  /** The topic it was published on. */
  readonly topic: string;
  /** The `ref` of the `publish` frame. */
  readonly ref?: WsRef;
}

/** `pong`: the answer to `ping`. */
export interface WsPongFrame {
  /** The frame type. */
  readonly type: 'pong';
  /** The `ref` of the `ping` frame. */
  readonly ref?: WsRef;
}

/** `error`: a frame was refused (the connection stays open). */
export interface WsErrorFrame {
  /** The frame type. */
  readonly type: 'error';
  /** A code of `docs/errors.md`, or `PB_ERR_INTERNAL` for a failure of the server's own. */
  readonly code: string;
  /** What went wrong, for a person. */
  readonly message: string;
  /** The subscription the refused frame named, if any. */
  readonly sid?: string;
  /** The `ref` of the refused frame, if it had a valid one. */
  readonly ref?: WsRef;
}

/** Every frame the server sends, as a client parses it. */
export type WsServerFrame =
  | WsSubscribedFrame
  | WsMessageFrame
  | WsLogGapFrame
  | WsOverflowGapFrame
  | WsUnsubscribedFrame
  | WsPublishedFrame
  | WsPongFrame
  | WsErrorFrame;

/** What {@link parseClientFrame} returns for a frame it refuses: the error, and what to echo. @internal */
export interface RefusedFrame {
  readonly error: PatchbayError;
  /** Said to the client instead of the error's own message. */
  readonly message?: string;
  readonly ref?: WsRef;
  readonly sid?: string;
}

const SID = /^[A-Za-z0-9_\-.:~@]{1,64}$/;
const FIELDS: Readonly<Record<WsClientFrame['type'], readonly string[]>> = {
  subscribe: ['type', 'sid', 'pattern', 'topics', 'cursor', 'ref'],
  unsubscribe: ['type', 'sid', 'ref'],
  publish: ['type', 'topic', 'data', 'ref'],
  ping: ['type', 'ref'],
};
const TYPES = Object.keys(FIELDS) as WsClientFrame['type'][];

/** Whether `value` is a valid subscription id. @internal */
export function isSid(value: unknown): value is string {
  return typeof value === 'string' && SID.test(value);
}

function isRef(value: unknown): value is WsRef {
  if (typeof value === 'number') return Number.isSafeInteger(value);
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) return false;
  // No control characters (no CR, LF, NUL...).
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return false;
  }
  return true;
}

function protocol(message: string): ProtocolError {
  return new ProtocolError(message);
}

/**
 * Parses one client frame. Never throws: a frame that breaks the protocol comes back as
 * `{ error }`, with the frame's `ref` and `sid` when they were themselves valid, so the reply can
 * carry them. Only the frame's shape is checked here (topics and patterns are checked where they
 * are used).
 *
 * @param data - The frame's payload.
 * @param binary - Whether it came as a binary frame (refused: the protocol is text).
 * @param maxBytes - The largest payload accepted.
 * @param maxDepth - The deepest nesting of objects and arrays accepted (the frame itself counts 1).
 * @internal
 */
export function parseClientFrame(data: Buffer, binary: boolean, maxBytes: number, maxDepth = DEFAULT_MAX_JSON_DEPTH): WsClientFrame | RefusedFrame {
  if (data.length > maxBytes) {
    return {
      error: new BodyTooLargeError(maxBytes),
      message: `A frame of ${data.length} bytes is over the limit of ${maxBytes} bytes; it was ignored`,
    };
  }
  if (binary) return { error: protocol('Binary frames are not part of the protocol: send JSON text frames') };
  let value: unknown;
  try {
    // Depth checked and `__proto__` keys refused at any depth, before JSON.parse runs.
    value = parseJson(data.toString('utf8'), { maxDepth, what: 'A frame' });
  } catch (error) {
    const refused = error instanceof PatchbayError ? error : protocol('A frame must be one JSON object; this one is not JSON');
    return { error: refused, ...echoOf(data) };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { error: protocol('A frame must be one JSON object (with a "type")') };
  }
  const frame = value as Record<string, unknown>;
  const ref = Object.hasOwn(frame, 'ref') && isRef(frame['ref']) ? frame['ref'] : undefined;
  const sid = Object.hasOwn(frame, 'sid') && isSid(frame['sid']) ? frame['sid'] : undefined;
  const refuse = (message: string): RefusedFrame => ({ error: protocol(message), ref, sid });
  const type = frame['type'];
  if (typeof type !== 'string' || !(TYPES as readonly string[]).includes(type)) {
    const shown = typeof type === 'string' ? JSON.stringify(type.slice(0, 40)) : typeof type;
    return refuse(`Unknown frame type ${shown}; expected one of ${TYPES.map((t) => `"${t}"`).join(', ')}`);
  }
  const allowed = FIELDS[type as WsClientFrame['type']];
  for (const key of Object.keys(frame)) {
    if (!allowed.includes(key)) return refuse(`Unknown field ${JSON.stringify(key.slice(0, 40))} in a "${type}" frame; it takes ${allowed.join(', ')}`);
  }
  if (Object.hasOwn(frame, 'ref') && ref === undefined) {
    return refuse('Expected `ref` to be a string of 1-128 characters without control characters, or a safe integer');
  }
  switch (type as WsClientFrame['type']) {
    case 'ping':
      return { type: 'ping', ref };
    case 'unsubscribe':
      if (sid === undefined) return refuse(sidMessage(frame['sid']));
      return { type: 'unsubscribe', sid, ref };
    case 'publish': {
      if (typeof frame['topic'] !== 'string') return refuse('Expected `topic` to be a string');
      if (!Object.hasOwn(frame, 'data')) return refuse('A "publish" frame needs `data` (any JSON value, null included)');
      return { type: 'publish', topic: frame['topic'], data: frame['data'], ref };
    }
    case 'subscribe': {
      if (sid === undefined) return refuse(sidMessage(frame['sid']));
      const { pattern, topics, cursor } = frame;
      if ((pattern === undefined) === (topics === undefined)) return refuse('A "subscribe" frame needs either `pattern` or `topics`, not both');
      if (pattern !== undefined && typeof pattern !== 'string') return refuse('Expected `pattern` to be a string');
      if (topics !== undefined && (!Array.isArray(topics) || topics.length === 0 || !topics.every((t) => typeof t === 'string'))) {
        return refuse('Expected `topics` to be a non-empty array of strings');
      }
      if (cursor !== undefined && typeof cursor !== 'string') return refuse('Expected `cursor` to be a message id (a string) or "oldest"');
      return {
        type: 'subscribe',
        sid,
        ...(pattern !== undefined ? { pattern } : { topics: topics as string[] }),
        ...(cursor !== undefined ? { cursor } : {}),
        ref,
      };
    }
  }
}

/**
 * The `ref` and `sid` of a frame refused for its depth or a `__proto__` key, so the error reply
 * still carries them: a plain `JSON.parse` (which makes `__proto__` an own property, harmless
 * here: only `ref` and `sid` are read) that may itself fail, then nothing is echoed.
 */
function echoOf(data: Buffer): { ref?: WsRef; sid?: string } {
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    return {};
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return {};
  const frame = value as Record<string, unknown>;
  const out: { ref?: WsRef; sid?: string } = {};
  if (Object.hasOwn(frame, 'ref') && isRef(frame['ref'])) out.ref = frame['ref'];
  if (Object.hasOwn(frame, 'sid') && isSid(frame['sid'])) out.sid = frame['sid'];
  return out;
}

function sidMessage(value: unknown): string {
  return value === undefined
    ? 'This frame needs `sid`, the subscription id'
    : 'Expected `sid` to be 1-64 letters, digits or _ - . : ~ @';
}

/** Whether a parse result is a refusal. @internal */
export function isRefused(result: WsClientFrame | RefusedFrame): result is RefusedFrame {
  return 'error' in result;
}

// --- server frames: written by hand, with every string JSON-escaped ------------------------------

const q = JSON.stringify;

/** Appends `"ref":…` when there is one. */
function withRef(body: string, ref: WsRef | undefined): string {
  return ref === undefined ? `${body}}` : `${body},"ref":${q(ref)}}`;
}

/** @internal */
export function subscribedFrame(sid: string, cursor: string, replayed: number, ref: WsRef | undefined, more = false): string {
  return withRef(`{"type":"subscribed","sid":${q(sid)},"cursor":${q(cursor)},"replayed":${replayed}${more ? ',"more":true' : ''}`, ref);
}

/** @internal */
export function unsubscribedFrame(sid: string, ref: WsRef | undefined, error?: unknown): string {
  let why = '';
  if (error instanceof PatchbayError) why = `,"code":${q(error.code)},"message":${q(error.message)}`;
  else if (error !== undefined) why = `,"code":"${ErrorCodes.INTERNAL}","message":"Internal server error"`;
  return withRef(`{"type":"unsubscribed","sid":${q(sid)}${why}`, ref);
}

/** @internal */
export function publishedFrame(id: string, topic: string, ref: WsRef | undefined): string {
  return withRef(`{"type":"published","id":${q(id)},"topic":${q(topic)}`, ref);
}

/** @internal */
export function pongFrame(ref: WsRef | undefined): string {
  return withRef('{"type":"pong"', ref);
}

/** @internal */
export function logGapFrame(sid: string, cursor: string): string {
  return `{"type":"gap","sid":${q(sid)},"reason":"log","cursor":${q(cursor)}}`;
}

/** @internal */
export function overflowGapFrame(sid: string, dropped: number): string {
  return `{"type":"gap","sid":${q(sid)},"reason":"overflow","dropped":${dropped}}`;
}

/**
 * An error frame. A {@link PatchbayError} keeps its code and message; anything else (a bug, or a
 * hook's own exception) is `PB_ERR_INTERNAL` without its message, which may hold internals.
 * @internal
 */
export function errorFrame(error: unknown, ref: WsRef | undefined, sid: string | undefined, message?: string): string {
  const known = error instanceof PatchbayError;
  const code = known ? error.code : ErrorCodes.INTERNAL;
  message ??= known ? error.message : 'Internal server error';
  return withRef(`{"type":"error","code":${q(code)},"message":${q(message)}${sid === undefined ? '' : `,"sid":${q(sid)}`}`, ref);
}

/**
 * The tail of a message frame, from `"id"` on: the same for every subscriber of the message.
 * `undefined` when the data cannot be written as JSON (a BigInt, a cycle, a function).
 * @internal
 */
export function messageTail(id: string, topic: string, data: unknown, headers: Readonly<Record<string, string>> | undefined): string | undefined {
  // Everything may come from a backend of another process or version: nothing here may throw.
  try {
    if (typeof id !== 'string' || typeof topic !== 'string') return undefined;
    const json = typeof data === 'string' ? q(data) : (JSON.stringify(data) as string | undefined);
    if (json === undefined) return undefined;
    let h = '';
    if (headers !== undefined) {
      const hj = JSON.stringify(headers) as string | undefined;
      if (hj === undefined || hj.charCodeAt(0) !== 0x7b /* { */) return undefined;
      h = `,"headers":${hj}`;
    }
    return `"id":${q(id)},"topic":${q(topic)},"data":${json}${h}}`;
  } catch {
    return undefined;
  }
}
