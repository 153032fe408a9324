/**
 * The Redis benchmark: two processes on one redis-server, publishing on one and delivering on the
 * other, against plain ioredis pub/sub between two processes in the same run. Run it from the
 * repository root with `npm run bench -- redis`.
 *
 * Contenders (each trial on fresh processes; the order rotates from run to run):
 *
 * - **patchbay**: a publisher process with `PubSubBroker` over `RedisBackend` (the built
 *   package) calling `broker.publish()`; the server process is the demo (`node demo/server.js`
 *   with `PATCHBAY_REDIS_URL`), holding the clients' long polls (`GET /lp/bench?cursor=`) and SSE
 *   streams (`GET /sse/bench`).
 * - **ioredis** (the reference): a publisher process calling ioredis `PUBLISH`; the server
 *   process relays one ioredis subscription to long polls and SSE streams by hand on `node:http`
 *   (`bare-server.mjs`: no history; a ring of the last 4,096 messages and a numeric cursor, so
 *   a poll that comes back after a message still gets it).
 * - **demo×2**: the demo server itself as two processes, publishing with `POST /pub/bench` on one
 *   and delivering on the other (an extra HTTP hop on the publishing side: not a target).
 *
 * Workloads: `paced` (20 SSE streams and 20 long polls held; 300 publishes, one every 20 ms:
 * p50/p99 publish-to-delivery, from the publisher's call to the client's receipt, on the
 * machine's monotonic clock) and `burst` (4 SSE streams; 20,000 publishes with at most 256 in
 * flight: messages/s delivered to every stream, from the first publish to the slowest stream's
 * last message). Every SSE stream and every long-poll loop is checked for order and completeness.
 *
 * Prints a table, writes `bench/results/redis.json` and the redis section of
 * `docs/benchmarks.md`. Options: `--runs N` (default 3), `--no-write`, `--quick` (a smoke test with small counts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseQuickSuiteArgs } from '../lib/args.js';
import { quietTrialStart, rotate, sleep, trialStarts, writeDocsSection } from '../lib/harness.js';
import { metText, SuiteRun } from '../lib/report.js';
import { killLoads, type Load, spawnLoad, stopLoads } from '../lib/loads.js';
import { cpuMs, getJson, killAllStarted, startNodeServer, type ServerProcess } from '../lib/processes.js';
import { startRedisServer } from '../lib/redis-server.js';
import { quantileSorted, summarize, type Summary } from '../lib/stats.js';
import type { FromLoad, ToLoad } from './load.js';
import type { FromPublisher, ToPublisher } from './publisher.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const TOPIC = 'bench';
const KINDS = ['patchbay', 'ioredis', 'demo'] as const;
type Kind = (typeof KINDS)[number];
const LABEL: Record<Kind, string> = { patchbay: 'patchbay', ioredis: 'ioredis (reference)', demo: 'demo×2' };
let PACED = { n: 300, intervalMs: 20, sse: 20, lp: 20 };
let BURST = { n: 20_000, window: 256, sse: 4 };
/** Warm-up publishes (one per ms) before each measurement, so both sides run optimized code. */
let WARM = 1000;

// --- one trial ----------------------------------------------------------------------------------

interface Trial {
  readonly sseUs: number[];
  readonly lpUs: number[];
  readonly msgPerS: number;
  readonly serverCpuUsPerMsg: number;
  /** redis-server's user + system CPU time over the measurement, per publish. */
  readonly redisCpuUsPerPublish: number;
  readonly publishCallP50Us: number;
  /** Every SSE stream got every message. */
  readonly complete: boolean;
  /** SSE streams that got a message out of order or twice. */
  readonly disorder: number;
  /** Every long-poll loop got every message. */
  readonly lpComplete: boolean;
  /** Long-poll loops that got a message out of order or twice. */
  readonly lpDisorder: number;
  readonly lpErrors: number;
}

