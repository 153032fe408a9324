/**
 * One load process of the short-polling benchmark, on raw TCP sockets from one 127.0.0.x source
 * address (raw sockets keep the client's own cost per request small: the load shares the two
 * cores with the server). Spawned by `main.ts` with an IPC channel; messages:
 *
 * - in `{ type: 'reads', port, connections, localAddress, ids, warmMs, measureMs, seed }`: opens
 *   `connections` keep-alive connections, each sending `GET /jobs/<random id>` and the next one
 *   as soon as the answer is complete (a closed loop), for `warmMs` then `measureMs`; replies
 *   `{ type: 'reads', count, errors, statuses, latencies }` for the measured window, then closes them.
 * - in `{ type: 'hold', port, path, headers, count, localAddress, window }`: opens `count`
 *   connections (at most `window` connecting at once), each sending one `GET path` with
 *   `headers`; replies `{ type: 'sent' }` once all are written.
 * - in `{ type: 'status' }` -> `{ type: 'status', sent, received, errors }`.
 * - in `{ type: 'collect', timeoutMs, expect }`: waits (bounded) until every held read is
 *   answered, checks each (status 200 or 303, body containing `expect`) and replies
 *   `{ type: 'result', times, received, wrong, errors, sample }`.
 * - in `{ type: 'exit' }`: closes every socket and exits.
 *
 * Times are `performance.timeOrigin + performance.now()`, comparable across processes.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { mulberry32 } from '../lib/random.js';

export type ToLoad =
  | { type: 'reads'; port: number; connections: number; localAddress: string; ids: string[]; warmMs: number; measureMs: number; seed: number }
  | { type: 'hold'; port: number; path: string; headers: string; count: number; localAddress: string; window: number }
  | { type: 'status' }
  | { type: 'collect'; timeoutMs: number; expect: string }
  | { type: 'exit' };

export type FromLoad =
  | { type: 'reads'; count: number; errors: number; statuses: Record<string, number>; latencies: number[]; sample: string }
  | { type: 'sent'; sent: number }
  | { type: 'status'; sent: number; received: number; errors: number }
  | { type: 'result'; times: number[]; received: number; wrong: number; errors: number; sample: string };

const send = (m: FromLoad): void => void process.send!(m);
const now = (): number => performance.timeOrigin + performance.now();

/** Where one full HTTP response ends in `buf` (Content-Length, or none for 304), or -1. */
function responseEnd(buf: Buffer): number {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return -1;
  const head = buf.subarray(0, end).toString('latin1');
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const total = end + 4 + (cl ? Number(cl[1]) : 0);
  return buf.length >= total ? total : -1;
}

// --- closed-loop status reads ------------------------------------------------------------------

function reads(m: Extract<ToLoad, { type: 'reads' }>): void {
  const rng = mulberry32(m.seed);
  const heads = m.ids.map((id) => Buffer.from(`GET /jobs/${id} HTTP/1.1\r\nHost: 127.0.0.1:${m.port}\r\nAccept: application/json\r\n\r\n`, 'latin1'));
  const t0 = now();
  const measureFrom = t0 + m.warmMs;
  const measureTo = measureFrom + m.measureMs;
  let count = 0;
  let errors = 0;
  let sample = '';
  const statuses: Record<string, number> = {};
  const latencies: number[] = [];
  const sockets: net.Socket[] = [];
  let open = m.connections;
  const finish = (): void => {
    if (--open > 0) return;
    send({ type: 'reads', count, errors, statuses, latencies, sample });
  };
  for (let c = 0; c < m.connections; c++) {
    const socket = net.connect({ host: '127.0.0.1', port: m.port, localAddress: m.localAddress });
    socket.setNoDelay(true);
    sockets.push(socket);
    let buf: Buffer = Buffer.alloc(0);
    let sentAt = 0;
    let done = false;
    const next = (): void => {
      if (now() >= measureTo) {
        done = true;
        socket.destroy();
        finish();
        return;
      }
      sentAt = now();
      socket.write(heads[Math.floor(rng() * heads.length)]!);
    };
    socket.once('connect', next);
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const end = responseEnd(buf);
      if (end === -1) return;
      const at = now();
      const status = buf.toString('latin1', 9, 12);
      buf = buf.subarray(end);
      if (at >= measureFrom && at < measureTo) {
        count++;
        statuses[status] = (statuses[status] ?? 0) + 1;
        latencies.push(at - sentAt);
      }
      next();
    });
    const fail = (why: string): void => {
      if (done) return;
      done = true;
      errors++;
      if (sample === '') sample = why;
      finish();
    };
    socket.on('error', (e) => fail(e.message));
    socket.on('close', () => fail('closed by the server'));
  }
}

