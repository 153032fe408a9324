/**
 * docs/benchmarks.md, generated from the results files. Each suite leaves two files in
 * `bench/results/`: `<suite>.json` (its figures, targets, the commit it measured, how busy the
 * machine was before each trial) and `<suite>.md` (its section of the doc). The doc is their
 * concatenation under a generated header: at which commit each suite ran (a suite whose commit
 * differs from the others is flagged), how busy the machine was, how many trials were skipped
 * because it stayed busy, and every target with the reason it is set. Sections with no
 * `<suite>.md` (written by hand, or by a suite before this generator existed) are kept as the doc
 * has them.
 *
 * `npm run bench -- --report` runs `docs-main.ts`, which only regenerates the doc.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gitState, root, trialStarts, type TrialStart } from './harness.js';

// Functions, not constants: harness.ts imports this module (writeDocsSection), so nothing of
// harness.ts may be read while this module loads.
const resultsDirOf = (): string => join(root, 'bench', 'results');
const docFileOf = (): string => join(root, 'docs', 'benchmarks.md');

const FRONT = '---\ntitle: Benchmarks\n---\n\n# Benchmarks\n';

/**
 * Why each suite's targets are what they are, stated in the doc itself (the doc cites nothing
 * outside the repository).
 */
const REASONS: Readonly<Record<string, string>> = {
  purgatory:
    'A purgatory is worth a dependency only if it clearly beats the `setTimeout` + `Map<key, Set>` any team writes in an afternoon: ' +
    'watching ≥ 3× the naive one (the operation built inside the timed loop, as an application does), heap per waiting operation ≤ 0.5× ' +
    '(a held request must cost little so that many can wait), ≥ 5 M woken operations/s on one key (waking everyone on a hot key is the common case), ' +
    'and the Kafka purgatory-test model (W2) held at 1 M operations/s, the rate that model is run at.',
  broker:
    'The in-memory broker replaces mqemitter, the pub/sub most Node servers embed: ≥ 2× its deliveries/s with history on, because history ' +
    '(cursors, rewinds) and the checks of published data are what patchbay adds and must not make it the slower choice; subscribing ' +
    '10,000 and heap per subscription ≤ 1.0× mqemitter, since a broker holds one subscription per client.',
  longpoll:
    "The project's line is \"faster than the C and Node peers on the same machine\": waking every held poll in ≤ 1.0× the time of nginx + Nchan " +
    '(the C peer, on the same cores) at every size, and RSS per held poll ≤ 1.0× a bare hand-written `node:http` server (the library must cost ' +
    'no memory over writing it by hand).',
  sse:
    'Same line as long polling: burst delivered events/s ≥ 1.0× Nchan at 1k subscribers and ≥ 1.2× at 10k (at fan-out sizes the per-turn batching ' +
    'should win outright), paced p99 at 10k ≤ 0.6× Nchan (latency under fan-out is what a subscriber feels), RSS per subscriber ≤ 1.0× bare; ' +
    'and never a lost, duplicated or reordered event.',
  poll: 'Short polling is a status read: ≥ 1.0× the reads/s of a bare `node:http` server, so that the library adds no cost to the hottest route.',
  sidecar:
    "A sidecar channel must beat what Node already ships: ≥ 2× the messages/s of `child_process` IPC, and ≥ 1.0× a hand-written Unix-socket NDJSON " +
    'baseline (the fair transport-for-transport comparison).',
  redis:
    'Going through Redis buys several processes; it must not cost much over the hand-relayed ioredis pub/sub it replaces: burst ≥ 0.67× raw ioredis, ' +
    'publish-to-delivery p99 ≤ 1.5×, with every client checked for loss and order, and without weakening what gap reports rest on.',
  ws: 'No ratio target: figures against a bare `ws` broadcast loop for context; every socket is checked for loss and order.',
  jobs: 'No ratio target: figures for sizing (memory vs Redis job store, one process and two).',
};

/** A citation of a document outside the repository, which the doc must not make. */
const OUTSIDE = /\bDESIGN\b/;

/** A target's text without a clause that cites a document outside the repository (`— the DESIGN target`, `(DESIGN.md targets)`). */
const withoutOutside = (text: string): string => text.replace(/\s*(?:—\s*the DESIGN target|\(DESIGN[^)]*\))/g, '');

/** The parts of a results file the header reads; every field optional (older files lack some). */
interface ResultsFile {
  readonly suite?: string;
  readonly date?: string;
  readonly gitHead?: string;
  readonly commit?: { readonly commit?: string; readonly short?: string; readonly dirty?: boolean | null };
  readonly environment?: {
    readonly gitHead?: string;
    readonly othersBusyBeforeTrials?: { readonly median?: number; readonly max?: number };
    readonly othersBusyBeforeChildren?: { readonly median?: number; readonly max?: number };
  };
  readonly trialStarts?: readonly TrialStart[];
  readonly targets?: readonly { readonly target?: string; readonly met?: boolean | null; readonly measured?: string; readonly ratio?: number }[];
  readonly checkFailures?: readonly unknown[];
  readonly failures?: readonly unknown[];
}

