/**
 * The WebSocket benchmark: S sockets subscribed to one topic, fed by one publisher, on patchbay's
 * demo server (`GET /ws`: `WsHandler` + `PubSubBroker`) and on a bare `ws` broadcast loop written
 * by hand, side by side in one run. Run it from the repository root with `npm run bench -- ws`.
 *
 * For each run, each size S and each server (in an order that rotates from run to run), one
 * trial on a fresh server process:
 *
 * 1. start the server; warm it up (200 sockets on another topic, a burst of 300 events, every
 *    one checked), wait until they are gone; measure its idle RSS;
 * 2. spread S sockets over load processes (at most 5,000 each, each from its own 127.0.0.x
 *    source address); each upgrades on `/ws` and subscribes; wait until every one has its
 *    `subscribed` frame and the server itself counts S; settle 1 s; measure RSS;
 * 3. paced: publish P events at a fixed rate (S x rate = 50,000 deliveries/s), each publish
 *    written on its own, timestamped in its data;
 * 4. burst: publish E events back-to-back, pipelined on the same keep-alive connection;
 * 5. check every socket got every event exactly once and in order; stop the load processes and
 *    the server by PID.
 *
 * Prints a table, writes `bench/results/ws.json` and the ws section of `docs/benchmarks.md`.
 * Options: `--runs N` (default 3), `--sizes 10000`, `--servers patchbay,bare`, `--no-write`, and
 * for profiling `--node-flags "--cpu-prof ..."` (extra flags for the servers; needs `--no-write`).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseServerSuiteArgs } from '../lib/args.js';
import {
  burstEvents as fanoutBurstEvents,
  CONNECT_WINDOW,
  DATA_BYTES,
  fanoutConfig,
  type FanoutPlan,
  type FanoutResult,
  type FanoutServer,
  fanoutTrial,
  pacedRate as fanoutPacedRate,
  PER_LOAD,
  WARM_EVENTS,
  WARM_SUBS,
} from '../lib/fanout.js';
import { getJson, startNodeServer } from '../lib/processes.js';
import {
  type FigureDef as ReportFigure,
  figureFields,
  formatValue as fmt,
  printReport,
  ratioCell,
  rowMedian,
  sizedRows,
  sizedTables,
  SuiteRun,
  type TargetResult,
  targetRatioText,
  type Unit,
} from '../lib/report.js';
import { killAllOnExit, runSizedTrials, trialKey } from '../lib/trials.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
/** Paced: this many events, at S x rate = PACED_DELIVERIES_PER_S (at most MAX_PACED_RATE events/s). */
const PACED_EVENTS = 60;
const PACED_DELIVERIES_PER_S = 50_000;
const MAX_PACED_RATE = 100;
/** Burst: E = BURST_DELIVERIES / S events (MIN_BURST..MAX_BURST). */
const BURST_DELIVERIES = 1_000_000;
const MIN_BURST = 20;
const MAX_BURST = 500;
/** "Within 1.2x of the bare loop" (issue 7). */
const WITHIN = 1.2;

// --- the servers ----------------------------------------------------------------------------

const SERVERS = ['patchbay', 'bare'] as const;
type ServerName = (typeof SERVERS)[number];

/** Starts a server; it counts the subscriptions itself (patchbay: `ws.subscriptions` of `/stats`; bare: `subscribers`). */
async function startServer(name: ServerName, nodeFlags: readonly string[]): Promise<FanoutServer> {
  const script = name === 'patchbay' ? join(root, 'demo', 'server.js') : join(here, 'bare-server.mjs');
  // SIDECARS=0: the demo's log and metrics sidecars would observe every request.
  const proc = await startNodeServer(script, { cwd: root, name, env: { SIDECARS: '0' }, nodeFlags });
  return {
    name,
    port: proc.port,
    pids: proc.pids,
    async subscribers() {
      const stats = await getJson<{ subscribers?: number; ws?: { subscriptions: number } }>(proc.port, '/stats', name);
      return name === 'patchbay' ? stats.ws!.subscriptions : stats.subscribers!;
    },
    stop: proc.stop,
  };
}

