/**
 * Demo server processes (`node demo/server.js` from the sources, with PATCHBAY_REDIS_URL) for the
 * multi-process tests: started on a free port, stopped (or killed) by their PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { sourceNodeArgs } from '../helpers.js';

const root = new URL('../../', import.meta.url).pathname;

/** A demo process this test started. */
export interface DemoProcess {
  readonly base: string;
  readonly child: ChildProcess;
}

/** Starts a demo on Redis at `redisUrl` under `prefix`, with `env` added (LP_TIMEOUT_MS, JOBS_LEASE_MS, ...). */
export function startDemo(redisUrl: string, prefix: string, env: Record<string, string> = {}): Promise<DemoProcess> {
  const child = spawn(process.execPath, [...sourceNodeArgs, 'demo/server.js'], {
    cwd: root,
    env: { ...process.env, PORT: '0', SIDECARS: '0', PATCHBAY_REDIS_URL: redisUrl, PATCHBAY_REDIS_PREFIX: prefix, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      // Not left running: killed by its PID, and the failure reported once it is gone.
      child.once('exit', () => reject(new Error(`the demo did not start within 60 s: ${out}`)));
      process.kill(child.pid!, 'SIGKILL');
    }, 60_000);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ base: `http://127.0.0.1:${m[1]}`, child });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited with ${code}: ${out}`));
    });
  });
}

/**
 * Starts `count` demos as {@link startDemo} does. When one fails, the others are stopped (by PID)
 * before the error is thrown: nobody would hold them to stop them later.
 */
export async function startDemos(count: number, redisUrl: string, prefix: string, env: Record<string, string> = {}): Promise<DemoProcess[]> {
  const settled = await Promise.allSettled(Array.from({ length: count }, () => startDemo(redisUrl, prefix, env)));
  const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(started.map(stopDemo));
    throw failed.reason;
  }
  return started;
}

/** Stops a demo with SIGTERM (SIGKILL after 3 s) and waits until it is gone. */
export async function stopDemo(p: DemoProcess | undefined): Promise<void> {
  const c = p?.child;
  if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  process.kill(c.pid!, 'SIGTERM');
  const timer = setTimeout(() => c.exitCode === null && process.kill(c.pid!, 'SIGKILL'), 3000);
  await gone;
  clearTimeout(timer);
}

/** Kills a demo with SIGKILL (no cleanup: a crash) and waits until it is gone. */
export async function killDemo(p: DemoProcess): Promise<void> {
  const c = p.child;
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  process.kill(c.pid!, 'SIGKILL');
  await gone;
}
