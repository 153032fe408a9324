/**
 * The demo server with its two sidecars as real child processes (examples/sidecars/*.mjs run on
 * the sources through a resolve hook): every request is logged through the shipper and counted by
 * the metrics sidecar, and GET /sidecar shows both. Waits are for conditions, with named
 * deadlines; the sidecars are stopped, and their exit awaited, on every path.
 */
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { SidecarSupervisor } from '../../src/index.js';
import { eventually, serveRig, sourceNodeArgs, TestResources } from '../helpers.js';
import { alive, tempDir } from '../sidecar/helpers.js';
import { closeDemo } from './helpers.js';

interface DemoSidecars {
  logFile: string;
  logShipper: SidecarSupervisor;
  metricsSidecar: SidecarSupervisor;
  ready: Promise<unknown>;
  close(): Promise<unknown>;
}

/** Start, drain and exit of a sidecar under tsx on a busy machine. */
const SIDECAR_MS = 20_000;
let base = '';
let demo: { server: Server; sidecars: DemoSidecars };
const resources = new TestResources();

beforeAll(() =>
  resources.setup(async (r) => {
    const tmp = r.add(tempDir(), (t) => t.remove());
    demo = r.add<typeof demo>(createDemo({ sidecars: { dir: tmp.dir, metricsPort: 0, nodeArgs: [...sourceNodeArgs] } }), closeDemo);
    base = (await r.wait(serveRig(demo.server, { resources: r }))).url;
    await r.wait(demo.sidecars.ready);
  }),
);

afterAll(() => resources.teardown());

describe('demo server with its sidecars', () => {
  it('starts both sidecars under supervisors', () => {
    expect(demo.sidecars.logShipper.stats().state).toBe('ready');
    expect(demo.sidecars.metricsSidecar.stats().state).toBe('ready');
  });

  it('logs each request through the shipper and counts it in the metrics sidecar; GET /sidecar shows both', async () => {
    const before = demo.sidecars.logShipper.channel.stats().accepted;
    for (const body of ['a', 'b', 'c']) {
      const res = await fetch(`${base}/pub/sidecar-test`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body });
      expect(res.status).toBe(201);
    }
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    // Each request is logged when its answer ends, after the client has it.
    await eventually(() => demo.sidecars.logShipper.channel.stats().accepted >= before + 4, 'the log records of the four requests to be sent', { timeoutMs: SIDECAR_MS });
    await demo.sidecars.logShipper.request('log.flush'); // after the records: they are on disk now

    const res = await fetch(`${base}/sidecar`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      logShipper: { supervisor: { state: string; pid: number }; shipper: { records: number; file: string }; file: string; lastLines: string[] };
      metrics: { supervisor: { state: string }; url: string; text: string };
    };
    expect(body.logShipper.supervisor.state).toBe('ready');
    expect(body.logShipper.shipper.records).toBeGreaterThanOrEqual(4);
    expect(body.logShipper.file).toBe(demo.sidecars.logFile);
    const records = body.logShipper.lastLines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.filter((r) => r['path'] === '/pub/sidecar-test')).not.toHaveLength(0);
    expect(records.at(-1)).toMatchObject({ level: 'info', msg: 'request', service: 'patchbay-demo', method: 'GET', path: '/nope', status: 404 });

    expect(body.metrics.supervisor.state).toBe('ready');
    expect(body.metrics.text).toMatch(/^demo_requests_total\{method="POST",route="\/pub",status="201"\} 3$/m);
    expect(body.metrics.text).toMatch(/^demo_requests_total\{method="GET",route="other",status="404"\} 1$/m);
    expect(body.metrics.text).toMatch(/^demo_request_duration_ms_bucket\{le="\+Inf",method="POST",route="\/pub"\} 3$/m);

    // The same text, straight from the sidecar's loopback port, as Prometheus would scrape it.
    expect(body.metrics.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const scrape = await fetch(body.metrics.url);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await scrape.text()).toContain('# TYPE demo_requests_total counter');
  });

  it('stops both sidecars when the server closes', async () => {
    const pids = [demo.sidecars.logShipper.pid, demo.sidecars.metricsSidecar.pid];
    expect(pids.every(alive)).toBe(true);
    demo.server.closeAllConnections();
    await new Promise((resolve) => demo.server.close(resolve));
    await eventually(() => !pids.some(alive), 'both sidecars to exit', { timeoutMs: SIDECAR_MS });
    expect(demo.sidecars.logShipper.stats().lastExit).toMatchObject({ code: 0 });
    expect(demo.sidecars.metricsSidecar.stats().lastExit).toMatchObject({ code: 0 });
  });
});
