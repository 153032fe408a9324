/**
 * The SSE benchmark: S subscribers on one topic, fed by one publisher, on patchbay's demo
 * server, a bare `node:http` reference written by hand, better-sse, hono's `streamSSE` and
 * nginx + Nchan, side by side in one run. Run it from the repository root with
 * `npm run bench -- sse`.
 *
 * For each run, each size S and each server (in an order that rotates from run to run), one
 * trial on a fresh server process:
 *
 * 1. start the server; warm it up (200 subscribers on another topic, a burst of 300 events,
 *    every one checked), wait until they are gone; measure its idle RSS;
 * 2. spread S subscribers over load processes (at most 5,000 sockets each, each from its own
 *    127.0.0.x source address) and wait until every one has its `200` and its first bytes and
 *    the server itself counts S; settle 1 s; measure RSS;
 * 3. paced: publish P events at a fixed rate (S x rate = 20,000 deliveries/s), each publish
 *    written on its own, timestamped in its data (P = 50, fewer where 50 would take over 25 s);
 * 4. burst: publish E events back-to-back, pipelined on the same keep-alive connection;
 * 5. check every subscriber got every event exactly once and in order; stop the load
 *    processes and the server by PID.
 *
 * Sizes go up to 19,000 subscribers per server process: the one-process servers run at 1,000 and
 * 10,000; the servers of two processes (patchbay-x2, Nchan's 2 workers) also at 38,000
 * (`../lib/sized-servers.ts`), from 8 load processes.
 *
 * Prints a table, writes `bench/results/sse.json` and the sse section of `docs/benchmarks.md`.
 * Options: `--runs N` (default 3), `--sizes 1000,10000,38000`, `--servers patchbay,bare,better-sse,hono,nchan`,
 * `--no-write`, and for profiling `--node-flags "--cpu-prof ..."` (extra flags for the Node
 * servers; needs `--no-write`).
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
  fanoutTrial,
  pacedRate as fanoutPacedRate,
  pacedEvents as fanoutPacedEvents,
  PER_LOAD,
  TOPIC,
  WARM_EVENTS,
  WARM_SUBS,
} from '../lib/fanout.js';
import { ensureNchan, NCHAN_WORKERS, nginxVersion } from '../lib/nchan.js';
import { X2_WORKERS } from '../lib/patchbay-cluster.js';
import { snapshotPackage } from '../lib/processes.js';
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
import { MULTI_PROCESS_MAX, PER_PROCESS_MAX, runSizedTrialsPerProcess } from '../lib/sized-servers.js';
import { killAllOnExit, trialKey } from '../lib/trials.js';
import { NCHAN_BUFFER, SERVERS, type ServerName, startServer } from './servers.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
/**
 * Paced: this many events, at S x rate = PACED_DELIVERIES_PER_S (at most MAX_PACED_RATE events/s),
 * fewer where they would take over PACED_MAX_MS (S = 38,000: 14 events at 0.53/s).
 */
const PACED_EVENTS = 50;
const PACED_MAX_MS = 25_000;
const PACED_DELIVERIES_PER_S = 20_000;
const MAX_PACED_RATE = 100;
/** Burst: E = BURST_DELIVERIES / S events (MIN_BURST..MAX_BURST). */
const BURST_DELIVERIES = 300_000;
const MIN_BURST = 20;
const MAX_BURST = 500;
/** How long a phase waits for its last event: after the last paced publish, after the first burst publish. */
const PHASE_GRACE_MS = 30_000;
const BURST_LIMIT_MS = 60_000;

// --- the trial ------------------------------------------------------------------------------

const plan: FanoutPlan<'rssPerSub'> = {
  loadFile: join(here, 'load.ts'),
  startFields: (topic) => ({ path: `/sse/${topic}` }),
  contentType: 'text/plain',
  okStatus: (status) => status === 201 || status === 202, // Nchan: 202 when nobody listens
  words: { client: 'subscriber', event: 'event', counted: 'subscriber', connect: 'connect' },
  paced: { events: PACED_EVENTS, deliveriesPerS: PACED_DELIVERIES_PER_S, maxRate: MAX_PACED_RATE, maxMs: PACED_MAX_MS },
  burst: { deliveries: BURST_DELIVERIES, min: MIN_BURST, max: MAX_BURST },
  // What has not arrived PHASE_GRACE_MS after the last paced publish counts as lost.
  pacedLimitMs: (scheduleLeftMs) => scheduleLeftMs + PHASE_GRACE_MS,
  burstLimitMs: () => BURST_LIMIT_MS,
  freshBurstConnection: true,
  burstRateCounts: 'received', // S × E when nothing was lost
  perSubscriberKey: 'rssPerSub',
};
const pacedRate = (s: number) => fanoutPacedRate(plan, s);
const burstEvents = (s: number) => fanoutBurstEvents(plan, s);
const pacedEvents = (s: number) => fanoutPacedEvents(plan, s);

