/**
 * The coordinator side of the fan-out suites (sse, ws): S subscribers on one topic, fed by one
 * publisher. A trial, on a server process the suite has just started:
 *
 * 1. warm it up (200 subscribers on another topic, a burst of 300 events, every one checked),
 *    wait until they are gone; measure its idle RSS;
 * 2. spread S subscribers over load processes (`fanout-load.ts`: at most 5,000 sockets each,
 *    each from its own 127.0.0.x source address) and wait until every one is ready and the
 *    server itself counts S; settle 1 s; measure RSS;
 * 3. paced: publish P events at a fixed rate (S × rate = a suite's deliveries per second), each
 *    publish written on its own, timestamped in its data;
 * 4. burst: publish E events back-to-back, pipelined on one keep-alive connection;
 * 5. check every subscriber got every event exactly once and in order; stop the load processes
 *    and the server by PID.
 *
 * What differs between the suites is a `FanoutPlan`: the load process and its `start` fields,
 * the publishes' content type and accepted statuses, the sizes of the phases and their bounds,
 * and the words of the errors.
 */
import net from 'node:net';
import { root, sleep } from './harness.js';
import { type FromLoad, now, type PhaseResult, type StartMessage, type ToLoad } from './fanout-load.js';
import { type Load as LoadProcess, spawnLoad, stopLoads as stopLoadProcesses } from './loads.js';
import { totalCpuMs, totalRss } from './processes.js';
import { PER_PROCESS_MAX } from './sized-servers.js';
import { quantileSorted } from './stats.js';

/** Sockets per load process: one process may hold 20,000 open files. */
export const PER_LOAD = 5000;
/** Sockets of a load process connecting at once. */
export const CONNECT_WINDOW = 64;
/** The topic of the trial. */
export const TOPIC = 'bench';
/** Subscribers and burst events of the warm-up (on its own topic). */
export const WARM_SUBS = 200;
export const WARM_EVENTS = 300;
/** Each event's data is about this many bytes. */
export const DATA_BYTES = 100;

/** A server under test: started by the suite, stopped by the trial. */
export interface FanoutServer {
  readonly name: string;
  readonly port: number;
  /** Its processes now (nginx: master and workers). */
  pids(): number[];
  /** Subscribers (or subscriptions) the server itself counts. */
  subscribers(): Promise<number>;
  /** Stops it by PID and resolves once every process of it is gone. */
  stop(): Promise<void>;
}

/** The words a suite's errors use. */
export interface FanoutWords {
  /** A client: `subscriber` (sse), `socket` (ws). */
  readonly client: string;
  /** What it receives: `event`, `message`. */
  readonly event: string;
  /** What the server counts: `subscriber`, `subscription`. */
  readonly counted: string;
  /** What a client that failed did not do: `connect`, `connect or subscribe`. */
  readonly connect: string;
}

/** How a suite runs its trials. `K` names its RSS-per-subscriber figure. */
export interface FanoutPlan<K extends string> {
  /** The suite's load process: a `runLoad` of `fanout-load.ts`. */
  readonly loadFile: string;
  /** The fields of a load's `start` message for `topic` besides the common ones (at least the path). */
  readonly startFields: (topic: string) => { readonly path: string } & Readonly<Record<string, unknown>>;
  /** The `Content-Type` of the publishes. */
  readonly contentType: string;
  /** Whether a publish was answered as it should be. */
  readonly okStatus: (status: number) => boolean;
  readonly words: FanoutWords;
  /**
   * Paced phase: `events` events at S × rate = `deliveriesPerS` (at most `maxRate` events/s), and
   * with `maxMs` fewer events where `events` would take longer than that (large S).
   */
  readonly paced: { readonly events: number; readonly deliveriesPerS: number; readonly maxRate: number; readonly maxMs?: number };
  /** Burst phase: E = `deliveries` / S events (`min`..`max`). */
  readonly burst: { readonly deliveries: number; readonly min: number; readonly max: number };
  /** How long the paced phase waits for its last event, given how much of its schedule is left then. */
  readonly pacedLimitMs: (scheduleLeftMs: number, events: number) => number;
  /** How long the burst waits for its last event after its first publish. */
  readonly burstLimitMs: (s: number, events: number) => number;
  /**
   * Whether the burst goes on a connection of its own, opened after the paced phase (a server
   * that lagged may have timed the first one out), rather than on the paced phase's.
   */
  readonly freshBurstConnection: boolean;
  /** What delivered events/s counts: the (subscriber, event) pairs `received`, or S × E as `published`. */
  readonly burstRateCounts: 'received' | 'published';
  /** The key of the RSS-per-subscriber figure (`rssPerSub`, `rssPerSocket`). */
  readonly perSubscriberKey: K;
}

