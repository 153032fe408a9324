/**
 * One load process of the WebSocket benchmark: holds `count` WebSocket clients on raw TCP sockets
 * from one 127.0.0.x source address, each subscribed to one topic, parses every server frame
 * itself (RFC 6455: unmasked server frames; pings answered with masked pongs), and records for
 * every (subscriber, event) when it arrived and how late it was.
 *
 * Every message's data is the JSON object `{"seq":N,"t":T,"pad":"..."}`: `seq` numbers the
 * trial's events from 1, `t` is the publisher's clock (`performance.timeOrigin +
 * performance.now()`) when it wrote the publish. Each subscriber is checked on its own: an event
 * it already had is a duplicate, one whose seq is below the highest it had is reordered, a seq it
 * never got is lost.
 *
 * Spawned by `main.ts` with an IPC channel (advanced serialization); messages:
 *
 * - in `{ type: 'start', port, path, topic, count, localAddress, window, events }`: open `count`
 *   connections (at most `window` connecting at once), upgrade each on `path`, and subscribe it
 *   to `topic` (sid `s`). Replies `{ type: 'ready', ready, errors }` once every socket has its
 *   `subscribed` frame (or failed).
 * - in `{ type: 'status' }` -> `{ type: 'status', ready, received, errors }`.
 * - in `{ type: 'collect', from, to, timeoutMs }`: waits (bounded) until every live subscriber
 *   has seen seq `to`, then replies with the phase's figures (`result`).
 * - in `{ type: 'exit' }`: closes every socket and exits.
 *
 * A 'data' chunk is timestamped once, on arrival, before it is parsed. Raw sockets and a
 * byte-level parser keep the client's own cost per message small: the load shares the machine's
 * two cores with the server.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export type ToLoad =
  | { type: 'start'; port: number; path: string; topic: string; count: number; localAddress: string; window: number; events: number }
  | { type: 'status' }
  | { type: 'collect'; from: number; to: number; timeoutMs: number }
  | { type: 'exit' };

export interface PhaseResult {
  type: 'result';
  from: number;
  to: number;
  /** Latency (receive − publish send, ms) of each (event, subscriber), event-major: `[(seq − from) × count + subscriber]`; NaN when not received. */
  latencies: Float32Array;
  /** Latest arrival (epoch ms) of each event of the phase over this load's subscribers; NaN when none. */
  lastAt: Float64Array;
  /** Earliest arrival of each event of the phase; NaN when none. */
  firstAt: Float64Array;
  /** (subscriber, event) pairs received once, in the phase. */
  received: number;
  /** Pairs never received (failed subscribers included). */
  lost: number;
  duplicated: number;
  reordered: number;
  /** Frames that are not ours (unknown seq, malformed data, an unexpected type). */
  wrong: number;
  /** Subscribers that failed or closed (whole run so far). */
  errors: number;
  /** The first problem seen, for the report. */
  sample: string;
}

export type FromLoad =
  | { type: 'ready'; ready: number; errors: number }
  | { type: 'status'; ready: number; received: number; errors: number }
  | PhaseResult;

const send = (m: FromLoad) => process.send!(m);
const now = () => performance.timeOrigin + performance.now();

const SEQ = Buffer.from('"seq":', 'latin1');
const T = Buffer.from(',"t":', 'latin1');
const MESSAGE = Buffer.from('{"type":"message"', 'latin1');
const SUBSCRIBED = Buffer.from('{"type":"subscribed"', 'latin1');

// Per-run state (one start per process).
let count = 0;
let events = 0;
let subs: Sub[] = [];
let seen = new Uint8Array(0);
let lat = new Float32Array(0);
let firstAt = new Float64Array(0);
let lastAt = new Float64Array(0);
let dupBy = new Int32Array(0);
let reorderBy = new Int32Array(0);
let wrong = 0;
let received = 0;
let ready = 0;
let errors = 0;
let sample = '';
let readyReported = false;
let target = 0;
let doneSubs = 0;
let onDone: (() => void) | null = null;
let subscribeFrame: Buffer = Buffer.alloc(0);

function problem(why: string): void {
  if (sample === '') sample = why;
}

