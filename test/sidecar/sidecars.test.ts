/**
 * The ready sidecars in this process: the log shipper (batches, rotation by size) and the
 * metrics sidecar (prom-client aggregation, Prometheus text over loopback HTTP).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SidecarChannel } from '../../src/index.js';
import {
  LOG_SHIPPER_DEFAULTS,
  logShipperStats,
  METRICS_SIDECAR_DEFAULTS,
  metricsText,
  serveLogShipper,
  serveMetricsSidecar,
  SidecarLogger,
  SidecarMetrics,
} from '../../src/sidecars/index.js';
import { perTest, until } from '../helpers.js';
import { tempDir } from './helpers.js';

describe('log shipper', () => {
  it('writes JSON lines in batches and rotates by size, keeping maxFiles files', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const file = join(tmp.dir, 'logs', 'app.log');
    const shipper = await serveLogShipper({ file, socketPath: join(tmp.dir, 'log.sock'), maxFileBytes: 4096, maxFiles: 2, maxBatchRecords: 10 });
    perTest.defer(() => shipper.server.destroy());
    const channel = new SidecarChannel({ connect: join(tmp.dir, 'log.sock') });
    perTest.defer(() => channel.destroy());
    const log = new SidecarLogger(channel, { fields: { service: 'test' }, level: 'debug' });
    for (let i = 0; i < 300; i++) expect(log.info('line', { i })).toBe(true);
    expect(log.log('trace', 'below the level')).toBe(false);
    await until(() => channel.stats().queuedMessages === 0, 'every record to be acknowledged (written)');
    const stats = await logShipperStats(channel);
    expect(stats).toMatchObject({ records: 300, file });
    expect(stats.rotations).toBeGreaterThanOrEqual(3);
    for (const f of [file, `${file}.1`, `${file}.2`]) expect(statSync(f).size).toBeLessThanOrEqual(4096);
    expect(existsSync(`${file}.3`)).toBe(false);
    // The kept files hold the newest records, in order, each whole.
    const lines = [`${file}.2`, `${file}.1`, file].flatMap((f) => readFileSync(f, 'utf8').trimEnd().split('\n'));
    const is = lines.map((l) => (JSON.parse(l) as { i: number }).i);
    expect(is).toEqual(Array.from({ length: is.length }, (_, k) => 300 - is.length + k));
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'info', msg: 'line', service: 'test' });
    expect(typeof (JSON.parse(lines[0]!) as { time: string }).time).toBe('string');
  });

  it('writes what it holds on close', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const file = join(tmp.dir, 'app.log');
    const shipper = await serveLogShipper({ file, socketPath: join(tmp.dir, 'l.sock'), flushIntervalMs: 60_000 });
    const channel = new SidecarChannel({ connect: join(tmp.dir, 'l.sock') });
    perTest.defer(() => channel.destroy());
    new SidecarLogger(channel).warn('held in a batch');
    await until(() => shipper.server.stats().received === 1, 'the record');
    await shipper.server.close();
    expect(readFileSync(file, 'utf8')).toContain('"held in a batch"');
  });

  it('has defaults the Kubernetes example relies on', () => {
    expect(LOG_SHIPPER_DEFAULTS.socketPath).toBe('/var/run/patchbay/log-shipper.sock');
  });
});

describe('metrics sidecar', () => {
  it('aggregates counts, timings and gauges with prom-client and serves the Prometheus text on loopback', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const errors: unknown[] = [];
    const sidecar = await serveMetricsSidecar({ socketPath: join(tmp.dir, 'm.sock'), httpPort: 0, onError: (e) => errors.push(e) });
    perTest.defer(() => sidecar.server.close());
    expect(sidecar.http.host).toBe('127.0.0.1');
    const channel = new SidecarChannel({ connect: join(tmp.dir, 'm.sock') });
    perTest.defer(() => channel.destroy());
    let now = 0;
    const metrics = new SidecarMetrics(channel, { now: () => now });
    metrics.count('jobs_total', 1, { kind: 'a' });
    metrics.count('jobs_total', 2, { kind: 'a' });
    metrics.count('jobs_total', 1, { kind: 'b' });
    metrics.gauge('queue_depth', 7);
    const done = metrics.startTimer('work_ms', { kind: 'a' });
    now = 42;
    expect(done()).toBe(42);
    metrics.count('jobs_total', 1, { other: 'labels' }); // refused: labels changed shape
    const text = await metricsText(channel);
    expect(text).toMatch(/^jobs_total\{kind="a"\} 3$/m);
    expect(text).toMatch(/^jobs_total\{kind="b"\} 1$/m);
    expect(text).toMatch(/^queue_depth 7$/m);
    expect(text).toMatch(/^work_ms_bucket\{le="50",kind="a"\} 1$/m);
    expect(text).toMatch(/^work_ms_sum\{kind="a"\} 42$/m);
    expect(sidecar.stats()).toMatchObject({ samples: 5, refused: 1, series: 3 });
    expect(errors).toHaveLength(1);

    const scrape = await fetch(sidecar.http.url);
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toBe(text);
    expect((await fetch(sidecar.http.url.replace('/metrics', '/other'))).status).toBe(404);
    expect(await channel.request('metrics.address')).toEqual(sidecar.http);
  });

  it('checks names on the app side, before anything is sent', () => {
    const sent: unknown[] = [];
    const metrics = new SidecarMetrics({ send: (_t, d) => (sent.push(d), true) });
    expect(() => metrics.count('bad name')).toThrow(/Prometheus metric name/);
    expect(() => metrics.count('ok', -1)).toThrow(/>= 0/);
    expect(sent).toEqual([]);
  });

  it('has defaults the Kubernetes example relies on', () => {
    expect(METRICS_SIDECAR_DEFAULTS).toMatchObject({ socketPath: '/var/run/patchbay/metrics.sock', port: 9464, host: '127.0.0.1', path: '/metrics' });
  });
});