type TrialResult = FanoutResult<'rssPerSub'> & {
  /** 1 GiB / RSS per subscriber. */
  readonly subsPerGiB: number;
};

async function trial(name: ServerName, s: number): Promise<TrialResult> {
  const r = await fanoutTrial(plan, await startServer(name, root, snapshot?.dir ?? root, opts.nodeFlags, s), s);
  return { ...r, subsPerGiB: 2 ** 30 / r.rssPerSub };
}

// --- figures and report ----------------------------------------------------------------------

type FigureDef = ReportFigure<keyof TrialResult, Unit>;

const FIGURES: readonly FigureDef[] = [
  {
    key: 'burstRate',
    label: 'burst: delivered events/s',
    unit: '/s',
    better: 'higher',
    description:
      'S × E / (the first burst publish written → the last subscriber has the last event). E = 300,000 / S events (20..500), written back-to-back (pipelined) on one keep-alive connection.',
  },
  { key: 'burstMs', label: 'burst: all delivered', unit: 'ms', better: 'lower', description: 'The first burst publish written → the last subscriber has the last event.' },
  { key: 'burstP50', label: 'burst: latency p50', unit: 'ms', better: 'lower', description: 'Median over every (subscriber, burst event) of receive − that publish written (includes the wait behind earlier events of the burst).' },
  { key: 'burstP99', label: 'burst: latency p99', unit: 'ms', better: 'lower', description: '99th percentile of the same.' },
  { key: 'burstCpuMs', label: 'burst: server CPU', unit: 'ms', better: 'lower', description: 'Server CPU time (user + system, all its processes; 10 ms ticks) from the first burst publish until every subscriber had every event.' },
  {
    key: 'pacedP50',
    label: 'paced: latency p50',
    unit: 'ms',
    better: 'lower',
    description: `Median over every (subscriber, paced event) of receive − publish written. ${PACED_EVENTS} events (fewer where they would take over ${PACED_MAX_MS / 1000} s) at ${PACED_DELIVERIES_PER_S.toLocaleString('en')} / S events/s (at most ${MAX_PACED_RATE}/s): 20/s at 1k, 2/s at 10k, 14 events at 0.53/s at 38k.`,
  },
  { key: 'pacedP99', label: 'paced: latency p99', unit: 'ms', better: 'lower', description: '99th percentile of the same: the figure of the project\'s target.' },
  { key: 'firstP50', label: 'paced: first subscriber p50', unit: 'ms', better: 'lower', description: 'For each paced event, the earliest arrival over the S subscribers (the first subscriber the server served); median over the events.' },
  { key: 'firstP99', label: 'paced: first subscriber p99', unit: 'ms', better: 'lower', description: 'The same, 99th percentile over the events.' },
  { key: 'midP50', label: 'paced: middle subscriber p50', unit: 'ms', better: 'lower', description: 'For each paced event, the median arrival over the S subscribers; median over the events.' },
  { key: 'midP99', label: 'paced: middle subscriber p99', unit: 'ms', better: 'lower', description: 'The same, 99th percentile over the events.' },
  { key: 'lastP50', label: 'paced: last subscriber p50', unit: 'ms', better: 'lower', description: 'For each paced event, the latest arrival over the S subscribers (when the fan-out was done); median over the events.' },
  { key: 'lastP99', label: 'paced: last subscriber p99', unit: 'ms', better: 'lower', description: 'The same, 99th percentile over the events.' },
  { key: 'pacedCpuMs', label: 'paced: server CPU', unit: 'ms', better: 'lower', description: 'Server CPU time over the paced phase (all its processes).' },
  {
    key: 'rssPerSub',
    label: 'RSS per subscriber',
    unit: 'B',
    better: 'lower',
    description: '(VmRSS with S subscribers connected, 1 s after the server counted them all) − (idle VmRSS after the warm-up), divided by S. nginx: master + workers summed.',
  },
  {
    key: 'subsPerGiB',
    label: 'subscribers per GiB',
    unit: 'n',
    better: 'higher',
    description: '1 GiB divided by the RSS per subscriber: how many subscribers a GiB of memory holds beyond the idle server (all its processes; patchbay-x2 counts its redis-server too).',
  },
  { key: 'rssIdle', label: 'idle RSS', unit: 'MiB', better: 'lower', description: 'VmRSS after the warm-up, before the load connects.' },
  { key: 'connectMs', label: 'connect all', unit: 'ms', better: 'none', description: 'Load processes started → every subscriber has its headers and first bytes and the server counts S.' },
];

