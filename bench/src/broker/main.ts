/**
 * The broker benchmark: in-memory publish-to-delivery with 10,000 subscriptions (half of them
 * wildcards), patchbay's `PubSubBroker` vs mqemitter, on a fixed subscription set (awaited and
 * pipelined publishes) and, as a second workload reported beside it, with the subscriptions
 * changing while it publishes (churn: one replaced every CHURN_EVERY publishes). Run it from the repository root with
 * `npm run bench -- broker`.
 *
 * Every (mode, contender, run) is a fresh `node --expose-gc` child process; within a run the
 * contenders take turns, in an order that rotates from run to run. Prints a table, writes
 * `bench/results/broker.json` and the broker section of `docs/benchmarks.md`.
 *
 * Options: `--runs N` (default 5), `--scale X` (default 1; e.g. 0.1 for a smoke run),
 * `--no-write` (print only), `--no-wait` (do not wait for a quiet machine before each child).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseChildSuiteArgs } from '../lib/args.js';
import {
  type FigureDef as ReportFigure,
  figureFields,
  figureTables,
  printReport,
  ratioCell,
  SuiteRun,
  summaryCell,
  type TargetResult,
} from '../lib/report.js';
import { summarize, type Summary } from '../lib/stats.js';
import type { ChildResult } from './child.js';
import { BATCH, CONTENDERS, type ContenderName, MODES, type Mode } from './contenders.js';
import { CHURN_EVERY, SUBSCRIPTIONS, TOPIC_COUNT } from './workload.js';
import { quietTrialStart, rotate, runChild as runChildProcess } from '../lib/harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const childFile = join(here, 'child.ts');
const NODE_FLAGS = ['--expose-gc', '--max-old-space-size=4096'];
const CHILD_LIMIT_MS = 120_000;
const BASELINE: ContenderName = 'mqemitter';

function runChild(contender: ContenderName, mode: Mode, seed: number, scale: number): Promise<ChildResult> {
  return runChildProcess<ChildResult>(childFile, [contender, mode, String(seed), String(scale)], NODE_FLAGS, `${mode}/${contender}`, CHILD_LIMIT_MS);
}


// --- figures and formatting -------------------------------------------------------------------

type FigureDef = ReportFigure<string, 'msg/s' | 'ns' | 'ms' | 'B' | '%'>;

const FIGURES: readonly FigureDef[] = [
  {
    key: 'deliveredPerSec',
    label: 'delivered messages/s',
    unit: 'msg/s',
    better: 'higher',
    description: 'Listener calls per wall second over the measured publishes (after a warm-up of 10% as many).',
  },
  { key: 'publishesPerSec', label: 'publishes/s', unit: 'msg/s', better: 'higher', description: 'Publishes completed per wall second.' },
  { key: 'nsPerDelivery', label: 'wall time per delivery', unit: 'ns', better: 'lower', description: 'Wall time divided by deliveries.' },
  {
    key: 'subscribeMs',
    label: 'subscribe 10,000',
    unit: 'ms',
    better: 'lower',
    description: 'Registering every subscription (patchbay: `await subscribe()` each; mqemitter: `on()` each).',
  },
  {
    key: 'heapPerSubscription',
    label: 'heap per subscription',
    unit: 'B',
    better: 'lower',
    description: 'Heap used after subscribing minus before (after `gc()`), per subscription, listener closure included.',
  },
];

function fmt(value: number, unit: FigureDef['unit']): string {
  if (Number.isNaN(value)) return 'n/a';
  switch (unit) {
    case 'msg/s':
      if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M/s`;
      if (value >= 1e3) return `${(value / 1e3).toFixed(0)} k/s`;
      return `${value.toFixed(0)} /s`;
    case 'ns':
      return `${value.toFixed(0)} ns`;
    case 'ms':
      return `${value.toFixed(value < 10 ? 2 : 1)} ms`;
    case 'B':
      return `${value.toFixed(0)} B`;
    case '%':
      return `${value.toFixed(0)}%`;
  }
}

const cell = (s: Summary, unit: FigureDef['unit']) => summaryCell(s, (v) => fmt(v, unit));

interface Row {
  readonly mode: Mode;
  readonly figure: FigureDef;
  readonly by: Record<ContenderName, Summary>;
  /** median / mqemitter median, per patchbay contender. */
  readonly ratio: Record<'patchbay' | 'patchbay-live', number>;
}

