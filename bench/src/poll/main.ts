/**
 * The short-polling benchmark: patchbay's demo server (`PollHandle` + `PollHandler` behind
 * `POST /jobs`, `GET|DELETE /jobs/:id`) against a bare `node:http` reference written by hand
 * (`bare-server.mjs`), side by side in one run. Run it from the repository root with
 * `npm run bench -- poll`.
 *
 * Two trials per run and server, each on a fresh server process, servers in an order that
 * rotates from run to run:
 *
 * - **reads**: start `--jobs` (10,000) live jobs (`{ steps: 60, stepMs: 60000 }`: an hour each,
 *   one progress step a minute), then load processes keep C keep-alive connections busy with
 *   `GET /jobs/<random id>` in a closed loop (the next request as soon as the answer is in):
 *   status reads per second over the measured window, latency, server CPU per 1,000 reads.
 * - **holds**: start one job that will not change for a minute, measure idle RSS, then W
 *   (10,000) clients from load processes each hold `GET /jobs/<id>` with `Prefer: wait=120`;
 *   once the server itself counts W held, settle 1 s and measure RSS (per waiter = the
 *   difference over W); then `DELETE` the job and time how long until every held read has its
 *   answer (the canceled status, 303 to the result resource on both servers).
 *
 * Prints a table, writes `bench/results/poll.json` and the poll section of `docs/benchmarks.md`.
 * Options: `--runs N` (default 3), `--jobs N`, `--waiters N`, `--connections N` (per load
 * process; 2 load processes), `--measure-ms N`, `--servers patchbay,bare`, `--no-write`, and for
 * profiling `--node-flags "--cpu-prof ..."` (extra flags for both servers; needs `--no-write`).
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { checkInteger, checkNodeFlags, checkServers, readOptions, splitFlags } from '../lib/args.js';
import { quietTrialStart, rotate, sleep } from '../lib/harness.js';
import { type Load, spawnLoad, stopLoads } from '../lib/loads.js';
import { getJson, type ServerProcess, startNodeServer, totalCpuMs, totalRss } from '../lib/processes.js';
import {
  type FigureDef as ReportFigure,
  figureFields,
  figureTables,
  formatValue,
  printReport,
  ratioCell,
  SuiteRun,
  summaryCell,
  type TargetResult,
} from '../lib/report.js';
import { quantileSorted, summarize, type Summary } from '../lib/stats.js';
import { killAll, killAllOnExit } from '../lib/trials.js';
import type { FromLoad, ToLoad } from './load.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const loadFile = join(here, 'load.ts');
const SERVERS = ['patchbay', 'bare'] as const;
type ServerName = (typeof SERVERS)[number];
const READ_LOADS = 2;
const PER_HOLD_LOAD = 5000;
const CONNECT_WINDOW = 64;
const WAIT_S = 120;
const WARM_MS = 3000;

const now = (): number => performance.timeOrigin + performance.now();

function parseArgs(argv: readonly string[]) {
  const opts = { runs: 3, jobs: 10_000, waiters: 10_000, connections: 32, measureMs: 10_000, servers: [...SERVERS] as ServerName[], write: true, nodeFlags: [] as string[] };
  readOptions(
    argv,
    {
      '--runs': (value) => (opts.runs = Number(value())),
      '--jobs': (value) => (opts.jobs = Number(value())),
      '--waiters': (value) => (opts.waiters = Number(value())),
      '--connections': (value) => (opts.connections = Number(value())),
      '--measure-ms': (value) => (opts.measureMs = Number(value())),
      '--servers': (value) => (opts.servers = value().split(',') as ServerName[]),
      '--no-write': () => (opts.write = false),
      '--node-flags': (value) => (opts.nodeFlags = splitFlags(value())),
    },
    '--runs N, --jobs N, --waiters N, --connections N, --measure-ms N, --servers patchbay,bare, --no-write, --node-flags "..."',
  );
  checkInteger('--runs', opts.runs, 1, 10);
  checkInteger('--jobs', opts.jobs, 1, 50_000);
  checkInteger('--waiters', opts.waiters, 1, 19_000);
  checkInteger('--connections', opts.connections, 1, 1000);
  checkInteger('--measure-ms', opts.measureMs, 1000, 120_000);
  checkServers(opts.servers, SERVERS);
  checkNodeFlags(opts.nodeFlags, opts.write);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// --- servers ---------------------------------------------------------------------------------

interface RunningServer extends ServerProcess {
  readonly name: ServerName;
  /** Held reads the server itself counts. */
  held(): Promise<number>;
}

