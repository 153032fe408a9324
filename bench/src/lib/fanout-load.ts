/**
 * The client side of the fan-out suites (sse, ws), for their load processes: one process holds
 * `count` subscribers on raw TCP sockets from one 127.0.0.x source address, and records for every
 * (subscriber, event) whether it arrived, once and in order, and how late. What is each suite's
 * own is the protocol: what a socket writes once connected, and how a `Subscriber` finds each
 * event in the bytes the server sends.
 *
 * Every event's data is the JSON text `{"seq":N,"t":T,"pad":"..."}`: `seq` numbers the trial's
 * events from 1, `t` is the publisher's clock (`performance.timeOrigin + performance.now()`, ms
 * since the epoch, comparable across processes) when it wrote the publish. Each subscriber is
 * checked on its own: an event it already had is a duplicate, one whose seq is below the highest
 * it had is reordered, and a seq it never got is lost.
 *
 * The coordinator (`fanout.ts`) talks to a load process over its IPC channel (advanced
 * serialization):
 *
 * - in `{ type: 'start', port, path, count, localAddress, window, events, ... }`: open `count`
 *   connections (at most `window` connecting at once); `events` is how many seqs the trial will
 *   publish. Replies `{ type: 'ready', ready, errors }` once every subscriber is ready (or failed).
 * - in `{ type: 'status' }` -> `{ type: 'status', ready, received, errors }`.
 * - in `{ type: 'collect', from, to, timeoutMs }`: waits (bounded) until every live subscriber
 *   has seen seq `to`, then replies with the phase's figures (`result`).
 * - in `{ type: 'exit' }`: closes every socket and exits.
 *
 * A process runs one trial, so the state below is the module's own, as flat typed arrays: the
 * load shares the machine's two cores with the server, and its cost per event must stay small.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

/** What every `start` message carries; a suite may add fields (ws: the topic). */
export interface StartMessage {
  type: 'start';
  port: number;
  /** What each socket asks for (sse: `/sse/<topic>`; ws: the upgrade path). */
  path: string;
  count: number;
  localAddress: string;
  /** At most this many sockets connecting at once. */
  window: number;
  /** How many seqs the trial will publish. */
  events: number;
}

/** The messages a load process takes. */
export type ToLoad<Start extends StartMessage = StartMessage> =
  | Start
  | { type: 'status' }
  | { type: 'collect'; from: number; to: number; timeoutMs: number }
  | { type: 'exit' };

/** The figures of one phase (seqs `from..to`) over this load's subscribers. */
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
  /** Events that are not ours (an unknown seq, malformed data; sse: several data lines; ws: an unexpected frame). */
  wrong: number;
  /** Subscribers that failed or closed (whole run so far). */
  errors: number;
  /** The first problem seen, for the report. */
  sample: string;
}

/** The messages a load process sends. */
export type FromLoad =
  | { type: 'ready'; ready: number; errors: number; sample: string }
  | { type: 'status'; ready: number; received: number; errors: number }
  | PhaseResult;

/** The clock of every timestamp: ms since the epoch, comparable across processes. */
export const now = (): number => performance.timeOrigin + performance.now();

const send = (m: FromLoad) => process.send!(m);

// Per-run state (one start per process).
let count = 0;
let events = 0;
let subs: Subscriber[] = [];
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

/** Keeps the first problem seen, for the report. */
export function problem(why: string): void {
  if (sample === '') sample = why;
}

/** Counts an event that is not one of ours (say why with `problem`). */
export function countWrong(): void {
  wrong++;
}

/** One subscriber's socket and state; a suite's subclass parses what the server sends. */
export abstract class Subscriber {
  readonly i: number;
  socket!: net.Socket;
  /** 0 before the stream (headers, handshake), 1 streaming, 2 failed or ended. */
  phase = 0;
  /** Whether it has become ready (sse: its first body bytes; ws: its `subscribed` frame). */
  isReady = false;
  /** The highest seq it has had. */
  maxSeen = 0;

  constructor(i: number) {
    this.i = i;
  }

  /** Takes the bytes the server sent (timestamp them first: `now()`). */
  abstract onData(chunk: Buffer): void;

  /** It is ready (call once). */
  becomeReady(): void {
    this.isReady = true;
    ready++;
    checkReady();
  }

  /** It failed or the server ended it: counted once, as an error. */
  fail(why: string): void {
    if (this.phase === 2) return;
    const wasReady = this.isReady;
    this.phase = 2;
    errors++;
    problem(`subscriber ${this.i}: ${why}`);
    if (!wasReady) checkReady();
    if (target !== 0 && this.maxSeen < target) subDone();
  }
}

/** Records that `sub` got event `seq`, published at `t`, at `at`. */
export function record(sub: Subscriber, seq: number, t: number, at: number): void {
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
  if (!(at >= firstAt[e]!)) firstAt[e] = at; // (also when still NaN)
  if (!(at <= lastAt[e]!)) lastAt[e] = at;
}

/** The seq and t that `readSeqAndT` read last. */
export const parsed = { seq: 0, t: 0 };

const T_KEY = Buffer.from(',"t":', 'latin1');

/**
 * Reads `N,"t":T` from `buf[p, end)`, what follows `"seq":` in an event's data, into `parsed`.
 *
 * @returns false when no `,"t":` follows the seq's digits.
 */
export function readSeqAndT(buf: Buffer, p: number, end: number): boolean {
  let seq = 0;
  while (p < end && buf[p]! >= 48 && buf[p]! <= 57) seq = seq * 10 + (buf[p++]! - 48);
  if (p + T_KEY.length > end || buf.compare(T_KEY, 0, T_KEY.length, p, p + T_KEY.length) !== 0) return false;
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
  parsed.seq = seq;
  parsed.t = t;
  return true;
}

function subDone(): void {
  doneSubs++;
  if (doneSubs >= count) onDone?.();
}

function checkReady(): void {
  if (!readyReported && ready + errors >= count) {
    readyReported = true;
    send({ type: 'ready', ready, errors, sample });
  }
}

/** What a suite's load process brings to a trial. */
export interface LoadProtocol {
  /** Subscriber `i` (from 0). */
  subscriber(i: number): Subscriber;
  /** Writes what a socket sends once connected (the request, the handshake). */
  greet(socket: net.Socket): void;
}

function start(m: StartMessage, protocol: LoadProtocol): void {
  count = m.count;
  events = m.events;
  subs = Array.from({ length: count }, (_, i) => protocol.subscriber(i));
  seen = new Uint8Array(count * (events + 1));
  lat = new Float32Array(count * events).fill(Number.NaN);
  firstAt = new Float64Array(events).fill(Number.NaN);
  lastAt = new Float64Array(events).fill(Number.NaN);
  dupBy = new Int32Array(events + 1);
  reorderBy = new Int32Array(events + 1);
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
        protocol.greet(socket);
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

/**
 * Runs this load process: answers the coordinator until it says `exit` or goes away.
 *
 * @param setup - Called on `start` with its message: the suite's protocol for this trial.
 */
export function runLoad<Start extends StartMessage>(setup: (m: Start) => LoadProtocol): void {
  process.on('message', (m: ToLoad<Start>) => {
    switch (m.type) {
      case 'start':
        start(m, setup(m as Start));
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
}
