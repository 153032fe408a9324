/**
 * The purgatory benchmark: patchbay's `Purgatory` vs a naive `setTimeout` + `Map<key, Set>`
 * purgatory. Run it from the repository root with `npm run bench -- purgatory`.
 *
 * Every (workload, contender, run) is a fresh `node --expose-gc` child process; the contenders
 * take turns in an order that rotates from run to run (naive first in even runs, patchbay first
 * in odd ones), as in every other suite. Prints a table, writes `bench/results/purgatory.json`
 * and the purgatory section of `docs/benchmarks.md`.
 *
 * Options: `--runs N` (default 5), `--scale X` (default 1; e.g. 0.1 for a smoke run),
 * `--workloads W1,W3`, `--no-write` (print only).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summarize, type Summary } from '../lib/stats.js';
import { CONTENDERS, type ContenderName } from './contenders.js';
import { FIGURES, type Figure } from './figures.js';
import type { WorkloadResult } from './workloads.js';
import { WORKLOADS } from './workloads.js';
import { cpuSnapshot, gitHead, quietTrialStart, rotate, runChild as runChildProcess, sleep, trialStarts, writeDocsSection } from '../lib/harness.js';
import { skippedLines } from '../lib/report.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const childFile = join(here, 'child.ts');
const NODE_FLAGS = ['--expose-gc', '--max-old-space-size=4096'];
const TICK_MS = 10;

// ---------------------------------------------------------------------------------------------
// options

function parseArgs(argv: readonly string[]) {
  const opts = { runs: 5, scale: 1, workloads: Object.keys(WORKLOADS), write: true, waitQuiet: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--runs') opts.runs = Number(value());
    else if (a === '--scale') opts.scale = Number(value());
    else if (a === '--workloads') opts.workloads = value().split(',');
    else if (a === '--no-write') opts.write = false;
    else if (a === '--no-wait') opts.waitQuiet = false;
    else throw new Error(`unknown option ${a}; options: --runs N, --scale X, --workloads W1,W2,..., --no-write, --no-wait`);
  }
  if (!Number.isInteger(opts.runs) || opts.runs < 1 || opts.runs > 20) throw new Error('--runs must be 1..20');
  if (!(opts.scale > 0 && opts.scale <= 1)) throw new Error('--scale must be in (0, 1]');
  for (const w of opts.workloads) {
    if (!(w in WORKLOADS)) throw new Error(`unknown workload ${w}; known: ${Object.keys(WORKLOADS).join(', ')}`);
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// running children

/** Per-child wall-clock limit: generous, but every child stops. */
const CHILD_LIMIT_MS: Record<string, number> = { W2: 240_000, 'W1-unique': 180_000 };

/** A child's result plus its own CPU time (all threads, whole life), for the disturbance check. */
type ChildResult = WorkloadResult & { readonly processCpuMs: number };

function runChild(contender: ContenderName, workload: string, seed: number, scale: number): Promise<ChildResult> {
  const limit = CHILD_LIMIT_MS[workload] ?? 120_000;
  return runChildProcess<ChildResult>(childFile, [contender, workload, String(seed), String(scale)], NODE_FLAGS, `${workload}/${contender}`, limit);
}


// ---------------------------------------------------------------------------------------------
// formatting

