/**
 * What every suite's runner shares: sleeping, the turns of the contenders, sampling the machine's
 * CPU, waiting for a quiet machine (and giving a trial up when it stays busy), running one
 * measurement child, the commit measured, and recording the suite's section of docs/benchmarks.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { saveSection } from './docs.js';

/** The repository root. */
export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const sleep = (ms: number): Promise<void> => new Promise<void>((r) => setTimeout(r, ms));

/**
 * `list` rotated left by `run`: the order in which a suite's contenders take turns in that run,
 * so that none always goes first (on a cold machine) or last.
 */
export function rotate<T>(list: readonly T[], run: number): T[] {
  return list.map((_, i) => list[(i + run) % list.length]!);
}

/** Machine-wide CPU counters, ms summed over cores. */
export function cpuSnapshot(): { idle: number; total: number } {
  return os.cpus().reduce(
    (acc, c) => {
      const t = c.times;
      acc.idle += t.idle;
      acc.total += t.user + t.nice + t.sys + t.idle + t.irq;
      return acc;
    },
    { idle: 0, total: 0 },
  );
}

/** Share of total CPU (all cores) busy over `ms`. */
export async function cpuBusy(ms: number): Promise<number> {
  const a = cpuSnapshot();
  await sleep(ms);
  const b = cpuSnapshot();
  const total = b.total - a.total;
  return total <= 0 ? 0 : 1 - (b.idle - a.idle) / total;
}

let quietBudgetMs = 3 * 60_000;
/**
 * Waits until other processes use under a third of a core: at most `limitMs` per call and three
 * minutes over the whole suite. Returns the last busy share, and records it in `trialStarts` (as
 * a trial that was not retried nor skipped: suites that call this run the trial anyway; use
 * `quietTrialStart` to give up a trial on a busy machine).
 */
export async function waitQuiet(limitMs: number): Promise<number> {
  const busy = EXPLORATORY ? await cpuBusy(300) : await untilQuiet(limitMs);
  trialStarts.push({ label: `trial ${trialStarts.length + 1}`, busy, attempts: 1, skipped: false, retried: false });
  return busy;
}

async function untilQuiet(limitMs: number): Promise<number> {
  const cores = os.cpus().length;
  const start = Date.now();
  const deadline = start + Math.min(limitMs, quietBudgetMs);
  let busy = await cpuBusy(300);
  while (busy * cores > BUSY_CORES && Date.now() < deadline) {
    await sleep(700);
    busy = await cpuBusy(300);
  }
  quietBudgetMs -= Date.now() - start;
  return busy;
}

/** The short hash of HEAD, or `unknown` (the commit `npm run bench` started at, when it passed one). */
export function gitHead(): string {
  return gitState().short;
}

/** The commit a run measures, and whether the tree had changes beyond the results and the doc. */
export interface GitState {
  /** The full hash of HEAD, or `unknown`. */
  readonly commit: string;
  /** Its first 7 characters. */
  readonly short: string;
  /** Tracked files differed from HEAD (bench/results/ and docs/benchmarks.md aside); `null` when git could not tell. */
  readonly dirty: boolean | null;
}

/** The paths that do not make a tree dirty for a benchmark run: what the runs themselves write. */
export const RESULT_PATHS = ['bench/results', 'docs/benchmarks.md'] as const;

/**
 * The commit and dirtiness of the checkout. `scripts/bench.mjs` takes them once before the first
 * suite and passes them down (`BENCH_COMMIT`, `BENCH_DIRTY`), so every suite of one run records the
 * same commit even though the results files change during the run.
 */
export function gitState(): GitState {
  const env = process.env['BENCH_COMMIT'];
  if (env !== undefined && env !== '') {
    const dirty = process.env['BENCH_DIRTY'];
    return { commit: env, short: env.slice(0, 7), dirty: dirty === 'true' ? true : dirty === 'false' ? false : null };
  }
  let commit = 'unknown';
  let dirty: boolean | null = null;
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ...RESULT_PATHS.map((p) => `:!${p}`)], {
      cwd: root,
      encoding: 'utf8',
    });
    dirty = status.trim() !== '';
  } catch {
    // not a git checkout
  }
  return { commit, short: commit === 'unknown' ? commit : commit.slice(0, 7), dirty };
}

