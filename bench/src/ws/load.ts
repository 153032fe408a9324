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
 * Spawned by `main.ts` with an IPC channel; the messages, the checks and the figures are those
 * of every fan-out load (`../lib/fanout-load.ts`). Here: the `start` message also names the
 * `topic`; each socket upgrades on `path`, subscribes to `topic` (sid `s`), and is ready once it
 * has its `subscribed` frame.
 *
 * A 'data' chunk is timestamped once, on arrival, before it is parsed. Raw sockets and a
 * byte-level parser keep the client's own cost per message small: the load shares the machine's
 * two cores with the server.
 */
import { randomBytes } from 'node:crypto';
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

/** The `start` message also names the topic each socket subscribes to. */
type WsStart = StartMessage & { topic: string };

const SEQ = Buffer.from('"seq":', 'latin1');
const MESSAGE = Buffer.from('{"type":"message"', 'latin1');
const SUBSCRIBED = Buffer.from('{"type":"subscribed"', 'latin1');

/** The subscribe frame of this trial (sent once the handshake is answered). */
let subscribeFrame: Buffer = Buffer.alloc(0);

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

/** One socket: the handshake, then the server's frames (phase 0 handshake, 1 frames, 2 failed or ended). */
class Sub extends Subscriber {
  carry: Buffer | null = null;

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
      const p = buf.indexOf(SEQ, start);
      if (p === -1 || p >= end) {
        countWrong();
        problem(`subscriber ${this.i}: no seq in ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 120)))}`);
        return;
      }
      if (!readSeqAndT(buf, p + SEQ.length, end)) {
        countWrong();
        problem(`subscriber ${this.i}: no t in ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 120)))}`);
        return;
      }
      record(this, parsed.seq, parsed.t, at);
      return;
    }
    if (!this.isReady && buf.compare(SUBSCRIBED, 0, SUBSCRIBED.length, start, start + SUBSCRIBED.length) === 0) {
      this.becomeReady();
      return;
    }
    countWrong();
    problem(`subscriber ${this.i}: unexpected frame ${JSON.stringify(buf.toString('utf8', start, Math.min(end, start + 120)))}`);
  }
}

runLoad<WsStart>((m) => {
  subscribeFrame = clientFrame(0x1, Buffer.from(JSON.stringify({ type: 'subscribe', sid: 's', pattern: m.topic })));
  return {
    subscriber: (i) => new Sub(i),
    greet(socket: net.Socket) {
      const key = randomBytes(16).toString('base64');
      socket.write(
        `GET ${m.path} HTTP/1.1\r\nHost: 127.0.0.1:${m.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        'latin1',
      );
    },
  };
});
