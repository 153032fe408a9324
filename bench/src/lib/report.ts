/**
 * The report every suite prints and writes, in one shape: a header naming the machine and its
 * load; a table of figures, each a median (min–max) over the runs, with ratios of medians; the
 * targets, met or not; the check failures; then `bench/results/<suite>.json` (with the commit and
 * how busy the machine was before each trial) and the suite's section of `docs/benchmarks.md`,
 * which states the command, the commit, how busy the machine was and which trials were skipped.
 * A contender that failed its checks is not ranked (`FAILED_CHECKS`).
 *
 * The suites keep what is their own (their figures, targets and prose); the shape is here.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gitState, root, trialStarts, writeDocsSection, type TrialStart } from './harness.js';
import { summarize, type Summary } from './stats.js';

/** Which way a figure is better; `none` for context figures, which get no ratio. */
export type Better = 'higher' | 'lower' | 'none';

/** One figure of a suite: a numeric field `key` of its trial results, and how the report shows it. */
export interface FigureDef<K extends string = string, U extends string = string> {
  readonly key: K;
  readonly label: string;
  readonly unit: U;
  readonly better: Better;
  /** What the figure measures, for the docs. */
  readonly description: string;
}

/** A target of a suite (the project's own, or an issue's) and how this run did against it. */
export interface TargetResult {
  readonly target: string;
  readonly measured: string;
  /** `null` when the run cannot tell (a server was not run, a median is missing). */
  readonly met: boolean | null;
}

/** `met`, `NOT met` or `n/a`. */
export const metText = (met: boolean | null): string => (met === null ? 'n/a' : met ? 'met' : 'NOT met');

/** `↑` (higher is better), `↓` (lower is better) or nothing. */
export const arrow = (better: Better): string => (better === 'higher' ? '↑' : better === 'lower' ? '↓' : '');

/** The units of the server suites' figures. */
export type Unit = 'ms' | 'B' | 'MiB' | '/s' | 'n';

/**
 * Formats a figure of the server suites: `12.3 ms`, `1.25 KiB` (per client), `80.1 MiB`,
 * `52.1 k/s`, or a count; `n/a` for NaN.
 */
