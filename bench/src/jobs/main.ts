/**
 * The shared jobs benchmark (`npm run bench -- jobs`): what it costs to keep `PollHandle` jobs on
 * Redis (`RedisJobStore`) so that any process answers for any job, against the same demo keeping
 * them in its own memory, in one run.
 *
 * Contenders (each trial on fresh processes, the order rotating from run to run), all the demo
 * server (`demo/server.js` from a snapshot of the built package, `resultMode: 'redirect'`):
 *
 * - **memory** (the baseline): one process, jobs in its memory.
 * - **redis**: one process with `PATCHBAY_REDIS_URL`: jobs on Redis, read and started there.
 * - **redis×2**: two processes on Redis: jobs started on A, awaited and read on B.
 *
 * Workloads, from this process over keep-alive connections:
 *
 * - `round trip`: a job of one step of 0 ms started with `POST /jobs` (`Prefer: respond-async`)
 *   on A, then its outcome awaited on B with `GET /jobs/:id` (`Prefer: wait=10`, `If-None-Match`
 *   of the start's `ETag`), following the `303` to `/jobs/:id/result`: start-to-outcome latency,
 *   p50 and p99, with 8 such clients at once (A = B with one process).
 * - `reads`: 32 clients reading finished jobs' results (`GET /jobs/:id/result`) on B for a fixed
 *   count: reads/s.
 *
 * Prints a table, writes `bench/results/jobs.json` and the jobs section of `docs/benchmarks.md`.
 * Options: `--runs N` (default 3), `--no-write`, `--quick` (a smoke test with small counts).
 */
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseQuickSuiteArgs } from '../lib/args.js';
import { quietTrialStart, rotate, sleep } from '../lib/harness.js';
import { killAllStarted, snapshotPackage, startNodeServer, type ServerProcess } from '../lib/processes.js';
import { startRedisServer } from '../lib/redis-server.js';
import { figureTables, formatValue, SuiteRun, summaryCell } from '../lib/report.js';
import { quantileSorted, summarize, type Summary } from '../lib/stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const KINDS = ['memory', 'redis', 'redis2'] as const;
type Kind = (typeof KINDS)[number];
const LABEL: Record<Kind, string> = { memory: 'memory', redis: 'redis', redis2: 'redis×2' };

const opts = parseQuickSuiteArgs(process.argv.slice(2));
const ROUND = opts.quick ? { n: 200, clients: 8, warm: 50 } : { n: 2000, clients: 8, warm: 300 };
const READS = opts.quick ? { n: 2000, clients: 32, jobs: 50 } : { n: 30_000, clients: 32, jobs: 200 };

// --- processes ----------------------------------------------------------------------------------

function startDemo(snapshot: string, env: Record<string, string>): Promise<ServerProcess> {
  return startNodeServer(join(snapshot, 'demo', 'server.js'), { cwd: snapshot, name: 'demo', env: { SIDECARS: '0', JOBS_MAX_LIVE: '100000', JOBS_MAX_STORED: '1000000', ...env } });
}

// --- HTTP ---------------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

const JOB = JSON.stringify({ steps: 1, stepMs: 0 });

/** Starts a job on `a` and awaits its outcome on `b`; resolves with the job's id. */
async function roundTrip(a: number, b: number): Promise<string> {
  const started = await request(a, 'POST', '/jobs', { 'content-type': 'application/json', prefer: 'respond-async' }, JOB);
  if (started.status !== 202) throw new Error(`start answered ${started.status}: ${started.body}`);
  const location = started.headers.location!;
  // Held reads, each answered at the job's next change (running, progress, the outcome), until
  // the outcome: a 303 to the result.
  let etag = started.headers.etag!;
  for (let i = 0; ; i++) {
    const read = await request(b, 'GET', location, { prefer: 'wait=10', 'if-none-match': etag });
    if (read.status === 303) {
      const result = await request(b, 'GET', read.headers.location!);
      const state = (JSON.parse(result.body) as { state: string }).state;
      if (result.status !== 200 || state !== 'succeeded') throw new Error(`the result read answered ${result.status} ${state}`);
      break;
    }
    if (read.status !== 200 && read.status !== 304) throw new Error(`a held read answered ${read.status}: ${read.body}`);
    if (i >= 10) throw new Error('no outcome after 10 held reads');
    etag = read.headers.etag ?? etag;
  }
  return location.slice(location.lastIndexOf('/') + 1);
}

