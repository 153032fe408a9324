/**
 * examples/kubernetes/sidecar-pod.yaml against the code: the shared socket directory, the
 * socket paths, the ports and the commands must be the ones the code uses by default.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { LOG_SHIPPER_DEFAULTS, METRICS_SIDECAR_DEFAULTS } from '../../src/sidecars/index.js';

interface Container {
  name: string;
  command: string[];
  env?: { name: string; value: string }[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string }[];
}
interface Pod {
  apiVersion: string;
  kind: string;
  metadata: { annotations?: Record<string, string> };
  spec: { volumes: { name: string; emptyDir?: unknown }[]; containers: Container[] };
}

const root = new URL('../../', import.meta.url);
const pod = parse(readFileSync(new URL('examples/kubernetes/sidecar-pod.yaml', root), 'utf8')) as Pod;
const container = (name: string): Container => {
  const c = pod.spec.containers.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no container ${name}`);
  return c;
};
const env = (c: Container, name: string): string | undefined => c.env?.find((e) => e.name === name)?.value;

describe('examples/kubernetes/sidecar-pod.yaml', () => {
  it('is a v1 Pod with the app and both sidecars', () => {
    expect(pod.apiVersion).toBe('v1');
    expect(pod.kind).toBe('Pod');
    expect(pod.spec.containers.map((c) => c.name).sort()).toEqual(['app', 'log-shipper', 'metrics']);
  });

  it('shares the sockets through one emptyDir mounted where the default socket paths live', () => {
    const socketDir = dirname(LOG_SHIPPER_DEFAULTS.socketPath);
    expect(dirname(METRICS_SIDECAR_DEFAULTS.socketPath)).toBe(socketDir);
    const mounts = pod.spec.containers.map((c) => c.volumeMounts?.find((m) => m.mountPath === socketDir));
    expect(mounts.every((m) => m !== undefined)).toBe(true);
    const volumeName = mounts[0]!.name;
    expect(mounts.every((m) => m!.name === volumeName)).toBe(true);
    const volume = pod.spec.volumes.find((v) => v.name === volumeName);
    expect(volume?.emptyDir).toBeDefined();
    // No container moves a socket away from its default.
    for (const c of pod.spec.containers) {
      expect(env(c, 'SOCKET_PATH')).toBeUndefined();
      expect(env(c, 'PATCHBAY_SIDECAR_SOCKET')).toBeUndefined();
    }
  });

  it('exposes the metrics sidecar on its default port and path, and says so to Prometheus', () => {
    const metrics = container('metrics');
    expect(metrics.ports?.map((p) => p.containerPort)).toEqual([METRICS_SIDECAR_DEFAULTS.port]);
    expect(Number(env(metrics, 'METRICS_PORT'))).toBe(METRICS_SIDECAR_DEFAULTS.port);
    expect(pod.metadata.annotations?.['prometheus.io/port']).toBe(String(METRICS_SIDECAR_DEFAULTS.port));
    expect(pod.metadata.annotations?.['prometheus.io/path']).toBe(METRICS_SIDECAR_DEFAULTS.path);
  });

  it('runs the app on the demo server\'s default port, connecting to the sidecars instead of spawning them', () => {
    const app = container('app');
    const server = readFileSync(new URL('demo/server.js', root), 'utf8');
    const defaultPort = Number(/process\.env\.PORT \?\? (\d+)/.exec(server)?.[1]);
    expect(app.ports?.map((p) => p.containerPort)).toEqual([defaultPort]);
    expect(Number(env(app, 'PORT'))).toBe(defaultPort);
    expect(env(app, 'SIDECARS')).toBe('connect');
    expect(server).toContain("process.env.SIDECARS === 'connect'");
  });

  it('runs files that exist in the repository', () => {
    for (const c of pod.spec.containers) {
      expect(c.command[0]).toBe('node');
      expect(existsSync(new URL(c.command[1]!, root)), c.command[1]).toBe(true);
    }
  });
});