export function formatValue(value: number, unit: Unit): string {
  if (Number.isNaN(value)) return 'n/a';
  switch (unit) {
    case 'ms':
      return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ms`;
    case 'B':
      return `${(value / 1024).toFixed(2)} KiB`;
    case 'MiB':
      return `${(value / 2 ** 20).toFixed(1)} MiB`;
    case '/s':
      return value >= 1e6 ? `${(value / 1e6).toFixed(2)} M/s` : `${(value / 1e3).toFixed(value < 1e4 ? 2 : value < 1e5 ? 1 : 0)} k/s`;
    case 'n':
      return String(Math.round(value));
  }
}

/**
 * A target's measured ratio as `1.23×`, or why there is none: NaN means a contender failed its
 * checks (and is not ranked) or has no figure.
 */
export function targetRatioText(r: number): string {
  return Number.isNaN(r) ? 'not ranked (a contender failed its checks or has no figure)' : `${r.toFixed(2)}×`;
}

/** `median (min–max)`, or only the median after a single run; `—` when there is no summary. */
export function summaryCell(s: Summary | undefined, format: (value: number) => string): string {
  if (s === undefined) return '—';
  return s.runs.length <= 1 ? format(s.median) : `${format(s.median)} (${format(s.min)}–${format(s.max)})`;
}

/**
 * A ratio of medians as `1.23×`, or `—` where it says nothing: the figure is better neither way,
 * or a median is missing (NaN).
 *
 * @param finiteOnly - Also `—` for ±Infinity (a median of 0 below the line).
 */
export function ratioCell(ratio: number, better: Better, finiteOnly = false): string {
  const missing = finiteOnly ? !Number.isFinite(ratio) : Number.isNaN(ratio);
  return better === 'none' || missing ? '—' : `${ratio.toFixed(2)}×`;
}

/** A plain-text table: each column padded to its widest cell, two spaces apart, dashes under the header. */
export function textTable(header: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cols: readonly string[]) => cols.map((col, i) => col.padEnd(widths[i]!)).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** A Markdown table. */
export function markdownTable(header: readonly string[], body: readonly (readonly string[])[]): string {
  const line = (cols: readonly string[]) => `| ${cols.join(' | ')} |`;
  return [line(header), `|${'---|'.repeat(header.length)}`, ...body.map(line)].join('\n');
}

/** The cell of a contender that lost, duplicated or reordered deliveries: it has no median and no ratio. */
export const FAILED_CHECKS = 'failed checks';

/** One row of a figures table: its label cells, which way the figure is better, its value and ratio cells. */
export interface FigureTableRow {
  readonly labels: readonly string[];
  readonly better: Better;
  readonly cells: readonly string[];
}

/**
 * A table of figures in both forms: the label columns (`S`, `figure`), in Markdown a `better`
 * column, a `median (min–max)` column per contender, then the ratio columns.
 */
export function figureTables(
  columns: { readonly labels: readonly string[]; readonly contenders: readonly string[]; readonly ratios: readonly string[] },
  rows: readonly FigureTableRow[],
): { readonly text: string; readonly markdown: string } {
  const { labels, contenders, ratios } = columns;
  return {
    text: textTable(
      [...labels, ...contenders.map((c) => `${c} median (min–max)`), ...ratios],
      rows.map((r) => [...r.labels, ...r.cells]),
    ),
    markdown: markdownTable(
      [...labels, 'better', ...contenders.map((c) => `${c}: median (min–max)`), ...ratios],
      rows.map((r) => [...r.labels, arrow(r.better), ...r.cells]),
    ),
  };
}

/** One row of a sizes × figures table: a figure at one size, summarized per server. */
export interface SizedRow<N extends string, F extends FigureDef> {
  readonly size: number;
  readonly figure: F;
  readonly by: Partial<Record<N, Summary>>;
}

/**
 * The rows of a suite that measures every figure at several sizes on several servers: for each
 * size, each figure, the summary over the runs of each server.
 *
 * @param runsOf - The trial results of a server at a size (one per run).
 */
export function sizedRows<N extends string, F extends FigureDef, R>(
  sizes: readonly number[],
  figures: readonly F[],
  servers: readonly N[],
  runsOf: (name: N, size: number) => readonly R[],
): SizedRow<N, F>[] {
  const rows: SizedRow<N, F>[] = [];
  for (const size of sizes) {
    for (const figure of figures) {
      const by: Partial<Record<N, Summary>> = {};
      for (const name of servers) by[name] = summarize(runsOf(name, size).map((r) => (r as Record<string, unknown>)[figure.key] as number));
      rows.push({ size, figure, by });
    }
  }
  return rows;
}

/** The median of a figure (by key) of a server at a size; NaN when it was not measured. */
export function rowMedian<N extends string>(rows: readonly SizedRow<N, FigureDef>[], name: N, size: number, key: string): number {
  return rows.find((r) => r.size === size && r.figure.key === key)?.by[name]?.median ?? Number.NaN;
}

/**
 * The tables of sized rows (see `figureTables`): the size and the figure, a column per server,
 * then a ratio column per pair (`a / b`).
 *
 * @param sizeHeader - The size column's header (`S`, `C`).
 * @param ratioCellOf - The ratio cell of a row for a pair.
 */
export function sizedTables<N extends string, F extends FigureDef>(
  rows: readonly SizedRow<N, F>[],
  options: {
    readonly sizeHeader: string;
    readonly servers: readonly N[];
    readonly ratios: readonly (readonly [N, N])[];
    readonly format: (value: number, unit: F['unit']) => string;
    readonly ratioCellOf: (row: SizedRow<N, F>, a: N, b: N) => string;
    /**
     * The servers that lost, duplicated or reordered deliveries in any trial: not ranked, their
     * cells say `failed checks` and no ratio is taken against them.
     * @defaultValue []
     */
    readonly failedChecks?: readonly N[];
  },
): { readonly text: string; readonly markdown: string } {
  const { sizeHeader, servers, ratios, format, ratioCellOf, failedChecks = [] } = options;
  const failed = (s: N) => failedChecks.includes(s);
  return figureTables(
    { labels: [sizeHeader, 'figure'], contenders: servers, ratios: ratios.map(([a, b]) => `${a} / ${b}`) },
    rows.map((r) => ({
      labels: [r.size.toLocaleString('en'), r.figure.label],
      better: r.figure.better,
      cells: [
        ...servers.map((s) => (failed(s) ? FAILED_CHECKS : summaryCell(r.by[s], (v) => format(v, r.figure.unit)))),
        ...ratios.map(([a, b]) => (failed(a) || failed(b) ? '—' : ratioCellOf(r, a, b))),
      ],
    })),
  );
}

/** Prints each target as `  [met] target: measured`. */
export function printTargets(targets: readonly TargetResult[]): void {
  for (const t of targets) console.log(`  [${metText(t.met)}] ${t.target}: ${t.measured}`);
}

/** Prints the table, the targets and, if any, the trials skipped on a busy machine and the check failures. */
export function printReport(table: string, targets: readonly TargetResult[], failures: readonly string[]): void {
  console.log('');
  console.log(table);
  console.log('');
  console.log('Targets:');
  printTargets(targets);
  const skipped = trialStarts.filter((t) => t.skipped);
  if (skipped.length > 0) {
    console.log('');
    console.log(`SKIPPED (machine busy): ${skipped.length} of ${trialStarts.length} trial(s): ${skipped.map((t) => t.label).join(', ')}`);
  }
  if (failures.length > 0) {
    console.log('');
    console.log('CHECK FAILURES:');
    for (const f of failures) console.log(`  ${f}`);
  }
}

/**
 * The Markdown lines of the targets (`- **met**: target: measured`) and, if any, of the check
 * failures under their title.
 */
function targetLines(targets: readonly TargetResult[], failures: readonly string[], failuresTitle: string): string[] {
  return [
    ...targets.map((t) => `- **${metText(t.met)}**: ${t.target}: ${t.measured}`),
    ...(failures.length > 0 ? ['', failuresTitle, '', ...failures.map((f) => `- ${f}`)] : []),
  ];
}

/** A figure as the results JSON describes it: `key`, `label`, `better`, `description`. */
export function figureFields(f: FigureDef): { key: string; label: string; better: Better; description: string } {
  return { key: f.key, label: f.label, better: f.better, description: f.description };
}

/** A suite's section of docs/benchmarks.md: its own parts; the frame around them is the same for every suite. */
export interface DocsSection {
  /** The heading (`## <title>`). */
  readonly title: string;
  /** What is compared with what, and how each contender is set up. */
  readonly intro: readonly string[];
  /** Said right after the command. */
  readonly commandNote?: string;
  /** The run: date, commit, machine, runs and their order, load (`SuiteRun.dateText()`, `loadText()`). */
  readonly run: readonly string[];
  /** The Markdown table of figures. */
  readonly table: string;
  readonly targets: readonly TargetResult[];
  readonly failures: readonly string[];
  /** The heading of the check failures, if any. */
  readonly failuresTitle: string;
  /** After the targets: how it is measured, the workload, a discussion. */
  readonly body: readonly string[];
  /** Listed last, each with what it measures. */
  readonly figures: readonly FigureDef[];
}

/** The Markdown lines naming the trials given up because the machine stayed busy, if any. */
export function skippedLines(starts: readonly TrialStart[] = trialStarts): string[] {
  const skipped = starts.filter((t) => t.skipped);
  if (skipped.length === 0) return [];
  return [
    '',
    `**${skipped.length} of ${starts.length} trial(s) skipped: the machine stayed busy** (other processes used more than a third of a core after every retry): ` +
      `${skipped.map((t) => `${t.label} (${percent(t.busy)})`).join(', ')}. Their figures are missing from the table, not measured on a busy machine.`,
  ];
}

function docsText(docs: DocsSection, command: string): string {
  return [
    `## ${docs.title}`,
    '',
    ...docs.intro,
    '',
    `Command: \`${command}\`${docs.commandNote ?? ''}`,
    '',
    ...docs.run,
    ...skippedLines(),
    '',
    docs.table,
    '',
    '↑ higher is better, ↓ lower is better; ratios are of the medians.',
    '',
    '### Targets',
    '',
    ...targetLines(docs.targets, docs.failures, docs.failuresTitle),
    '',
    ...docs.body,
    '',
    '### What each figure measures',
    '',
    ...docs.figures.map((f) => `- **${f.label}**: ${f.description}`),
  ].join('\n');
}

/** What `SuiteRun.environment()` adds to the common fields. */
export interface EnvironmentOptions {
  /** Fields after the machine's (nginx's version, the child processes' flags). */
  readonly extra?: Readonly<Record<string, unknown>>;
  /** Fields at the end (a note). */
  readonly tail?: Readonly<Record<string, unknown>>;
  /**
   * For suites that run each trial in a child process: V8's version too, and the busy shares as
   * `othersBusyBeforeChildren` (median and max only) instead of `othersBusyBeforeTrials`.
   * @default false
   */
  readonly children?: boolean;
}

const loadText = (load: readonly number[]) => load.map((x) => x.toFixed(2)).join(' ');
const percent = (share: number) => `${(share * 100).toFixed(0)}%`;

/**
 * What a report states about its run: the command, the commit, when it started, the machine, its
 * load average at start and end, and how busy other processes kept it before each trial. Create
 * it when the suite starts measuring; call `end()` when it is done.
 */
export class SuiteRun {
  /** The command as the user typed it (`npm run bench -- …` from scripts/bench.mjs), or the direct one. */
  readonly command: string;
  /** The commit measured, and whether the tree was dirty. */
  readonly git = gitState();
  /** Its short hash. */
  readonly head = this.git.short;
  readonly startedAt = new Date();
  readonly loadStart = os.loadavg();
  readonly cpu = os.cpus()[0]?.model ?? 'unknown';
  readonly cores = os.cpus().length;
  /** Share (0..1) of the machine's CPU that other processes used before each trial: push one a trial. */
  readonly busyBefore: number[] = [];
  #loadEnd: number[] | undefined;

  /** @param entryUrl - The suite's `import.meta.url`. */
  constructor(entryUrl: string) {
    this.command = process.env['BENCH_COMMAND'] ?? `node --import tsx ${relative(root, fileURLToPath(entryUrl))} ${process.argv.slice(2).join(' ')}`.trim();
  }

  /** Prints `title`, then `node <version>, <cpu>, N cores, load a b c<extra>`. */
  printHeader(title: string, extra = ''): void {
    console.log(title);
    console.log(`node ${process.version}, ${this.cpu}, ${this.cores} cores, load ${loadText(this.loadStart)}${extra}`);
  }

  /** Takes the load average at the end of the run (once) and returns it. */
  end(): number[] {
    this.#loadEnd ??= os.loadavg();
    return this.#loadEnd;
  }

  get busyMedian(): number {
    return summarize(this.busyBefore).median;
  }

  get busyMax(): number {
    return Math.max(...this.busyBefore);
  }

  /**
   * The environment of a results JSON: Node, the machine, `extra` (say, nginx's version), the
   * commit, the load averages, how busy the machine was before each trial, then `tail`.
   */
  environment(options: EnvironmentOptions = {}): Record<string, unknown> {
    const { extra = {}, tail = {}, children = false } = options;
    return {
      node: process.version,
      ...(children ? { v8: process.versions.v8 } : {}),
      cpu: this.cpu,
      cores: this.cores,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
      ...extra,
      gitHead: this.head,
      loadAvgStart: this.loadStart,
      loadAvgEnd: this.end(),
      ...(children
        ? { othersBusyBeforeChildren: { median: this.busyMedian, max: this.busyMax } }
        : { othersBusyBeforeTrials: { median: this.busyMedian, max: this.busyMax, each: this.busyBefore } }),
      ...(children ? { othersBusyBeforeEachChild: this.busyBefore } : {}),
      ...tail,
    };
  }

  /**
   * Writes `bench/results/<name>.json` (`{ suite, date, command, ...fields }`; NaN and ±Infinity
   * as `null`) and the suite's section of docs/benchmarks.md, and says so.
   */
  write(name: string, fields: Readonly<Record<string, unknown>>, docs: DocsSection): void {
    const jsonFile = join(root, 'bench', 'results', `${name}.json`);
    mkdirSync(dirname(jsonFile), { recursive: true });
    const record = { suite: name, date: this.startedAt.toISOString(), command: this.command, commit: this.git, ...fields, trialStarts };
    writeFileSync(jsonFile, `${JSON.stringify(record, null, 2)}\n`);
    const docFile = writeDocsSection(name, docsText(docs, this.command));
    console.log('');
    console.log(`wrote ${relative(root, jsonFile)} and ${relative(root, docFile)}`);
  }

  /** `Date: <ISO>; commit <head> [(dirty tree)]; Node <version>; <cpu>, N cores; ` */
  dateText(): string {
    return `Date: ${this.startedAt.toISOString()}; commit ${this.head}${this.git.dirty === true ? ' (dirty tree)' : ''}; Node ${process.version}; ${this.cpu}, ${this.cores} cores; `;
  }

  /** `Load average at start a b c, at end d e f; other processes used a median N% (max M%) of the machine's CPU` */
  loadText(): string {
    return (
      `Load average at start ${loadText(this.loadStart)}, at end ${loadText(this.end())}; ` +
      `other processes used a median ${percent(this.busyMedian)} (max ${percent(this.busyMax)}) of the machine's CPU`
    );
  }
}