/** Runs `n` tasks, `clients` at a time. */
async function pool(n: number, clients: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

// --- one trial ----------------------------------------------------------------------------------

interface Trial {
  readonly p50: number;
  readonly p99: number;
  readonly readsPerS: number;
}

async function trial(kind: Kind, snapshot: string, redisUrl: string, run: number): Promise<Trial> {
  const env: Record<string, string> = kind === 'memory' ? {} : { PATCHBAY_REDIS_URL: redisUrl, PATCHBAY_REDIS_PREFIX: `bench-jobs-${run}-${kind}:` };
  const servers = await Promise.all(kind === 'redis2' ? [startDemo(snapshot, env), startDemo(snapshot, env)] : [startDemo(snapshot, env)]);
  try {
    const a = servers[0]!.port;
    const b = servers[servers.length - 1]!.port;
    await pool(ROUND.warm, ROUND.clients, async () => void (await roundTrip(a, b)));
    const ms: number[] = [];
    await pool(ROUND.n, ROUND.clients, async () => {
      const t = performance.now();
      await roundTrip(a, b);
      ms.push(performance.now() - t);
    });
    ms.sort((x, y) => x - y);
    const ids: string[] = [];
    await pool(READS.jobs, ROUND.clients, async () => void ids.push(await roundTrip(a, b)));
    const t = performance.now();
    await pool(READS.n, READS.clients, async (i) => {
      const res = await request(b, 'GET', `/jobs/${ids[i % ids.length]}/result`);
      if (res.status !== 200) throw new Error(`a result read answered ${res.status}`);
    });
    const readsPerS = READS.n / ((performance.now() - t) / 1000);
    return { p50: quantileSorted(ms, 0.5), p99: quantileSorted(ms, 0.99), readsPerS };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

// --- main ---------------------------------------------------------------------------------------

const suite = new SuiteRun(import.meta.url);
suite.printHeader('jobs: PollHandle jobs in memory vs shared through Redis (RedisJobStore), demo server');
const redis = await startRedisServer();
const snap = snapshotPackage(root);
const snapshot = snap.dir;
process.on('exit', () => {
  snap.remove();
  killAllStarted();
});
const results: Record<Kind, Trial[]> = { memory: [], redis: [], redis2: [] };
try {
  for (let run = 0; run < opts.runs; run++) {
    for (const kind of rotate(KINDS, run)) {
      const start = await quietTrialStart(`${kind} run ${run + 1}`);
      if (start.skipped) {
        console.log(`run ${run + 1}/${opts.runs} ${LABEL[kind]}: SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
        continue;
      }
      suite.busyBefore.push(start.busy);
      const r = await trial(kind, snapshot, redis.url, run);
      results[kind].push(r);
      console.log(`run ${run + 1}/${opts.runs} ${LABEL[kind].padEnd(8)} p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  reads ${formatValue(r.readsPerS, '/s')}`);
      await sleep(200);
    }
  }
} finally {
  await redis.stop();
}

const figures = [
  { key: 'p50', label: 'start-to-outcome p50', unit: 'ms', better: 'lower', description: 'from sending the start (on A) to the outcome read (on B) of a one-step job: a start, a held read woken by the outcome, the 303 to the result' },
  { key: 'p99', label: 'start-to-outcome p99', unit: 'ms', better: 'lower', description: 'the 99th percentile of the same' },
  { key: 'readsPerS', label: 'result reads/s', unit: '/s', better: 'higher', description: `\`GET /jobs/:id/result\` of finished jobs on B, ${READS.clients} clients at once, ${READS.n} reads` },
] as const;
const sums = (kind: Kind, key: (typeof figures)[number]['key']): Summary => summarize(results[kind].map((r) => r[key]));
const rows = figures.map((f) => {
  const by = Object.fromEntries(KINDS.map((k) => [k, sums(k, f.key)])) as Record<Kind, Summary>;
  const ratio = (k: Kind) => `${(by[k].median / by.memory.median).toFixed(2)}×`;
  return {
    labels: [`${f.label} (${f.unit === '/s' ? '/s' : 'ms'})`],
    better: f.better,
    cells: [...KINDS.map((k) => summaryCell(by[k], (v) => formatValue(v, f.unit))), ratio('redis'), ratio('redis2')],
  };
});
const tables = figureTables({ labels: ['figure'], contenders: KINDS.map((k) => LABEL[k]), ratios: ['redis / memory', 'redis×2 / memory'] }, rows);
console.log('');
console.log(tables.text);
if (opts.write) {
  suite.write(
    'jobs',
    { environment: suite.environment({ extra: { redis: redis.version } }), round: ROUND, reads: READS, results },
    {
      title: 'Shared jobs (`npm run bench -- jobs`)',
      intro: [
        'The demo server keeping its `PollHandle` jobs in memory (one process), against the same demo keeping them on Redis',
        '(`RedisJobStore`, one process), and two demo processes on Redis starting a job on one and awaiting and reading it on',
        'the other. Every job is one step of 0 ms, so the figures are the cost of the job machinery and its Redis round trips.',
      ],
      run: [`${suite.dateText()}redis-server ${redis.version}; ${opts.runs} runs, contenders in rotating order.`, '', `${suite.loadText()}.`],
      table: tables.markdown,
      targets: [{ target: 'none: the issue sets no target for jobs (figures only)', measured: '—', met: null }],
      failures: [],
      failuresTitle: 'Check failures',
      body: [
        'These figures say what sharing costs. On Redis a start is one script (create) and running the job three more (running,',
        'its progress, the outcome), each announced on the subscriber connection; a read of a live job, or of a job another',
        'process runs, is one more (a finished job of its own is answered from memory). With two processes each held read on B',
        'is woken by the announcement of a change A wrote, and B reads the job once more before it answers.',
      ],
      figures,
    },
  );
}
agent.destroy();