/** The JSON of `bench/results/<suite>.json`, or undefined. */
function readResults(suite: string): ResultsFile | undefined {
  const file = join(resultsDirOf(), `${suite}.json`);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as ResultsFile;
}

/** The suites that have a results file, by name. */
function resultSuites(): string[] {
  const resultsDir = resultsDirOf();
  if (!existsSync(resultsDir)) return [];
  return readdirSync(resultsDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

const commitOf = (r: ResultsFile): string => (r.commit?.commit ?? r.environment?.gitHead ?? r.gitHead ?? 'unknown').slice(0, 7);
const pct = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '—' : `${(x * 100).toFixed(0)}%`);

/** The commit most suites ran at (ties: the newest results file's). */
function mainCommit(results: ReadonlyMap<string, ResultsFile>): string | undefined {
  const counts = new Map<string, number>();
  const newest = [...results.values()].sort((a, b) => (b.date ?? '').localeCompare(a.date ?? ''))[0];
  for (const r of results.values()) counts.set(commitOf(r), (counts.get(commitOf(r)) ?? 0) + 1);
  let best: string | undefined;
  for (const [c, n] of counts) if (best === undefined || n > counts.get(best)! || (n === counts.get(best) && newest !== undefined && c === commitOf(newest))) best = c;
  return best;
}

/** GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slugOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The link to a suite's section: its first heading's id, or the bare name when it has none. */
function suiteLink(suite: string, sections: ReadonlyMap<string, string>): string {
  const heading = /^##\s+(.+)$/m.exec(sections.get(suite) ?? '')?.[1];
  return heading === undefined ? suite : `[${suite}](#${slugOf(heading)})`;
}

/** The generated header: how to regenerate, the runs at a glance, the targets and their reasons. */
export function headerText(results: ReadonlyMap<string, ResultsFile>, sections: ReadonlyMap<string, string> = new Map()): string {
  const main = mainCommit(results);
  const commits = new Set([...results.values()].map(commitOf));
  const rows = [...results].map(([suite, r]) => {
    const commit = commitOf(r);
    const flags = [
      ...(commit !== main ? [`**differs from ${main}**`] : []),
      ...(r.commit?.dirty === true ? ['**dirty tree**'] : []),
      ...(r.commit === undefined ? ['dirtiness not recorded'] : []),
    ];
    const busy = r.environment?.othersBusyBeforeTrials ?? r.environment?.othersBusyBeforeChildren;
    const starts = r.trialStarts;
    const skipped =
      starts === undefined || starts.length === 0
        ? '—'
        : starts.some((t) => t.retried === true)
          ? String(starts.filter((t) => t.skipped).length)
          : 'none (this suite does not retry yet)';
    const targets = (r.targets ?? []).filter((t) => t.met !== null && t.met !== undefined);
    const met = targets.length === 0 ? '—' : `${targets.filter((t) => t.met === true).length} of ${targets.length}`;
    const failures = (r.checkFailures ?? r.failures ?? []).length;
    return [
      suiteLink(suite, sections),
      `\`${commit}\`${flags.length > 0 ? ` (${flags.join(', ')})` : ''}`,
      (r.date ?? '—').slice(0, 10),
      busy === undefined ? '—' : `${pct(busy.median)} (${pct(busy.max)})`,
      skipped,
      met,
      failures === 0 ? '0' : `**${failures}**`,
    ];
  });
  const line = (cols: readonly string[]) => `| ${cols.join(' | ')} |`;
  const table = [
    line(['suite', 'commit', 'date', 'others busy before trials: median (max)', 'trials skipped (machine busy)', 'targets met', 'check failures']),
    `|${'---|'.repeat(7)}`,
    ...rows.map(line),
  ];
  const targetLines: string[] = [];
  for (const [suite, r] of results) {
    targetLines.push(`- **${suite}**: ${REASONS[suite] ?? 'No reason recorded for this suite\'s targets.'}`);
    for (const t of r.targets ?? []) {
      const measured = t.measured ?? (t.ratio === undefined ? '' : `${t.ratio.toFixed(2)}×`);
      targetLines.push(`  - ${t.met === true ? 'met' : t.met === false ? '**NOT met**' : 'n/a'}: ${withoutOutside(t.target ?? '?')}${measured === '' ? '' : `: ${measured}`}`);
    }
  }
  return [
    'Measured, not promised. This file is generated from `bench/results/`: `npm run bench -- all` runs every suite at one',
    'commit (it refuses a tree with uncommitted changes) and rewrites it; `npm run bench -- --report` rewrites it from the',
    'results files alone; `npm run bench -- <suite>` reruns one suite and rewrites it. Each section states the command',
    'that produced it, the machine, and ratios against a baseline measured in the same run; raw figures are in',
    '`bench/results/<suite>.json`. Numbers from a 2-core VM are noisy: read the min–max ranges, not only the medians, and',
    'rerun on your own hardware before relying on them.',
    '',
    'A trial starts only on a quiet machine: when other processes use more than a third of a core, it waits and samples',
    'again a few times, then gives the trial up as skipped (not counted) rather than measuring the neighbours. A',
    'contender that loses, duplicates or reorders deliveries fails its checks and is not ranked: its cells say',
    '"failed checks" instead of a median, and no ratio is taken against it.',
    '',
    '## The runs at a glance',
    '',
    commits.size <= 1
      ? `Every suite ran at commit \`${main ?? 'unknown'}\`.`
      : `**Not one run**: the suites ran at ${commits.size} different commits; those marked **differs** were not rerun at \`${main}\`, the commit most suites ran at.`,
    '',
    ...table,
    '',
    '## Targets, and why',
    '',
    'Each target is a ratio against a contender measured in the same run on the same machine, never an absolute figure from elsewhere.',
    '',
    ...targetLines,
  ].join('\n');
}

/** The `<!-- bench:NAME:start/end -->` sections of a doc, in order. */
function sectionsOf(doc: string): Map<string, string> {
  const sections = new Map<string, string>();
  const re = /<!-- bench:([\w-]+):start -->\n?([\s\S]*?)\n?<!-- bench:\1:end -->/g;
  for (const m of doc.matchAll(re)) if (m[1] !== 'header') sections.set(m[1]!, m[2]!.trim());
  return sections;
}

/**
 * Rewrites docs/benchmarks.md: the generated header, then every section (a suite's
 * `bench/results/<suite>.md` where there is one, otherwise the doc's own), in the doc's order with
 * new suites last. Warns about text that cites something outside the repository (DESIGN).
 *
 * @returns The doc's path.
 */
export function regenerateDoc(): string {
  const resultsDir = resultsDirOf();
  const docFile = docFileOf();
  const old = existsSync(docFile) ? readFileSync(docFile, 'utf8') : FRONT;
  const sections = sectionsOf(old);
  const results = new Map<string, ResultsFile>();
  for (const suite of resultSuites()) {
    const r = readResults(suite);
    if (r !== undefined) results.set(suite, r);
    const md = join(resultsDir, `${suite}.md`);
    if (existsSync(md)) sections.set(suite, readFileSync(md, 'utf8').trim());
  }
  const doc = [
    FRONT.trimEnd(),
    `<!-- bench:header:start -->\n${headerText(results, sections)}\n<!-- bench:header:end -->`,
    ...[...sections].map(([name, text]) => `<!-- bench:${name}:start -->\n${text}\n<!-- bench:${name}:end -->`),
  ].join('\n\n');
  writeFileSync(docFile, `${doc}\n`);
  for (const [name, text] of sections) {
    if (OUTSIDE.test(text)) console.warn(`bench: docs/benchmarks.md section "${name}" cites DESIGN (not in the repository): the doc must stand on its own`);
  }
  for (const [name, r] of results) {
    if ((r.targets ?? []).some((t) => OUTSIDE.test(t.target ?? ''))) console.warn(`bench: bench/results/${name}.json has a target citing DESIGN (not in the repository)`);
  }
  return docFile;
}

/**
 * Stamps `bench/results/<suite>.json`, when this process wrote it, with what every results file
 * records and the suites that write their own JSON may leave out: `commit` (hash and dirtiness)
 * and `trialStarts` (how busy the machine was before each trial, and which were skipped).
 */
function stampResults(suite: string): void {
  const file = join(resultsDirOf(), `${suite}.json`);
  if (!existsSync(file) || statSync(file).mtimeMs < Date.now() - process.uptime() * 1000) return;
  const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  let changed = false;
  if (json['commit'] === undefined) {
    json['commit'] = gitState();
    changed = true;
  }
  if (json['trialStarts'] === undefined && trialStarts.length > 0) {
    json['trialStarts'] = trialStarts;
    changed = true;
  }
  if (changed) writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
}

/**
 * Saves a suite's section as `bench/results/<suite>.md`, stamps its results file (see
 * `stampResults`) and regenerates docs/benchmarks.md.
 *
 * @returns The doc's path.
 */
export function saveSection(suite: string, section: string): string {
  mkdirSync(resultsDirOf(), { recursive: true });
  writeFileSync(join(resultsDirOf(), `${suite}.md`), `${section.trim()}\n`);
  stampResults(suite);
  return regenerateDoc();
}
