#!/usr/bin/env node
// Runs benchmark suites from the bench/ package: `npm run bench -- [suite...] [suite options]`.
//
//   npm run bench -- all               every suite at one commit (refuses uncommitted changes;
//                                      --allow-dirty runs anyway and the doc flags it)
//   npm run bench                      every suite (warns on uncommitted changes)
//   npm run bench -- purgatory         one suite
//   npm run bench -- purgatory --runs 5 --scale 0.1 --no-write
//   npm run bench -- --report          only regenerate docs/benchmarks.md from bench/results/
//
// Builds the package first (suites import the built dist/, as users do), then runs each suite in
// its own process group, bounded in time: a suite that overruns is killed and the run fails.
// The commit (and whether the tree is dirty) is taken once, before the build, and passed to every
// suite (BENCH_COMMIT, BENCH_DIRTY), which records it in its results file; each suite then
// regenerates docs/benchmarks.md from every results file (bench/src/lib/docs.ts).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** name -> entry (relative to the repository root), what it measures, wall-clock limit. */
const suites = {
  purgatory: {
    entry: 'bench/src/purgatory/main.ts',
    description: 'Purgatory vs a naive setTimeout + Map<key, Set> purgatory (W1, W1-unique, W1-rt, W1-expire, W2, W3, W4)',
    limitMs: 45 * 60_000,
  },
  broker: {
    entry: 'bench/src/broker/main.ts',
    description: 'PubSubBroker vs mqemitter: publish-to-delivery, 10,000 subscriptions, half wildcards',
    limitMs: 15 * 60_000,
  },
  longpoll: {
    entry: 'bench/src/longpoll/main.ts',
    description: 'C held long polls (1k, 10k, 19k; 38k for the 2-process contenders): demo server vs bare node:http vs nginx + Nchan vs the demo as 2 workers on Redis (RSS, wake all)',
    limitMs: 45 * 60_000,
  },
  poll: {
    entry: 'bench/src/poll/main.ts',
    description: 'Short polling: status reads/s on 10k live jobs and RSS per held Prefer: wait read (10k), demo server vs bare node:http',
    limitMs: 20 * 60_000,
  },
  sse: {
    entry: 'bench/src/sse/main.ts',
    description: 'S SSE subscribers (1k, 10k; 38k for the 2-process contenders): demo server vs bare node:http vs better-sse vs hono streamSSE vs nginx + Nchan vs the demo as 2 workers on Redis (burst events/s, paced latency, RSS, order)',
    limitMs: 90 * 60_000, // 3 runs take 20 min a run on a busy 2-core machine
  },
  ws: {
    entry: 'bench/src/ws/main.ts',
    description: 'S WebSocket subscribers (10k) on one topic: demo server GET /ws vs a bare ws broadcast loop (burst messages/s, paced publish-to-receive p50/p99, RSS per socket, order)',
    limitMs: 30 * 60_000,
  },
  redis: {
    entry: 'bench/src/redis/main.ts',
    description: 'Two processes on one redis-server: RedisBackend + demo server vs plain ioredis pub/sub relayed by hand (p50/p99 publish-to-delivery for SSE and long polls, burst messages/s)',
    limitMs: 30 * 60_000,
  },
  jobs: {
    entry: 'bench/src/jobs/main.ts',
    description: 'PollHandle jobs in memory vs on Redis (RedisJobStore), one process and two: start-to-outcome p50/p99 through a held read, result reads/s',
    limitMs: 20 * 60_000,
  },
  sidecar: {
    entry: 'bench/src/sidecar/main.ts',
    description: "SidecarChannel over a Unix socket vs Node's child_process IPC (process.send) vs hand-written NDJSON over a Unix socket: fire-and-forget messages/s, request round-trip p50/p99 (1 and 32 in flight)",
    limitMs: 20 * 60_000,
  },
};

const args = process.argv.slice(2);
/** Options of this script, not passed to the suites. */
const own = ['all', '--report', '--allow-dirty'];
const names = args.filter((a, i) => !own.includes(a) && !a.startsWith('-') && (i === 0 || !['--runs', '--scale', '--workloads', '--sizes', '--servers', '--node-flags', '--jobs', '--waiters', '--connections', '--measure-ms'].includes(args[i - 1])));
const passThrough = args.filter((a) => !names.includes(a) && !own.includes(a));
const all = args.includes('all');
if (all && names.length > 0) {
  console.error(`bench: "all" runs every suite; drop ${names.join(', ')} or drop "all"`);
  process.exit(2);
}
for (const name of names) {
  if (!Object.hasOwn(suites, name)) {
    console.error(`bench: unknown suite "${name}". Suites:`);
    for (const [n, s] of Object.entries(suites)) console.error(`  ${n.padEnd(12)} ${s.description}`);
    process.exit(2);
  }
}
const selected = names.length > 0 ? names : Object.keys(suites);

