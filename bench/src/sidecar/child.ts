/**
 * One measurement in a fresh process: `node --import tsx child.ts <contender> <mode> <scale>`.
 * Prints one `RESULT {json}` line on stdout.
 *
 * Contenders, both talking to a child process that runs beside this one:
 * - `patchbay`: a `SidecarSupervisor` (built `dist/`) spawning peer-patchbay.mjs, `SidecarChannel`
 *   over a Unix socket: length-prefixed JSON frames, acknowledged sends, coalesced writes.
 * - `ipc`: `child_process.fork` of peer-ipc.mjs and Node's IPC channel (`process.send`, JSON).
 * - `ndjson`: the fair transport-for-transport baseline, what a competent engineer writes by
 *   hand: peer-ndjson.mjs serves a Unix socket, one `JSON.stringify(msg) + '\n'` per message,
 *   the lines of one synchronous run joined and written once (in a microtask, as patchbay does),
 *   `'drain'` awaited when `write()` says false. It does the work patchbay's timing includes:
 *   every message carries a seq; each send is kept until the peer's cumulative ack covers it
 *   (what patchbay keeps for replay), and the producer pauses once 5,000 are held (written or
 *   not, unacknowledged), resuming at 2,500, as patchbay's default high-water mark (half of
 *   10,000) and drain do; requests are correlated by id. What it leaves out is patchbay's own:
 *   frame limits and the depth/`__proto__` scan of every frame, the handshake, and replay after
 *   a reconnection (each request has a 30 s deadline, a timer of its own).
 *
 * Modes:
 * - `throughput`: N fire-and-forget messages as fast as backpressure allows, then one request
 *   that answers after the last (the channel is ordered): messages/s from the first send to the answer.
 * - `latency`: M requests one at a time: round-trip p50/p99.
 * - `latency-c32`: M requests with 32 in flight: round-trip p50/p99 under load.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type * as Patchbay from '../../../src/index.js';
import { quantileSorted } from '../lib/stats.js';
import { CONTENDERS, type ChildResult, type ContenderName, MESSAGES, MODES, type Mode, record, REQUESTS } from './workload.js';

interface Contender {
  send(i: number): Promise<void> | undefined;
  request(type: string, data: unknown): Promise<unknown>;
  close(): Promise<void>;
}

async function patchbay(): Promise<Contender> {
  const dist = process.env['PATCHBAY_BENCH_DIST'] ?? new URL('../../../dist/', import.meta.url).pathname;
  const lib = (await import(new URL('index.js', `file://${dist.endsWith('/') ? dist : `${dist}/`}`).href)) as typeof Patchbay;
  const supervisor = new lib.SidecarSupervisor({
    command: process.execPath,
    args: [...(process.env['PEER_NODE_ARGS']?.split(' ').filter(Boolean) ?? []), fileURLToPath(new URL('./peer-patchbay.mjs', import.meta.url))],
    name: 'bench',
    healthCheck: false,
    channel: { overflow: 'reject' },
  });
  await supervisor.start();
  const channel = supervisor.channel;
  return {
    send: (i) => (channel.send('log', record(i)) ? undefined : channel.drain()),
    request: (type, data) => channel.request(type, data),
    close: () => supervisor.close(),
  };
}

async function ndjson(): Promise<Contender> {
  const dir = mkdtempSync(join(tmpdir(), 'pb-bench-ndjson-'));
  const path = join(dir, 'peer.sock');
  const child = spawn(process.execPath, [...(process.env['PEER_NODE_ARGS']?.split(' ').filter(Boolean) ?? []), fileURLToPath(new URL('./peer-ndjson.mjs', import.meta.url)), path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the ndjson peer exited with ${String(code)}`)));
  });
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ path }, () => resolve(s));
    s.once('error', reject);
  });
  socket.setNoDelay(true);
  socket.setEncoding('utf8');
  const HIGH_WATER = 5000;
  const pending = new Map<number, (data: unknown) => void>();
  /** Sends written or waiting, not yet acknowledged: kept, as a replaying sender must. */
  const unacked: { seq: number; line: string }[] = [];
  let unackedHead = 0;
  let lines: string[] = [];
  let scheduled = false;
  let blocked = false;
  let wake: (() => void) | undefined;
  let nextSeq = 1;
  let nextId = 1;
  const held = () => unacked.length - unackedHead;
  const flush = (): void => {
    scheduled = false;
    if (blocked || lines.length === 0) return;
    const text = lines.join('');
    lines = [];
    if (!socket.write(text)) blocked = true;
  };
  const queue = (line: string): void => {
    lines.push(line);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(flush);
    }
  };
  socket.on('drain', () => {
    blocked = false;
    flush();
  });
  let rest = '';
  socket.on('data', (chunk: string) => {
    const text = rest + chunk;
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      const m = JSON.parse(text.slice(start, nl)) as { ack?: number; id?: number; data?: unknown };
      start = nl + 1;
      if (m.ack !== undefined) {
        while (unackedHead < unacked.length && unacked[unackedHead]!.seq <= m.ack) unackedHead++;
        if (unackedHead > 4096 && unackedHead * 2 > unacked.length) {
          unacked.splice(0, unackedHead);
          unackedHead = 0;
        }
        if (wake !== undefined && held() <= HIGH_WATER >> 1) {
          const w = wake;
          wake = undefined;
          w();
        }
      } else {
        pending.get(m.id!)?.(m.data);
        pending.delete(m.id!);
      }
    }
    rest = text.slice(start);
  });
  return {
    send: (i) => {
      const seq = nextSeq++;
      const line = JSON.stringify({ seq, type: 'log', data: record(i) }) + '\n';
      unacked.push({ seq, line });
      queue(line);
      return held() < HIGH_WATER ? undefined : new Promise<void>((resolve) => (wake = resolve));
    },
    // A deadline per request, as patchbay's requestTimeoutMs (30 s) gives each.
    request: (type, data) =>
      new Promise((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`request ${id} timed out`));
        }, 30_000);
        pending.set(id, (value) => {
          clearTimeout(timer);
          resolve(value);
        });
        queue(JSON.stringify({ seq: nextSeq++, id, type, data }) + '\n');
      }),
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      socket.end();
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function ipc(): Promise<Contender> {
  const child: ChildProcess = fork(fileURLToPath(new URL('./peer-ipc.mjs', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const pending = new Map<number, (data: unknown) => void>();
  child.on('message', (m: { id: number; data: unknown }) => {
    pending.get(m.id)?.(m.data);
    pending.delete(m.id);
  });
  let nextId = 1;
  let blocked = false;
  return {
    // send() returns false once its backlog is large: then the next message goes with a
    // callback, and the producer waits until it (and so everything before it) is written.
    send: (i) => {
      if (!blocked) {
        blocked = !child.send(record(i));
        return undefined;
      }
      return new Promise<void>((resolve) => {
        blocked = !child.send(record(i), () => resolve());
      });
    },
    request: (type, data) =>
      new Promise((resolve) => {
        const id = nextId++;
        pending.set(id, resolve);
        child.send({ id, type, data });
      }),
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.disconnect();
      await exited;
    },
  };
}

async function latency(c: Contender, n: number, inFlight: number): Promise<number[]> {
  const times: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      const got = await c.request('echo', i);
      times.push(performance.now() - t0);
      if (got !== i) throw new Error(`request ${i} answered ${String(got)}`);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return times.sort((a, b) => a - b);
}

const [name, modeArg, scaleArg] = process.argv.slice(2);
if (!CONTENDERS.includes(name as ContenderName)) throw new Error(`unknown contender ${String(name)}`);
if (!MODES.includes(modeArg as Mode)) throw new Error(`unknown mode ${String(modeArg)}`);
const mode = modeArg as Mode;
const scale = Number(scaleArg ?? 1);
const contender = name === 'patchbay' ? await patchbay() : name === 'ndjson' ? await ndjson() : await ipc();

let result: ChildResult;
if (mode === 'throughput') {
  const n = Math.round(MESSAGES * scale);
  // Warm-up: a tenth as many, not measured.
  for (let i = 0; i < n / 10; i++) await contender.send(i);
  const warm = (await contender.request('count', null)) as number;
  const peerCpu0 = (await contender.request('cpu', null)) as NodeJS.CpuUsage;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const wait = contender.send(i);
    if (wait !== undefined) await wait;
  }
  const count = (await contender.request('count', null)) as number;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const peerCpu1 = (await contender.request('cpu', null)) as NodeJS.CpuUsage;
  if (count - warm !== n) throw new Error(`the peer counted ${count - warm} of ${n} messages`);
  const peerCpuUs = peerCpu1.user + peerCpu1.system - (peerCpu0.user + peerCpu0.system);
  result = {
    figures: { messagesPerSec: n / seconds, appCpuPerMessageUs: (cpu.user + cpu.system) / n, peerCpuPerMessageUs: peerCpuUs / n },
    info: { messages: n, seconds },
  };
} else {
  const n = Math.round(REQUESTS * scale);
  const inFlight = mode === 'latency' ? 1 : 32;
  await latency(contender, Math.round(n / 10), inFlight); // warm-up
  const t0 = performance.now();
  const times = await latency(contender, n, inFlight);
  const seconds = (performance.now() - t0) / 1000;
  result = {
    figures: {
      p50Ms: quantileSorted(times, 0.5),
      p99Ms: quantileSorted(times, 0.99),
      requestsPerSec: n / seconds,
    },
    info: { requests: n, inFlight, seconds },
  };
}
await contender.close();
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
process.exit(0);