/**
 * A private copy of the built package and the demo, taken once per run: other work in the same
 * checkout may rebuild dist/ (tsup empties it first) while this suite starts its servers. The
 * copy's package.json makes `import 'patchbay'` resolve to the copy's dist/.
 */
function snapshotDemo(): string {
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = mkdtempSync(join(os.tmpdir(), 'patchbay-poll-bench-'));
    try {
      cpSync(join(root, 'package.json'), join(dir, 'package.json'));
      cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
      cpSync(join(root, 'demo'), join(dir, 'demo'), { recursive: true });
      symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { exports: Record<string, { import?: { default?: string } }> };
      const files = Object.values(pkg.exports).flatMap((e) => (typeof e === 'object' && e.import?.default ? [e.import.default] : []));
      if (files.every((f) => existsSync(join(dir, f)))) return dir;
    } catch {
      // dist/ changed while copying: try again
    }
    rmSync(dir, { recursive: true, force: true });
    execFileSync('sleep', ['3']);
  }
  throw new Error('could not copy a complete dist/ (is a build running?); run again');
}
const snapshot = snapshotDemo();
process.on('exit', () => rmSync(snapshot, { recursive: true, force: true }));

async function startServer(name: ServerName): Promise<RunningServer> {
  const script = name === 'patchbay' ? join(snapshot, 'demo', 'server.js') : join(here, 'bare-server.mjs');
  const env = {
    JOBS_MAX_LIVE: String(opts.jobs + 1000),
    JOBS_MAX_STORED: String(opts.jobs * 2 + 2000),
    JOBS_MAX_WAIT_S: String(WAIT_S),
    JOBS_TTL_MS: '600000',
    // Without the demo's log-shipper and metrics sidecars, which observe every request: this
    // suite measures the PollHandle path, not the sidecars (their suite is their own).
    SIDECARS: '0',
  };
  const server = await startNodeServer(script, { cwd: name === 'patchbay' ? snapshot : root, name, env, nodeFlags: opts.nodeFlags });
  return {
    ...server,
    name,
    async held() {
      const stats = await getJson<{ held?: number; poll?: { held: number } }>(server.port, '/stats', `${name} /stats`);
      return name === 'patchbay' ? stats.poll!.held : stats.held!;
    },
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

/** One request on the coordinator's own keep-alive connections. */
function request(
  port: number,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
  ownConnection = false,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: ownConnection ? false : agent, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers }, timeout: 30_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Starts `n` jobs, 32 at a time; returns their ids. */
async function startJobs(server: RunningServer, n: number, job: { steps: number; stepMs: number }): Promise<string[]> {
  const ids: string[] = [];
  const body = JSON.stringify(job);
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < n) {
        next++;
        const res = await request(server.port, 'POST', '/jobs', body);
        if (res.status !== 202) throw new Error(`${server.name}: POST /jobs answered ${res.status}: ${res.body.slice(0, 200)}`);
        ids.push((JSON.parse(res.body) as { id: string }).id);
      }
    }),
  );
  return ids;
}