/** How the machine was before one trial, as every results file records it (`trialStarts`). */
export interface TrialStart {
  /** Which trial (`patchbay@1000 run 2`). */
  readonly label: string;
  /** Share (0..1) of the machine's CPU other processes used in the 0.3 s before it started, or before it was given up. */
  readonly busy: number;
  /** How many times the machine was sampled (1 when it was quiet at once). */
  readonly attempts: number;
  /** The machine stayed busy: the trial was not run, and is not counted. */
  readonly skipped: boolean;
  /** `false` when the suite only waited (`waitQuiet`) and would run the trial however busy the machine was. */
  readonly retried: boolean;
}

/** Every trial start of this process, in order (`quietTrialStart`). */
export const trialStarts: TrialStart[] = [];

/** More than this many cores' worth of other processes' CPU makes the machine busy. */
export const BUSY_CORES = 0.33;

/**
 * The suite runs with `--no-write` (every suite takes it): nothing it measures is recorded, so
 * `quietTrialStart` neither waits for a quiet machine nor skips a trial.
 */
export const EXPLORATORY = process.argv.includes('--no-write');

/** Options of `quietTrialStart`. */
export interface QuietTrialOptions {
  /**
   * How many times the machine is sampled again after the first wait for quiet, each after
   * `retryWaitMs`, before the trial is given up as skipped-busy.
   * @defaultValue 3
   */
  readonly retries?: number;
  /** @defaultValue 5000 */
  readonly retryWaitMs?: number;
  /** The first wait for quiet (`waitQuiet`). @defaultValue 20000 */
  readonly firstWaitMs?: number;
  /**
   * `false` (a suite's `--no-wait`): sample the machine once and run the trial whatever it
   * shows, as a `--no-write` run does. @defaultValue true
   */
  readonly wait?: boolean;
}

/**
 * Decides whether a trial may start: waits for a quiet machine (`waitQuiet`), then, while other
 * processes still use more than `BUSY_CORES`, waits `retryWaitMs` and samples again, at most
 * `retries` times. Bounded by construction (about 20 s + retries × 5.3 s). Records the outcome in
 * `trialStarts`; a `skipped` trial must not be run or counted.
 */
export async function quietTrialStart(label: string, options: QuietTrialOptions = {}): Promise<TrialStart> {
  const { retries = 3, retryWaitMs = 5000, firstWaitMs = 20_000, wait = true } = options;
  const cores = os.cpus().length;
  if (EXPLORATORY || !wait) {
    // A --no-write run (profiling, trying a change) writes no results, and a --no-wait one asked
    // not to wait: either measures however busy the machine is, and says so in the busy share it
    // records.
    const busy = await cpuBusy(300);
    const start: TrialStart = { label, busy, attempts: 1, skipped: false, retried: false };
    trialStarts.push(start);
    return start;
  }
  let busy = await untilQuiet(firstWaitMs);
  let attempts = 1;
  while (busy * cores > BUSY_CORES && attempts <= retries) {
    await sleep(retryWaitMs);
    busy = await cpuBusy(300);
    attempts++;
  }
  const start: TrialStart = { label, busy, attempts, skipped: busy * cores > BUSY_CORES, retried: true };
  trialStarts.push(start);
  return start;
}

/**
 * Runs one measurement child (`node <flags> --import tsx <file> <args>`) and resolves with the
 * JSON of its `RESULT ` line; rejects if it fails or runs past `limitMs` (it is killed then).
 */
export function runChild<T>(file: string, args: readonly string[], flags: readonly string[], label: string, limitMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, '--import', 'tsx', file, ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${label} did not finish within ${limitMs / 1000} s`));
    }, limitMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || line === undefined) {
        reject(new Error(`${label} exited with ${signal ?? code}; stdout: ${out.slice(0, 500)}`));
        return;
      }
      resolve(JSON.parse(line.slice('RESULT '.length)) as T);
    });
  });
}

/**
 * Records the suite's section of docs/benchmarks.md (as `bench/results/<suite>.md`, beside its
 * results file, which it stamps with the commit and the trial starts when missing) and regenerates
 * the doc from the results files (`docs.ts`).
 *
 * @param _intro - Ignored: the doc's opening is generated. Kept so that existing callers compile.
 * @returns The doc's path.
 */
export function writeDocsSection(suite: string, section: string, _intro?: string): string {
  return saveSection(suite, section);
}
