/**
 * The sidecar benchmark: an app process talking to a sidecar process it spawned, patchbay's
 * `SidecarSupervisor` + `SidecarChannel` over a Unix socket against Node's built-in
 * `child_process` IPC (`fork` + `process.send`) and against a hand-written newline-delimited
 * JSON protocol over a Unix socket (the transport-for-transport baseline; see child.ts for what
 * it does and leaves out). Run it from the repository root with `npm run bench -- sidecar`.
 *
 * Every (mode, contender, run) is a fresh app process (child.ts) with a fresh peer; within a run
 * the contenders take turns, in an order that rotates from run to run. Prints a table, writes
 * `bench/results/sidecar.json` and the sidecar section of `docs/benchmarks.md`.
 *
 * Options: `--runs N` (default 5), `--scale X` (default 1; e.g. 0.1 for a smoke run),
 * `--no-write` (print only), `--no-wait` (do not wait for a quiet machine before each child).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseChildSuiteArgs } from '../lib/args.js';
import { quietTrialStart, rotate, runChild } from '../lib/harness.js';
import {
  arrow,
  type FigureDef as ReportFigure,
  figureFields,
  markdownTable,
  printTargets,
  SuiteRun,
  summaryCell,
  type TargetResult,
  textTable,
} from '../lib/report.js';
import { summarize, type Summary } from '../lib/stats.js';
import { CONTENDERS, type ChildResult, type ContenderName, MESSAGES, MODES, type Mode, REQUESTS } from './workload.js';

const childFile = join(dirname(fileURLToPath(import.meta.url)), 'child.ts');
const CHILD_LIMIT_MS = 180_000;
const NODE_FLAGS: string[] = [];

interface FigureDef extends ReportFigure<string, 'msg/s' | 'ms' | 'us'> {
  readonly mode: Mode;
  readonly better: 'higher' | 'lower';
}

const FIGURES: readonly FigureDef[] = [
  {
    mode: 'throughput',
    key: 'messagesPerSec',
    label: 'fire-and-forget messages/s',
    unit: 'msg/s',
    better: 'higher',
    description: `${MESSAGES.toLocaleString('en')} small log records (~130 bytes of JSON) sent as fast as each transport's backpressure allows, from the first send until the peer has counted the last (a request that answers after it; both channels are ordered). After a warm-up of a tenth as many.`,
  },
  {
    mode: 'throughput',
    key: 'appCpuPerMessageUs',
    label: 'app CPU per message',
    unit: 'us',
    better: 'lower',
    description: 'User + system CPU of the app process (not the peer) during the throughput run, per message.',
  },
  {
    mode: 'throughput',
    key: 'peerCpuPerMessageUs',
    label: 'peer CPU per message',
    unit: 'us',
    better: 'lower',
    description: 'User + system CPU of the peer (sidecar) process during the throughput run, per message (process.cpuUsage() read over the channel before and after).',
  },
  {
    mode: 'latency',
    key: 'p50Ms',
    label: 'request round trip p50, 1 in flight',
    unit: 'ms',
    better: 'lower',
    description: `${REQUESTS.toLocaleString('en')} requests one after another (echo of a number).`,
  },
  { mode: 'latency', key: 'p99Ms', label: 'request round trip p99, 1 in flight', unit: 'ms', better: 'lower', description: 'As above, 99th percentile.' },
  {
    mode: 'latency-c32',
    key: 'p50Ms',
    label: 'request round trip p50, 32 in flight',
    unit: 'ms',
    better: 'lower',
    description: `${REQUESTS.toLocaleString('en')} requests with 32 in flight at all times.`,
  },
  { mode: 'latency-c32', key: 'p99Ms', label: 'request round trip p99, 32 in flight', unit: 'ms', better: 'lower', description: 'As above, 99th percentile.' },
  { mode: 'latency-c32', key: 'requestsPerSec', label: 'requests/s, 32 in flight', unit: 'msg/s', better: 'higher', description: 'Requests completed per wall second with 32 in flight.' },
];

function fmt(value: number, unit: FigureDef['unit']): string {
  if (Number.isNaN(value)) return 'n/a';
  if (unit === 'msg/s') return value >= 1e6 ? `${(value / 1e6).toFixed(2)} M/s` : `${(value / 1e3).toFixed(0)} k/s`;
  if (unit === 'us') return `${value.toFixed(2)} µs`;
  return `${value.toFixed(value < 1 ? 3 : 2)} ms`;
}
const cell = (s: Summary, unit: FigureDef['unit']) => summaryCell(s, (v) => fmt(v, unit));

interface Row {
  readonly figure: FigureDef;
  readonly by: Record<ContenderName, Summary>;
  /** patchbay median / ipc median. */
  readonly ratio: number;
  /** patchbay median / ndjson median. */
  readonly ratioNdjson: number;
}

function ratioText(r: Row, ratio: number, other: string): string {
  if (Number.isNaN(ratio)) return '—';
  const better = r.figure.better === 'higher' ? ratio > 1.05 : ratio < 0.95;
  const worse = r.figure.better === 'higher' ? ratio < 0.95 : ratio > 1.05;
  return `${ratio.toFixed(2)}×${better ? ' (patchbay better)' : worse ? ` (${other} better)` : ' (about even)'}`;
}