// --- held reads ------------------------------------------------------------------------------

let held: net.Socket[] = [];
let buffers: Buffer[][] = [];
let times = new Float64Array(0);
let complete = new Uint8Array(0);
let sent = 0;
let received = 0;
let errors = 0;
let firstError = '';
let onAll: (() => void) | null = null;

function hold(m: Extract<ToLoad, { type: 'hold' }>): void {
  held = new Array<net.Socket>(m.count);
  buffers = Array.from({ length: m.count }, () => []);
  times = new Float64Array(m.count).fill(Number.NaN);
  complete = new Uint8Array(m.count);
  const request = Buffer.from(`GET ${m.path} HTTP/1.1\r\nHost: 127.0.0.1:${m.port}\r\nAccept: application/json\r\n${m.headers}\r\n`, 'latin1');
  let next = 0;
  let connecting = 0;
  const fail = (i: number, why: string): void => {
    if (complete[i] !== 0) return;
    complete[i] = 2;
    errors++;
    if (firstError === '') firstError = `socket ${i}: ${why}`;
    if (received + errors >= held.length) onAll?.();
  };
  const openMore = (): void => {
    while (connecting < m.window && next < m.count) {
      const i = next++;
      connecting++;
      const socket = net.connect({ host: '127.0.0.1', port: m.port, localAddress: m.localAddress });
      socket.setNoDelay(true);
      held[i] = socket;
      let connected = false;
      socket.once('connect', () => {
        connected = true;
        connecting--;
        socket.write(request);
        if (++sent === m.count) send({ type: 'sent', sent });
        openMore();
      });
      socket.on('data', (chunk: Buffer) => {
        if (complete[i] !== 0) return;
        const list = buffers[i]!;
        list.push(chunk);
        if (responseEnd(list.length === 1 ? list[0]! : Buffer.concat(list)) !== -1) {
          times[i] = now();
          complete[i] = 1;
          received++;
          if (received + errors >= held.length) onAll?.();
        }
      });
      socket.on('error', (e) => {
        if (!connected) {
          connecting--;
          openMore();
        }
        fail(i, e.message);
      });
      socket.on('close', () => fail(i, 'closed before an answer'));
    }
  };
  openMore();
}

async function collect(timeoutMs: number, expect: string): Promise<void> {
  if (received + errors < held.length) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      onAll = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    onAll = null;
  }
  let wrong = 0;
  let sample = firstError;
  for (let i = 0; i < held.length; i++) {
    if (complete[i] !== 1) continue;
    const text = Buffer.concat(buffers[i]!).toString('utf8');
    const ok = (text.startsWith('HTTP/1.1 200 ') || text.startsWith('HTTP/1.1 303 ')) && text.includes(expect);
    if (!ok) {
      wrong++;
      if (sample === '') sample = `socket ${i}: ${JSON.stringify(text.slice(0, 160))}`;
    }
  }
  send({ type: 'result', times: Array.from(times), received, wrong, errors, sample });
}

process.on('message', (m: ToLoad) => {
  switch (m.type) {
    case 'reads':
      reads(m);
      break;
    case 'hold':
      hold(m);
      break;
    case 'status':
      send({ type: 'status', sent, received, errors });
      break;
    case 'collect':
      void collect(m.timeoutMs, m.expect);
      break;
    case 'exit':
      for (const s of held) s?.destroy();
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