async function startServer(kind: Kind, redisUrl: string, prefix: string): Promise<ServerProcess> {
  if (kind === 'ioredis') {
    return startNodeServer(join(here, 'bare-server.mjs'), { cwd: root, name: 'bare relay', env: { REDIS_URL: redisUrl, CHANNEL: TOPIC } });
  }
  return startNodeServer(join(root, 'demo', 'server.js'), {
    cwd: root,
    name: 'demo',
    env: { PATCHBAY_REDIS_URL: redisUrl, PATCHBAY_REDIS_PREFIX: prefix, SIDECARS: '0', LP_TIMEOUT_MS: '120000' },
  });
}

async function held(kind: Kind, server: ServerProcess): Promise<{ lp: number; sse: number }> {
  if (kind === 'ioredis') {
    const s = await getJson<{ parked: number; streams: number }>(server.port, '/stats', 'bare relay');
    return { lp: s.parked, sse: s.streams };
  }
  const s = await getJson<{ longPoll: { parked: number }; sse: { connections: number } }>(server.port, '/stats', 'demo');
  return { lp: s.longPoll.parked, sse: s.sse.connections };
}

async function trial(kind: Kind, redisUrl: string, prefix: string, workload: 'paced' | 'burst', label: string): Promise<Trial | null> {
  const server = await startServer(kind, redisUrl, prefix);
  const publishSide = kind === 'demo' ? await startServer('demo', redisUrl, prefix) : undefined;
  const load: Load<ToLoad, FromLoad> = spawnLoad(join(here, 'load.ts'), root, 1);
  const pub: Load<ToPublisher, FromPublisher> = spawnLoad(join(here, 'publisher.ts'), root, 1);
  try {
    const shape = workload === 'paced' ? { sse: PACED.sse, lp: PACED.lp } : { sse: BURST.sse, lp: 0 };
    load.send({ type: 'start', port: server.port, topic: TOPIC, ...shape });
    await load.next('started', 10_000);
    pub.send({ type: 'start', kind: kind === 'demo' ? 'demo' : kind, redisUrl, prefix, topic: TOPIC, demoPort: publishSide?.port ?? 0 });
    const ready = await pub.next('ready', 20_000);
    if (ready.error !== undefined) throw new Error(`${kind} publisher: ${ready.error}`);
    for (let t = 0; ; t++) {
      const h = await held(kind, server);
      if (h.lp >= shape.lp && h.sse >= shape.sse) break;
      if (t > 500) throw new Error(`${kind}: only ${h.lp}/${shape.lp} polls and ${h.sse}/${shape.sse} streams held`);
      await sleep(20);
    }
    // Warm up (JIT, connections, scripts loaded), then measure.
    pub.send({ type: 'paced', n: WARM, intervalMs: 1 });
    const warm = await pub.next('done', 30_000);
    if (warm.error !== undefined) throw new Error(`${kind} publisher: ${warm.error}`);
    await sleep(300);
    load.send({ type: 'reset' });
    await load.next('reset', 5000);
    const start = await quietTrialStart(label);
    if (start.skipped) {
      console.log(`${label}: SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
      return null;
    }
    suite.busyBefore.push(start.busy);
    const cpu0 = cpuMs(server.pids()[0]!);
    const redisCpu0 = cpuMs(redis.pid);
    if (workload === 'paced') pub.send({ type: 'paced', n: PACED.n, intervalMs: PACED.intervalMs });
    else pub.send({ type: 'burst', n: BURST.n, window: BURST.window });
    const done = await pub.next('done', 120_000);
    if (done.error !== undefined) throw new Error(`${kind} publisher: ${done.error}`);
    const n = workload === 'paced' ? PACED.n : BURST.n;
    load.send({ type: 'collect', n, timeoutMs: 30_000, lp: shape.lp > 0 });
    const result = await load.next('result', 60_000);
    const cpu1 = cpuMs(server.pids()[0]!);
    const redisCpu1 = cpuMs(redis.pid);
    const lastUs = Math.max(...result.lastUs);
    const calls = [...done.callUs].sort((a, b) => a - b);
    return {
      sseUs: result.sseUs,
      lpUs: result.lpUs,
      msgPerS: workload === 'burst' ? (BURST.n / (lastUs - done.startUs)) * 1e6 : Number.NaN,
      serverCpuUsPerMsg: ((cpu1 - cpu0) * 1000) / n,
      redisCpuUsPerPublish: ((redisCpu1 - redisCpu0) * 1000) / n,
      publishCallP50Us: quantileSorted(calls, 0.5),
      complete: result.sseCounts.every((c) => c === n),
      disorder: result.disorder,
      lpComplete: result.lpCounts.every((c) => c === n),
      lpDisorder: result.lpDisorder,
      lpErrors: result.lpErrors,
    };
  } finally {
    await stopLoads([load], { type: 'exit' } as ToLoad);
    await stopLoads([pub], { type: 'exit' } as ToPublisher);
    await server.stop();
    await publishSide?.stop();
  }
}

// --- run ------------------------------------------------------------------------------------------

const opts = parseQuickSuiteArgs(process.argv.slice(2));
if (opts.quick) {
  PACED = { n: 50, intervalMs: 10, sse: 10, lp: 10 };
  BURST = { n: 2000, window: 64, sse: 2 };
  WARM = 50;
}
const suite = new SuiteRun(import.meta.url);
const command = suite.command;
const started = suite.startedAt;
const onSignal = (): void => {
  killLoads();
  killAllStarted();
  process.exit(130);
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

const redis = await startRedisServer();
console.log(`redis-server ${redis.version} (pid ${redis.pid}) on ${redis.url}`);

const figures = {
  ssep50: { label: 'SSE p50 publish-to-delivery (ms)', better: 'lower' },
  ssep99: { label: 'SSE p99 publish-to-delivery (ms)', better: 'lower' },
  lpp50: { label: 'long poll p50 publish-to-delivery (ms)', better: 'lower' },
  lpp99: { label: 'long poll p99 publish-to-delivery (ms)', better: 'lower' },
  rate: { label: 'burst: messages/s delivered to every stream', better: 'higher' },
  cpu: { label: 'burst: server CPU per message (µs)', better: 'lower' },
  redisCpu: { label: 'burst: redis-server CPU per publish (µs)', better: 'lower' },
  call: { label: 'paced: publish call p50 (ms)', better: 'lower' },
} as const;
type FigureKey = keyof typeof figures;
const values = new Map<Kind, Record<FigureKey, number[]>>();
for (const k of KINDS) values.set(k, { ssep50: [], ssep99: [], lpp50: [], lpp99: [], rate: [], cpu: [], redisCpu: [], call: [] });
const failures: string[] = [];

try {
  for (let run = 0; run < opts.runs; run++) {
    const order = rotate(KINDS, run);
    for (const workload of ['paced', 'burst'] as const) {
      for (const kind of order) {
        const prefix = `bench:${run}:${workload}:${kind}:`;
        const t = await trial(kind, redis.url, prefix, workload, `${workload} ${kind} run ${run + 1}`);
        if (t === null) continue;
        const v = values.get(kind)!;
        if (!t.complete) failures.push(`run ${run + 1} ${kind} ${workload}: a stream missed messages`);
        if (t.disorder > 0) failures.push(`run ${run + 1} ${kind} ${workload}: ${t.disorder} streams got messages out of order`);
        if (!t.lpComplete) failures.push(`run ${run + 1} ${kind} ${workload}: a long poll missed messages`);
        if (t.lpDisorder > 0) failures.push(`run ${run + 1} ${kind} ${workload}: ${t.lpDisorder} long polls got messages out of order`);
        if (workload === 'paced') {
          const sse = [...t.sseUs].sort((a, b) => a - b);
          const lp = [...t.lpUs].sort((a, b) => a - b);
          v.ssep50.push(quantileSorted(sse, 0.5) / 1000);
          v.ssep99.push(quantileSorted(sse, 0.99) / 1000);
          v.lpp50.push(quantileSorted(lp, 0.5) / 1000);
          v.lpp99.push(quantileSorted(lp, 0.99) / 1000);
          v.call.push(t.publishCallP50Us / 1000);
          console.log(
            `run ${run + 1} ${LABEL[kind].padEnd(20)} paced: SSE p50 ${(quantileSorted(sse, 0.5) / 1000).toFixed(2)} ms p99 ${(quantileSorted(sse, 0.99) / 1000).toFixed(2)} ms; ` +
              `LP p50 ${(quantileSorted(lp, 0.5) / 1000).toFixed(2)} ms p99 ${(quantileSorted(lp, 0.99) / 1000).toFixed(2)} ms (${lp.length} deliveries)`,
          );
        } else {
          v.rate.push(t.msgPerS);
          v.cpu.push(t.serverCpuUsPerMsg);
          v.redisCpu.push(t.redisCpuUsPerPublish);
          console.log(
            `run ${run + 1} ${LABEL[kind].padEnd(20)} burst: ${Math.round(t.msgPerS).toLocaleString('en')} msg/s, server CPU ${t.serverCpuUsPerMsg.toFixed(1)} µs/msg, ` +
              `redis-server CPU ${t.redisCpuUsPerPublish.toFixed(1)} µs/publish`,
          );
        }
      }
    }
  }
} finally {
  killLoads();
  killAllStarted();
  await redis.stop();
}

suite.end();
const summary = (k: Kind, f: FigureKey): Summary => summarize(values.get(k)![f]);
const ratio = (f: FigureKey): number => summary('patchbay', f).median / summary('ioredis', f).median;
const fmt = (x: number, digits = 2): string => (Number.isNaN(x) ? '—' : x >= 1000 ? Math.round(x).toLocaleString('en') : x.toFixed(digits));
const cell = (s: Summary): string => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;

const targets = [
  { target: 'SSE p50 publish-to-delivery <= 1.5x ioredis', ratio: ratio('ssep50'), met: ratio('ssep50') <= 1.5 },
  { target: 'SSE p99 publish-to-delivery <= 1.5x ioredis', ratio: ratio('ssep99'), met: ratio('ssep99') <= 1.5 },
  { target: 'long poll p50 publish-to-delivery <= 1.5x ioredis', ratio: ratio('lpp50'), met: ratio('lpp50') <= 1.5 },
  { target: 'long poll p99 publish-to-delivery <= 1.5x ioredis', ratio: ratio('lpp99'), met: ratio('lpp99') <= 1.5 },
  { target: 'burst messages/s >= 1/1.5 of ioredis', ratio: ratio('rate'), met: ratio('rate') >= 1 / 1.5 },
];

const header = `| figure | ${KINDS.map((k) => LABEL[k]).join(' | ')} | patchbay ÷ ioredis |`;
const table = [
  header,
  `|---|${KINDS.map(() => '---').join('|')}|---|`,
  ...(Object.keys(figures) as FigureKey[]).map(
    (f) => `| ${figures[f].label} ${figures[f].better === 'lower' ? '↓' : '↑'} | ${KINDS.map((k) => cell(summary(k, f))).join(' | ')} | ${fmt(ratio(f))}x |`,
  ),
].join('\n');
console.log('');
console.log(table);
console.log('');
for (const t of targets) console.log(`  [${metText(t.met)}] ${t.target}: ${fmt(t.ratio)}x`);
if (failures.length > 0) console.log(`\nCHECK FAILURES:\n  ${failures.join('\n  ')}`);

if (opts.write) {
  const json = {
    suite: 'redis',
    date: started.toISOString(),
    command,
    commit: suite.git,
    environment: suite.environment({ extra: { redis: redis.version } }),
    config: { runs: opts.runs, paced: PACED, burst: BURST, topic: TOPIC, order: 'for each run and workload, the contenders in an order rotated by the run number, each trial on fresh processes' },
    figures: Object.fromEntries((Object.keys(figures) as FigureKey[]).map((f) => [f, { ...figures[f], ...Object.fromEntries(KINDS.map((k) => [k, summary(k, f)])), ratioPatchbayOverIoredis: ratio(f) }])),
    targets,
    checkFailures: failures,
    trialStarts,
  };
  const jsonFile = join(root, 'bench', 'results', 'redis.json');
  mkdirSync(dirname(jsonFile), { recursive: true });
  writeFileSync(jsonFile, `${JSON.stringify(json, (_k, v: unknown) => (typeof v === 'number' && Number.isNaN(v) ? null : v), 2)}\n`);
  const section = [
    '## Redis backend',
    '',
    'Two processes on one redis-server (Debian\'s, started by the suite on 127.0.0.1, no persistence): one publishes, the',
    'other holds the clients\' long polls and SSE streams. **patchbay**: `broker.publish()` on a `PubSubBroker` over',
    '`RedisBackend` in the publishing process; the demo server (`PATCHBAY_REDIS_URL`) delivering. **ioredis** (the',
    'reference): ioredis `PUBLISH` in the publishing process; one ioredis subscription relayed to long polls and SSE by hand',
    'on `node:http` (`bench/src/redis/bare-server.mjs`: no history, a ring of the last 4,096 messages behind a numeric',
    'cursor so a poll that comes back after a message still gets it). **demo×2**: the demo server as both',
    'processes, publishing with `POST /pub/bench` (one more HTTP hop than the others: shown, not a target).',
    '',
    `Command: \`${command}\``,
    '',
    `${suite.dateText()}redis-server ${redis.version}; ` +
      `${opts.runs} runs, each trial on fresh processes, contenders taking turns in a rotating order; median (min–max) over runs. ` +
      `${suite.loadText()}.`,
    '',
    table,
    '',
    '### Targets',
    '',
    ...targets.map((t) => `- **${t.met ? 'met' : 'not met'}**: ${t.target}: ${fmt(t.ratio)}x`),
    ...(failures.length > 0 ? ['', '**Check failures:**', '', ...failures.map((f) => `- ${f}`)] : []),
    '',
    '### How it is measured',
    '',
    `- paced: ${PACED.sse} SSE streams and ${PACED.lp} long-poll loops held on the delivering process by one client process`,
    `  (every poll follows the cursor of its answers); ${PACED.n} publishes of \`{ i, t }\`, one every ${PACED.intervalMs} ms, after ${WARM} warm-up`,
    '  publishes (one per ms). `t` is the publisher\'s `process.hrtime` when it calls publish; each client subtracts it from its own',
    '  `process.hrtime` at receipt (one monotonic clock for every process on the machine). p50/p99 are over every',
    '  delivery of the run.',
    `- burst: ${BURST.sse} SSE streams; ${BURST.n.toLocaleString('en')} publishes with at most ${BURST.window} in flight; messages/s is the count over`,
    '  the time from the first publish to the last message on the slowest stream. Server CPU is the delivering',
    '  process\'s user + system time over the burst, per message. redis-server CPU per publish is the suite\'s redis-server',
    '  process\'s user + system time (`/proc/<pid>/stat`, 10 ms ticks) over the same span, divided by the publishes: every',
    '  command the publish needs (the Lua script, its `PUBLISH` to the feed subscribers) and nothing else runs on it then.',
    '- Every SSE stream and every long-poll loop must get every message, in order, or the run reports a check failure.',
    '- Four processes (redis-server, publisher, server, clients) share the 2 cores, so absolute figures include the',
    '  others\' work; compare the ratios, which come from the same run.',
  ].join('\n');
  const docFile = writeDocsSection('redis', section);
  console.log(`\nwrote ${relative(root, jsonFile)} and ${relative(root, docFile)}`);
}
if (failures.length > 0) process.exitCode = 1;
process.exit();