// --- main -----------------------------------------------------------------------------------

/** The contenders of several processes: they also run above 19,000 (19,000 per process). */
const MULTI: readonly ServerName[] = ['patchbay-x2', 'nchan'];
const opts = parseServerSuiteArgs<ServerName>(process.argv.slice(2), {
  servers: SERVERS,
  sizes: [1000, 10_000, MULTI_PROCESS_MAX],
  sizesExample: '1000,10000,38000',
  sizeLimitReason: `20,000 open files per server process: at most ${PER_PROCESS_MAX.toLocaleString('en')} per process, above that patchbay-x2 and nchan only`,
  maxSize: MULTI_PROCESS_MAX,
});
killAllOnExit();
process.on('exit', () => snapshot?.remove());

if (opts.servers.includes('nchan')) ensureNchan();
// The demo and dist/ as built for this run: others may rebuild dist/ in this checkout meanwhile.
const snapshot = opts.servers.some((name) => name.startsWith('patchbay')) ? snapshotPackage(root) : undefined;
const suite = new SuiteRun(import.meta.url);
const nginx = opts.servers.includes('nchan') ? nginxVersion() : 'not run';
suite.printHeader(`sse benchmark: ${opts.runs} run(s) x sizes ${opts.sizes.join(', ')} x servers ${opts.servers.join(', ')}`, `; nginx ${nginx}`);

const failures: { server: ServerName; text: string }[] = [];
const results = await runSizedTrialsPerProcess(
  opts,
  MULTI,
  suite.busyBefore,
  trial,
  ({ run, size: s, name, result: r, busy, ms }) => {
    const bad = r.lost + r.duplicated + r.reordered + r.wrong + r.errors + r.badPublishes;
    if (bad > 0) {
      failures.push({
        server: name,
        text:
          `run ${run + 1} ${name} S=${s}: ${r.lost} lost (not received within the phase's bound), ${r.duplicated} duplicated, ${r.reordered} reordered, ${r.wrong} wrong, ` +
          `${r.errors} failed subscribers, ${r.badPublishes} publishes refused or unanswered within 30 s; ${r.sample}`,
      });
    }
    console.log(
      `  run ${run + 1}/${opts.runs}  S=${String(s).padStart(5)}  ${name.padEnd(10)} ${(ms / 1000).toFixed(1).padStart(5)} s` +
        `  burst ${fmt(r.burstRate, '/s').padStart(9)} (E=${r.burstEvents}, ${fmt(r.burstMs, 'ms')})` +
        `  paced p50 ${fmt(r.pacedP50, 'ms').padStart(8)} p99 ${fmt(r.pacedP99, 'ms').padStart(8)}` +
        `  RSS/sub ${fmt(r.rssPerSub, 'B').padStart(9)}  ${bad === 0 ? 'all in order' : `CHECK FAILED (${bad})`}` +
        `  (others busy ${(busy * 100).toFixed(0)}% before)`,
    );
  },
);

const rows = sizedRows(opts.sizes, FIGURES, opts.servers, (name, s) => results.get(trialKey(name, s)) ?? []);
const med = (name: ServerName, s: number, k: keyof TrialResult) => rowMedian(rows, name, s, k);
const ratio = (a: ServerName, b: ServerName, s: number, k: keyof TrialResult) => med(a, s, k) / med(b, s, k);