function fmt(value: number, unit: Figure['unit']): string {
  if (Number.isNaN(value)) return 'n/a';
  switch (unit) {
    case 'ops/s':
    case 'calls/s':
      if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(2)} M/s`;
      if (Math.abs(value) >= 1e3) return `${(value / 1e3).toFixed(0)} k/s`;
      return `${value.toFixed(0)} /s`;
    case 'B':
      return Math.abs(value) >= 10_000 ? `${(value / 1024).toFixed(0)} KiB` : `${value.toFixed(Math.abs(value) < 10 ? 2 : 0)} B`;
    case 'ms':
      return `${value.toFixed(Math.abs(value) < 10 ? 2 : 1)} ms`;
    case '%':
      return `${value.toFixed(0)}%`;
    case 'µs':
      return `${value.toFixed(2)} µs`;
    case 'count':
      return `${Math.round(value)}`;
  }
}

function cell(s: Summary, unit: Figure['unit']): string {
  if (s.runs.length <= 1) return fmt(s.median, unit);
  return `${fmt(s.median, unit)} (${fmt(s.min, unit)}–${fmt(s.max, unit)})`;
}

interface Row {
  readonly figure: Figure;
  readonly naive: Summary;
  readonly patchbay: Summary;
  /** patchbay median / naive median, or NaN when not meaningful. */
  readonly ratio: number;
}

function ratioText(row: Row): string {
  const { ratio, figure } = row;
  if (Number.isNaN(ratio) || figure.better === 'none') return '—';
  const good = figure.better === 'higher' ? ratio > 1.05 : ratio < 0.95;
  const bad = figure.better === 'higher' ? ratio < 0.95 : ratio > 1.05;
  return `${ratio.toFixed(2)}× ${good ? '(patchbay better)' : bad ? '(naive better)' : '(about even)'}`;
}

const arrow = (f: Figure) => (f.better === 'higher' ? '↑' : f.better === 'lower' ? '↓' : '');

function textTable(rows: readonly Row[]): string {
  const header = ['workload', 'figure', '', 'naive median (min–max)', 'patchbay median (min–max)', 'patchbay / naive'];
  const body = rows.map((r) => [
    r.figure.workload,
    r.figure.label,
    arrow(r.figure),
    cell(r.naive, r.figure.unit),
    cell(r.patchbay, r.figure.unit),
    ratioText(r),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cols: readonly string[]) => cols.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function markdownTable(rows: readonly Row[]): string {
  const out = [
    '| workload | figure | better | naive: median (min–max) | patchbay: median (min–max) | patchbay / naive |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    out.push(
      `| ${r.figure.workload} | ${r.figure.label} | ${arrow(r.figure)} | ${cell(r.naive, r.figure.unit)} | ${cell(r.patchbay, r.figure.unit)} | ${ratioText(r)} |`,
    );
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// targets (docs/research/purgatory.md §4.3, as set for this issue)

interface TargetResult {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean | null;
}

function evaluateTargets(rows: readonly Row[]): TargetResult[] {
  const row = (workload: string, key: string) => rows.find((r) => r.figure.workload === workload && r.figure.key === key);
  const out: TargetResult[] = [];
  const ratioTarget = (target: string, workload: string, key: string, test: (ratio: number) => boolean) => {
    const r = row(workload, key);
    if (r === undefined) return;
    out.push({
      target: `${target} (${workload})`,
      measured: `${r.ratio.toFixed(2)}× (patchbay ${fmt(r.patchbay.median, r.figure.unit)} vs naive ${fmt(r.naive.median, r.figure.unit)})`,
      met: Number.isNaN(r.ratio) ? null : test(r.ratio),
    });
  };
  ratioTarget('watch ≥ 3× naive', 'W1', 'watchOpsPerSec', (x) => x >= 3);
  ratioTarget('watch ≥ 3× naive', 'W1-unique', 'watchOpsPerSec', (x) => x >= 3);
  ratioTarget('watch (ops built beforehand) ≥ 3× naive', 'W1', 'registerOpsPerSec', (x) => x >= 3);
  ratioTarget('complete-by-key ≥ 1.5× naive', 'W1', 'completeCallsPerSec', (x) => x >= 1.5);
  ratioTarget('complete-by-key ≥ 1.5× naive', 'W1-unique', 'completeCallsPerSec', (x) => x >= 1.5);
  const herd = row('W3', 'herdWokenOpsPerSec');
  if (herd !== undefined) {
    out.push({
      target: 'woken ops/s on a shared key ≥ 5 M/s (W3)',
      measured: `${cell(herd.patchbay, 'ops/s')} (naive ${fmt(herd.naive.median, 'ops/s')})`,
      met: herd.patchbay.median >= 5e6,
    });
  }
  ratioTarget('heap per waiting op ≤ 0.5× naive', 'W1', 'heapPerWaitingOp', (x) => x <= 0.5);
  ratioTarget('heap per waiting op ≤ 0.5× naive', 'W1-unique', 'heapPerWaitingOp', (x) => x <= 0.5);
  for (const [w, key] of [
    ['W1', 'retainedPerEndedOp'],
    ['W1-unique', 'retainedPerEndedOp'],
    ['W4', 'leakRetainedPerOp'],
  ] as const) {
    const r = row(w, key);
    if (r === undefined) continue;
    const worst = Math.max(Math.abs(r.patchbay.min), Math.abs(r.patchbay.max));
    out.push({
      target: `0 retained after completion (${w}; |bytes per op| < 1 in every run, heap-measurement noise)`,
      measured: cell(r.patchbay, 'B'),
      met: worst < 1,
    });
  }
  for (const [w, key] of [
    ['W1-rt', 'earlyFires'],
    ['W1-expire', 'expireEarlyFires'],
  ] as const) {
    const r = row(w, key);
    if (r === undefined) continue;
    out.push({
      target: `0 early fires (${w}, every run)`,
      measured: `max ${r.patchbay.max} over ${r.patchbay.runs.length} runs (naive: median ${fmt(r.naive.median, 'count')})`,
      met: r.patchbay.max === 0,
    });
  }
  const p99 = row('W1-rt', 'latenessP99');
  if (p99 !== undefined) {
    out.push({
      target: `lateness p99 ≤ tick + 2 ms = ${TICK_MS + 2} ms (W1-rt, median of runs)`,
      measured: cell(p99.patchbay, 'ms'),
      met: p99.patchbay.median <= TICK_MS + 2,
    });
  }
  for (const profile of ['low', 'high']) {
    const rate = row('W2', `w2.${profile}.1000k.actualRate`);
    const cpu = row('W2', `w2.${profile}.1000k.cpuPct`);
    if (rate === undefined) continue;
    out.push({
      target: `W2 ${profile}-timeout holds 1 M ops/s without saturating (actual ≥ 95% of target)`,
      measured: `actual ${cell(rate.patchbay, 'ops/s')}${cpu === undefined ? '' : `, CPU ${fmt(cpu.patchbay.median, '%')}`} (naive ${fmt(rate.naive.median, 'ops/s')})`,
      met: rate.patchbay.median >= 0.95e6,
    });
  }
  return out;
}

const metText = (m: boolean | null) => (m === null ? 'n/a' : m ? 'met' : 'NOT met');

// ---------------------------------------------------------------------------------------------
// docs/benchmarks.md

const INTRO = `# Benchmarks

Measured, not promised. Each section below is written by the benchmark runner (\`npm run bench -- <suite>\`,
see \`scripts/bench.mjs\` and the \`bench/\` package) together with the exact command that produced it, the
machine it ran on, and ratios against a baseline measured in the same run. Raw figures for every run are in
\`bench/results/<suite>.json\`. Numbers from a 2-core VM are noisy: read the min–max ranges, not only the
medians, and rerun on your own hardware before relying on them.
`;

// ---------------------------------------------------------------------------------------------
// main

const opts = parseArgs(process.argv.slice(2));
const head = gitHead();
const command = process.env['BENCH_COMMAND'] ?? `node --import tsx ${relative(root, fileURLToPath(import.meta.url))} ${process.argv.slice(2).join(' ')}`.trim();
const started = new Date();
const loadStart = os.loadavg();
const cpu = os.cpus()[0]?.model ?? 'unknown';
console.log(`purgatory benchmark: ${opts.runs} run(s) x ${opts.workloads.length} workload(s) x 2 contenders, scale ${opts.scale}`);
console.log(`node ${process.version}, ${cpu}, ${os.cpus().length} cores, load ${loadStart.map((x) => x.toFixed(2)).join(' ')}`);

const results: Record<string, Record<ContenderName, WorkloadResult[]>> = {};
const busyAtStart: number[] = [];
/** Cores' worth of CPU used by other processes while each kept child ran. */
const othersDuring: number[] = [];
const failures: string[] = [];
/** A pair (A and B) is run again, once, if another process used more than this many cores meanwhile. */
const DISTURBED_CORES = 0.25;
let retriesLeft = 12;
let retries = 0;

/**
 * Runs one child after waiting for a quiet machine (`quietTrialStart`, recorded in `trialStarts`);
 * `null` when the machine stayed busy: the trial is skipped, not counted.
 */
async function measure(contender: ContenderName, workload: string, seed: number, label: string) {
  const start = await quietTrialStart(label, { wait: opts.waitQuiet });
  if (start.skipped) {
    console.log(`  ${label}: SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
    return null;
  }
  const busy = start.busy;
  busyAtStart.push(busy);
  let before = cpuSnapshot();
  let t0 = Date.now();
  let result: ChildResult;
  try {
    result = await runChild(contender, workload, seed, opts.scale);
  } catch (err) {
    // Once: another session may have been rebuilding dist/ just as the child imported it.
    console.log(`  ${workload}/${contender} failed (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); trying once more`);
    await sleep(3_000);
    before = cpuSnapshot();
    t0 = Date.now();
    result = await runChild(contender, workload, seed, opts.scale);
  }
  const wallMs = Date.now() - t0;
  const after = cpuSnapshot();
  const machineBusyMs = after.total - before.total - (after.idle - before.idle);
  let others = (machineBusyMs - result.processCpuMs) / wallMs;
  if (!Number.isFinite(others)) {
    console.log(`  (could not tell other processes' CPU: machine busy ${machineBusyMs} ms, child ${result.processCpuMs} ms, wall ${wallMs} ms)`);
    others = Number.NaN;
  } else others = Math.max(0, others);
  return { result, others, wallMs, busy };
}

for (let run = 0; run < opts.runs; run++) {
  const seed = 1000 + run;
  for (const workload of opts.workloads) {
    let pair: (NonNullable<Awaited<ReturnType<typeof measure>>> & { contender: ContenderName })[] = [];
    for (let attempt = 0; ; attempt++) {
      pair = [];
      for (const contender of rotate(CONTENDERS, run)) {
        const m = await measure(contender, workload, seed, `${workload}/${contender} run ${run + 1}${attempt > 0 ? ' (pair rerun)' : ''}`);
        if (m === null) continue;
        pair.push({ ...m, contender });
        console.log(
          `  run ${run + 1}/${opts.runs}  ${workload.padEnd(10)} ${contender.padEnd(9)} ${(m.wallMs / 1000).toFixed(1).padStart(5)} s` +
            `  (other processes: ${(m.busy * 100).toFixed(0)}% busy before, ${m.others.toFixed(2)} cores during)`,
        );
      }
      const disturbed = pair.some((m) => m.others > DISTURBED_CORES);
      if (!disturbed || attempt >= 1 || retriesLeft <= 0) break;
      retriesLeft--;
      retries++;
      console.log(`  another process used > ${DISTURBED_CORES} core meanwhile: running this pair again`);
    }
    pair.forEach((m) => {
      const contender = m.contender;
      const perW = (results[workload] ??= { naive: [], patchbay: [] });
      perW[contender].push(m.result);
      othersDuring.push(m.others);
      for (const [name, ok] of Object.entries(m.result.checks)) {
        if (!ok) failures.push(`run ${run + 1} ${workload}/${contender}: check ${name} failed`);
      }
    });
  }
}

const rows: Row[] = [];
for (const figure of FIGURES) {
  const perW = results[figure.workload];
  if (perW === undefined) continue;
  const naive = summarize(perW.naive.map((r) => r.figures[figure.key] ?? Number.NaN));
  const patchbay = summarize(perW.patchbay.map((r) => r.figures[figure.key] ?? Number.NaN));
  const ratio = figure.ratio === false || naive.median === 0 ? Number.NaN : patchbay.median / naive.median;
  rows.push({ figure, naive, patchbay, ratio });
}
const targets = evaluateTargets(rows);
const loadEnd = os.loadavg();
const environment = {
  node: process.version,
  v8: process.versions.v8,
  cpu,
  cores: os.cpus().length,
  os: `${os.type()} ${os.release()} ${os.arch()}`,
  totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
  childFlags: NODE_FLAGS.join(' '),
  maxOldSpaceSizeMiB: 4096,
  patchbayTickMs: TICK_MS,
  gitHead,
  loadAvgStart: loadStart,
  loadAvgEnd: loadEnd,
  othersBusyBeforeChildren: { median: summarize(busyAtStart).median, max: Math.max(...busyAtStart) },
  othersCoresDuringChildren: {
    median: summarize(othersDuring).median,
    max: Math.max(...othersDuring.filter((x) => !Number.isNaN(x))),
    disturbedKept: othersDuring.filter((x) => x > DISTURBED_CORES).length,
    children: othersDuring.length,
    pairsRerun: retries,
  },
};

console.log('');
const od = environment.othersCoresDuringChildren;
const disturbanceText =
  `other processes used a median ${od.median.toFixed(2)} cores (max ${od.max.toFixed(2)}) while the children ran; ` +
  `${od.pairsRerun} pair(s) were run again because another process used more than ${DISTURBED_CORES} core; ` +
  `${od.disturbedKept} of the ${od.children} kept children were still disturbed that much`;
console.log(disturbanceText);
console.log(textTable(rows));
console.log('');
console.log('↑ higher is better, ↓ lower is better; patchbay / naive is the ratio of the medians.');
console.log('');
console.log('Targets:');
for (const t of targets) console.log(`  [${metText(t.met)}] ${t.target}: ${t.measured}`);
const skippedTrials = trialStarts.filter((t) => t.skipped);
if (skippedTrials.length > 0) {
  console.log('');
  console.log(`SKIPPED (machine busy): ${skippedTrials.length} of ${trialStarts.length} trial(s): ${skippedTrials.map((t) => t.label).join(', ')}`);
}
if (failures.length > 0) {
  console.log('');
  console.log('CHECK FAILURES:');
  for (const f of failures) console.log(`  ${f}`);
}

if (opts.write) {
  const json = {
    suite: 'purgatory',
    date: started.toISOString(),
    command,
    environment,
    config: {
      runs: opts.runs,
      scale: opts.scale,
      seeds: Array.from({ length: opts.runs }, (_, i) => 1000 + i),
      order: 'for each run, for each workload: the contenders in an order rotated by the run number, each in a fresh process',
      workloads: opts.workloads,
    },
    figures: rows.map((r) => ({
      workload: r.figure.workload,
      key: r.figure.key,
      label: r.figure.label,
      unit: r.figure.unit,
      better: r.figure.better,
      description: r.figure.description,
      naive: r.naive,
      patchbay: r.patchbay,
      ratioPatchbayOverNaive: Number.isNaN(r.ratio) ? null : r.ratio,
    })),
    targets,
    checkFailures: failures,
    // How busy the machine was before each child, and which were skipped (the docs' glance table reads it).
    trialStarts,
    // Every figure of every run (including ones not in the table, e.g. W2 CPU µs per op and lag).
    raw: Object.fromEntries(
      Object.entries(results).map(([w, byC]) => [w, { naive: byC.naive.map((r) => r.figures), patchbay: byC.patchbay.map((r) => r.figures) }]),
    ),
    info: Object.fromEntries(
      Object.entries(results).map(([w, byC]) => [w, { naive: byC.naive.map((r) => r.info), patchbay: byC.patchbay.map((r) => r.info) }]),
    ),
  };
  const jsonFile = join(root, 'bench', 'results', 'purgatory.json');
  mkdirSync(dirname(jsonFile), { recursive: true });
  writeFileSync(jsonFile, `${JSON.stringify(json, null, 2)}\n`);

  const section = [
    '## Purgatory',
    '',
    `\`Purgatory\` (tick ${TICK_MS} ms, defaults) against a naive purgatory: one \`setTimeout\` per operation plus`,
    '`Map<key, Set<op>>`, `clearTimeout` and Set removal on completion, empty Sets deleted — what a competent',
    'hand-rolled long-poll server does. Both use the same op fields, keys, seeded PRNG and driver; patchbay is',
    'imported from the built package (`dist/`) and used through its public API only.',
    '',
    `Command: \`${command}\``,
    '',
    `Date: ${started.toISOString()}; commit ${head}; Node ${process.version}; ${cpu}, ${environment.cores} cores; ` +
      `child processes run \`node ${NODE_FLAGS.join(' ')}\`; ${opts.runs} runs per contender, taking turns in a rotating order, ` +
      `each (workload, contender, run) in a fresh process; median (min–max) over runs` +
      (opts.scale !== 1 ? `; **scale ${opts.scale} (smoke run, not the real sizes)**` : '') +
      `. Load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${loadEnd.map((x) => x.toFixed(2)).join(' ')}; ` +
      `${disturbanceText}` +
      (od.disturbedKept > od.children / 5 ? ' — **a busy machine: these figures are noisier than usual**.' : '.'),
    ...skippedLines(),
    '',
    markdownTable(rows),
    '',
    '↑ higher is better, ↓ lower is better. The ratio is patchbay median / naive median; "(patchbay better)" and',
    '"(naive better)" mark differences over 5%.',
    '',
    '### Targets',
    '',
    ...targets.map((t) => `- **${metText(t.met)}**: ${t.target}: ${t.measured}`),
    ...(failures.length > 0 ? ['', '**Check failures:**', '', ...failures.map((f) => `- ${f}`)] : []),
    '',
    '### Workloads',
    '',
    '- **W1** (synchronous phases): 1,000,000 ops, timeouts uniform integer 10 ms–30 s, 10,000 keys, 1 key per op.',
    '  Watch all, then `checkAndComplete` 90% of the keys in random order (every waiter of such a key completes,',
    '  about 90% of the ops), then `cancelForKey` the other 10%. Measured synchronously: the full 30 s in real time',
    '  would add nothing but waiting.',
    '- **W1-unique**: as W1 with a unique key per op (job-handle style), so 900,000 `checkAndComplete` calls.',
    '- **W1-rt** (real time): 100,000 ops, timeouts 10 ms–3 s, 10,000 keys; 90% complete by key at a uniform time in',
    '  [0, timeout) (a `setTimeout(…, 1)` driver marks the op ready and calls `checkAndComplete(key)`), 10% expire.',
    '  Setup = watch all in one burst, deliver the completions that fell due meanwhile, two `gc()`; lateness counts',
    '  only ops whose deadline falls after the setup, so it measures the timers, not a setup backlog.',
    '- **W1-expire**: 200,000 ops, timeouts 1–2 s, none completed: an expiry burst.',
    '- **W3**: 100,000 waiters on one key, one `checkAndComplete` (median of 5 rounds per process).',
    '- **W4**: 1 warm-up round + 10 rounds of a real-time W1 at 100,000 ops (1,000 keys, timeouts 10–300 ms).',
    '- **W2**: Kafka `TestPurgatoryPerformance` model: Poisson arrivals at the target rate for 1 s, 3 distinct keys of',
    '  100 per op, timeout 200 ms, log-normal completion latency (p50/p75 = 20/60 ms "low-timeout", 200/400 ms',
    '  "high-timeout"); ops whose latency is under the timeout are `forceComplete`d when due by the driver (a',
    '  `setTimeout(…, 1)` loop that also watches the arrivals that are due). Saturation shows as an actual rate',
    '  below the target. Kafka\'s own figures (≥ 105k req/s) are multi-threaded JVM numbers on 2015 hardware with a',
    '  completion thread; these are one Node thread.',
    '',
    '### What each figure measures',
    '',
    ...rows
      .filter((r, i, all) => all.findIndex((o) => o.figure.description === r.figure.description) === i)
      .map((r) => `- **${r.figure.workload} ${r.figure.label}**: ${r.figure.description}`),
  ].join('\n');
  const docFile = writeDocsSection('purgatory', section, INTRO);
  console.log('');
  console.log(`wrote ${relative(root, jsonFile)} and ${relative(root, docFile)}`);
}
if (failures.length > 0) process.exitCode = 1;