/** The paced phase's rate at size `s`, events/s. */
export const pacedRate = (plan: FanoutPlan<string>, s: number): number => Math.min(plan.paced.maxRate, plan.paced.deliveriesPerS / s);

/**
 * The paced phase's events at size `s`: `paced.events`, or as many as fit in `paced.maxMs` at the
 * paced rate (the first at 0, then one every 1/rate s), at least 2.
 */
export const pacedEvents = (plan: FanoutPlan<string>, s: number): number =>
  plan.paced.maxMs === undefined ? plan.paced.events : Math.max(2, Math.min(plan.paced.events, Math.floor((plan.paced.maxMs / 1000) * pacedRate(plan, s)) + 1));

/** The burst's events at size `s`. */
export const burstEvents = (plan: FanoutPlan<string>, s: number): number => Math.max(plan.burst.min, Math.min(plan.burst.max, Math.round(plan.burst.deliveries / s)));

/**
 * The trial's settings for the results JSON: load processes, topic, warm-up, the phases (their
 * rate and events per size), data size.
 */
export function fanoutConfig(plan: FanoutPlan<string>, sizes: readonly number[]): Record<string, unknown> {
  return {
    socketsPerLoadProcess: PER_LOAD,
    connectWindowPerLoadProcess: CONNECT_WINDOW,
    topic: TOPIC,
    warmUp: { [`${plan.words.client}s`]: WARM_SUBS, events: WARM_EVENTS },
    paced: {
      events: plan.paced.events,
      deliveriesPerSecond: plan.paced.deliveriesPerS,
      maxRate: plan.paced.maxRate,
      ratePerSize: Object.fromEntries(sizes.map((s) => [s, pacedRate(plan, s)])),
      ...(plan.paced.maxMs === undefined ? {} : { maxMs: plan.paced.maxMs, eventsPerSize: Object.fromEntries(sizes.map((s) => [s, pacedEvents(plan, s)])) }),
    },
    burst: { ...plan.burst, eventsPerSize: Object.fromEntries(sizes.map((s) => [s, burstEvents(plan, s)])) },
    dataBytes: DATA_BYTES,
  };
}

/** The figures of one trial; `K` is the RSS-per-subscriber figure's key. */
export type FanoutResult<K extends string> = FanoutFigures & Readonly<Record<K, number>>;

interface FanoutFigures {
  readonly rssIdle: number;
  readonly rssHeld: number;
  readonly connectMs: number;
  readonly pacedRate: number;
  readonly pacedP50: number;
  readonly pacedP99: number;
  readonly firstP50: number;
  readonly firstP99: number;
  readonly midP50: number;
  readonly midP99: number;
  readonly lastP50: number;
  readonly lastP99: number;
  readonly pacedCpuMs: number;
  readonly burstEvents: number;
  readonly burstRate: number;
  readonly burstMs: number;
  readonly burstP50: number;
  readonly burstP99: number;
  readonly burstCpuMs: number;
  readonly received: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly reordered: number;
  readonly wrong: number;
  readonly errors: number;
  readonly badPublishes: number;
  readonly sample: string;
}

// --- load processes -------------------------------------------------------------------------

type Load = LoadProcess<ToLoad, FromLoad>;
const stopLoads = (list: readonly Load[]) => stopLoadProcesses(list, { type: 'exit' });

let addressIndex = 0;
/** A source address for the next load process: 127.0.0.2 .. 127.0.0.251, in turn. */
const nextAddress = () => `127.0.0.${2 + (addressIndex++ % 250)}`;

/**
 * Connects `s` subscribers to `topic`, spread over load processes, and waits until each is
 * ready and the server counts them all (bounded).
 */