/** Warms the hot paths up: short jobs, status reads, and held reads woken by a cancel. */
async function warmUp(server: RunningServer): Promise<void> {
  const ids = await startJobs(server, 200, { steps: 2, stepMs: 10 });
  for (let i = 0; i < 10; i++) await Promise.all(ids.map((id) => request(server.port, 'GET', `/jobs/${id}`)));
  const [hold] = await startJobs(server, 1, { steps: 1, stepMs: 60_000 });
  const waits = Array.from({ length: 200 }, () => request(server.port, 'GET', `/jobs/${hold}`, undefined, { prefer: 'wait=30' }));
  const deadline = Date.now() + 10_000;
  // The agent has 32 sockets: wait until they are all held, then cancel; the rest are answered at once.
  while ((await server.held()) < 1 && Date.now() < deadline) await sleep(50);
  await request(server.port, 'DELETE', `/jobs/${hold}`, undefined, {}, true); // not behind the held reads
  await Promise.all(waits);
}

// --- the two trials --------------------------------------------------------------------------

interface ReadsResult {
  readsPerSec: number;
  readP50: number;
  readP99: number;
  cpuPerKReads: number;
  rssJobs: number;
  statuses: Record<string, number>;
  errors: number;
}

async function readsTrial(name: ServerName, trialIndex: number): Promise<ReadsResult> {
  const server = await startServer(name);
  const loads: Load<ToLoad, FromLoad>[] = [];
  try {
    await warmUp(server);
    const ids = await startJobs(server, opts.jobs, { steps: 60, stepMs: 60_000 });
    await sleep(1000);
    const rssJobs = totalRss(server);
    for (let k = 0; k < READ_LOADS; k++) loads.push(spawnLoad<ToLoad, FromLoad>(loadFile, root, opts.connections));
    const cpu0 = totalCpuMs(server);
    loads.forEach((l, k) =>
      l.send({
        type: 'reads',
        port: server.port,
        connections: opts.connections,
        localAddress: `127.0.0.${2 + ((trialIndex * 4 + k) % 250)}`,
        ids,
        warmMs: WARM_MS,
        measureMs: opts.measureMs,
        seed: trialIndex * 31 + k,
      }),
    );
    const results = await Promise.all(loads.map((l) => l.next('reads', WARM_MS + opts.measureMs + 30_000)));
    const cpuMs = totalCpuMs(server) - cpu0;
    const count = results.reduce((n, r) => n + r.count, 0);
    const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const statuses: Record<string, number> = {};
    for (const r of results) for (const [s, n] of Object.entries(r.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
    const errors = results.reduce((n, r) => n + r.errors, 0);
    if (errors > 0) console.log(`  ${name}: ${errors} read connections failed: ${results.map((r) => r.sample).find((s) => s !== '')}`);
    return {
      readsPerSec: count / (opts.measureMs / 1000),
      readP50: quantileSorted(latencies, 0.5),
      readP99: quantileSorted(latencies, 0.99),
      // CPU over warm-up + measure, per read in the measured window scaled to the whole span.
      cpuPerKReads: (cpuMs / ((count * (WARM_MS + opts.measureMs)) / opts.measureMs)) * 1000,
      rssJobs,
      statuses,
      errors,
    };
  } finally {
    await stopLoads(loads, { type: 'exit' });
    await server.stop();
  }
}

interface HoldsResult {
  rssIdle: number;
  rssHeld: number;
  rssPerWaiter: number;
  wakeMax: number;
  wakeP50: number;
  connectMs: number;
  received: number;
  wrong: number;
  errors: number;
  sample: string;
}

async function holdsTrial(name: ServerName, trialIndex: number): Promise<HoldsResult> {
  const server = await startServer(name);
  const loads: Load<ToLoad, FromLoad>[] = [];
  let canceller: net.Socket | undefined;
  try {
    await warmUp(server);
    const [id] = await startJobs(server, 1, { steps: 1, stepMs: 60_000 });
    await sleep(1000);
    const rssIdle = totalRss(server);
    const w = opts.waiters;
    const nLoads = Math.ceil(w / PER_HOLD_LOAD);
    const t0 = now();
    for (let k = 0; k < nLoads; k++) {
      const count = Math.floor(w / nLoads) + (k < w % nLoads ? 1 : 0);
      const load = spawnLoad<ToLoad, FromLoad>(loadFile, root, count);
      loads.push(load);
      load.send({
        type: 'hold',
        port: server.port,
        path: `/jobs/${id}`,
        headers: `Prefer: wait=${WAIT_S}\r\n`,
        count,
        localAddress: `127.0.0.${2 + ((trialIndex * 4 + k + 100) % 250)}`,
        window: CONNECT_WINDOW,
      });
    }
    for (const l of loads) await l.next('sent', 30_000 + w * 3);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const held = await server.held();
      const statuses = await Promise.all(
        loads.map(async (l) => {
          l.send({ type: 'status' });
          return l.next('status', 10_000);
        }),
      );
      const early = statuses.reduce((n, s) => n + s.received + s.errors, 0);
      if (early > 0) throw new Error(`${name}: ${early} held reads were answered (or failed) before the cancel`);
      if (held === w) break;
      if (Date.now() > deadline) throw new Error(`${name}: only ${held} of ${w} reads held after 60 s`);
      await sleep(200);
    }
    const connectMs = now() - t0;
    if (connectMs > 50_000) throw new Error(`${name}: holding took ${Math.round(connectMs)} ms, too close to the job's first step`);
    await sleep(1000);
    const rssHeld = totalRss(server);
    if ((await server.held()) !== w) throw new Error(`${name}: the held count changed while settling`);

    // One DELETE answers them all.
    canceller = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: server.port }, () => resolve(s));
      s.setNoDelay(true);
      s.once('error', reject);
    });
    const tDelete = now();
    canceller.write(`DELETE /jobs/${id} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nContent-Length: 0\r\n\r\n`);
    for (const l of loads) l.send({ type: 'collect', timeoutMs: 30_000, expect: '"state":"canceled"' });
    const results = await Promise.all(loads.map((l) => l.next('result', 40_000)));
    const times: number[] = [];
    for (const r of results) for (const t of r.times) if (!Number.isNaN(t)) times.push(t - tDelete);
    times.sort((a, b) => a - b);
    const received = results.reduce((n, r) => n + r.received, 0);
    return {
      rssIdle,
      rssHeld,
      rssPerWaiter: (rssHeld - rssIdle) / w,
      wakeMax: received === w ? times[times.length - 1]! : Number.NaN,
      wakeP50: quantileSorted(times, 0.5),
      connectMs,
      received,
      wrong: results.reduce((n, r) => n + r.wrong, 0),
      errors: results.reduce((n, r) => n + r.errors, 0),
      sample: results.map((r) => r.sample).find((s) => s !== '') ?? '',
    };
  } finally {
    canceller?.destroy();
    await stopLoads(loads, { type: 'exit' });
    await server.stop();
  }
}