const targets: TargetResult[] = [];
// A contender that failed its checks is not ranked: no target is judged against it (nor for it).
const failedServers = new Set(failures.map((f) => f.server));
const has = (name: ServerName) => opts.servers.includes(name);
const rankedRatio = (a: ServerName, b: ServerName, s: number, k: keyof TrialResult) => (failedServers.has(a) || failedServers.has(b) ? Number.NaN : ratio(a, b, s, k));
const sizeText = (s: number) => s.toLocaleString('en');
for (const s of opts.sizes) {
  const burstGoal = s === 1000 ? 1.0 : s === 10_000 ? 1.2 : null;
  if (burstGoal !== null && has('patchbay') && has('nchan')) {
    const r = rankedRatio('patchbay', 'nchan', s, 'burstRate');
    targets.push({
      target: `burst delivered events/s ≥ ${burstGoal.toFixed(1)}× Nchan (S=${sizeText(s)})`,
      measured: `${targetRatioText(r)} (patchbay ${fmt(med('patchbay', s, 'burstRate'), '/s')} vs Nchan ${fmt(med('nchan', s, 'burstRate'), '/s')}${has('bare') ? `; bare ${fmt(med('bare', s, 'burstRate'), '/s')}` : ''})`,
      met: Number.isNaN(r) ? null : r >= burstGoal,
    });
  }
  if (s === 10_000 && has('patchbay') && has('nchan')) {
    const r = rankedRatio('patchbay', 'nchan', s, 'pacedP99');
    targets.push({
      target: `paced p99 publish-to-receive ≤ 0.6× Nchan (S=${sizeText(s)})`,
      measured: `${targetRatioText(r)} (patchbay ${fmt(med('patchbay', s, 'pacedP99'), 'ms')} vs Nchan ${fmt(med('nchan', s, 'pacedP99'), 'ms')}${has('bare') ? `; bare ${fmt(med('bare', s, 'pacedP99'), 'ms')}` : ''})`,
      met: Number.isNaN(r) ? null : r <= 0.6,
    });
  }
  if (has('patchbay') && has('bare')) {
    const r = rankedRatio('patchbay', 'bare', s, 'rssPerSub');
    targets.push({
      target: `RSS per subscriber ≤ 1.0× bare (S=${sizeText(s)})${s === 10_000 ? ' — the project\'s target' : ''}`,
      measured: `${targetRatioText(r)} (patchbay ${fmt(med('patchbay', s, 'rssPerSub'), 'B')} vs bare ${fmt(med('bare', s, 'rssPerSub'), 'B')})`,
      met: Number.isNaN(r) ? null : r <= 1.0,
    });
  }
}
if (has('patchbay')) {
  const mine = failures.filter((f) => f.server === 'patchbay');
  const n = opts.runs * opts.sizes.filter((s) => s <= PER_PROCESS_MAX).length;
  targets.push({
    target: 'patchbay never loses, duplicates or reorders an event (every subscriber checked, every trial)',
    measured: mine.length === 0 ? `0 lost, 0 duplicated, 0 reordered in ${n} trial(s)` : `${mine.length} of ${n} trial(s) failed`,
    met: mine.length === 0,
  });
}
const tables = sizedTables(rows, {
  sizeHeader: 'S',
  servers: opts.servers,
  // A contender that lost, duplicated or reordered deliveries is not ranked.
  failedChecks: [...new Set(failures.map((f) => f.server))],
  ratios: [
    ['patchbay', 'bare'],
    ['patchbay', 'nchan'],
    ['patchbay-x2', 'nchan'],
  ],
  format: fmt,
  ratioCellOf: (r, a, b) => ratioCell(ratio(a, b, r.size, r.figure.key), r.figure.better, true),
});

suite.end();
printReport(tables.text, targets, failures.map((f) => f.text));

