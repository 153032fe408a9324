// The demo's two sidecars (examples/sidecars/*.mjs), each run by a SidecarSupervisor: every demo
// request is logged through the log shipper (JSON lines in a file, rotated by size) and counted
// and timed through the metrics sidecar (prom-client, Prometheus text on a loopback port).
// `GET /sidecar` shows both: supervisor state, the shipper's counters and the file's last lines,
// the metrics URL and its text.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MethodNotAllowedError, sendJson, SidecarChannel, SidecarSupervisor } from 'patchbay';
import { LOG_SHIPPER_DEFAULTS, logShipperStats, METRICS_SIDECAR_DEFAULTS, metricsText, SidecarLogger, SidecarMetrics } from 'patchbay/sidecars';

const KNOWN = new Set(['', 'pub', 'lp', 'sse', 'ws', 'jobs', 'uploads', 'stream', 'stats', 'sidecar']);
const example = (name) => fileURLToPath(new URL(`../examples/sidecars/${name}`, import.meta.url));

/** The last `n` lines of a file (small files only: the demo's log rotates at 1 MiB). */
function tail(file, n) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').filter(Boolean).slice(-n);
  } catch {
    return [];
  }
}

/**
 * Starts the log shipper and the metrics sidecar, or (`mode: 'connect'`) connects to ones that
 * run beside the app already: on their default sockets (the containers of a Kubernetes Pod), or
 * on `logSocket` and `metricsSocket` (those a cluster's primary started, see demo/cluster.js).
 * @param {{ mode?: 'spawn' | 'connect', dir?: string, metricsPort?: number, nodeArgs?: string[], onError?: (error: unknown) => void, logSocket?: string, metricsSocket?: string, logFile?: string }} options
 *   `nodeArgs` go before the script (the tests pass a loader so the sidecars run the sources).
 *   Spawned, the sidecars listen on `log-shipper.sock` and `metrics.sock` in `dir`
 *   (`logSocket` and `metricsSocket` of the answer), where other processes may connect too.
 */
export function startDemoSidecars(options = {}) {
  if (options.mode === 'connect') return connectDemoSidecars(options);
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'patchbay-demo-'));
  const logFile = join(dir, 'demo.log');
  const nodeArgs = options.nodeArgs ?? [];
  const onError = options.onError ?? ((error) => console.error(`sidecar: ${error instanceof Error ? error.message : String(error)}`));
  const common = { command: process.execPath, onError, healthCheck: { intervalMs: 5000, timeoutMs: 2000, failureThreshold: 3 } };
  const logSocket = join(dir, 'log-shipper.sock');
  const metricsSocket = join(dir, 'metrics.sock');
  const logShipper = new SidecarSupervisor({
    ...common,
    name: 'log-shipper',
    socketPath: logSocket,
    args: [...nodeArgs, example('log-shipper.mjs')],
    env: { LOG_FILE: logFile, LOG_MAX_FILE_BYTES: String(1024 * 1024), LOG_MAX_FILES: '3' },
    channel: { maxQueuedMessages: 10_000, overflow: 'drop-oldest' },
  });
  const metricsSidecar = new SidecarSupervisor({
    ...common,
    name: 'metrics',
    socketPath: metricsSocket,
    args: [...nodeArgs, example('metrics.mjs')],
    env: { METRICS_PORT: String(options.metricsPort ?? 0) },
    channel: { maxQueuedMessages: 10_000, overflow: 'drop-oldest' },
  });
  const logger = new SidecarLogger(logShipper, { fields: { service: 'patchbay-demo' } });
  const metrics = new SidecarMetrics(metricsSidecar);
  const ready = Promise.allSettled([logShipper.start(), metricsSidecar.start()]);

  return {
    logFile,
    logSocket,
    metricsSocket,
    logShipper,
    metricsSidecar,
    ready,
    ...requestHandlers(logShipper, metricsSidecar, logFile, logger, metrics, () => logShipper.stats(), () => metricsSidecar.stats()),
    /** Drains both channels, says BYE, waits for both sidecars to exit; removes the log if it made the directory. */
    async close() {
      await Promise.all([logShipper.close(), metricsSidecar.close()]);
      if (options.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The demo's two sidecars reached on their sockets (the default ones unless given), without supervisors. */
function connectDemoSidecars(options) {
  const onError = options.onError ?? ((error) => console.error(`sidecar: ${error instanceof Error ? error.message : String(error)}`));
  const logShipper = new SidecarChannel({ connect: options.logSocket ?? LOG_SHIPPER_DEFAULTS.socketPath, onError });
  const metricsSidecar = new SidecarChannel({ connect: options.metricsSocket ?? METRICS_SIDECAR_DEFAULTS.socketPath, onError });
  const logger = new SidecarLogger(logShipper, { fields: { service: 'patchbay-demo' } });
  const metrics = new SidecarMetrics(metricsSidecar);
  return {
    logFile: options.logFile ?? '(written by the log-shipper container)',
    logShipper,
    metricsSidecar,
    ready: Promise.resolve(),
    ...requestHandlers(logShipper, metricsSidecar, options.logFile, logger, metrics, () => logShipper.stats(), () => metricsSidecar.stats()),
    close() {
      return Promise.all([logShipper.close(), metricsSidecar.close()]);
    },
  };
}

/** `observe` (log, count and time each request) and `handle` (`GET /sidecar`). */
function requestHandlers(logShipper, metricsSidecar, logFile, logger, metrics, logState, metricsState) {
  return {
    /** Logs, counts and times one demo request when its answer is done. */
    observe(req, res) {
      const done = metrics.startTimer('demo_request_duration_ms');
      res.once('close', () => {
        const first = (req.url ?? '/').split(/[/?]/)[1] ?? '';
        const route = KNOWN.has(first) ? `/${first}` : 'other'; // bounded label values
        const status = res.headersSent ? res.statusCode : 0;
        try {
          const ms = done({ method: req.method ?? 'GET', route });
          metrics.count('demo_requests_total', 1, { method: req.method ?? 'GET', route, status });
          logger.info('request', { method: req.method, path: req.url, status, ms: Math.round(ms * 100) / 100 });
        } catch {
          // closed while the server shuts down
        }
      });
    },
    /** `GET /sidecar`. */
    async handle(req, res) {
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method, ['GET']);
      const settle = (promise) => promise.then((value) => value, (error) => ({ error: error.message, code: error.code }));
      const [shipper, address, text] = await Promise.all([
        settle(logShipperStats(logShipper, { timeoutMs: 2000 })),
        settle(metricsSidecar.request('metrics.address', undefined, { timeoutMs: 2000 })),
        settle(metricsText(metricsSidecar, { timeoutMs: 2000 })),
      ]);
      sendJson(res, 200, {
        logShipper: { supervisor: logState(), shipper, file: shipper.file ?? logFile ?? null, lastLines: logFile === undefined ? [] : tail(logFile, 5) },
        metrics: { supervisor: metricsState(), url: address.url ?? null, text },
      });
    },
  };
}
