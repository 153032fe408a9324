/**
 * The five SSE servers of the benchmark, started and stopped by PID, all on 127.0.0.1 only,
 * all with the same routes (`GET /sse/:topic`, `POST /pub/:topic` with the event's data as the
 * body):
 *
 * - `patchbay`: the demo server, `node demo/server.js` (built package: `SseHandler` + `PubSubBroker`),
 *   with `SIDECARS=0` (without the demo's log-shipper and metrics sidecar processes), run from a
 *   snapshot of `dist/` and `demo/` taken when the suite starts.
 * - `bare`: the hand-written `node:http` reference, `bench/src/sse/bare-server.mjs`.
 * - `better-sse`: better-sse's Session + Channel broadcast on `node:http`, `bench/src/sse/better-sse-server.mjs`.
 * - `hono`: hono's `streamSSE` on `@hono/node-server`, `bench/src/sse/hono-server.mjs`.
 * - `nchan`: nginx with Debian's Nchan module (`nchan_subscriber eventsource`), 2 workers, with
 *   this benchmark's own locations under a temporary prefix (`../lib/nchan.ts`).
 * - `patchbay-x2`: the demo as 2 node:cluster workers on one port sharing topics through Redis
 *   (`../lib/patchbay-cluster.ts`), beside Nchan's 2 workers.
 */
import { join } from 'node:path';
import type { FanoutServer } from '../lib/fanout.js';
import { startNchan as startNginxNchan } from '../lib/nchan.js';
import { startPatchbayCluster } from '../lib/patchbay-cluster.js';
import { getJson, startNodeServer } from '../lib/processes.js';

export const SERVERS = ['patchbay', 'bare', 'better-sse', 'hono', 'nchan', 'patchbay-x2'] as const;
export type ServerName = (typeof SERVERS)[number];

/** Nchan keeps this many messages per channel: more than a trial publishes, so none is evicted before every worker has sent it. */
export const NCHAN_BUFFER = 2000;

/**
 * A server of this benchmark, running. It counts its subscribers itself: patchbay `sse.connections`
 * of `/stats`; bare, better-sse, hono: their `/stats`; Nchan: `nchan_stub_status`.
 */
export interface RunningServer extends FanoutServer {
  readonly name: ServerName;
}

const SCRIPTS: Record<Exclude<ServerName, 'nchan' | 'patchbay-x2'>, readonly string[]> = {
  patchbay: ['demo', 'server.js'],
  bare: ['bench', 'src', 'sse', 'bare-server.mjs'],
  'better-sse': ['bench', 'src', 'sse', 'better-sse-server.mjs'],
  hono: ['bench', 'src', 'sse', 'hono-server.mjs'],
};

async function startNode(name: Exclude<ServerName, 'nchan' | 'patchbay-x2'>, root: string, nodeFlags: readonly string[], patchbayDir: string): Promise<RunningServer> {
  // SIDECARS=0: the demo's optional log-shipper and metrics sidecars stay off; this measures SSE, not them.
  const env = name === 'patchbay' ? { SIDECARS: '0' } : undefined;
  const base = name === 'patchbay' ? patchbayDir : root;
  const proc = await startNodeServer(join(base, ...SCRIPTS[name]), { cwd: base, name, nodeFlags, ...(env ? { env } : {}) });
  return {
    name,
    port: proc.port,
    pids: proc.pids,
    async subscribers() {
      const stats = await getJson<{ subscribers?: number; sse?: { connections: number } }>(proc.port, '/stats', name);
      return name === 'patchbay' ? stats.sse!.connections : stats.subscribers!;
    },
    stop: proc.stop,
  };
}

const LOCATIONS = `
location ~ ^/pub/([A-Za-z0-9_-]+)$ {
  nchan_publisher http;
  nchan_channel_id $1;
  nchan_message_buffer_length ${NCHAN_BUFFER};
  nchan_message_timeout 5m;
}

location ~ ^/sse/([A-Za-z0-9_-]+)$ {
  nchan_subscriber eventsource;
  nchan_channel_id $1;
  nchan_subscriber_first_message newest;
}
`;

async function startNchan(clients: number): Promise<RunningServer> {
  const nginx = await startNginxNchan(LOCATIONS, 'Written by bench/src/sse/servers.ts for one SSE benchmark trial', clients);
  return { name: 'nchan', port: nginx.port, pids: nginx.pids, subscribers: nginx.subscribers, stop: nginx.stop };
}

/**
 * @param patchbayDir - Where the demo and the built package are: `root`, or a snapshot of them
 *   (`snapshotPackage` in ../lib/processes.ts).
 * @param nodeFlags - Extra `node` flags for the Node servers (profiling: `--cpu-prof`).
 * @param clients - The subscribers the trial connects (Nchan's config holds more above 19,000: `../lib/nchan.ts`).
 */
export async function startServer(name: ServerName, root: string, patchbayDir: string, nodeFlags: readonly string[] = [], clients = 0): Promise<RunningServer> {
  if (name === 'nchan') return startNchan(clients);
  if (name === 'patchbay-x2') {
    const cluster = await startPatchbayCluster(patchbayDir, { nodeFlags });
    return { name, port: cluster.port, pids: cluster.pids, subscribers: () => cluster.sumStats((s) => s.sse.connections), stop: cluster.stop };
  }
  return startNode(name, root, nodeFlags, patchbayDir);
}