// --- the trial ------------------------------------------------------------------------------

const plan: FanoutPlan<'rssPerSocket'> = {
  loadFile: join(here, 'load.ts'),
  startFields: (topic) => ({ path: '/ws', topic }),
  contentType: 'application/json',
  okStatus: (status) => status === 201,
  words: { client: 'socket', event: 'message', counted: 'subscription', connect: 'connect or subscribe' },
  paced: { events: PACED_EVENTS, deliveriesPerS: PACED_DELIVERIES_PER_S, maxRate: MAX_PACED_RATE },
  burst: { deliveries: BURST_DELIVERIES, min: MIN_BURST, max: MAX_BURST },
  pacedLimitMs: (_scheduleLeftMs, events) => 30_000 + events * 100,
  burstLimitMs: (s, events) => 60_000 + (s * events) / 10,
  freshBurstConnection: false,
  burstRateCounts: 'published',
  perSubscriberKey: 'rssPerSocket',
};
const pacedRate = (s: number) => fanoutPacedRate(plan, s);
const burstEvents = (s: number) => fanoutBurstEvents(plan, s);

type TrialResult = FanoutResult<'rssPerSocket'>;

async function trial(name: ServerName, s: number): Promise<TrialResult> {
  return fanoutTrial(plan, await startServer(name, opts.nodeFlags), s);
}

// --- figures and report ----------------------------------------------------------------------

type FigureDef = ReportFigure<keyof TrialResult, Exclude<Unit, 'n'>>;

const FIGURES: readonly FigureDef[] = [
  {
    key: 'burstRate',
    label: 'burst: delivered messages/s',
    unit: '/s',
    better: 'higher',
    description: `S × E / (the first burst publish written → the last socket has the last message). E = ${BURST_DELIVERIES.toLocaleString('en')} / S events (${MIN_BURST}..${MAX_BURST}), written back-to-back (pipelined) on one keep-alive connection.`,
  },
  { key: 'burstMs', label: 'burst: all delivered', unit: 'ms', better: 'lower', description: 'The first burst publish written → the last socket has the last message.' },
  { key: 'burstP50', label: 'burst: latency p50', unit: 'ms', better: 'lower', description: 'Median over every (socket, burst event) of receive − that publish written (includes the wait behind earlier events of the burst).' },
  { key: 'burstP99', label: 'burst: latency p99', unit: 'ms', better: 'lower', description: '99th percentile of the same.' },
  { key: 'burstCpuMs', label: 'burst: server CPU', unit: 'ms', better: 'lower', description: 'Server CPU time (user + system; 10 ms ticks) from the first burst publish until every socket had every message.' },
  {
    key: 'pacedP50',
    label: 'paced: publish-to-receive p50',
    unit: 'ms',
    better: 'lower',
    description: `Median over every (socket, paced event) of receive − publish written. ${PACED_EVENTS} events at ${PACED_DELIVERIES_PER_S.toLocaleString('en')} / S events/s (at most ${MAX_PACED_RATE}/s).`,
  },
  { key: 'pacedP99', label: 'paced: publish-to-receive p99', unit: 'ms', better: 'lower', description: '99th percentile of the same.' },
  { key: 'firstP50', label: 'paced: first socket p50', unit: 'ms', better: 'lower', description: 'For each paced event, the earliest arrival over the S sockets; median over the events.' },
  { key: 'lastP50', label: 'paced: last socket p50', unit: 'ms', better: 'lower', description: 'For each paced event, the latest arrival over the S sockets (when the fan-out was done); median over the events.' },
  { key: 'lastP99', label: 'paced: last socket p99', unit: 'ms', better: 'lower', description: 'The same, 99th percentile over the events.' },
  { key: 'pacedCpuMs', label: 'paced: server CPU', unit: 'ms', better: 'lower', description: 'Server CPU time over the paced phase.' },
  {
    key: 'rssPerSocket',
    label: 'RSS per socket',
    unit: 'B',
    better: 'lower',
    description: '(VmRSS with S sockets connected and subscribed, 1 s after the server counted them all) − (idle VmRSS after the warm-up), divided by S.',
  },
  { key: 'rssIdle', label: 'idle RSS', unit: 'MiB', better: 'lower', description: 'VmRSS after the warm-up, before the load connects.' },
  { key: 'connectMs', label: 'connect and subscribe all', unit: 'ms', better: 'none', description: 'Load processes started → every socket has its `subscribed` frame and the server counts S.' },
];