// --- main -----------------------------------------------------------------------------------

const opts = parseChildSuiteArgs(process.argv.slice(2));
const suite = new SuiteRun(import.meta.url);
suite.printHeader(`sidecar benchmark: ${opts.runs} run(s) x ${MODES.length} modes x ${CONTENDERS.length} contenders, scale ${opts.scale}`);

/** One entry per run and contender, `undefined` where the trial was skipped or failed: index i is run i. */
const results: Record<Mode, Record<ContenderName, (ChildResult | undefined)[]>> = {
  throughput: { ipc: [], ndjson: [], patchbay: [] },
  latency: { ipc: [], ndjson: [], patchbay: [] },
  'latency-c32': { ipc: [], ndjson: [], patchbay: [] },
};
const failures: string[] = [];
for (let run = 0; run < opts.runs; run++) {
  const order = rotate(CONTENDERS, run);
  for (const mode of MODES) {
    for (const contender of order) {
      const start = await quietTrialStart(`${mode}/${contender} run ${run + 1}`, { wait: opts.waitQuiet });
      if (start.skipped) {
        results[mode][contender].push(undefined);
        console.log(`  run ${run + 1}/${opts.runs}  ${mode.padEnd(12)} ${contender.padEnd(9)} SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
        continue;
      }
      const busy = start.busy;
      suite.busyBefore.push(busy);
      const t0 = Date.now();
      let result: ChildResult;
      try {
        result = await runChild<ChildResult>(childFile, [contender, mode, String(opts.scale)], NODE_FLAGS, `${mode}/${contender}`, CHILD_LIMIT_MS);
      } catch (err) {
        failures.push(`run ${run + 1} ${mode}/${contender}: ${(err as Error).message}`);
        results[mode][contender].push(undefined);
        console.log(`  run ${run + 1}/${opts.runs}  ${mode.padEnd(12)} ${contender.padEnd(9)} FAILED: ${(err as Error).message.slice(0, 200)}`);
        continue;
      }
      results[mode][contender].push(result);
      const main = mode === 'throughput' ? fmt(result.figures['messagesPerSec']!, 'msg/s') : `p99 ${fmt(result.figures['p99Ms']!, 'ms')}`;
      console.log(
        `  run ${run + 1}/${opts.runs}  ${mode.padEnd(12)} ${contender.padEnd(9)} ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${main.padStart(14)}` +
          `  (others busy ${(busy * 100).toFixed(0)}% before start)`,
      );
    }
  }
}

const rows: Row[] = FIGURES.map((figure) => {
  const by = Object.fromEntries(CONTENDERS.map((c) => [c, summarize(results[figure.mode][c].flatMap((r) => (r === undefined ? [] : [r.figures[figure.key] ?? Number.NaN])))])) as Record<ContenderName, Summary>;
  return { figure, by, ratio: by.patchbay.median / by.ipc.median, ratioNdjson: by.patchbay.median / by.ndjson.median };
});

const tput = rows.find((r) => r.figure.key === 'messagesPerSec')!;
const lat99 = rows.find((r) => r.figure.mode === 'latency' && r.figure.key === 'p99Ms')!;
/** Per-run throughput ratios patchbay / `other` (runs pair up: same run, same machine state). */
const perRun = (other: ContenderName): string =>
  results.throughput.patchbay
    .map((p, i) => {
      const b = results.throughput[other][i];
      return p === undefined || b === undefined ? '—' : `${((p.figures['messagesPerSec'] ?? Number.NaN) / (b.figures['messagesPerSec'] ?? Number.NaN)).toFixed(2)}×`;
    })
    .join(', ');
const targets: TargetResult[] = [
  {
    target: 'messages/s over a Unix socket ≥ 2× Node\'s child_process IPC (the project\'s target)',
    measured: `${tput.ratio.toFixed(2)}× (patchbay ${fmt(tput.by.patchbay.median, 'msg/s')} vs IPC ${fmt(tput.by.ipc.median, 'msg/s')}; per-run ratios ${perRun('ipc')})`,
    met: Number.isNaN(tput.ratio) ? null : tput.ratio >= 2,
  },
  {
    // The fair comparison: the same transport, written by hand, doing the same acknowledged,
    // bounded delivery; patchbay's framing and checks must cost no throughput against it.
    target: 'messages/s ≥ 1.0× hand-written NDJSON over the same Unix socket (acked, bounded, coalesced writes)',
    measured: `${tput.ratioNdjson.toFixed(2)}× (patchbay ${fmt(tput.by.patchbay.median, 'msg/s')} vs NDJSON ${fmt(tput.by.ndjson.median, 'msg/s')}; per-run ratios ${perRun('ndjson')})`,
    met: Number.isNaN(tput.ratioNdjson) ? null : tput.ratioNdjson >= 1,
  },
];

suite.end();
const cells = (r: Row) => [
  cell(r.by.ipc, r.figure.unit),
  cell(r.by.ndjson, r.figure.unit),
  cell(r.by.patchbay, r.figure.unit),
  ratioText(r, r.ratio, 'IPC'),
  ratioText(r, r.ratioNdjson, 'NDJSON'),
];
console.log('');
console.log(
  textTable(
    ['figure', 'ipc: median (min–max)', 'ndjson: median (min–max)', 'patchbay: median (min–max)', 'patchbay / ipc', 'patchbay / ndjson'],
    rows.map((r) => [r.figure.label, ...cells(r)]),
  ),
);
console.log('');
printTargets(targets);
if (failures.length > 0) console.log(`\nFAILURES:\n  ${failures.join('\n  ')}`);

if (opts.write) {
  const fields = {
    environment: suite.environment({ children: true }),
    config: {
      runs: opts.runs,
      scale: opts.scale,
      messages: Math.round(MESSAGES * opts.scale),
      requests: Math.round(REQUESTS * opts.scale),
      order: 'for each run, for each mode: the contenders in an order rotated by the run number, each in a fresh app process with a fresh peer',
      dist: process.env['PATCHBAY_BENCH_DIST'] ?? 'dist/ (built by scripts/bench.mjs)',
      patchbay: 'SidecarSupervisor (health checks off) spawning bench/src/sidecar/peer-patchbay.mjs; SidecarChannel defaults except overflow "reject"; the producer awaits drain() when send() returns false',
      ipc: "child_process.fork of bench/src/sidecar/peer-ipc.mjs (JSON serialization); when send() returns false the next message goes with a callback that the producer awaits",
      ndjson:
        'bench/src/sidecar/peer-ndjson.mjs serving a Unix socket: JSON.stringify(msg) + "\\n" per message, one write per synchronous run, drain on backpressure; a seq per message, sends held until the peer\'s cumulative ack, the producer paused at 5,000 held and resumed at 2,500; a 30 s timer per request',
    },
    figures: rows.map((r) => ({
      mode: r.figure.mode,
      ...figureFields(r.figure),
      ipc: r.by.ipc,
      ndjson: r.by.ndjson,
      patchbay: r.by.patchbay,
      ratioPatchbayOverIpc: Number.isNaN(r.ratio) ? null : r.ratio,
      ratioPatchbayOverNdjson: Number.isNaN(r.ratioNdjson) ? null : r.ratioNdjson,
    })),
    targets,
    failures,
    raw: Object.fromEntries(MODES.map((m) => [m, Object.fromEntries(CONTENDERS.map((c) => [c, results[m][c].map((r) => (r === undefined ? null : { ...r.figures, ...r.info }))]))])),
  };
  suite.write('sidecar', fields, {
    title: 'Sidecar',
    intro: [
      'An app process and a sidecar process it spawned, on the same machine: `SidecarSupervisor` + `SidecarChannel`',
      '(built `dist/`) over a Unix socket, against Node\'s built-in `child_process` IPC (`fork` + `process.send`, JSON',
      'serialization) — the transport a Node app reaches for first — and against newline-delimited JSON over the same kind',
      'of Unix socket written by hand (the transport-for-transport baseline): a seq per message, sends held until the',
      'peer\'s cumulative ack, the producer paused at the same high-water mark, one write per synchronous run. Every peer',
      'does the same work: count fire-and-forget messages, answer requests. The patchbay numbers include what neither',
      'baseline does: a handshake, frame limits and a depth/`__proto__` check of every frame, replay after a reconnection.',
    ],
    commandNote:
      process.env['PATCHBAY_BENCH_DIST'] === undefined
        ? ''
        : ` (with \`PATCHBAY_BENCH_DIST\` pointing at a private build of the same sources, so that other builds of \`dist/\` on a shared machine cannot pull it away mid-run)`,
    run: [
      suite.dateText() +
        `${opts.runs} runs per (mode, contender), each in a fresh app process with a fresh peer, contenders taking turns in a rotating order; median (min–max) over runs` +
        (opts.scale !== 1 ? `; **scale ${opts.scale} (smoke run, not the real sizes)**` : '') +
        `. ${suite.loadText()} in the 0.3 s before each child started.`,
    ],
    table: markdownTable(
      ['figure', 'better', 'IPC: median (min–max)', 'NDJSON: median (min–max)', 'patchbay: median (min–max)', 'patchbay / IPC', 'patchbay / NDJSON'],
      rows.map((r) => [r.figure.label, arrow(r.figure.better), ...cells(r)]),
    ),
    targets,
    failures,
    failuresTitle: '**Failures:**',
    body: [
      `Request latency (1 in flight) p99: patchbay ${fmt(lat99.by.patchbay.median, 'ms')} vs IPC ${fmt(lat99.by.ipc.median, 'ms')}. A patchbay`,
      'request does more than an IPC message (a sequence number, a deadline, an acknowledgement, framing on both sides);',
      'its throughput comes from writing everything queued in one synchronous run as one buffer, which a lone request',
      'cannot use. The CPU figures are the steadiest on a busy machine: they do not depend on how the two processes are',
      'scheduled.',
    ],
    figures: FIGURES,
  });
}
if (failures.length > 0) process.exitCode = 1;
