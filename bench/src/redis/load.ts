/**
 * The client process of the Redis suite: holds SSE streams and long polls on the server process
 * and timestamps every message it gets. Spawned with an IPC channel; messages:
 *
 * - in `{ type: 'start', port, topic, sse, lp }`: opens `sse` SSE streams and runs `lp`
 *   long-poll loops, each following the cursor of its answers (`?cursor=`, as patchbay's clients
 *   do; the reference relay takes the same parameter); replies `{ type: 'started' }`.
 * - in `{ type: 'reset' }`: forgets what was recorded; replies `{ type: 'reset' }`.
 * - in `{ type: 'collect', n, timeoutMs, lp }`: waits (bounded) until every SSE stream, and with
 *   `lp` every long-poll loop, has `n` messages since the reset, then replies
 *   `{ type: 'result', ... }` with the latencies (receipt minus the `t` the publisher put in the
 *   message, µs, on the machine's monotonic clock), each stream's and each loop's count and
 *   order check, and when each stream got its last message.
 * - in `{ type: 'exit' }`.
 */
import http from 'node:http';

export type ToLoad =
  | { type: 'start'; port: number; topic: string; sse: number; lp: number }
  | { type: 'reset' }
  | { type: 'collect'; n: number; timeoutMs: number; lp: boolean }
  | { type: 'exit' };
export type FromLoad =
  | { type: 'started' }
  | { type: 'reset' }
  | {
      type: 'result';
      sseUs: number[];
      lpUs: number[];
      /** Messages each SSE stream got since the reset. */
      sseCounts: number[];
      /** Streams that got a message out of order or twice. */
      disorder: number;
      /** Messages each long-poll loop got since the reset. */
      lpCounts: number[];
      /** Long-poll loops that got a message out of order or twice. */
      lpDisorder: number;
      /** When each SSE stream got its last message (µs). */
      lastUs: number[];
      lpAnswers: number;
      lpErrors: number;
    };

const send = (m: FromLoad): void => void process.send!(m);
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

interface Stream {
  count: number;
  lastI: number;
  lastUs: number;
  disorder: boolean;
}
const streams: Stream[] = [];
const loops: Stream[] = [];

/** Counts a message on `s`, and marks `s` if it is not after the previous one (`order`). */
function record(s: Stream, order: number, at: number): void {
  if (order <= s.lastI && s.count > 0) s.disorder = true;
  s.lastI = order;
  s.count++;
  s.lastUs = at;
}

/** A message's place in the order: its id's sequence number when it has an id (patchbay: concurrent publishes over several connections are ordered by Redis, not by `i`), else `i`. */
const orderOf = (id: string | undefined, i: number): number => (id === undefined ? i : Number.parseInt(id.slice(id.lastIndexOf('-') + 1), 36));
let sseUs: number[] = [];
let lpUs: number[] = [];
let lpAnswers = 0;
let lpErrors = 0;
let running = true;

function openSse(port: number, topic: string): void {
  const s: Stream = { count: 0, lastI: -1, lastUs: 0, disorder: false };
  streams.push(s);
  const req = http.get({ host: '127.0.0.1', port, path: `/sse/${topic}`, agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
    res.setEncoding('utf8');
    let buffer = '';
    res.on('data', (chunk: string) => {
      const at = nowUs();
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const lines = block.split('\n');
        const line = lines.find((l) => l.startsWith('data: '));
        // A typed event (patchbay's opening `patchbay-open`) is not a message.
        if (line === undefined || lines.some((l) => l.startsWith('event:') && l.slice(6).trim() !== 'message')) continue;
        const { i, t } = JSON.parse(line.slice(6)) as { i: number; t: number };
        sseUs.push(at - t);
        record(s, orderOf(lines.find((l) => l.startsWith('id: '))?.slice(4), i), at);
      }
    });
  });
  req.on('error', () => undefined);
}

async function pollLoop(port: number, topic: string): Promise<void> {
  const s: Stream = { count: 0, lastI: -1, lastUs: 0, disorder: false };
  loops.push(s);
  let cursor = '';
  while (running) {
    const path = `/lp/${topic}${cursor ? `?cursor=${cursor}` : ''}`;
    const answer = await new Promise<{ status: number; body: string; cursor: string | undefined; at: number }>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cursor: res.headers['patchbay-cursor'] as string | undefined, at: nowUs() }));
      });
      req.on('error', () => resolve({ status: 0, body: '', cursor: undefined, at: nowUs() }));
    });
    if (answer.status === 200) {
      lpAnswers++;
      const parsed = JSON.parse(answer.body) as { messages: { id?: string; data: { i: number; t: number } }[]; cursor?: string };
      for (const m of parsed.messages) {
        lpUs.push(answer.at - m.data.t);
        record(s, orderOf(m.id, m.data.i), answer.at);
      }
      if (parsed.cursor !== undefined) cursor = parsed.cursor;
    } else if (answer.status === 204) {
      cursor = answer.cursor ?? cursor;
    } else {
      lpErrors++;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

process.on('message', (m: ToLoad) => {
  if (m.type === 'start') {
    for (let i = 0; i < m.sse; i++) openSse(m.port, m.topic);
    for (let i = 0; i < m.lp; i++) void pollLoop(m.port, m.topic);
    send({ type: 'started' });
  } else if (m.type === 'reset') {
    for (const s of [...streams, ...loops]) {
      s.count = 0;
      s.lastI = -1;
      s.disorder = false;
      s.lastUs = 0;
    }
    sseUs = [];
    lpUs = [];
    lpAnswers = 0;
    lpErrors = 0;
    send({ type: 'reset' });
  } else if (m.type === 'collect') {
    const deadline = Date.now() + m.timeoutMs;
    const check = (): void => {
      if ((streams.every((s) => s.count >= m.n) && (!m.lp || loops.every((s) => s.count >= m.n))) || Date.now() > deadline) {
        send({
          type: 'result',
          sseUs,
          lpUs,
          sseCounts: streams.map((s) => s.count),
          disorder: streams.filter((s) => s.disorder).length,
          lpCounts: loops.map((s) => s.count),
          lpDisorder: loops.filter((s) => s.disorder).length,
          lastUs: streams.map((s) => s.lastUs),
          lpAnswers,
          lpErrors,
        });
      } else setTimeout(check, 20);
    };
    check();
  } else if (m.type === 'exit') {
    running = false;
    agent.destroy();
    process.exit(0);
  }
});