// --- figures ---------------------------------------------------------------------------------

type Unit = 'rps' | 'ms' | 'B' | 'MiB' | 'cpu';
interface FigureDef extends ReportFigure<keyof ReadsResult | keyof HoldsResult, Unit> {
  readonly trial: 'reads' | 'holds';
}

const FIGURES: readonly FigureDef[] = [
  {
    key: 'readsPerSec',
    trial: 'reads',
    label: 'status reads/s, 10k live jobs',
    unit: 'rps',
    better: 'higher',
    description: `Answers (200, the job's status) per second to \`GET /jobs/<random id>\` over the ${opts.jobs.toLocaleString('en')} live jobs, from ${READ_LOADS} load processes × ${opts.connections} keep-alive connections in a closed loop, over ${opts.measureMs / 1000} s after ${WARM_MS / 1000} s of warm-up.`,
  },
  { key: 'readP50', trial: 'reads', label: 'status read p50', unit: 'ms', better: 'lower', description: 'Median time from writing a read to having its whole answer, at the load process.' },
  { key: 'readP99', trial: 'reads', label: 'status read p99', unit: 'ms', better: 'lower', description: '99th percentile of the same.' },
  {
    key: 'cpuPerKReads',
    trial: 'reads',
    label: 'server CPU per 1,000 reads',
    unit: 'cpu',
    better: 'lower',
    description: 'Server CPU time (user + system, 10 ms ticks) over warm-up and measure, divided by the reads answered in that span (measured rate × span), × 1,000.',
  },
  { key: 'rssJobs', trial: 'reads', label: 'RSS with 10k live jobs', unit: 'MiB', better: 'lower', description: 'VmRSS 1 s after the live jobs were started, before the reads.' },
  {
    key: 'rssPerWaiter',
    trial: 'holds',
    label: 'RSS per held Prefer: wait read',
    unit: 'B',
    better: 'lower',
    description: `(VmRSS with ${opts.waiters.toLocaleString('en')} reads held, 1 s after the server counted them all) − (VmRSS before they connected, after the warm-up), divided by the number held.`,
  },
  {
    key: 'wakeMax',
    trial: 'holds',
    label: 'DELETE → all held reads answered',
    unit: 'ms',
    better: 'lower',
    description: 'From writing `DELETE /jobs/<id>` to the moment the last held client has its whole answer (the canceled status; 303 to the result resource on both servers).',
  },
  { key: 'wakeP50', trial: 'holds', label: 'DELETE → held read answered, p50', unit: 'ms', better: 'lower', description: 'Median over the held clients of the same.' },
  { key: 'rssIdle', trial: 'holds', label: 'idle RSS', unit: 'MiB', better: 'lower', description: 'VmRSS after the warm-up, with one job, before the held reads.' },
];