if (opts.write) {
  const fields = {
    environment: suite.environment({ extra: { nginx, nchanWorkers: NCHAN_WORKERS } }),
    config: {
      runs: opts.runs,
      sizes: opts.sizes,
      servers: opts.servers,
      order: 'for each run, for each S: the servers in an order rotated by the run number, each trial on a fresh server process',
      ...fanoutConfig(plan, opts.sizes),
      nchanMessageBuffer: NCHAN_BUFFER,
    },
    figures: rows.map((r) => ({
      s: r.size,
      ...figureFields(r.figure),
      ...r.by,
      ratioPatchbayOverBare: ratio('patchbay', 'bare', r.size, r.figure.key),
      ratioPatchbayOverNchan: ratio('patchbay', 'nchan', r.size, r.figure.key),
      ratioPatchbayX2OverNchan: ratio('patchbay-x2', 'nchan', r.size, r.figure.key),
    })),
    targets,
    checkFailures: failures,
    raw: Object.fromEntries([...results].map(([k, v]) => [k, v])),
  };
  suite.write('sse', fields, {
    title: 'Server-Sent Events',
    intro: [
      'S subscribers on one topic, one publisher, six servers side by side with the same routes (`GET /sse/:topic`,',
      '`POST /pub/:topic` whose body is the event\'s data):',
      '**patchbay** (`node demo/server.js` with `SIDECARS=0`: `SseHandler` + `PubSubBroker` from the built package; the demo and',
      '`dist/` are copied when the suite starts, so a rebuild in the same checkout cannot change them mid-run),',
      '**bare** (`bench/src/sse/bare-server.mjs`: by hand on `node:http` — a `Set` of responses per topic; a publish',
      'serializes the event once into a `Buffer` and `res.write()`s it to each),',
      '**better-sse** (`bench/src/sse/better-sse-server.mjs`: a `Session` per connection registered with a `Channel`',
      'per topic, `channel.broadcast(value, "message", { eventId })`),',
      '**hono** (`bench/src/sse/hono-server.mjs`: `streamSSE` on `@hono/node-server`, a `Set` of the open streams per topic,',
      '`stream.writeSSE({ data, id })` to each) and',
      `**nchan** (nginx ${nginx}, ${NCHAN_WORKERS} workers, \`nchan_subscriber eventsource\` + \`nchan_publisher http\`,`,
      `\`nchan_subscriber_first_message newest\`, message buffer ${NCHAN_BUFFER}), and **patchbay-x2**: the same demo as`,
      `${X2_WORKERS} processes on one port (\`WORKERS=${X2_WORKERS}\`, node:cluster) sharing the topic through \`RedisBackend\` on a redis-server`,
      'of its own (fresh for each trial; its RSS and CPU count with the workers\' and the primary\'s), beside Nchan\'s workers.',
      `Everything on 127.0.0.1. Every process holds at most ${PER_PROCESS_MAX.toLocaleString('en')} subscribers (20,000 open files per process):`,
      `the one-process servers run at S ≤ ${PER_PROCESS_MAX.toLocaleString('en')}, patchbay-x2 and Nchan also at S = ${MULTI_PROCESS_MAX.toLocaleString('en')} (${PER_PROCESS_MAX.toLocaleString('en')}`,
      'per process; above 19,000 Nchan listens with `reuseport`, so that the kernel spreads the connections over its workers, and has',
      '32,768 worker connections, as its internal connections count too; open files stay at 20,000 per worker).',
    ],
    run: [
      suite.dateText() +
        `${opts.runs} runs per (server, S), each trial on a fresh server process, servers taking turns in a rotating order; ` +
        `median (min–max) over runs. ${suite.loadText()} in the 0.3 s before each trial (each trial waits, up to 20 s, for less than a third of a core; ` +
        'the machine is shared with other engineers\' tests, so a trial can still be disturbed while it runs: read the ranges).',
    ],
    table: tables.markdown,
    targets,
    failures: failures.map((f) => f.text),
    failuresTitle: '**Check failures** (lost, duplicated or reordered events, failed subscribers, refused publishes):',
    body: [
      '### How it is measured',
      '',
      `- Subscribers are raw TCP sockets in load processes of at most ${PER_LOAD.toLocaleString('en')} sockets each (one process may`,
      `  hold 20,000 open files), each process from its own 127.0.0.x source address, connecting at most ${CONNECT_WINDOW} at a time;`,
      `  each sends \`GET /sse/${TOPIC}\` with \`Accept: text/event-stream\` and parses the stream itself (HTTP/1.1 chunked or`,
      '  not, SSE lines, one data line per event). A subscriber is connected once it has its `200 text/event-stream` and its',
      '  first body bytes; the trial starts once all S are, and the server itself counts S (patchbay `GET /stats` →',
      '  `sse.connections`; bare, better-sse, hono: their `/stats`; Nchan: `subscribers` in `nchan_stub_status`).',
      `- Each server is warmed up first: ${WARM_SUBS} subscribers on another topic get a burst of ${WARM_EVENTS} events, each checked;`,
      '  idle RSS is taken 1 s after they have left.',
      `- Every event's data is the ${DATA_BYTES}-byte JSON text \`{"seq":N,"t":T,"pad":"x…"}\`, published as \`text/plain\` on one`,
      '  keep-alive connection opened beforehand: `seq` numbers the trial\'s events from 1, `t` is the publisher\'s',
      '  `performance.timeOrigin + performance.now()` just before it writes that publish. A subscriber timestamps each',
      '  arriving chunk the same way before parsing it, so latency = arrival − `t`, comparable across processes.',
      `- **Paced**: ${PACED_EVENTS} events (fewer where they would take over ${PACED_MAX_MS / 1000} s), one publish every 1/rate s on a fixed schedule, rate = ${PACED_DELIVERIES_PER_S.toLocaleString('en')} / S`,
      `  events/s (at most ${MAX_PACED_RATE}/s): ${opts.sizes.map((s) => `${pacedEvents(s)} at ${+pacedRate(s).toFixed(2)}/s at S=${sizeText(s)}`).join(', ')}. The paced phase waits until every`,
      '  subscriber has the last paced event. *Overall* p50/p99 are over every (subscriber, event) pair; *first / middle /',
      '  last subscriber* take, for each event, the earliest, median and latest arrival over the S subscribers (the first,',
      '  middle and last subscriber in the order the server actually delivered that event), then p50/p99 over the events.',
      `- **Burst** (0.5 s after the paced phase, on the same connections): E = ${BURST_DELIVERIES.toLocaleString('en')} / S events`,
      `  (${MIN_BURST}..${MAX_BURST}): ${opts.sizes.map((s) => `${burstEvents(s)} at S=${sizeText(s)}`).join(', ')}, every publish written back-to-back in one loop`,
      '  (pipelined, without waiting for answers) on a second keep-alive connection opened after the paced phase. Delivered events/s = S × E / (first burst publish written → the',
      '  last subscriber has the last event).',
      `- Each phase is bounded: the paced phase waits at most ${PHASE_GRACE_MS / 1000} s after its last publish, the burst at most ${BURST_LIMIT_MS / 1000} s after`,
      '  its first; a (subscriber, event) not received by then counts as lost, and the latency and rate figures of such a',
      '  trial are over what did arrive (delivered events/s = pairs received / time to the last arrival).',
      '- Every subscriber is checked on its own against the published seqs: a seq it never got is *lost*, one it got twice',
      '  *duplicated*, one below the highest it already had *reordered*; all three must be 0, and every publish must be',
      '  answered 201 (Nchan: 201 or 202) within 30 s of the last delivery.',
      '- The load processes share the 2 cores with the server, so every time includes the clients\' own reading, and',
      '  absolute figures differ from the reference figures the targets were set from (another harness); compare the ratios, which come from',
      '  the same run.',
      '- The clients read what each server writes: a server that coalesces a burst into fewer, larger writes (patchbay)',
      '  costs its clients fewer reads and TCP segments, and the clients share the cores with it; bare, better-sse, hono and',
      '  Nchan write each event on its own. When the clients lag (a busy machine), small segments fill a client\'s TCP',
      '  receive buffer sooner and the sender then waits on the kernel\'s zero-window probes, which back off exponentially:',
      '  a burst time that repeats to the millisecond across runs is most likely such a wait, not work. Read the min–max ranges.',
      '',
      '### Why the paced p99 at 10,000 is not 0.6× Nchan',
      '',
      '- The paced p99 is the time one process takes to write one event to its last subscribers: each of the S sockets',
      '  needs its own write system call. bare (one `res.write()` per subscriber) is that floor for one Node process; patchbay',
      '  is below bare (it shares one serialized frame), and above Nchan, whose 2 workers write half the subscribers each in',
      '  parallel on the 2 cores. 0.6× Nchan (about 56 ms for 10,000 subscribers) would need under 6 µs per subscriber on',
      '  one core, less than half of bare\'s measured cost per write (about 13 µs: 130 ms / 10,000). The long-poll wake',
      '  profile (see that section) puts over half of such a fan-out in the kernel\'s write and about 15% in Node\'s stream',
      '  code, around a seventh in patchbay\'s own. The like-for-like contender beside Nchan\'s 2 workers is patchbay-x2.',
    ],
    figures: FIGURES,
  });
}
if (failures.some((f) => f.server === 'patchbay')) process.exitCode = 1;
process.exit();
