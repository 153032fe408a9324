/**
 * The two sides of a sidecar connection's handshake, as strategy objects a channel picks once.
 *
 * The app side speaks first: HELLO with its session. The sidecar side answers WELCOME with the
 * last seq of that session it has taken (from its own record of the session, or the durable
 * `lastHandled` of a sidecar that restarted), and the app drops from its outbox what the sidecar
 * already has. After that the two ends are the same channel; only three things still differ,
 * and they are here: who opens, what the opening answer means, and what a lost connection means
 * (the app reconnects; an accepted connection is the whole life of its channel).
 *
 * @module
 * @internal
 */
import { ProtocolError } from '../core/errors.js';
import type { Connection } from './connection.js';
import { helloJson, Kind, PROTOCOL_VERSION, welcomeJson, type Envelope } from './protocol.js';

/** Server-side state shared by the connections of one `serveSidecar`. @internal */
export interface AcceptState {
  /** Per app session: the last seq taken. */
  readonly sessions: Map<string, { last: number }>;
  /** The durable resume point of a session, from the sidecar. */
  readonly lastHandled: ((session: string) => number | undefined) | undefined;
}

/** What a completed handshake settles. @internal */
export interface Greeting {
  /** The peer's messages up to this seq are taken already (the inbox starts after it). */
  readonly lastIn: number;
  /** The peer has this side's messages up to this seq (the outbox drops them). */
  readonly peerHas: number;
  /** The frame to answer with, if any. */
  readonly reply: string | undefined;
}

/** One side of the handshake. @internal */
export interface Handshake {
  /** The kind of the peer's opening this side waits for. */
  readonly awaits: typeof Kind.HELLO | typeof Kind.WELCOME;
  /** A lost connection ends the channel (no reconnection). */
  readonly endsWithConnection: boolean;
  /** The frame this side opens a connection with, if it speaks first. */
  opening(session: string): string | undefined;
  /** Takes the peer's opening (of kind `awaits`, protocol version checked). */
  greet(conn: Connection, m: Envelope): Greeting;
}

/**
 * The key of the internal channel option that picks the sidecar side (`acceptSidecarStream`
 * sets it); without it a channel is the app's side. @internal
 */
export const HANDSHAKE: unique symbol = Symbol('patchbay.sidecar.handshake');

/** The app's side: says HELLO, takes WELCOME, reconnects after a loss. @internal */
export const appHandshake: Handshake = {
  awaits: Kind.WELCOME,
  endsWithConnection: false,
  opening: (session) => helloJson(session),
  // Sidecar-to-app messages are numbered per connection (the sidecar keeps no queue across them).
  greet: (_conn, m) => ({ lastIn: 0, peerHas: (m as readonly [1, number, number])[2], reply: undefined }),
};

/** The sidecar's side of one accepted connection: waits for HELLO, answers WELCOME. @internal */
export function sidecarHandshake(state: AcceptState): Handshake {
  return {
    awaits: Kind.HELLO,
    endsWithConnection: true,
    opening: () => undefined,
    greet(conn, m) {
      const session = (m as readonly [0, number, string])[2];
      conn.messageSession = session;
      let record = state.sessions.get(session);
      if (record === undefined) {
        const durable = state.lastHandled?.(session);
        record = { last: typeof durable === 'number' && Number.isSafeInteger(durable) && durable > 0 ? durable : 0 };
        state.sessions.set(session, record);
      }
      conn.resume = record;
      return { lastIn: record.last, peerHas: 0, reply: welcomeJson(record.last) };
    },
  };
}

/**
 * Checks that `m` is the opening `handshake` waits for, on a connection not yet ready.
 * @throws {@link ProtocolError} (`PB_ERR_PROTOCOL`) for an unexpected opening or another protocol version.
 * @internal
 */
export function checkOpening(handshake: Handshake, conn: Connection, m: Envelope & { 0: typeof Kind.HELLO | typeof Kind.WELCOME }): void {
  if (m[0] !== handshake.awaits || conn.ready) throw new ProtocolError(m[0] === Kind.HELLO ? 'Unexpected HELLO' : 'Unexpected WELCOME');
  if (m[1] !== PROTOCOL_VERSION) throw new ProtocolError(`The peer speaks protocol version ${m[1]}; this side speaks ${PROTOCOL_VERSION}`);
}
