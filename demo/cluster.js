// WORKERS=N: the demo on every core, as N processes on one port (node:cluster), sharing topics,
// cursors and jobs through Redis (PATCHBAY_REDIS_URL, required). The primary serves nothing
// itself: it starts the log and metrics sidecars once for the machine (the workers connect to
// their sockets), gives every worker the secret its SSE stop tokens are signed with (so a client
// stopped by one worker is stopped by all), restarts a worker that dies (with a bounded,
// exponential backoff), and on SIGINT or SIGTERM asks every worker to shut down gracefully
// (docs/guides/shutdown.md, in each worker), waits for them, then stops the sidecars.
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from 'patchbay';
import { startDemoSidecars } from './sidecars.js';

/** What the primary tells a worker: shut down gracefully. */
export const SHUTDOWN_MESSAGE = 'patchbay-demo:shutdown';

/** Restart backoff of a worker that died: 100 ms doubling to 10 s, reset once one lived 10 s. */
const RESTART_INITIAL_MS = 100;
const RESTART_MAX_MS = 10_000;
const STABLE_AFTER_MS = 10_000;

/**
 * The number of workers `WORKERS` asks for: undefined when unset (one process, no cluster).
 * @throws InvalidArgumentError when it is not an integer from 1 to 256, or above 1 without PATCHBAY_REDIS_URL
 */
export function workersFromEnv(env = process.env) {
  const raw = env.WORKERS;
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new InvalidArgumentError(`WORKERS must be an integer from 1 to 256, got ${raw}`);
  if (n > 1 && !env.PATCHBAY_REDIS_URL) {
    throw new InvalidArgumentError(
      `WORKERS=${n} needs PATCHBAY_REDIS_URL: without Redis each worker would have topics, cursors and jobs of its own, and a publish on one would not reach the subscribers of another`,
    );
  }
  return n;
}

/** The module loaders and conditions of this process's flags (how it resolves `patchbay`), for the sidecars; not `--inspect` and the like. */
function loaderArgs(execArgv) {
  const out = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i];
    if (/^--(import|loader|experimental-loader|conditions)=/.test(arg)) out.push(arg);
    else if (/^--(import|loader|experimental-loader|conditions)$/.test(arg) && i + 1 < execArgv.length) out.push(arg, execArgv[++i]);
  }
  return out;
}

/**
 * Runs the cluster's primary: N workers running demo/server.js on `port`, the sidecars once.
 * @param {{ workers: number, port: number, host: string, sidecars?: { metricsPort: number }, deadlineMs: number }} options
 */
export function runPrimary({ workers, port, host, sidecars: sidecarOptions, deadlineMs }) {
  // One secret for every worker's stop tokens, unless the operator gave one (for several machines).
  const stopTokenSecret = process.env.PATCHBAY_STOP_TOKEN_SECRET || randomBytes(32).toString('hex');
  const sidecars = sidecarOptions ? startDemoSidecars({ mode: 'spawn', metricsPort: sidecarOptions.metricsPort, nodeArgs: loaderArgs(process.execArgv) }) : undefined;
  const env = {
    PATCHBAY_STOP_TOKEN_SECRET: stopTokenSecret,
    PORT: String(port),
    ...(sidecars ? { SIDECARS: 'connect', DEMO_LOG_SOCKET: sidecars.logSocket, DEMO_METRICS_SOCKET: sidecars.metricsSocket, DEMO_LOG_FILE: sidecars.logFile } : { SIDECARS: '0' }),
  };
  cluster.setupPrimary({ exec: fileURLToPath(new URL('./server.js', import.meta.url)) });

  let stopping = false;
  let failures = 0;
  const startedAt = new Map();
  const fork = () => {
    const worker = cluster.fork(env);
    startedAt.set(worker.id, performance.now());
  };
  let announced = false;
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    listening++;
    if (announced || listening < workers) return;
    announced = true;
    const sidecarNote = sidecars ? `, sidecars (once, in the primary) on GET /sidecar` : '';
    console.log(`patchbay demo on http://${host}:${address.port}/ with ${workers} workers on Redis (primary pid ${process.pid})${sidecarNote} (Ctrl-C stops it)`);
  });
  cluster.on('exit', (worker, code, signal) => {
    const lived = performance.now() - (startedAt.get(worker.id) ?? 0);
    startedAt.delete(worker.id);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) void finish();
      return;
    }
    failures = lived >= STABLE_AFTER_MS ? 1 : failures + 1;
    const cap = Math.min(RESTART_MAX_MS, RESTART_INITIAL_MS * 2 ** (failures - 1));
    const delayMs = Math.round(cap * (0.8 + 0.2 * Math.random()));
    console.error(`patchbay demo: worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); starting another in ${delayMs} ms`);
    setTimeout(() => {
      if (!stopping) fork();
    }, delayMs);
  });
  for (let i = 0; i < workers; i++) fork();

  let exitCode = 0;
  const finish = async () => {
    try {
      await sidecars?.close();
    } catch (error) {
      console.error('patchbay demo: closing the sidecars failed:', error);
      exitCode = 1;
    }
    process.exit(exitCode);
  };
  const stop = (signal) => {
    const live = Object.values(cluster.workers ?? {});
    if (stopping) {
      console.error(`patchbay demo: ${signal} again, exiting without waiting`);
      for (const worker of live) worker.process.kill('SIGKILL');
      process.exit(1);
    }
    stopping = true;
    // Each worker closes gracefully and exits by itself; one that hangs is killed at the deadline.
    setTimeout(() => {
      console.error(`patchbay demo: workers not closed after ${deadlineMs} ms, killing them`);
      exitCode = 1;
      for (const worker of Object.values(cluster.workers ?? {})) worker.process.kill('SIGKILL');
    }, deadlineMs + 2000).unref();
    cluster.on('exit', (_worker, code) => {
      if (code !== 0) exitCode = 1;
    });
    if (live.length === 0) return void finish();
    for (const worker of live) {
      if (worker.isConnected()) worker.send(SHUTDOWN_MESSAGE);
      else worker.process.kill('SIGTERM');
    }
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return { sidecars };
}