function fmt(value: number, unit: Unit): string {
  if (Number.isNaN(value)) return 'n/a';
  switch (unit) {
    case 'rps':
      return value >= 1000 ? `${(value / 1000).toFixed(1)} k/s` : `${value.toFixed(0)}/s`;
    case 'cpu':
      return `${value.toFixed(1)} ms`;
    default:
      return formatValue(value, unit);
  }
}
const cell = (s: Summary | undefined, unit: Unit): string => summaryCell(s, (v) => fmt(v, unit));

// --- main ------------------------------------------------------------------------------------

killAllOnExit();

const suite = new SuiteRun(import.meta.url);
suite.printHeader(`poll benchmark: ${opts.runs} run(s) x servers ${opts.servers.join(', ')}; ${opts.jobs} live jobs, ${opts.waiters} held reads`);

const reads = new Map<ServerName, ReadsResult[]>();
const holds = new Map<ServerName, HoldsResult[]>();
const failures: string[] = [];
let trialIndex = 0;
try {
  for (let run = 0; run < opts.runs; run++) {
    const order = rotate(opts.servers, run);
    for (const name of order) {
      const start = await quietTrialStart(`reads ${name} run ${run + 1}`);
      if (start.skipped) {
        console.log(`  run ${run + 1}/${opts.runs}  reads  ${name}: SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
        continue;
      }
      const busy = start.busy;
      suite.busyBefore.push(busy);
      const t = Date.now();
      const r = await readsTrial(name, trialIndex++);
      reads.set(name, [...(reads.get(name) ?? []), r]);
      const bad = Object.entries(r.statuses).filter(([s]) => s !== '200');
      if (r.errors > 0 || bad.length > 0) failures.push(`run ${run + 1} ${name} reads: ${r.errors} connection errors, statuses ${JSON.stringify(r.statuses)}`);
      console.log(
        `  run ${run + 1}/${opts.runs}  reads  ${name.padEnd(8)} ${((Date.now() - t) / 1000).toFixed(1).padStart(5)} s  ${fmt(r.readsPerSec, 'rps').padStart(9)}` +
          `  p50 ${fmt(r.readP50, 'ms')} p99 ${fmt(r.readP99, 'ms')}  cpu/1k ${fmt(r.cpuPerKReads, 'cpu')}  (others busy ${(busy * 100).toFixed(0)}% before)`,
      );
    }
    for (const name of order) {
      const start = await quietTrialStart(`holds ${name} run ${run + 1}`);
      if (start.skipped) {
        console.log(`  run ${run + 1}/${opts.runs}  holds  ${name}: SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
        continue;
      }
      const busy = start.busy;
      suite.busyBefore.push(busy);
      const t = Date.now();
      const h = await holdsTrial(name, trialIndex++);
      holds.set(name, [...(holds.get(name) ?? []), h]);
      if (h.received !== opts.waiters || h.wrong + h.errors > 0) {
        failures.push(`run ${run + 1} ${name} holds: ${h.received}/${opts.waiters} answered, ${h.wrong} wrong, ${h.errors} errors; ${h.sample}`);
      }
      console.log(
        `  run ${run + 1}/${opts.runs}  holds  ${name.padEnd(8)} ${((Date.now() - t) / 1000).toFixed(1).padStart(5)} s  RSS/waiter ${fmt(h.rssPerWaiter, 'B').padStart(9)}` +
          `  wake all ${fmt(h.wakeMax, 'ms')}  ${h.received}/${opts.waiters} ok  (others busy ${(busy * 100).toFixed(0)}% before)`,
      );
    }
  }
} catch (error) {
  killAll();
  throw error;
}

interface Row {
  readonly figure: FigureDef;
  readonly by: Partial<Record<ServerName, Summary>>;
}
const rows: Row[] = FIGURES.map((figure) => {
  const by: Partial<Record<ServerName, Summary>> = {};
  for (const s of opts.servers) {
    const list = figure.trial === 'reads' ? (reads.get(s) ?? []) : (holds.get(s) ?? []);
    by[s] = summarize(list.map((r) => (r as unknown as Record<string, number>)[figure.key]!));
  }
  return { figure, by };
});
const med = (s: ServerName, key: FigureDef['key']): number => rows.find((r) => r.figure.key === key)?.by[s]?.median ?? Number.NaN;
const ratio = (key: FigureDef['key']): number => med('patchbay', key) / med('bare', key);
const targets: TargetResult[] = [];
if (opts.servers.includes('patchbay') && opts.servers.includes('bare')) {
  const rr = ratio('readsPerSec');
  targets.push({
    target: `status reads/s on ${opts.jobs.toLocaleString('en')} live jobs ≥ 1.0× bare`,
    measured: `${rr.toFixed(2)}× (patchbay ${fmt(med('patchbay', 'readsPerSec'), 'rps')} vs bare ${fmt(med('bare', 'readsPerSec'), 'rps')})`,
    met: Number.isNaN(rr) ? null : rr >= 1.0,
  });
  const rw = ratio('rssPerWaiter');
  targets.push({
    target: `RSS per held Prefer: wait read (${opts.waiters.toLocaleString('en')}) ≤ 1.0× bare`,
    measured: `${rw.toFixed(2)}× (patchbay ${fmt(med('patchbay', 'rssPerWaiter'), 'B')} vs bare ${fmt(med('bare', 'rssPerWaiter'), 'B')})`,
    met: Number.isNaN(rw) ? null : rw <= 1.0,
  });
}
targets.push({
  target: 'every read answered 200, every held client got the canceled status, every trial',
  measured: failures.length === 0 ? `yes (${trialIndex} trials)` : `${failures.length} trial(s) failed`,
  met: failures.length === 0,
});
const tables = figureTables(
  { labels: ['figure'], contenders: opts.servers, ratios: ['patchbay / bare'] },
  rows.map((r) => ({
    labels: [r.figure.label],
    better: r.figure.better,
    cells: [...opts.servers.map((s) => cell(r.by[s], r.figure.unit)), ratioCell(ratio(r.figure.key), r.figure.better)],
  })),
);

suite.end();
printReport(tables.text, targets, failures);

if (opts.write) {
  const fields = {
    environment: suite.environment(),
    config: {
      runs: opts.runs,
      servers: opts.servers,
      liveJobs: opts.jobs,
      heldReads: opts.waiters,
      readLoadProcesses: READ_LOADS,
      connectionsPerReadLoad: opts.connections,
      warmMs: WARM_MS,
      measureMs: opts.measureMs,
      waitSeconds: WAIT_S,
      order: 'for each run: reads trials, then holds trials, servers in an order rotated by the run number, each trial on a fresh server process',
    },
    figures: rows.map((r) => ({ ...figureFields(r.figure), ...r.by, ratioPatchbayOverBare: ratio(r.figure.key) })),
    targets,
    checkFailures: failures,
    raw: { reads: Object.fromEntries(reads), holds: Object.fromEntries(holds) },
  };
  suite.write('poll', fields, {
    title: 'Short polling (PollHandle)',
    intro: [
      'Two servers side by side: **patchbay** (`node demo/server.js`: `PollHandle` + `PollHandler` from the built package behind',
      '`POST /jobs`, `GET|DELETE /jobs/:id`, with `JOBS_MAX_LIVE`, `JOBS_MAX_STORED` and `JOBS_MAX_WAIT_S` raised for the load and',
      '`SIDECARS=0`, so the demo\'s log and metrics sidecars do not observe each request; run from a copy of `dist/` and `demo/`',
      'taken when the run starts, so a rebuild elsewhere in the checkout cannot change it mid-run) and',
      '**bare** (`bench/src/poll/bare-server.mjs`: the same routes by hand on `node:http` — a `Map` of jobs, a `setTimeout` per job',
      'step as the demo job has, a `Set` of held reads per job with a `setTimeout` per held read, `JSON.stringify` per answer and',
      'once per wake). Both run the same demo job (`{ steps, stepMs }`, progress after each step). Everything on 127.0.0.1.',
    ],
    run: [
      suite.dateText() +
        `${opts.runs} runs per (server, trial), each trial on a fresh server process, servers taking turns in a rotating order; ` +
        `median (min–max) over runs. ${suite.loadText()} ` +
        'in the 0.3 s before each trial (each trial waits, up to 20 s, for less than a third of a core). The machine is shared: the',
      'load processes and other sessions run on the same two cores, so absolute rates are low and noisy; compare the ratios, which',
      'come from the same run.',
    ],
    table: tables.markdown,
    targets,
    failures,
    failuresTitle: '**Check failures:**',
    body: [
      '### How it is measured',
      '',
      `- **reads**: ${opts.jobs.toLocaleString('en')} jobs \`{ "steps": 60, "stepMs": 60000 }\` are started (an hour each, one`,
      `  progress step a minute: live, each with its step timer, and unchanged during the window), then ${READ_LOADS} load processes, each with`,
      `  ${opts.connections} keep-alive raw TCP connections from its own 127.0.0.x address, send \`GET /jobs/<random id>\` and`,
      '  the next request as soon as the answer is complete. Every answer must be `200`.',
      `- **holds**: one job \`{ "steps": 1, "stepMs": 60000 }\`, then ${opts.waiters.toLocaleString('en')} raw connections`,
      `  (at most ${PER_HOLD_LOAD.toLocaleString('en')} per load process, ${CONNECT_WINDOW} connecting at a time) each send`,
      `  \`GET /jobs/<id>\` with \`Prefer: wait=${WAIT_S}\` and keep the connection open. Held means the server itself counts them`,
      '  (patchbay `GET /stats` → `poll.held`; bare: its `/stats`) and no client has an answer yet. Then one `DELETE /jobs/<id>`',
      '  answers them all; every answer must be the canceled status.',
      '- Each server is warmed up first (200 short jobs read 10 times each, 200 held reads woken by a cancel).',
    ],
    figures: FIGURES,
  });
}
if (failures.length > 0) process.exitCode = 1;
process.exit();
