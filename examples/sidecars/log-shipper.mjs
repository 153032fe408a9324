// The log shipper sidecar, ready to run: `node examples/sidecars/log-shipper.mjs`.
//
// Spawned by a SidecarSupervisor it listens where the supervisor says (PATCHBAY_SIDECAR_SOCKET) and
// exits with its app. Run on its own (a container of a Kubernetes Pod, see
// examples/kubernetes/sidecar-pod.yaml) it listens on LOG_SHIPPER_DEFAULTS.socketPath
// (/var/run/patchbay/log-shipper.sock) and stops on SIGTERM after writing what it holds.
//
// Environment: LOG_FILE (default "-", stdout), LOG_MAX_FILE_BYTES, LOG_MAX_FILES, SOCKET_PATH.
import { serveLogShipper } from 'patchbay/sidecars';

const number = (name) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
};

const maxFileBytes = number('LOG_MAX_FILE_BYTES');
const maxFiles = number('LOG_MAX_FILES');
const shipper = await serveLogShipper({
  file: process.env.LOG_FILE || '-',
  ...(maxFileBytes === undefined ? {} : { maxFileBytes }),
  ...(maxFiles === undefined ? {} : { maxFiles }),
  ...(process.env.SOCKET_PATH ? { socketPath: process.env.SOCKET_PATH } : {}),
  onError: (error) => console.error('log shipper:', error.message),
});
if (process.env.PATCHBAY_SIDECAR_SUPERVISED !== '1') {
  process.once('SIGTERM', () => void shipper.server.close().then(() => process.exit(0)));
  console.error(`log shipper listening on ${JSON.stringify(shipper.server.address)}`);
}
