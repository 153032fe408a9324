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
 * Spawned by `main.ts` with an IPC channel; the messages, the checks and the figures are those
 * of every fan-out load (`../lib/fanout-load.ts`). Here: on `start`, each socket sends
 * `GET path` with `Accept: text/event-stream`, and is ready once it has its `200` headers and its
 * first body bytes.
 *
 * A 'data' chunk is timestamped once, on arrival, before it is parsed: the parse is part of the
 * client's cost, not of the latency. Raw sockets and a byte-level parser keep the client's own
 * cost per event small: the load shares the machine's two cores with the server.
 */
import type net from 'node:net';
import {
  countWrong,
  now,
  parsed,
  problem,
  readSeqAndT,
  record,
  runLoad,
  type StartMessage,
  Subscriber,
} from '../lib/fanout-load.js';

const LF = 10;
const CR = 13;
/** `data:` */
const DATA = Buffer.from('data:', 'latin1');
const EVENT = Buffer.from('event:');
/** What every event's data starts with (after `data:` and the one optional space). */
const PREFIX = Buffer.from('{"seq":', 'latin1');

/** One subscriber's connection and parser state. */
class Sub extends Subscriber {
  chunked = false;
  /** Chunked framing: 0 size line, 1 data, 2 the CRLF after data, 3 after the last chunk. */
  cstate = 0;
  csize = 0;
  cext = false;
  cleft = 0;
  /** Bytes kept from the previous chunk: an unfinished header block or SSE line. */
  carry: Buffer | null = null;
  /** The current event's seq (0: no data line yet; -1: a bad data line). */
  curSeq = 0;
  curT = 0;

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
    if (!this.isReady) this.becomeReady();
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
      else if (seq === -1) countWrong();
      return;
    }
    if (end - start >= 6 && buf.compare(EVENT, 0, 6, start, start + 6) === 0) {
      // A type other than `message` (patchbay's opening `patchbay-open`) is not one of our
      // messages: ignored. (better-sse names every event `message`.)
      let p = start + 6;
      if (buf[p] === 0x20) p++;
      if (buf.toString('latin1', p, end) !== 'message') this.curSeq = -2;
      return;
    }
    if (end - start < 5 || buf.compare(DATA, 0, 5, start, start + 5) !== 0) return; // comment, id, retry
    if (this.curSeq === -2) return;
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
    if (!readSeqAndT(buf, p + PREFIX.length, end)) {
      this.curSeq = -1;
      problem(`subscriber ${this.i}: no "t" in ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 80)))}`);
      return;
    }
    this.curSeq = parsed.seq > 0 ? parsed.seq : -1;
    this.curT = parsed.t;
  }
}

runLoad<StartMessage>((m) => {
  const request = Buffer.from(`GET ${m.path} HTTP/1.1\r\nHost: 127.0.0.1:${m.port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`, 'latin1');
  return {
    subscriber: (i) => new Sub(i),
    greet: (socket: net.Socket) => socket.write(request),
  };
});
