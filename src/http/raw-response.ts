/**
 * One answer's bytes, built once and written whole to many responses.
 *
 * When a publish wakes many parked requests that share one answer, `writeHead` + `end` per
 * request would serialize and validate the same headers again for each, and hand the socket two
 * chunks (the header string, then the body). Here the first response of a herd is answered by
 * node:http itself (`writeHead`), and the header it stored (`res._header`, exactly the text it
 * would send: status line, our headers, `Date`, `Connection`, `Keep-Alive`) is joined with the
 * body into one Buffer. Every later response in the same connection state and the same second
 * gets that header string as its own `_header` (marked sent) and `end(bytes)`: node then writes
 * the one Buffer to the socket and does all its usual bookkeeping (`finished`, 'prefinish',
 * 'finish' after the write, keep-alive or close in the server's `resOnFinish`, the next
 * pipelined response). The bytes on the wire are the ones node would have written.
 *
 * The shared bytes are used only when they are right for the response, so nothing depends on
 * guessing node's rules:
 * - a real `node:http` `ServerResponse` (not HTTP/2's compatibility response, not an adapter's
 *   bridge), whose socket is its own (`socket._httpMessage === res`: the response at the head
 *   of a pipelined queue) and still writable, with nothing written yet;
 * - no header set on the response before (CORS, an app's own headers): those take `writeHead`,
 *   which merges them;
 * - every field `_storeHeader` reads to write the connection headers equal to the response's
 *   that built the bytes (keep-alive, its timeout and max, removed headers, status message),
 *   and the connection kept alive (a response that closes it takes `writeHead`);
 * - the same second of `Date.now()`, so `Date` stays right.
 *
 * Anything else is answered with `writeHead` + `end` as before.
 *
 * @module
 * @internal
 */
import { ServerResponse } from 'node:http';

/**
 * The most header bytes a shared answer may carry beyond its own headers' values: the status
 * line, the header names, `Date`, `Connection`, `Keep-Alive`. A header longer than this is not
 * kept as bytes (a caller that counts the bytes reserves this much).
 * @internal
 */
export const RAW_HEAD_ALLOWANCE = 512;

/** The fields of node:http's OutgoingMessage that this module reads or sets. */
interface NodeResponse extends ServerResponse {
  _header: string | null;
  _headerSent: boolean;
  _last: boolean;
  _removedConnection: boolean;
  _removedContLen: boolean;
  _removedTE: boolean;
  _keepAliveTimeout: number;
  _maxRequestsPerSocket: number | undefined;
  _defaultKeepAlive: boolean;
  chunkedEncoding: boolean;
  socket: (ServerResponse['socket'] & { _httpMessage?: unknown }) | null;
}

/**
 * An answer's full HTTP/1.1 bytes (header and body) and the response state they are valid for.
 * @internal
 */
export interface RawAnswer {
  /** The header text node:http stored for the response that built these bytes. */
  readonly header: string;
  /** `header` and the body, as one Buffer. */
  readonly bytes: Buffer;
  /** `Math.floor(Date.now() / 1000)` when built: `Date` is right within that second. */
  readonly second: number;
  readonly sendDate: boolean;
  readonly keepAliveTimeout: number;
  readonly maxRequestsPerSocket: number | undefined;
  readonly defaultKeepAlive: boolean;
}

/**
 * Answers `res` with `status`, `headers` (a flat [name, value, ...] list, including
 * `content-length`) and `body`, reusing `raw` when it fits this response; returns the bytes to
 * reuse for the next response (`raw`, new ones, or `undefined` when none could be built).
 * Throws what `writeHead` throws (an invalid header value), before anything is written.
 * @internal
 */
export function endShared(
  res: ServerResponse,
  status: number,
  headers: readonly string[],
  body: Buffer,
  raw: RawAnswer | undefined,
  maxHeadBytes: number,
): RawAnswer | undefined {
  const r = res as NodeResponse;
  if (!eligible(r)) {
    res.writeHead(status, headers as string[]);
    res.end(body);
    return raw;
  }
  // eslint-disable-next-line no-restricted-syntax -- node:http's `Date` header is wall-clock time, whatever the Clock says
  const second = Math.floor(Date.now() / 1000);
  if (raw !== undefined && raw.second === second && sameState(raw, r)) {
    r._header = raw.header; // exactly what writeHead would store for this response now
    r._headerSent = true; // ...and already inside `raw.bytes`
    r.statusCode = status;
    res.end(raw.bytes);
    return raw;
  }
  res.writeHead(status, headers as string[]);
  const header = r._header;
  if (typeof header !== 'string' || r._headerSent || r._last || header.length > maxHeadBytes) {
    res.end(body);
    return raw;
  }
  const bytes = Buffer.allocUnsafe(header.length + body.length);
  bytes.write(header, 0, 'latin1');
  body.copy(bytes, header.length);
  r._headerSent = true;
  res.end(bytes);
  return {
    header,
    bytes,
    second,
    sendDate: r.sendDate,
    keepAliveTimeout: r._keepAliveTimeout,
    maxRequestsPerSocket: r._maxRequestsPerSocket,
    defaultKeepAlive: r._defaultKeepAlive,
  };
}

/** Whether shared bytes could be written to `res`: see the module comment. */
function eligible(r: NodeResponse): boolean {
  if (!(r instanceof ServerResponse)) return false;
  const socket = r.socket;
  return (
    socket !== null &&
    socket._httpMessage === r &&
    socket.writable &&
    r._header === null &&
    r.shouldKeepAlive &&
    !r._removedConnection &&
    !r._removedContLen &&
    !r._removedTE &&
    !r.chunkedEncoding &&
    r.statusMessage === undefined &&
    r.getHeaderNames().length === 0
  );
}

/** Whether node:http would write the same header for `r` as for the response that built `raw`. */
function sameState(raw: RawAnswer, r: NodeResponse): boolean {
  return (
    raw.sendDate === r.sendDate &&
    raw.keepAliveTimeout === r._keepAliveTimeout &&
    raw.maxRequestsPerSocket === r._maxRequestsPerSocket &&
    raw.defaultKeepAlive === r._defaultKeepAlive
  );
}
