/**
 * patchbay on every core, as the benchmarks run it beside Nchan's workers: the demo server as
 * `workers` node:cluster processes on one port (`WORKERS=N`), sharing topics through
 * `RedisBackend` on a redis-server of its own, started fresh for each trial. Every process of it
 * (the primary, the workers, the redis-server) counts in RSS and CPU.
 */
import { join } from 'node:path';
import { childPids, getText, startNodeServer } from './processes.js';
import { startRedisServer } from './redis-server.js';

/** Worker processes of the `patchbay-x2` contenders: as many as Nchan's workers. */
export const X2_WORKERS = 2;

/** A running demo cluster. */
export interface PatchbayCluster {
  readonly port: number;
  /** The primary, its workers and the redis-server. */
  pids(): number[];
  /**
   * `GET /stats` of every worker, summed through `pick`: asked on new connections (the cluster
   * hands each to a worker in turn) until every worker has answered.
   */
  sumStats(pick: (stats: DemoStats) => number): Promise<number>;
  /** Stops the demo (SIGTERM to the primary, which stops its workers), then the redis-server. */
  stop(): Promise<void>;
}

/** The parts of the demo's `/stats` the suites read. */
export interface DemoStats {
  readonly pid: number;
  readonly longPoll: { readonly parked: number };
  readonly sse: { readonly connections: number };
}

/**
 * Starts the demo from `dir` (the repository or a snapshot of the package) as `workers` processes
 * on a fresh redis-server, with `env` added (SIDECARS=0 and no Patchbay-Worker header always).
 */
export async function startPatchbayCluster(
  dir: string,
  options: { readonly workers?: number; readonly env?: Readonly<Record<string, string>>; readonly nodeFlags?: readonly string[] } = {},
): Promise<PatchbayCluster> {
  const workers = options.workers ?? X2_WORKERS;
  const redis = await startRedisServer();
  try {
    const proc = await startNodeServer(join(dir, 'demo', 'server.js'), {
      cwd: dir,
      name: `patchbay x${workers}`,
      env: { ...options.env, WORKERS: String(workers), PATCHBAY_REDIS_URL: redis.url, SIDECARS: '0', DEMO_WORKER_HEADER: '0' },
      nodeFlags: options.nodeFlags ?? [],
    });
    return {
      port: proc.port,
      pids: () => {
        const primary = proc.pids();
        return [...primary, ...primary.flatMap((pid) => childPids(pid)), redis.pid];
      },
      async sumStats(pick) {
        const byPid = new Map<number, number>();
        for (let i = 0; i < 20 * workers && byPid.size < workers; i++) {
          const { status, body } = await getText(proc.port, '/stats', 5000, true);
          if (status !== 200) throw new Error(`patchbay x${workers}: /stats answered ${status}`);
          const stats = JSON.parse(body) as DemoStats;
          byPid.set(stats.pid, pick(stats));
        }
        if (byPid.size < workers) throw new Error(`patchbay x${workers}: only ${byPid.size} of ${workers} workers answered /stats`);
        let sum = 0;
        for (const n of byPid.values()) sum += n;
        return sum;
      },
      async stop() {
        await proc.stop();
        await redis.stop();
      },
    };
  } catch (error) {
    await redis.stop();
    throw error;
  }
}