// --- main -----------------------------------------------------------------------------------

const opts = parseServerSuiteArgs<ServerName>(process.argv.slice(2), {
  servers: SERVERS,
  sizes: [10_000],
  sizesExample: '1000,10000',
  sizeLimitReason: '20,000 open files per server process',
});
killAllOnExit();

const suite = new SuiteRun(import.meta.url);
suite.printHeader(`ws benchmark: ${opts.runs} run(s) x sizes ${opts.sizes.join(', ')} x servers ${opts.servers.join(', ')}`);

const failures: { server: ServerName; text: string }[] = [];
const results = await runSizedTrials(
  opts,
  suite.busyBefore,
  trial,
  ({ run, size: s, name, result: r, busy, ms }) => {
    const bad = r.lost + r.duplicated + r.reordered + r.wrong + r.errors + r.badPublishes;
    if (bad > 0) {
      failures.push({
        server: name,
        text:
          `run ${run + 1} ${name} S=${s}: ${r.lost} lost, ${r.duplicated} duplicated, ${r.reordered} reordered, ${r.wrong} wrong, ` +
          `${r.errors} failed sockets, ${r.badPublishes} refused publishes; ${r.sample}`,
      });
    }
    console.log(
      `  run ${run + 1}/${opts.runs}  S=${String(s).padStart(5)}  ${name.padEnd(8)} ${(ms / 1000).toFixed(1).padStart(5)} s` +
        `  burst ${fmt(r.burstRate, '/s').padStart(9)} (E=${r.burstEvents}, ${fmt(r.burstMs, 'ms')})` +
        `  paced p50 ${fmt(r.pacedP50, 'ms').padStart(8)} p99 ${fmt(r.pacedP99, 'ms').padStart(8)}` +
        `  RSS/socket ${fmt(r.rssPerSocket, 'B').padStart(9)}  ${bad === 0 ? 'all in order' : `CHECK FAILED (${bad})`}` +
        `  (others busy ${(busy * 100).toFixed(0)}% before)`,
    );
  },
);

const rows = sizedRows(opts.sizes, FIGURES, opts.servers, (name, s) => results.get(trialKey(name, s)) ?? []);
const med = (name: ServerName, s: number, k: keyof TrialResult) => rowMedian(rows, name, s, k);
const ratio = (s: number, k: keyof TrialResult) => med('patchbay', s, k) / med('bare', s, k);

