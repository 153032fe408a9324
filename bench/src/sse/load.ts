/**
 * One load process of the SSE benchmark: holds `count` SSE subscriptions on raw TCP sockets from
 * one 127.0.0.x source address, parses each stream (HTTP/1.1, chunked or not; SSE lines), and
 * records for every (subscriber, event) when it arrived and how late it was.
 *
 * Every event's data is the JSON text `{"seq":N,"t":T,"pad":"..."}`: `seq` numbers the
 * trial's events from 1, `t` is the publisher's clock (`performance.timeOrigin +
 * performance.now()`, ms since the epoch, comparable across processes) when it wrote the
 * publish. Each subscriber is checked on its own: an event it already had is a duplicate, one
 * whose seq is below the highest it had is reordered, and a seq it never got is lost.
 *
 * Spawned by `main.ts` with an IPC channel (advanced serialization); messages:
 *
 * - in `{ type: 'start', port, path, count, localAddress, window, events }`: open `count`
 *   connections (at most `window` connecting at once), `GET path` with
 *   `Accept: text/event-stream` on each; `events` is how many seqs the trial will publish.
 *   Replies `{ type: 'ready', ready, errors }` once every socket has its `200` headers and its
 *   first body bytes (or failed).
 * - in `{ type: 'status' }` -> `{ type: 'status', ready, received, errors }`.
 * - in `{ type: 'collect', from, to, timeoutMs }`: waits (bounded) until every live subscriber
 *   has seen seq `to`, then replies with the phase's figures (`result`).
 * - in `{ type: 'exit' }`: closes every socket and exits.
 *
 * A 'data' chunk is timestamped once, on arrival, before it is parsed: the parse is part of the
 * client's cost, not of the latency. Raw sockets and a byte-level parser keep the client's own
 * cost per event small: the load shares the machine's two cores with the server.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export type ToLoad =
  | { type: 'start'; port: number; path: string; count: number; localAddress: string; window: number; events: number }
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
  /** Events that are not ours (unknown seq, malformed data, several data lines). */
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

const LF = 10;
const CR = 13;
/** `data:` */
const DATA = Buffer.from('data:', 'latin1');
/** What every event's data starts with (after `data:` and the one optional space). */
const PREFIX = Buffer.from('{"seq":', 'latin1');
const T_KEY = Buffer.from(',"t":', 'latin1');

// Per-run state (one start per process).
let count = 0;
let events = 0;
let subs: Sub[] = [];
/** seen[i * (events + 1) + seq]: subscriber i has seq. */
let seen = new Uint8Array(0);
/** Latency per (seq − 1) × count + i. */
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
/** The seq a pending collect waits for (0: none), and how many subscribers are done with it. */
let target = 0;
let doneSubs = 0;
let onDone: (() => void) | null = null;

function problem(why: string): void {
  if (sample === '') sample = why;
}

/** One subscriber's connection and parser state. */
class Sub {
  readonly i: number;
  socket!: net.Socket;
  /** 0 headers, 1 body, 2 failed or ended. */
  phase = 0;
  chunked = false;
  /** Chunked framing: 0 size line, 1 data, 2 the CRLF after data, 3 after the last chunk. */
  cstate = 0;
  csize = 0;
  cext = false;
  cleft = 0;
  /** Bytes kept from the previous chunk: an unfinished header block or SSE line. */
  carry: Buffer | null = null;
  hasBody = false;
  /** The current event's seq (0: no data line yet; -1: a bad data line). */
  curSeq = 0;
  curT = 0;
  maxSeen = 0;

  constructor(i: number) {
    this.i = i;
  }

  fail(why: string): void {
    if (this.phase === 2) return;
    const wasReady = this.hasBody;
    this.phase = 2;
    errors++;
    problem(`subscriber ${this.i}: ${why}`);
    if (!wasReady) checkReady();
    if (target !== 0 && this.maxSeen < target) subDone();
  }

  onData(chunk: Buffer): void {
    if (this.phase === 2) return;
    const at = now();
    if (this.phase === 0) {
      const all = this.carry === null ? chunk : Buffer.concat([this.carry, chunk]);
      const end = all.indexOf('\r\n\r\n');
      if (end === -1) {
        this.carry = all;
        return;
      }
      this.carry = null;
      const head = all.subarray(0, end).toString('latin1');
      if (!head.startsWith('HTTP/1.1 200')) return this.fail(`status line ${JSON.stringify(head.split('\r\n')[0])}`);
      if (!/\r\ncontent-type:\s*text\/event-stream/i.test(head)) return this.fail(`content type: ${JSON.stringify(head.slice(0, 300))}`);
      this.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
      this.phase = 1;
      if (all.length > end + 4) this.body(all, end + 4, at);
      return;
    }
    this.body(chunk, 0, at);
  }

