// The metrics sidecar, ready to run: `node examples/sidecars/metrics.mjs` (needs prom-client).
//
// Spawned by a SidecarSupervisor it listens where the supervisor says (PATCHBAY_SIDECAR_SOCKET) and
// exits with its app. Run on its own (a container of a Kubernetes Pod, see
// examples/kubernetes/sidecar-pod.yaml) it listens on METRICS_SIDECAR_DEFAULTS.socketPath
// (/var/run/patchbay/metrics.sock) and stops on SIGTERM.
//
// The Prometheus text is served at http://METRICS_HOST:METRICS_PORT/metrics
// (default 127.0.0.1:9464; METRICS_PORT=0 picks a free port).
import { serveMetricsSidecar } from 'patchbay/sidecars';

const port = process.env.METRICS_PORT === undefined || process.env.METRICS_PORT === '' ? undefined : Number(process.env.METRICS_PORT);
if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) throw new Error(`METRICS_PORT must be a port number, got ${process.env.METRICS_PORT}`);
const sidecar = await serveMetricsSidecar({
  ...(port === undefined ? {} : { httpPort: port }),
  ...(process.env.METRICS_HOST ? { httpHost: process.env.METRICS_HOST } : {}),
  ...(process.env.SOCKET_PATH ? { socketPath: process.env.SOCKET_PATH } : {}),
  onError: (error) => console.error('metrics sidecar:', error.message),
});
if (process.env.PATCHBAY_SIDECAR_SUPERVISED !== '1') {
  process.once('SIGTERM', () => void sidecar.server.close().then(() => process.exit(0)));
  console.error(`metrics sidecar: Prometheus text on ${sidecar.http.url}`);
}