/** A masked client frame (RFC 6455 §5.3: clients must mask). */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : 4;
  const out = Buffer.allocUnsafe(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  }
  const mask = randomBytes(4);
  mask.copy(out, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

class Sub {
  readonly i: number;
  socket!: net.Socket;
  /** 0 handshake, 1 frames, 2 failed or ended. */
  phase = 0;
  carry: Buffer | null = null;
  subscribed = false;
  maxSeen = 0;

  constructor(i: number) {
    this.i = i;
  }

  fail(why: string): void {
    if (this.phase === 2) return;
    const wasReady = this.subscribed;
    this.phase = 2;
    errors++;
    problem(`subscriber ${this.i}: ${why}`);
    if (!wasReady) checkReady();
    if (target !== 0 && this.maxSeen < target) subDone();
  }

  onData(chunk: Buffer): void {
    if (this.phase === 2) return;
    const at = now();
    const buf = this.carry === null ? chunk : Buffer.concat([this.carry, chunk]);
    this.carry = null;
    let pos = 0;
    if (this.phase === 0) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) {
        this.carry = buf;
        return;
      }
      const head = buf.subarray(0, end).toString('latin1');
      if (!head.startsWith('HTTP/1.1 101')) return this.fail(`handshake answered ${JSON.stringify(head.split('\r\n')[0])}`);
      this.phase = 1;
      this.socket.write(subscribeFrame);
      pos = end + 4;
    }
    // Frames: FIN+opcode, length (server frames are not masked).
    const n = buf.length;
    while (pos < n) {
      if (n - pos < 2) break;
      const b0 = buf[pos]!;
      let len = buf[pos + 1]! & 0x7f;
      let off = pos + 2;
      if (len === 126) {
        if (n - pos < 4) break;
        len = buf.readUInt16BE(pos + 2);
        off = pos + 4;
      } else if (len === 127) {
        if (n - pos < 10) break;
        len = Number(buf.readBigUInt64BE(pos + 2));
        off = pos + 10;
      }
      if (off + len > n) break;
      const opcode = b0 & 0x0f;
      if (opcode === 1) this.text(buf, off, off + len, at);
      else if (opcode === 9) this.socket.write(clientFrame(0xa, Buffer.from(buf.subarray(off, off + len))));
      else if (opcode === 8) return this.fail(`closed by the server (${len >= 2 ? buf.readUInt16BE(off) : 'no code'})`);
      pos = off + len;
      if (this.phase === 2) return;
    }
    if (pos < n) this.carry = Buffer.from(buf.subarray(pos));
  }

  text(buf: Buffer, start: number, end: number, at: number): void {
    if (end - start > MESSAGE.length && buf.compare(MESSAGE, 0, MESSAGE.length, start, start + MESSAGE.length) === 0) {
      let p = buf.indexOf(SEQ, start);
      if (p === -1 || p >= end) {
        wrong++;
        problem(`subscriber ${this.i}: no seq in ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 120)))}`);
        return;
      }
      p += SEQ.length;
      let seq = 0;
      while (p < end && buf[p]! >= 48 && buf[p]! <= 57) seq = seq * 10 + (buf[p++]! - 48);
      if (buf.compare(T, 0, T.length, p, p + T.length) !== 0) {
        wrong++;
        problem(`subscriber ${this.i}: no t in ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 120)))}`);
        return;
      }
      p += T.length;
      let t = 0;
      while (p < end && buf[p]! >= 48 && buf[p]! <= 57) t = t * 10 + (buf[p++]! - 48);
      if (p < end && buf[p] === 0x2e) {
        p++;
        let scale = 0.1;
        while (p < end && buf[p]! >= 48 && buf[p]! <= 57) {
          t += (buf[p++]! - 48) * scale;
          scale /= 10;
        }
      }
      record(this, seq, t, at);
      return;
    }
    if (!this.subscribed && buf.compare(SUBSCRIBED, 0, SUBSCRIBED.length, start, start + SUBSCRIBED.length) === 0) {
      this.subscribed = true;
      ready++;
      checkReady();
      return;
    }
    wrong++;
    problem(`subscriber ${this.i}: unexpected frame ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 120)))}`);
  }
}