const MODE_TEXT: Record<Mode, string> = {
  awaited: 'awaited',
  pipelined: `pipelined ×${BATCH}`,
  churn: `awaited, churn 1/${CHURN_EVERY}`,
};

/** The table of the rows, as text and as Markdown. */
const tables = (rows: readonly Row[]) =>
  figureTables(
    { labels: ['mode', 'figure'], contenders: CONTENDERS, ratios: ['patchbay / mqemitter', 'patchbay-live / mqemitter'] },
    rows.map((r) => ({
      labels: [MODE_TEXT[r.mode], r.figure.label],
      better: r.figure.better,
      cells: [...CONTENDERS.map((c) => cell(r.by[c], r.figure.unit)), ratioCell(r.ratio.patchbay, r.figure.better), ratioCell(r.ratio['patchbay-live'], r.figure.better)],
    })),
  );

// --- main -----------------------------------------------------------------------------------

const opts = parseChildSuiteArgs(process.argv.slice(2));
const mqVersion = (() => {
  try {
    return (JSON.parse(readFileSync(join(root, 'bench', 'node_modules', 'mqemitter', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();
const suite = new SuiteRun(import.meta.url);
suite.printHeader(`broker benchmark: ${opts.runs} run(s) x ${MODES.length} modes x ${CONTENDERS.length} contenders, scale ${opts.scale}`, `; mqemitter ${mqVersion}`);

const results: Record<Mode, Record<ContenderName, ChildResult[]>> = {
  awaited: { mqemitter: [], patchbay: [], 'patchbay-live': [] },
  pipelined: { mqemitter: [], patchbay: [], 'patchbay-live': [] },
  churn: { mqemitter: [], patchbay: [], 'patchbay-live': [] },
};
const failures: string[] = [];
for (let run = 0; run < opts.runs; run++) {
  const seed = 2000 + run;
  const order = rotate(CONTENDERS, run);
  for (const mode of MODES) {
    for (const contender of order) {
      const start = await quietTrialStart(`${mode}/${contender} run ${run + 1}`, { wait: opts.waitQuiet });
      if (start.skipped) {
        console.log(`  run ${run + 1}/${opts.runs}  ${mode.padEnd(9)} ${contender.padEnd(13)} SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
        continue;
      }
      const busy = start.busy;
      suite.busyBefore.push(busy);
      const t0 = Date.now();
      const result = await runChild(contender, mode, seed, opts.scale);
      results[mode][contender].push(result);
      for (const [name, ok] of Object.entries(result.checks)) {
        if (!ok) failures.push(`run ${run + 1} ${mode}/${contender}: check ${name} failed (${JSON.stringify(result.info)})`);
      }
      console.log(
        `  run ${run + 1}/${opts.runs}  ${mode.padEnd(9)} ${contender.padEnd(13)} ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s` +
          `  ${fmt(result.figures['deliveredPerSec']!, 'msg/s').padStart(10)} delivered` +
          `  (others busy ${(busy * 100).toFixed(0)}% before start)`,
      );
    }
  }
}

const rows: Row[] = [];
for (const mode of MODES) {
  for (const figure of FIGURES) {
    const by = Object.fromEntries(CONTENDERS.map((c) => [c, summarize(results[mode][c].map((r) => r.figures[figure.key] ?? Number.NaN))])) as Record<
      ContenderName,
      Summary
    >;
    const base = by[BASELINE].median;
    rows.push({ mode, figure, by, ratio: { patchbay: by.patchbay.median / base, 'patchbay-live': by['patchbay-live'].median / base } });
  }
}
const firstInfo = results.awaited.patchbay[0]?.info ?? {};
const meanMatches = Number(firstInfo['meanMatchesPerPublish'] ?? Number.NaN);

// The target is on the fixed subscription set; the churn workload is reported beside it.
const targets: TargetResult[] = MODES.filter((mode) => mode !== 'churn').map((mode) => {
  const r = rows.find((x) => x.mode === mode && x.figure.key === 'deliveredPerSec')!;
  return {
    target: `delivered messages/s ≥ 2× mqemitter (${MODE_TEXT[mode]}, patchbay defaults)`,
    measured: `${r.ratio.patchbay.toFixed(2)}× (patchbay ${fmt(r.by.patchbay.median, 'msg/s')} vs mqemitter ${fmt(r.by.mqemitter.median, 'msg/s')}; live-only patchbay ${r.ratio['patchbay-live'].toFixed(2)}×)`,
    met: Number.isNaN(r.ratio.patchbay) ? null : r.ratio.patchbay >= 2,
  };
});

// Subscribing and the memory a subscription holds, on the fixed set (awaited mode, where nothing
// else has run yet in the child): a broker that is cheap to publish through but slow to join or
// heavy to hold loses where subscribers come and go by the thousand (every SSE or long-poll
// connection is one). Lower is better, so the ratio must be at most 1.
for (const key of ['subscribeMs', 'heapPerSubscription'] as const) {
  const r = rows.find((x) => x.mode === 'awaited' && x.figure.key === key)!;
  const what =
    key === 'subscribeMs'
      ? `time to subscribe ${SUBSCRIPTIONS.toLocaleString('en')} ≤ 1.0× mqemitter's (issue 18: every client reconnecting after a restart subscribes again at once)`
      : "heap per subscription ≤ 1.0× mqemitter's (issue 18: a broker holds one subscription per connected client, by the hundred thousand)";
  targets.push({
    target: `${what}; awaited-mode children, patchbay defaults`,
    measured: `${r.ratio.patchbay.toFixed(2)}× (patchbay ${fmt(r.by.patchbay.median, r.figure.unit)} vs mqemitter ${fmt(r.by.mqemitter.median, r.figure.unit)}; live-only patchbay ${r.ratio['patchbay-live'].toFixed(2)}×)`,
    met: Number.isNaN(r.ratio.patchbay) ? null : r.ratio.patchbay <= 1,
  });
}

suite.end();

const table = tables(rows);
printReport(`mean subscriptions matched per publish: ${meanMatches.toFixed(2)}\n${table.text}`, targets, failures);

if (opts.write) {
  const fields = {
    environment: suite.environment({ extra: { childFlags: NODE_FLAGS.join(' '), mqemitter: mqVersion }, children: true }),
    config: {
      runs: opts.runs,
      scale: opts.scale,
      seeds: Array.from({ length: opts.runs }, (_, i) => 2000 + i),
      order: 'for each run, for each mode: the contenders in an order rotated by the run number, each in a fresh process',
      topics: TOPIC_COUNT,
      subscriptions: SUBSCRIPTIONS,
      publishes: firstInfo['publishes'],
      warmupPublishes: firstInfo['warmupPublishes'],
      distinctPatterns: firstInfo['distinctPatterns'],
      wildcardSubscriptions: firstInfo['wildcardSubscriptions'],
      meanMatchesPerPublish: meanMatches,
      batch: BATCH,
      churnEvery: CHURN_EVERY,
      subscriptionChanges: results.churn.patchbay[0]?.info['subscriptionChanges'],
    },
    figures: rows.map((r) => ({
      mode: r.mode,
      ...figureFields(r.figure),
      ...Object.fromEntries(CONTENDERS.map((c) => [c, r.by[c]])),
      ratioPatchbayOverMqemitter: Number.isNaN(r.ratio.patchbay) ? null : r.ratio.patchbay,
      ratioPatchbayLiveOverMqemitter: Number.isNaN(r.ratio['patchbay-live']) ? null : r.ratio['patchbay-live'],
    })),
    targets,
    checkFailures: failures,
    raw: Object.fromEntries(
      MODES.map((m) => [m, Object.fromEntries(CONTENDERS.map((c) => [c, results[m][c].map((r) => ({ ...r.figures, ...r.info }))]))]),
    ),
  };
  suite.write('broker', fields, {
    title: 'Broker',
    intro: [
      `In-memory publish-to-delivery: \`PubSubBroker\` (built \`dist/\`, public API, callback subscribers) against`,
      `mqemitter ${mqVersion} (Qlobber matching), with the same ${TOPIC_COUNT.toLocaleString('en')} topics, the same ${SUBSCRIPTIONS.toLocaleString('en')} subscriptions (half of them`,
      'wildcards), the same publish sequence from the same seeded PRNG, and the same listener (count the delivery).',
      '`patchbay` runs with its defaults, which also keep every topic\'s log for replay; `patchbay-live` sets',
      '`history: { maxCount: 0 }` (live delivery only, like mqemitter) for context.',
    ],
    run: [
      suite.dateText() +
        `child processes run \`node ${NODE_FLAGS.join(' ')}\`; ${opts.runs} runs per (mode, contender), each in a fresh process, ` +
        `contenders taking turns in a rotating order; median (min–max) over runs` +
        (opts.scale !== 1 ? `; **scale ${opts.scale} (smoke run, not the real sizes)**` : '') +
        `. ${suite.loadText()} in the 0.3 s before each child started.`,
    ],
    table: table.markdown,
    targets,
    failures,
    failuresTitle: '**Check failures:**',
    body: [
      '### Workload',
      '',
      `- Topics \`s<site>.d<device>.m<metric>\` (mqemitter: \`s<site>/d<device>/m<metric>\`), 20 sites × 50 devices × 10 metrics.`,
      '- Subscriptions: 5,000 exact; 3,000 `s.d.*`, 1,500 `s.*.m`, 250 `s.>`, 150 `*.*.m`, 100 `*.d.m` (mqemitter: `+` for `*`,',
      `  \`#\` for \`>\`), placed at random and interleaved; ${String(firstInfo['distinctPatterns'] ?? '?')} distinct patterns.`,
      `- ${Number(firstInfo['publishes'] ?? 0).toLocaleString('en')} measured publishes after ${Number(firstInfo['warmupPublishes'] ?? 0).toLocaleString('en')} warm-up ones, topics uniform: each publish matches`,
      `  **${meanMatches.toFixed(1)} subscriptions on average** (0.5 exact, 3 \`s.d.*\`, 7.5 \`s.*.m\`, 12.5 \`s.>\`, 15 \`*.*.m\`, 0.2 \`*.d.m\`).`,
      '  Every run checks the delivery count against an independent reference matcher.',
      "- The 10,000 topics fit in patchbay's per-topic match cache at its default size, so after the warm-up most",
      '  publishes find their subscribers with one `Map` lookup; mqemitter (Qlobber) walks its trie on every `emit`.',
      '- Payload: a fresh `{ seq }` object per publish (patchbay: the data; mqemitter: `{ topic, payload }`).',
      '- **awaited**: each publish completes before the next starts — patchbay `await broker.publish()`, mqemitter the next',
      "  `emit` from the previous one's callback (a trampoline, since its delivery is synchronous).",
      `- **pipelined ×${BATCH}**: ${BATCH} publishes issued back to back, each completion counted (patchbay \`.then(ack)\`,`,
      '  mqemitter `emit(message, ack)`), then the batch awaited once.',
      `- **awaited, churn 1/${CHURN_EVERY}**: the awaited publishes while the subscriptions change: before every`,
      `  ${CHURN_EVERY}th publish one subscription, picked at random, is removed and one of the same kind (same wildcards,`,
      '  fresh site, device and metric) added in its place — patchbay `subscription.close()` then `await broker.subscribe()`,',
      "  mqemitter `removeListener()` (awaiting its callback: it removes on the next turn) then `on()`. Every change empties",
      "  patchbay's match cache, which is rebuilt by the publishes after it. The delivery count is checked against the",
      '  reference matcher replaying the same changes. Reported beside the fixed set; the target is on the fixed set.',
    ],
    figures: FIGURES,
  });
}
if (failures.length > 0) process.exitCode = 1;