async function subscribe(plan: FanoutPlan<string>, server: FanoutServer, s: number, topic: string, events: number, list: Load[]): Promise<void> {
  const { client, event, counted, connect } = plan.words;
  const nLoads = Math.ceil(s / PER_LOAD);
  // Above 19,000 (several server processes) the loads connect one after another: a node:cluster
  // primary accepts every connection and hands it on, and a flood of connects from every load at
  // once holds more than its 20,000 open files in flight.
  // patchbay-x2 connects one load after another whenever there is more than one (as long polling
  // does: on a slower machine its primary fell behind at 19,000).
  const staged = s > PER_PROCESS_MAX || (server.name === 'patchbay-x2' && nLoads > 1);
  const readies: Extract<FromLoad, { type: 'ready' }>[] = [];
  for (let k = 0; k < nLoads; k++) {
    const count = Math.floor(s / nLoads) + (k < s % nLoads ? 1 : 0);
    const load = spawnLoad<ToLoad, FromLoad>(plan.loadFile, root, count, true);
    list.push(load);
    const start: StartMessage = { ...plan.startFields(topic), type: 'start', port: server.port, count, localAddress: nextAddress(), window: CONNECT_WINDOW, events };
    load.send(start);
    if (staged) readies.push(await load.next('ready', 30_000 + count * 5));
  }
  if (!staged) readies.push(...(await Promise.all(list.map((l) => l.next('ready', 30_000 + s * 5)))));
  const failed = readies.reduce((n, r) => n + r.errors, 0);
  if (failed > 0) throw new Error(`${server.name} S=${s}: ${failed} ${client}(s) failed to ${connect}; first error: ${readies.map((r) => r.sample).find((x) => x !== '') ?? 'none recorded'}`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    let n: number;
    try {
      n = await server.subscribers();
    } catch (error) {
      // A slow count while connections are still being handed on: ask again, until the deadline.
      if (Date.now() > deadline) throw error;
      await sleep(200);
      continue;
    }
    const statuses = await Promise.all(
      list.map((l) => {
        l.send({ type: 'status' });
        return l.next('status', 10_000);
      }),
    );
    const early = statuses.reduce((sum, st) => sum + st.received, 0);
    const errors = statuses.reduce((sum, st) => sum + st.errors, 0);
    if (early > 0 || errors > 0) throw new Error(`${server.name} S=${s}: ${early} ${event}(s) before any publish, ${errors} failed ${client}(s)`);
    if (n === s) return;
    if (Date.now() > deadline) throw new Error(`${server.name} S=${s}: the server counts ${n} of ${s} ${counted}s after 60 s`);
    await sleep(200);
  }
}

/** Collects one phase from every load process. */
function collect(list: readonly Load[], from: number, to: number, timeoutMs: number): Promise<PhaseResult[]> {
  for (const l of list) l.send({ type: 'collect', from, to, timeoutMs });
  return Promise.all(list.map((l) => l.next('result', timeoutMs + 30_000)));
}

// --- the publisher --------------------------------------------------------------------------

const PAD = 'x'.repeat(DATA_BYTES - '{"seq":100,"t":1764000000000.123,"pad":""}'.length);

/**
 * One raw keep-alive connection that publishes: each `POST /pub/<topic>` carries
 * `{"seq","t","pad"}` with `t` taken just before the write, and the answers (pipelined, in
 * order) are counted by status.
 */
class Publisher {
  readonly #socket: net.Socket;
  readonly #host: string;
  readonly #contentType: string;
  #pending = Buffer.alloc(0);
  readonly statuses: number[] = [];
  #waiter: (() => void) | null = null;
  #error: Error | null = null;