/** Runs a TypeScript entry of the bench/ package and returns its exit code. */
const runEntry = (entry, env = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', entry], { cwd: root, stdio: 'inherit', env: { ...process.env, ...env }, timeout: 60_000 }).status ?? 1;

if (args.includes('--report')) {
  if (names.length > 0 || all) {
    console.error('bench: --report only regenerates docs/benchmarks.md; it runs no suite');
    process.exit(2);
  }
  process.exit(runEntry('bench/src/lib/docs-main.ts'));
}

// The commit every suite of this run measures, taken once: the results files and the doc, which
// the suites rewrite, do not count as changes.
const git = (gitArgs) => spawnSync('git', gitArgs, { cwd: root, encoding: 'utf8' });
const head = git(['rev-parse', 'HEAD']);
const commit = head.status === 0 ? head.stdout.trim() : 'unknown';
const status = git(['status', '--porcelain', '--untracked-files=no', '--', '.', ':!bench/results', ':!docs/benchmarks.md']);
const dirty = status.status === 0 ? status.stdout.trim() !== '' : null;
if (dirty === true) {
  const changed = status.stdout.trimEnd().split('\n').slice(0, 10).join('\n  ');
  if (all && !args.includes('--allow-dirty')) {
    console.error(`bench: the tree has uncommitted changes; "all" measures one commit, so commit or stash them first (or pass --allow-dirty, and the doc will say so):\n  ${changed}`);
    process.exit(2);
  }
  console.warn(`bench: WARNING: uncommitted changes; the results will record commit ${commit.slice(0, 7)} as dirty:\n  ${changed}`);
}

console.log('bench: building the package (npm run build)');
const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit', timeout: 5 * 60_000 });
if (build.status !== 0) {
  console.error(`bench: the build failed (${build.error?.message ?? `exit ${build.status}`}); not running benchmarks on a stale dist/`);
  process.exit(1);
}

// The bench/ package has its own dependencies (competitors such as mqemitter), locked in
// bench/package-lock.json: install them when any is missing (a new one may have been added).
const benchDeps = Object.keys(JSON.parse(readFileSync(join(root, 'bench', 'package.json'), 'utf8')).dependencies ?? {});
const missing = benchDeps.filter((d) => !existsSync(join(root, 'bench', 'node_modules', d, 'package.json')));
if (!existsSync(join(root, 'bench', 'node_modules', '.package-lock.json')) || missing.length > 0) {
  console.log('bench: installing the bench/ package dependencies (npm ci --prefix bench)');
  const install = spawnSync('npm', ['ci', '--prefix', 'bench', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit', timeout: 5 * 60_000 });
  if (install.status !== 0) {
    console.error(`bench: npm ci --prefix bench failed (${install.error?.message ?? `exit ${install.status}`})`);
    process.exit(1);
  }
}

const command =
  process.env.npm_lifecycle_event === 'bench'
    ? `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`
    : `node scripts/bench.mjs ${args.join(' ')}`.trim();

function runSuite(name) {
  const suite = suites[name];
  return new Promise((resolve) => {
    console.log(`\nbench: ${name}: ${suite.description}`);
    const child = spawn(process.execPath, ['--import', 'tsx', suite.entry, ...passThrough], {
      cwd: root,
      stdio: 'inherit',
      detached: true, // its own process group, so a timeout can stop its children too
      env: { ...process.env, BENCH_COMMAND: command, BENCH_COMMIT: commit, BENCH_DIRTY: String(dirty) },
    });
    const killGroup = (signal) => {
      try {
        process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      console.error(`bench: ${name} exceeded ${suite.limitMs / 60_000} min; stopping it`);
      killGroup('SIGKILL');
    }, suite.limitMs);
    const onSignal = (signal) => {
      killGroup('SIGKILL');
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(code === 0 ? 0 : (code ?? (signal ? 1 : 1)));
    });
  });
}

let failed = 0;
for (const name of selected) {
  const code = await runSuite(name);
  if (code !== 0) {
    console.error(`bench: ${name} failed (exit ${code})`);
    failed++;
  }
}
// A suite that failed leaves its results as they were: regenerate the doc once more so that it
// reflects every results file as it stands. A --no-write run writes nothing, the doc included.
if (!args.includes('--no-write') && runEntry('bench/src/lib/docs-main.ts') !== 0) {
  console.error('bench: regenerating docs/benchmarks.md failed');
  failed++;
}
process.exit(failed > 0 ? 1 : 0);
