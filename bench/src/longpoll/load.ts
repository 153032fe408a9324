/**
 * One load process of the long-poll benchmark: holds `count` long polls on raw TCP sockets from
 * one 127.0.0.x source address, and records when each answer arrives.
 *
 * Spawned by `main.ts` with an IPC channel; messages:
 *
 * - in `{ type: 'start', port, path, count, localAddress, window }`: open `count` connections
 *   (at most `window` connecting at once) and write one `GET path` on each; reports
 *   `{ type: 'sent', sent }` once all are written.
 * - in `{ type: 'status' }` -> `{ type: 'status', sent, received, errors }`.
 * - in `{ type: 'collect', timeoutMs, expect }`: waits (bounded) until every poll is answered,
 *   then checks each answer against `expect` and replies `{ type: 'result', times, ... }`.
 * - in `{ type: 'exit' }`: closes every socket and exits.
 *
 * Each socket's answer is timestamped with `performance.timeOrigin + performance.now()` (ms since
 * the epoch, sub-ms resolution, comparable across processes) when its last byte arrives; checks
 * are done afterwards, off the timed path. Raw sockets rather than `http.request` keep the
 * client's own cost per answer small: the load shares the machine's two cores with the server.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export type Expect =
  /** patchbay and bare: a 200 JSON batch with exactly this one message. */
  | { readonly kind: 'json'; readonly id: string; readonly topic: string; readonly data: string }
  /** Nchan: a 200 whose body is the message. */
  | { readonly kind: 'raw'; readonly body: string };

export type ToLoad =
  | { type: 'start'; port: number; path: string; count: number; localAddress: string; window: number }
  | { type: 'status' }
  | { type: 'collect'; timeoutMs: number; expect: Expect }
  | { type: 'exit' };

export type FromLoad =
  | { type: 'sent'; sent: number }
  | { type: 'status'; sent: number; received: number; errors: number }
  | {
      type: 'result';
      /** Arrival time of each answer (epoch ms); NaN for none. */
      times: number[];
      received: number;
      /** Answers that are not exactly the expected message. */
      wrong: number;
      /** Sockets that failed or closed without an answer. */
      errors: number;
      /** The first wrong answer or error, for the report. */
      sample: string;
    };

const send = (m: FromLoad) => process.send!(m);

let sockets: net.Socket[] = [];
let buffers: Buffer[][] = [];
let times = new Float64Array(0);
let complete: Uint8Array = new Uint8Array(0);
let received = 0;
let sent = 0;
let errors = 0;
let firstError = '';
let onAllReceived: (() => void) | null = null;

/** Whether the bytes so far hold one full HTTP response (Content-Length or chunked). */
function isComplete(chunks: Buffer[]): boolean {
  const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const end = all.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const head = all.subarray(0, end).toString('latin1');
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (cl) return all.length >= end + 4 + Number(cl[1]);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return all.subarray(all.length - 5).toString('latin1') === '0\r\n\r\n';
  return /^HTTP\/1\.1 (204|304)/.test(head);
}

function start(port: number, path: string, count: number, localAddress: string, window: number): void {
  sockets = new Array<net.Socket>(count);
  buffers = Array.from({ length: count }, () => []);
  times = new Float64Array(count).fill(Number.NaN);
  complete = new Uint8Array(count);
  const request = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: */*\r\n\r\n`, 'latin1');
  let next = 0;
  let connecting = 0;
  const fail = (i: number, why: string) => {
    if (complete[i] !== 0) return;
    complete[i] = 2;
    errors++;
    if (firstError === '') firstError = `socket ${i}: ${why}`;
    checkDone();
  };
  const open = () => {
    while (connecting < window && next < count) {
      const i = next++;
      connecting++;
      const socket = net.connect({ host: '127.0.0.1', port, localAddress });
      socket.setNoDelay(true);
      sockets[i] = socket;
      let connected = false;
      socket.once('connect', () => {
        connected = true;
        connecting--;
        socket.write(request);
        if (++sent === count) send({ type: 'sent', sent });
        open();
      });
      socket.on('data', (chunk: Buffer) => {
        if (complete[i] !== 0) return;
        const list = buffers[i]!;
        list.push(chunk);
        if (isComplete(list)) {
          times[i] = performance.timeOrigin + performance.now();
          complete[i] = 1;
          received++;
          checkDone();
        }
      });
      socket.on('error', (error) => {
        if (connected) return fail(i, error.message);
        connecting--;
        fail(i, `connect: ${error.message}`);
        open();
      });
      socket.on('close', () => fail(i, 'closed before an answer'));
    }
  };
  open();
}

function checkDone(): void {
  if (received + errors >= sockets.length && onAllReceived !== null) onAllReceived();
}

function check(expect: Expect, chunks: Buffer[]): string | null {
  const all = Buffer.concat(chunks).toString('utf8');
  const end = all.indexOf('\r\n\r\n');
  const head = all.slice(0, end);
  const body = all.slice(end + 4);
  if (!head.startsWith('HTTP/1.1 200 ')) return `status line ${JSON.stringify(head.split('\r\n')[0])}`;
  if (expect.kind === 'raw') return body === expect.body ? null : `body ${JSON.stringify(body.slice(0, 120))}`;
  try {
    const parsed = JSON.parse(body) as { messages?: { id?: unknown; topic?: unknown; data?: unknown }[] };
    const ms = parsed.messages;
    if (!Array.isArray(ms) || ms.length !== 1) return `expected exactly 1 message, got ${JSON.stringify(body.slice(0, 120))}`;
    const m = ms[0]!;
    if (m.id !== expect.id || m.topic !== expect.topic || m.data !== expect.data) return `wrong message ${JSON.stringify(m).slice(0, 160)}`;
    return null;
  } catch {
    return `not JSON: ${JSON.stringify(body.slice(0, 120))}`;
  }
}

async function collect(timeoutMs: number, expect: Expect): Promise<void> {
  if (received + errors < sockets.length) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      onAllReceived = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    onAllReceived = null;
  }
  let wrong = 0;
  let sample = firstError;
  for (let i = 0; i < sockets.length; i++) {
    if (complete[i] !== 1) continue;
    const problem = check(expect, buffers[i]!);
    if (problem !== null) {
      wrong++;
      if (sample === '') sample = `socket ${i}: ${problem}`;
    }
  }
  send({ type: 'result', times: Array.from(times), received, wrong, errors, sample });
}

process.on('message', (m: ToLoad) => {
  switch (m.type) {
    case 'start':
      start(m.port, m.path, m.count, m.localAddress, m.window);
      break;
    case 'status':
      send({ type: 'status', sent, received, errors });
      break;
    case 'collect':
      void collect(m.timeoutMs, m.expect);
      break;
    case 'exit':
      for (const s of sockets) s?.destroy();
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
