/**
 * A throwaway redis-server for the suites that need one: Debian's binary on a free loopback port,
 * no persistence, its directory removed when it stops.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { sleep } from './harness.js';
import { freePort, started } from './processes.js';

/** A redis-server a suite started. */
export interface BenchRedis {
  readonly url: string;
  readonly pid: number;
  /** `redis_version` from `INFO server`. */
  readonly version: string;
  /** Stops it (SIGTERM) and removes its directory. */
  stop(): Promise<void>;
}

/** Starts a redis-server on 127.0.0.1 and resolves once it answers. */
export async function startRedisServer(): Promise<BenchRedis> {
  const dir = mkdtempSync(join(os.tmpdir(), 'patchbay-bench-redis-'));
  const port = await freePort();
  const conf = join(dir, 'redis.conf');
  writeFileSync(conf, [`bind 127.0.0.1`, `port ${port}`, 'protected-mode yes', `dir ${dir}`, 'save ""', 'appendonly no', 'loglevel warning', 'logfile ""'].join('\n'));
  let child: ChildProcess;
  try {
    child = spawn('redis-server', [conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (error) {
    throw new Error(`cannot start redis-server (apt-get install redis-server): ${String(error)}`);
  }
  await new Promise<void>((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`cannot start redis-server (apt-get install redis-server): ${e.message}`)));
    child.once('spawn', () => resolve());
  });
  started.add(child); // stopped with the suite's other processes if the suite dies
  // Wait until it answers: a fresh connection per attempt (no retries of its own), its errors
  // handled, every 100 ms for at most 15 s (a busy machine can take a while to start it).
  const { Redis } = await import('ioredis');
  const deadline = Date.now() + 15_000;
  let info = '';
  for (;;) {
    const probe = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      info = await probe.info('server');
      await probe.quit();
      break;
    } catch (error) {
      probe.disconnect();
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        started.delete(child);
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`redis-server on 127.0.0.1:${port} did not answer within 15 s: ${String(error)}`);
      }
      await sleep(100);
    }
  }
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    version,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        await gone;
      }
      started.delete(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