const targets: TargetResult[] = [];
const has = (name: ServerName) => opts.servers.includes(name);
// A contender that failed its checks is not ranked: no target is judged against it (nor for it).
const failedServers = new Set(failures.map((f) => f.server));
const rankedRatio = (s: number, k: keyof TrialResult) => (failedServers.has('patchbay') || failedServers.has('bare') ? Number.NaN : ratio(s, k));
const sizeText = (s: number) => s.toLocaleString('en');
if (has('patchbay') && has('bare')) {
  for (const s of opts.sizes) {
    const rate = rankedRatio(s, 'burstRate');
    targets.push({
      target: `burst delivered messages/s within ${WITHIN}× of the bare loop, i.e. ≥ ${(1 / WITHIN).toFixed(2)}× (S=${sizeText(s)})`,
      measured: `${targetRatioText(rate)} (patchbay ${fmt(med('patchbay', s, 'burstRate'), '/s')} vs bare ${fmt(med('bare', s, 'burstRate'), '/s')})`,
      met: Number.isNaN(rate) ? null : rate >= 1 / WITHIN,
    });
    for (const k of ['pacedP50', 'pacedP99'] as const) {
      const r = rankedRatio(s, k);
      targets.push({
        target: `paced publish-to-receive ${k === 'pacedP50' ? 'p50' : 'p99'} within ${WITHIN}× of the bare loop (S=${sizeText(s)})`,
        measured: `${targetRatioText(r)} (patchbay ${fmt(med('patchbay', s, k), 'ms')} vs bare ${fmt(med('bare', s, k), 'ms')})`,
        met: Number.isNaN(r) ? null : r <= WITHIN,
      });
    }
    const rss = rankedRatio(s, 'rssPerSocket');
    targets.push({
      target: `RSS per socket within ${WITHIN}× of the bare loop (S=${sizeText(s)})`,
      measured: `${targetRatioText(rss)} (patchbay ${fmt(med('patchbay', s, 'rssPerSocket'), 'B')} vs bare ${fmt(med('bare', s, 'rssPerSocket'), 'B')})`,
      met: Number.isNaN(rss) ? null : rss <= WITHIN,
    });
  }
}
for (const name of opts.servers) {
  const mine = failures.filter((f) => f.server === name);
  const n = opts.runs * opts.sizes.length;
  targets.push({
    target: `${name}: lost = duplicated = reordered = 0 (every socket checked, every trial)`,
    measured: mine.length === 0 ? `0 lost, 0 duplicated, 0 reordered in ${n} trial(s)` : `${mine.length} of ${n} trial(s) failed`,
    met: mine.length === 0,
  });
}
const tables = sizedTables(rows, {
  sizeHeader: 'S',
  servers: opts.servers,
  // A contender that lost, duplicated or reordered deliveries is not ranked.
  failedChecks: [...new Set(failures.map((f) => f.server))],
  ratios: [['patchbay', 'bare']],
  format: fmt,
  ratioCellOf: (r) => ratioCell(ratio(r.size, r.figure.key), r.figure.better),
});

suite.end();
printReport(tables.text, targets, failures.map((f) => f.text));

