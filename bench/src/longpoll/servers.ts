/**
 * The three long-poll servers of the benchmark, started and stopped by PID:
 *
 * - `patchbay`: the demo server, `node demo/server.js` (built package), `LP_TIMEOUT_MS=120000`,
 *   `SIDECARS=0` (without the demo's log-shipper and metrics sidecar processes).
 * - `bare`: the hand-written `node:http` reference, `node bench/src/longpoll/bare-server.mjs`.
 * - `nchan`: nginx with Debian's Nchan module, 2 workers, in the foreground, with this
 *   benchmark's own config under a temporary prefix (research/pubsub-poll-sidecar.md §1.10).
 *
 * - `patchbay-x2`: the demo as 2 worker processes on one port (`WORKERS=2`, node:cluster) sharing
 *   topics through the Redis backend on a redis-server of its own (fresh per trial), beside
 *   Nchan's 2 workers. Its processes (primary, workers, redis-server) all count in RSS and CPU.
 *
 * All of them listen on 127.0.0.1 only.
 */
import { join } from 'node:path';
import { startNchan as startNginxNchan } from '../lib/nchan.js';
import { startPatchbayCluster } from '../lib/patchbay-cluster.js';
import { getText, startNodeServer } from '../lib/processes.js';

export { ensureNchan, NCHAN_MODULE, NCHAN_WORKERS, nginxVersion } from '../lib/nchan.js';
export { X2_WORKERS } from '../lib/patchbay-cluster.js';
export { killAllStarted, totalCpuMs, totalRss } from '../lib/processes.js';

export const SERVERS = ['patchbay', 'bare', 'nchan', 'patchbay-x2'] as const;
export type ServerName = (typeof SERVERS)[number];

/** How long a poll is held: far beyond any trial, so none times out while measured. */
export const HOLD_MS = 120_000;

export interface RunningServer {
  readonly name: ServerName;
  readonly port: number;
  /** The server's processes now (nginx: master and workers). */
  pids(): number[];
  /** Polls the server itself says it holds (patchbay: longPoll.parked; bare: parked; Nchan: subscribers). */
  parked(): Promise<number>;
  /** Stops it by PID (SIGTERM, then SIGKILL) and resolves once every process of it is gone. */
  stop(): Promise<void>;
}

async function startNode(name: 'patchbay' | 'bare', root: string, nodeFlags: readonly string[]): Promise<RunningServer> {
  const script = name === 'patchbay' ? join(root, 'demo', 'server.js') : join(root, 'bench', 'src', 'longpoll', 'bare-server.mjs');
  const proc = await startNodeServer(script, { cwd: root, name, env: { LP_TIMEOUT_MS: String(HOLD_MS), SIDECARS: '0' }, nodeFlags });
  return {
    name,
    port: proc.port,
    pids: proc.pids,
    async parked() {
      const { status, body } = await getText(proc.port, '/stats');
      if (status !== 200) throw new Error(`${name} /stats answered ${status}`);
      const stats = JSON.parse(body) as { parked?: number; longPoll?: { parked: number } };
      return name === 'patchbay' ? stats.longPoll!.parked : stats.parked!;
    },
    stop: proc.stop,
  };
}

async function startCluster(root: string, nodeFlags: readonly string[]): Promise<RunningServer> {
  const cluster = await startPatchbayCluster(root, { env: { LP_TIMEOUT_MS: String(HOLD_MS) }, nodeFlags });
  return { name: 'patchbay-x2', port: cluster.port, pids: cluster.pids, parked: () => cluster.sumStats((s) => s.longPoll.parked), stop: cluster.stop };
}

const LOCATIONS = `
location ~ ^/pub/([A-Za-z0-9_-]+)$ {
  nchan_publisher http;
  nchan_channel_id $1;
  nchan_message_buffer_length 100;
  nchan_message_timeout 5m;
}

location ~ ^/lp/([A-Za-z0-9_-]+)$ {
  nchan_subscriber longpoll;
  nchan_channel_id $1;
  nchan_subscriber_first_message newest;
  nchan_subscriber_timeout ${Math.round(HOLD_MS / 1000)};
}
`;

async function startNchan(clients: number): Promise<RunningServer> {
  const nginx = await startNginxNchan(LOCATIONS, 'Written by bench/src/longpoll/servers.ts for one benchmark trial', clients);
  return { name: 'nchan', port: nginx.port, pids: nginx.pids, parked: nginx.subscribers, stop: nginx.stop };
}

/**
 * @param nodeFlags - Extra `node` flags for the Node servers (profiling: `--cpu-prof`, `--trace-gc`).
 * @param clients - The polls the trial holds (Nchan's config holds more above 19,000: `../lib/nchan.ts`).
 */
export function startServer(name: ServerName, root: string, nodeFlags: readonly string[] = [], clients = 0): Promise<RunningServer> {
  if (name === 'nchan') return startNchan(clients);
  if (name === 'patchbay-x2') return startCluster(root, nodeFlags);
  return startNode(name, root, nodeFlags);
}