  private constructor(socket: net.Socket, port: number, contentType: string) {
    this.#socket = socket;
    this.#host = `127.0.0.1:${port}`;
    this.#contentType = contentType;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (e) => {
      this.#error = e;
      this.#waiter?.();
    });
    socket.on('close', () => {
      this.#error ??= new Error('the publish connection closed');
      this.#waiter?.();
    });
  }

  static connect(port: number, contentType: string): Promise<Publisher> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.off('error', reject);
        resolve(new Publisher(s, port, contentType));
      });
      s.setNoDelay(true);
      s.once('error', reject);
    });
  }

  /** Writes one publish of `seq` to `topic`; returns its send time. */
  publish(topic: string, seq: number): number {
    const t = Math.round(now() * 1000) / 1000;
    const body = `{"seq":${seq},"t":${t},"pad":"${PAD}"}`;
    this.#socket.write(
      `POST /pub/${topic} HTTP/1.1\r\nHost: ${this.#host}\r\nContent-Type: ${this.#contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      'latin1',
    );
    return t;
  }

  /** Waits (bounded) until `n` answers have come in all; says whether they did (a missing answer is a check failure, not a crash). */
  async answered(n: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.statuses.length < n) {
      if (this.#error) throw this.#error;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = null;
    }
    return true;
  }

  /** Answers that are not `ok`, and publishes of the `sent` not answered at all. */
  bad(sent: number, ok: (status: number) => boolean): number {
    return this.statuses.filter((x) => !ok(x)).length + Math.max(0, sent - this.statuses.length);
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    let buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) break;
      const head = buf.subarray(0, end).toString('latin1');
      const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      let total: number;
      if (cl) total = end + 4 + Number(cl[1]);
      else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
        const last = buf.indexOf('\r\n0\r\n\r\n', end + 2);
        if (last === -1) break;
        total = last + 7;
      } else total = end + 4;
      if (buf.length < total) break;
      this.statuses.push(Number(head.slice(9, 12)));
      buf = buf.subarray(total);
    }
    this.#pending = Buffer.from(buf);
    this.#waiter?.();
  }
}

// --- one trial ------------------------------------------------------------------------------

/** Per-event arrival spread and the overall distribution of one phase, merged over load processes. */
function latencies(results: readonly PhaseResult[], loads: readonly Load[]) {
  const nEv = results[0]!.to - results[0]!.from + 1;
  const first: number[] = [];
  const mid: number[] = [];
  const last: number[] = [];
  const total = results.reduce((n, r) => n + r.latencies.length, 0);
  const all = new Float64Array(total);
  let k = 0;
  for (let e = 0; e < nEv; e++) {
    const start = k;
    results.forEach((r, j) => {
      const c = loads[j]!.count;
      const lat = r.latencies;
      for (let i = e * c; i < (e + 1) * c; i++) if (!Number.isNaN(lat[i]!)) all[k++] = lat[i]!;
    });
    const ev = all.subarray(start, k).slice().sort();
    if (ev.length === 0) continue;
    first.push(ev[0]!);
    mid.push(quantileSorted(ev, 0.5));
    last.push(ev[ev.length - 1]!);
  }
  const sorted = all.subarray(0, k).sort();
  const q = (v: number[], p: number) => quantileSorted(v.sort((a, b) => a - b), p);
  return {
    p50: quantileSorted(sorted, 0.5),
    p99: quantileSorted(sorted, 0.99),
    firstP50: q(first, 0.5),
    firstP99: q(first, 0.99),
    midP50: q(mid, 0.5),
    midP99: q(mid, 0.99),
    lastP50: q(last, 0.5),
    lastP99: q(last, 0.99),
  };
}

function checks(results: readonly PhaseResult[]) {
  const sum = (k: 'received' | 'lost' | 'duplicated' | 'reordered') => results.reduce((n, r) => n + r[k], 0);
  return {
    received: sum('received'),
    lost: sum('lost'),
    duplicated: sum('duplicated'),
    reordered: sum('reordered'),
    wrong: results.reduce((n, r) => n + r.wrong, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    sample: results.map((r) => r.sample).find((x) => x !== '') ?? '',
  };
}

/** Warms the server up (a Node server's hot paths compiled) and checks it delivers at all. */
async function warmUp(plan: FanoutPlan<string>, server: FanoutServer): Promise<void> {
  const list: Load[] = [];
  let publisher: Publisher | undefined;
  try {
    await subscribe(plan, server, WARM_SUBS, 'warm', WARM_EVENTS, list);
    publisher = await Publisher.connect(server.port, plan.contentType);
    for (let seq = 1; seq <= WARM_EVENTS; seq++) publisher.publish('warm', seq);
    const results = await collect(list, 1, WARM_EVENTS, 30_000);
    await publisher.answered(WARM_EVENTS, 10_000);
    const c = checks(results);
    const bad = publisher.bad(WARM_EVENTS, plan.okStatus);
    if (c.lost + c.duplicated + c.reordered + c.wrong + c.errors + bad > 0) {
      throw new Error(`${server.name}: the warm-up failed (${c.lost} lost, ${c.duplicated} dup, ${c.reordered} reordered, ${c.wrong} wrong, ${c.errors} errors, ${bad} bad publishes; ${c.sample})`);
    }
  } finally {
    publisher?.close();
    await stopLoads(list);
  }
  const deadline = Date.now() + 15_000;
  while ((await server.subscribers()) !== 0) {
    if (Date.now() > deadline) throw new Error(`${server.name}: warm-up ${plan.words.counted}s still counted 15 s after they left`);
    await sleep(100);
  }
}

/**
 * Runs one trial of `s` subscribers on a server just started, and stops the server (and every
 * load process) however it ends.
 */
export async function fanoutTrial<K extends string>(plan: FanoutPlan<K>, server: FanoutServer, s: number): Promise<FanoutResult<K>> {
  const list: Load[] = [];
  let publisher: Publisher | undefined;
  let burster: Publisher | undefined;
  try {
    await warmUp(plan, server);
    await sleep(1000);
    const rssIdle = totalRss(server);

    const nPaced = pacedEvents(plan, s);
    const nBurst = burstEvents(plan, s);
    const events = nPaced + nBurst;
    const tConnect = now();
    await subscribe(plan, server, s, TOPIC, events, list);
    const connectMs = now() - tConnect;
    await sleep(1000);
    const rssHeld = totalRss(server);
    if ((await server.subscribers()) !== s) throw new Error(`${server.name} S=${s}: the ${plan.words.counted} count changed while settling`);
    publisher = await Publisher.connect(server.port, plan.contentType);

    // Paced: one publish every 1/rate s, on a schedule (a late one does not push the rest back).
    const rate = pacedRate(plan, s);
    const cpuP0 = totalCpuMs(server);
    const tp0 = now() + 20;
    for (let seq = 1; seq <= nPaced; seq++) {
      const due = tp0 + ((seq - 1) * 1000) / rate;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      publisher.publish(TOPIC, seq);
    }
    // Bounded: what has not arrived by then counts as lost.
    const paced = await collect(list, 1, nPaced, plan.pacedLimitMs(Math.max(0, tp0 + (nPaced * 1000) / rate - now()), nPaced));
    const pacedCpuMs = totalCpuMs(server) - cpuP0;
    await publisher.answered(nPaced, 30_000);
    if (plan.freshBurstConnection) burster = await Publisher.connect(server.port, plan.contentType);
    await sleep(500);

    // Burst: every publish written back-to-back on one connection (pipelined).
    const out = burster ?? publisher;
    const cpuB0 = totalCpuMs(server);
    let tb0 = Number.NaN;
    for (let seq = nPaced + 1; seq <= events; seq++) {
      const t = out.publish(TOPIC, seq);
      if (seq === nPaced + 1) tb0 = t;
    }
    const burst = await collect(list, nPaced + 1, events, plan.burstLimitMs(s, nBurst));
    const burstCpuMs = totalCpuMs(server) - cpuB0;
    await out.answered(burster ? nBurst : events, 30_000);
    const arrivals = burst.flatMap((r) => Array.from(r.lastAt).filter((x) => !Number.isNaN(x)));
    const burstMs = arrivals.length > 0 ? Math.max(...arrivals) - tb0 : Number.NaN; // NaN: nothing of the burst arrived in time

    const pl = latencies(paced, list);
    const bl = latencies(burst, list);
    const cp = checks(paced);
    const cb = checks(burst);
    const delivered = plan.burstRateCounts === 'received' ? cb.received : s * nBurst;
    const result = {
      rssIdle,
      rssHeld,
      [plan.perSubscriberKey]: (rssHeld - rssIdle) / s,
      connectMs,
      pacedRate: rate,
      pacedP50: pl.p50,
      pacedP99: pl.p99,
      firstP50: pl.firstP50,
      firstP99: pl.firstP99,
      midP50: pl.midP50,
      midP99: pl.midP99,
      lastP50: pl.lastP50,
      lastP99: pl.lastP99,
      pacedCpuMs,
      burstEvents: nBurst,
      burstRate: arrivals.length > 0 ? (delivered * 1000) / burstMs : 0, // 0 when nothing came within the bound
      burstMs,
      burstP50: bl.p50,
      burstP99: bl.p99,
      burstCpuMs,
      received: cp.received + cb.received,
      lost: cp.lost + cb.lost,
      duplicated: cp.duplicated + cb.duplicated,
      reordered: cp.reordered + cb.reordered,
      wrong: cb.wrong,
      errors: cb.errors,
      badPublishes: burster ? publisher.bad(nPaced, plan.okStatus) + burster.bad(nBurst, plan.okStatus) : publisher.bad(events, plan.okStatus),
      sample: cp.sample || cb.sample,
    };
    return result as FanoutResult<K>;
  } finally {
    publisher?.close();
    burster?.close();
    await stopLoads(list);
    await server.stop();
  }
}