  /** Takes raw body bytes: strips the chunked framing, if any, and parses the SSE bytes. */
  body(buf: Buffer, start: number, at: number): void {
    if (!this.chunked) {
      this.sse(buf, start, buf.length, at);
      return;
    }
    let pos = start;
    const n = buf.length;
    while (pos < n && this.phase === 1) {
      switch (this.cstate) {
        case 0: {
          const b = buf[pos++]!;
          if (b === LF) {
            if (this.csize === 0) {
              this.cstate = 3;
              this.fail('the server ended the stream');
              return;
            }
            this.cleft = this.csize;
            this.csize = 0;
            this.cext = false;
            this.cstate = 1;
          } else if (b === CR || this.cext) {
            // skip
          } else if (b === 0x3b /* ; */) {
            this.cext = true;
          } else {
            const d = b >= 48 && b <= 57 ? b - 48 : b >= 97 && b <= 102 ? b - 87 : b >= 65 && b <= 70 ? b - 55 : -1;
            if (d === -1) return this.fail(`bad chunk size byte ${b}`);
            this.csize = this.csize * 16 + d;
          }
          break;
        }
        case 1: {
          const take = Math.min(this.cleft, n - pos);
          this.sse(buf, pos, pos + take, at);
          pos += take;
          this.cleft -= take;
          if (this.cleft === 0) {
            this.cstate = 2;
            this.cleft = 2;
          }
          break;
        }
        case 2:
          pos++;
          if (--this.cleft === 0) this.cstate = 0;
          break;
        default:
          return;
      }
    }
  }

  /** Parses SSE bytes `buf[start, end)`, line by line (LF, CRLF or CR line ends). */
  sse(buf: Buffer, start: number, end: number, at: number): void {
    if (end <= start) return;
    if (!this.hasBody) {
      this.hasBody = true;
      ready++;
      checkReady();
    }
    if (this.carry !== null) {
      buf = Buffer.concat([this.carry, buf.subarray(start, end)]);
      start = 0;
      end = buf.length;
      this.carry = null;
    }
    let pos = start;
    while (pos < end) {
      let nl = buf.indexOf(LF, pos);
      if (nl === -1 || nl >= end) {
        // A lone CR also ends a line; our servers use LF, so only look for it when no LF came.
        const cr = buf.indexOf(CR, pos);
        if (cr !== -1 && cr < end - 1) nl = cr;
        else {
          this.carry = Buffer.from(buf.subarray(pos, end));
          return;
        }
      }
      let lineEnd = nl;
      if (lineEnd > pos && buf[lineEnd - 1] === CR) lineEnd--;
      this.line(buf, pos, lineEnd, at);
      pos = nl + 1;
    }
  }

  line(buf: Buffer, start: number, end: number, at: number): void {
    if (end === start) {
      // Blank line: dispatch.
      const seq = this.curSeq;
      this.curSeq = 0;
      if (seq > 0) record(this, seq, this.curT, at);
      else if (seq === -1) wrong++;
      return;
    }
    if (end - start < 5 || buf.compare(DATA, 0, 5, start, start + 5) !== 0) return; // comment, id, event, retry
    if (this.curSeq !== 0) {
      this.curSeq = -1; // a second data line: not one of our events
      problem(`subscriber ${this.i}: an event with several data lines`);
      return;
    }
    // data: {"seq":N,"t":T,... (the space after the colon is optional: better-sse leaves it out)
    let p = start + 5;
    if (buf[p] === 0x20) p++;
    if (end - p < PREFIX.length || buf.compare(PREFIX, 0, PREFIX.length, p, p + PREFIX.length) !== 0) {
      this.curSeq = -1;
      problem(`subscriber ${this.i}: unexpected data ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 80)))}`);
      return;
    }
    p += PREFIX.length;
    let seq = 0;
    while (p < end && buf[p]! >= 48 && buf[p]! <= 57) seq = seq * 10 + (buf[p++]! - 48);
    if (p + T_KEY.length > end || buf.compare(T_KEY, 0, T_KEY.length, p, p + T_KEY.length) !== 0) {
      this.curSeq = -1;
      problem(`subscriber ${this.i}: no "t" in ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 80)))}`);
      return;
    }
    p += T_KEY.length;
    let t = 0;
    while (p < end && buf[p]! >= 48 && buf[p]! <= 57) t = t * 10 + (buf[p++]! - 48);
    if (p < end && buf[p] === 0x2e /* . */) {
      p++;
      let scale = 0.1;
      while (p < end && buf[p]! >= 48 && buf[p]! <= 57) {
        t += (buf[p++]! - 48) * scale;
        scale /= 10;
      }
    }
    this.curSeq = seq > 0 ? seq : -1;
    this.curT = t;
  }
}

function record(sub: Sub, seq: number, t: number, at: number): void {
  if (seq > events) {
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
  if (!(at >= firstAt[e]!)) firstAt[e] = at; // (also when still NaN)
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

function start(port: number, path: string, n: number, localAddress: string, window: number, nEvents: number): void {
  count = n;
  events = nEvents;
  subs = Array.from({ length: n }, (_, i) => new Sub(i));
  seen = new Uint8Array(n * (nEvents + 1));
  lat = new Float32Array(n * nEvents).fill(Number.NaN);
  firstAt = new Float64Array(nEvents).fill(Number.NaN);
  lastAt = new Float64Array(nEvents).fill(Number.NaN);
  dupBy = new Int32Array(nEvents + 1);
  reorderBy = new Int32Array(nEvents + 1);
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`, 'latin1');
  let next = 0;
  let connecting = 0;
  const open = () => {
    while (connecting < window && next < n) {
      const sub = subs[next++]!;
      connecting++;
      const socket = net.connect({ host: '127.0.0.1', port, localAddress });
      socket.setNoDelay(true);
      sub.socket = socket;
      let connected = false;
      socket.once('connect', () => {
        connected = true;
        connecting--;
        socket.write(request);
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
      start(m.port, m.path, m.count, m.localAddress, m.window, m.events);
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
