/**
 * What every suite's runner shares: sleeping, the turns of the contenders, sampling the machine's
 * CPU, waiting for a quiet machine, running one measurement child, the git head, and rewriting
 * the suite's own section of docs/benchmarks.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
 * minutes over the whole suite. Returns the last busy share.
 */
export async function waitQuiet(limitMs: number): Promise<number> {
  const cores = os.cpus().length;
  const start = Date.now();
  const deadline = start + Math.min(limitMs, quietBudgetMs);
  let busy = await cpuBusy(300);
  while (busy * cores > 0.33 && Date.now() < deadline) {
    await sleep(700);
    busy = await cpuBusy(300);
  }
  quietBudgetMs -= Date.now() - start;
  return busy;
}

/** The short hash of HEAD, or `unknown`. */
export function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
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
 * Replaces (or appends) the suite's `<!-- bench:NAME:start/end -->` section of docs/benchmarks.md;
 * `intro` starts the file when it does not exist yet.
 */
export function writeDocsSection(suite: string, section: string, intro = '---\ntitle: Benchmarks\n---\n\n# Benchmarks\n'): string {
  const start = `<!-- bench:${suite}:start -->`;
  const end = `<!-- bench:${suite}:end -->`;
  const file = join(root, 'docs', 'benchmarks.md');
  mkdirSync(dirname(file), { recursive: true });
  let doc = existsSync(file) ? readFileSync(file, 'utf8') : intro;
  const block = `${start}\n${section.trim()}\n${end}`;
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a !== -1 && b > a) doc = doc.slice(0, a) + block + doc.slice(b + end.length);
  else doc = `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, doc);
  return file;
}