if (opts.write) {
  const note = process.env['BENCH_NOTE'] || undefined;
  const fields = {
    environment: suite.environment({ tail: note === undefined ? {} : { note } }),
    config: {
      runs: opts.runs,
      sizes: opts.sizes,
      servers: opts.servers,
      order: 'for each run, for each S: the servers in an order rotated by the run number, each trial on a fresh server process',
      ...fanoutConfig(plan, opts.sizes),
      within: WITHIN,
    },
    figures: rows.map((r) => ({
      s: r.size,
      ...figureFields(r.figure),
      ...r.by,
      ratioPatchbayOverBare: ratio(r.size, r.figure.key),
    })),
    targets,
    checkFailures: failures,
    raw: Object.fromEntries([...results].map(([k, v]) => [k, v])),
  };
  suite.write('ws', fields, {
    title: 'WebSocket',
    intro: [
      'S WebSocket clients subscribed to one topic, one publisher (`POST /pub/:topic` with a JSON body), two servers side by side:',
      '**patchbay** (`node demo/server.js` with `SIDECARS=0`: `GET /ws` is `WsHandler` + `PubSubBroker` from the built package,',
      'default options: `close` overflow policy, 1 MiB send buffer, 30 s heartbeat) and',
      '**bare** (`bench/src/ws/bare-server.mjs`: by hand on `node:http` + `ws` — a `Map<topic, Set<{ ws, sid }>>`; a publish',
      'serializes the message frame once per sid into a `Buffer` and `ws.send()`s it to each subscriber, the broadcast loop of',
      'the `ws` README; no history, cursors, heartbeats or buffer bounds). Both speak the same frames',
      '(`{"type":"subscribe","sid","pattern"}` → `{"type":"subscribed"}`, then `{"type":"message","sid","id","topic","data"}`).',
      'Everything on 127.0.0.1.',
    ],
    run: [
      suite.dateText() +
        `${opts.runs} runs per (server, S), each trial on a fresh server process, servers taking turns in a rotating order; ` +
        `median (min–max) over runs. ${suite.loadText()} in the 0.3 s before each trial (each trial waits, up to 20 s, for less than a third of a core; ` +
        'the machine is shared with other engineers\' work, so a trial can still be disturbed while it runs: read the ranges).' +
        (note === undefined ? '' : ` ${note}`),
    ],
    table: tables.markdown,
    targets,
    failures: failures.map((f) => f.text),
    failuresTitle: '**Check failures** (lost, duplicated or reordered messages, failed sockets, refused publishes):',
    body: [
      '### How it is measured',
      '',
      `- The clients are raw TCP sockets in load processes of at most ${PER_LOAD.toLocaleString('en')} sockets each (one process may hold`,
      `  20,000 open files), each process from its own 127.0.0.x source address, connecting at most ${CONNECT_WINDOW} at a time. Each`,
      '  does the WebSocket handshake itself, sends one masked `subscribe` frame (sid `s`, the topic as `pattern`) and parses',
      '  the server\'s frames byte by byte (pings are answered with pongs). A socket counts once it has its `subscribed`',
      '  frame; the trial starts once all S have it and the server itself counts S subscriptions (patchbay `GET /stats` →',
      '  `ws.subscriptions`; bare: its `/stats`).',
      `- Each server is warmed up first: ${WARM_SUBS} sockets on another topic get a burst of ${WARM_EVENTS} messages, each checked;`,
      '  idle RSS is taken 1 s after they have left.',
      `- Every message's data is the ${DATA_BYTES}-byte JSON object \`{"seq":N,"t":T,"pad":"x…"}\`, published on one keep-alive`,
      '  connection opened beforehand: `seq` numbers the trial\'s events from 1, `t` is the publisher\'s',
      '  `performance.timeOrigin + performance.now()` just before it writes that publish. A socket timestamps each arriving',
      '  chunk the same way before parsing it, so latency = arrival − `t`, comparable across processes.',
      `- **Paced**: ${PACED_EVENTS} events, one publish every 1/rate s on a fixed schedule, rate = ${PACED_DELIVERIES_PER_S.toLocaleString('en')} / S`,
      `  events/s (at most ${MAX_PACED_RATE}/s): ${opts.sizes.map((s) => `${pacedRate(s)}/s at S=${sizeText(s)}`).join(', ')}. p50/p99 are over every (socket, event) pair;`,
      '  first / last socket take, for each event, the earliest and latest arrival over the S sockets.',
      `- **Burst** (0.5 s after the paced phase, on the same connections): E = ${BURST_DELIVERIES.toLocaleString('en')} / S events`,
      `  (${MIN_BURST}..${MAX_BURST}): ${opts.sizes.map((s) => `${burstEvents(s)} at S=${sizeText(s)}`).join(', ')}, every publish written back-to-back in one loop`,
      '  (pipelined). Delivered messages/s = S × E / (first burst publish written → the last socket has the last message).',
      '- Every socket is checked on its own against the published seqs: a seq it never got is *lost*, one it got twice',
      '  *duplicated*, one below the highest it already had *reordered*; all three must be 0, and every publish must be',
      '  answered 201.',
      '- The load processes share the 2 cores with the server, so every time includes the clients\' own reading; compare',
      '  the ratios, which come from the same run.',
    ],
    figures: FIGURES,
  });
}
if (failures.some((f) => f.server === 'patchbay')) process.exitCode = 1;
process.exit();