function record(sub: Sub, seq: number, t: number, at: number): void {
  if (seq < 1 || seq > events) {
    wrong++;
    problem(`subscriber ${sub.i}: seq ${seq} was never published`);
    return;
  }
  const k = sub.i * (events + 1) + seq;
  if (seen[k] !== 0) {
    dupBy[seq]!++;
    problem(`subscriber ${sub.i}: seq ${seq} twice`);
    return;
  }
  seen[k] = 1;
  received++;
  if (seq < sub.maxSeen) {
    reorderBy[seq]!++;
    problem(`subscriber ${sub.i}: seq ${seq} after ${sub.maxSeen}`);
  } else {
    if (target !== 0 && sub.maxSeen < target && seq >= target) subDone();
    sub.maxSeen = seq;
  }
  lat[(seq - 1) * count + sub.i] = at - t;
  const e = seq - 1;
  if (!(at >= firstAt[e]!)) firstAt[e] = at;
  if (!(at <= lastAt[e]!)) lastAt[e] = at;
}

function subDone(): void {
  doneSubs++;
  if (doneSubs >= count) onDone?.();
}

function checkReady(): void {
  if (!readyReported && ready + errors >= count) {
    readyReported = true;
    send({ type: 'ready', ready, errors });
  }
}

function start(m: Extract<ToLoad, { type: 'start' }>): void {
  count = m.count;
  events = m.events;
  subs = Array.from({ length: count }, (_, i) => new Sub(i));
  seen = new Uint8Array(count * (events + 1));
  lat = new Float32Array(count * events).fill(Number.NaN);
  firstAt = new Float64Array(events).fill(Number.NaN);
  lastAt = new Float64Array(events).fill(Number.NaN);
  dupBy = new Int32Array(events + 1);
  reorderBy = new Int32Array(events + 1);
  subscribeFrame = clientFrame(0x1, Buffer.from(JSON.stringify({ type: 'subscribe', sid: 's', pattern: m.topic })));
  let next = 0;
  let connecting = 0;
  const open = () => {
    while (connecting < m.window && next < count) {
      const sub = subs[next++]!;
      connecting++;
      const socket = net.connect({ host: '127.0.0.1', port: m.port, localAddress: m.localAddress });
      socket.setNoDelay(true);
      sub.socket = socket;
      let connected = false;
      socket.once('connect', () => {
        connected = true;
        connecting--;
        const key = randomBytes(16).toString('base64');
        socket.write(
          `GET ${m.path} HTTP/1.1\r\nHost: 127.0.0.1:${m.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          'latin1',
        );
        open();
      });
      socket.on('data', (chunk: Buffer) => sub.onData(chunk));
      socket.on('error', (error) => {
        if (!connected) {
          connected = true;
          connecting--;
          open();
        }
        sub.fail(error.message);
      });
      socket.on('close', () => sub.fail('closed'));
    }
  };
  open();
}

async function collect(from: number, to: number, timeoutMs: number): Promise<void> {
  target = to;
  doneSubs = 0;
  for (const s of subs) if (s.phase === 2 || s.maxSeen >= to) doneSubs++;
  if (doneSubs < count) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      onDone = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  onDone = null;
  target = 0;
  const nEv = to - from + 1;
  let got = 0;
  let duplicated = 0;
  let reordered = 0;
  for (let seq = from; seq <= to; seq++) {
    duplicated += dupBy[seq]!;
    reordered += reorderBy[seq]!;
  }
  for (let i = 0; i < count; i++) {
    const base = i * (events + 1);
    for (let seq = from; seq <= to; seq++) got += seen[base + seq]!;
  }
  send({
    type: 'result',
    from,
    to,
    latencies: lat.slice((from - 1) * count, to * count),
    firstAt: firstAt.slice(from - 1, to),
    lastAt: lastAt.slice(from - 1, to),
    received: got,
    lost: nEv * count - got,
    duplicated,
    reordered,
    wrong,
    errors,
    sample,
  });
}

process.on('message', (m: ToLoad) => {
  switch (m.type) {
    case 'start':
      start(m);
      break;
    case 'status':
      send({ type: 'status', ready, received, errors });
      break;
    case 'collect':
      void collect(m.from, m.to, m.timeoutMs);
      break;
    case 'exit':
      for (const s of subs) {
        s.phase = 2;
        s.socket?.destroy();
      }
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
