/**
 * The metrics sidecar: the app sends counters, timings and gauges over a sidecar channel; the
 * sidecar aggregates them with `prom-client` and serves them in the Prometheus text format on a
 * loopback port. `prom-client` is an optional peer dependency, loaded only by
 * {@link serveMetricsSidecar}: the app side ({@link SidecarMetrics}) does not need it.
 *
 * @module
 */
import http from 'node:http';
import type * as PromClient from 'prom-client';
import { InvalidArgumentError, InvalidStateError } from '../core/errors.js';
import { describe, integerInRange, optionsObject } from '../core/validate.js';
import type { SidecarChannel } from '../sidecar/channel.js';
import { serveSidecar, type ServeSidecarOptions, type SidecarServer } from '../sidecar/serve.js';
import { defaultSocket } from './log-shipper.js';

/** The defaults of the metrics sidecar, shared by both sides (and the Kubernetes example). */
export const METRICS_SIDECAR_DEFAULTS = Object.freeze({
  /** Where the metrics sidecar listens for the app when no supervisor says otherwise. */
  socketPath: '/var/run/patchbay/metrics.sock',
  /** The HTTP port of the Prometheus text (9464, the port OpenTelemetry's Prometheus exporter uses). */
  port: 9464,
  /** The HTTP host: loopback only, unless told otherwise. */
  host: '127.0.0.1',
  /** The HTTP path of the Prometheus text. */
  path: '/metrics',
  /** Histogram buckets of timings, in ms. */
  buckets: Object.freeze([1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]),
});

/** Message types the metrics sidecar takes. */
export const METRICS_MESSAGE_TYPES = Object.freeze({
  /** `{ name, value, labels? }`: add `value` (default 1) to a counter. */
  count: 'metrics.count',
  /** `{ name, value, labels? }`: record one timing (ms) in a histogram. */
  observe: 'metrics.observe',
  /** `{ name, value, labels? }`: set a gauge. */
  gauge: 'metrics.gauge',
});

/** Label names and values of one sample. */
export type MetricLabels = Readonly<Record<string, string | number>>;

/** What can carry metrics to the sidecar: a channel, or a `SidecarSupervisor`. */
export interface MetricsTarget {
  /** {@link SidecarChannel.send}. */
  send(type: string, data?: unknown): boolean;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new InvalidArgumentError(`Expected a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got ${describe(name)}`);
  }
}

/**
 * The app side of the metrics sidecar. Each call is one fire-and-forget message; the app never
 * waits on the sidecar, and aggregation happens there.
 *
 * @example
 * ```ts
 * const metrics = new SidecarMetrics(metricsSupervisor);
 * metrics.count('http_requests_total', 1, { route: '/pub', status: 201 });
 * const done = metrics.startTimer('http_request_duration_ms', { route: '/pub' });
 * // ... handle the request ...
 * done();
 * ```
 */
export class SidecarMetrics {
  readonly #target: MetricsTarget;
  readonly #now: () => number;

  /**
   * @param target - Where samples go: a {@link SidecarChannel} or a `SidecarSupervisor`.
   * @param options - `now`: the time source of {@link SidecarMetrics.startTimer}, in ms (default `performance.now`).
   */
  constructor(target: MetricsTarget, options: { readonly now?: () => number } = {}) {
    if (typeof target?.send !== 'function') throw new InvalidArgumentError(`Expected a target with send(), got ${describe(target)}`);
    this.#target = target;
    this.#now = optionsObject('options', options).now ?? (() => performance.now());
  }

  /** Adds `value` (default 1) to the counter `name`. @returns What the channel's `send` returned. */
  count(name: string, value = 1, labels?: MetricLabels): boolean {
    checkName(name);
    if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
      throw new InvalidArgumentError(`Expected a counter increment >= 0, got ${describe(value)}`);
    }
    return this.#target.send(METRICS_MESSAGE_TYPES.count, labels === undefined ? { name, value } : { name, value, labels });
  }

  /** Records one timing of `ms` milliseconds in the histogram `name`. */
  observe(name: string, ms: number, labels?: MetricLabels): boolean {
    checkName(name);
    if (typeof ms !== 'number' || !Number.isFinite(ms)) throw new InvalidArgumentError(`Expected a finite number of ms, got ${describe(ms)}`);
    return this.#target.send(METRICS_MESSAGE_TYPES.observe, labels === undefined ? { name, value: ms } : { name, value: ms, labels });
  }

  /** Sets the gauge `name` to `value`. */
  gauge(name: string, value: number, labels?: MetricLabels): boolean {
    checkName(name);
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidArgumentError(`Expected a finite gauge value, got ${describe(value)}`);
    return this.#target.send(METRICS_MESSAGE_TYPES.gauge, labels === undefined ? { name, value } : { name, value, labels });
  }

  /**
   * Starts timing; the returned function records the elapsed ms in the histogram `name`
   * (with `labels`, plus those it is given) and returns them.
   */
  startTimer(name: string, labels?: MetricLabels): (more?: MetricLabels) => number {
    checkName(name);
    const start = this.#now();
    return (more) => {
      const ms = this.#now() - start;
      this.observe(name, ms, more === undefined ? labels : { ...labels, ...more });
      return ms;
    };
  }
}

/** Options of {@link serveMetricsSidecar}. */
export interface MetricsSidecarOptions extends Omit<ServeSidecarOptions, 'onClose' | 'lastHandled'> {
  /**
   * The HTTP port of the Prometheus text; 0 picks a free one (ask `metrics.address` for it).
   * @defaultValue `9464`
   */
  readonly httpPort?: number;
  /**
   * The HTTP host.
   * @defaultValue `'127.0.0.1'`
   */
  readonly httpHost?: string;
  /**
   * Histogram buckets of timings, in ms.
   * @defaultValue `[1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]`
   */
  readonly buckets?: readonly number[];
  /**
   * Also export the sidecar process's own metrics (prom-client's default metrics).
   * @defaultValue `false`
   */
  readonly defaultMetrics?: boolean;
  /** Labels added to every metric (prom-client's default labels). */
  readonly defaultLabels?: Readonly<Record<string, string>>;
}

/** Where a metrics sidecar serves the Prometheus text. */
export interface MetricsHttpAddress {
  /** The host it listens on. */
  readonly host: string;
  /** The port it listens on. */
  readonly port: number;
  /** The full URL of the text. */
  readonly url: string;
}

/** Counters of a metrics sidecar. */
export interface MetricsSidecarStats {
  /** Samples taken. */
  readonly samples: number;
  /** Samples refused (a bad name, labels that changed shape, another type under the same name). */
  readonly refused: number;
  /** Metrics (names) known. */
  readonly series: number;
}

/** A running metrics sidecar (from {@link serveMetricsSidecar}). */
export interface MetricsSidecar {
  /** The sidecar server. */
  readonly server: SidecarServer;
  /** Where the Prometheus text is served. */
  readonly http: MetricsHttpAddress;
  /** The Prometheus text now. */
  metrics(): Promise<string>;
  /** Counters. */
  stats(): MetricsSidecarStats;
}

interface Sample {
  readonly name: string;
  readonly value: number;
  readonly labels?: Record<string, string | number>;
}

function asSample(data: unknown): Sample {
  const d = data as Partial<Sample> | null;
  if (d === null || typeof d !== 'object') throw new InvalidArgumentError('A metrics sample must be an object');
  checkName(d.name);
  if (typeof d.value !== 'number' || !Number.isFinite(d.value)) throw new InvalidArgumentError(`A metrics sample needs a finite value, got ${describe(d.value)}`);
  if (d.labels !== undefined && (d.labels === null || typeof d.labels !== 'object' || Array.isArray(d.labels))) {
    throw new InvalidArgumentError('A metrics sample\'s labels must be an object');
  }
  return d as Sample;
}

/**
 * Runs the metrics sidecar: aggregates `metrics.count`, `metrics.observe` and `metrics.gauge`
 * messages (see {@link SidecarMetrics}) with `prom-client` and serves them in the Prometheus
 * text format at `http://<httpHost>:<httpPort>/metrics`. Answers `metrics.text` (the text) and
 * `metrics.address` (`{ host, port, url }`) requests. A metric's label names are those of its
 * first sample; a later sample with other label names is refused (counted, reported to `onError`).
 *
 * @example
 * ```js
 * // metrics.mjs, spawned by a SidecarSupervisor
 * import { serveMetricsSidecar } from 'patchbay/sidecars';
 * await serveMetricsSidecar({ httpPort: 9464 });
 * ```
 *
 * @param options - See {@link MetricsSidecarOptions}.
 * @returns The running sidecar.
 * @throws `InvalidStateError` (`PB_ERR_INVALID_STATE`) when `prom-client` is not installed.
 */
export async function serveMetricsSidecar(options: MetricsSidecarOptions = {}): Promise<MetricsSidecar> {
  const o = optionsObject('options', options);
  const { httpPort: _p, httpHost: _h, buckets: _b, defaultMetrics: _m, defaultLabels: _l, ...serve } = o;
  const port = integerInRange('httpPort', o.httpPort ?? METRICS_SIDECAR_DEFAULTS.port, 0, 65535);
  const host = o.httpHost ?? METRICS_SIDECAR_DEFAULTS.host;
  const buckets = [...(o.buckets ?? METRICS_SIDECAR_DEFAULTS.buckets)];
  let prom: typeof PromClient;
  try {
    prom = await import('prom-client');
  } catch (err) {
    throw new InvalidStateError('serveMetricsSidecar needs the prom-client package: npm install prom-client', { cause: err });
  }
  const registry = new prom.Registry();
  if (o.defaultLabels !== undefined) registry.setDefaultLabels({ ...o.defaultLabels });
  if (o.defaultMetrics === true) prom.collectDefaultMetrics({ register: registry });
  const counters = new Map<string, PromClient.Counter>();
  const histograms = new Map<string, PromClient.Histogram>();
  const gauges = new Map<string, PromClient.Gauge>();
  const taken = new Set<string>();
  let samples = 0;
  let refused = 0;

  const labelsOf = (s: Sample): Record<string, string | number> => s.labels ?? {};
  function metric<M>(kind: Map<string, M>, s: Sample, make: (labelNames: string[]) => M): M {
    let m = kind.get(s.name);
    if (m === undefined) {
      if (taken.has(s.name)) throw new InvalidArgumentError(`The metric ${s.name} already exists with another type`);
      m = make(Object.keys(labelsOf(s)).sort());
      kind.set(s.name, m);
      taken.add(s.name);
    }
    return m;
  }

  const take = (type: string, data: unknown): void => {
    const s = asSample(data);
    const help = `${s.name} (from the app, via the patchbay metrics sidecar)`;
    if (type === METRICS_MESSAGE_TYPES.count) {
      if (s.value < 0) throw new InvalidArgumentError('A counter only goes up');
      metric(counters, s, (labelNames) => new prom.Counter({ name: s.name, help, labelNames, registers: [registry] })).inc(labelsOf(s), s.value);
    } else if (type === METRICS_MESSAGE_TYPES.observe) {
      metric(histograms, s, (labelNames) => new prom.Histogram({ name: s.name, help, labelNames, buckets, registers: [registry] })).observe(labelsOf(s), s.value);
    } else if (type === METRICS_MESSAGE_TYPES.gauge) {
      metric(gauges, s, (labelNames) => new prom.Gauge({ name: s.name, help, labelNames, registers: [registry] })).set(labelsOf(s), s.value);
    } else {
      throw new InvalidArgumentError(`Unknown metrics message type ${JSON.stringify(type)}`);
    }
    samples++;
  };

  const httpServer = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (req.method !== 'GET' || path !== METRICS_SIDECAR_DEFAULTS.path) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const address = httpServer.address();
  const boundPort = typeof address === 'object' && address !== null ? address.port : port;
  const where = { host, port: boundPort, url: `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}${METRICS_SIDECAR_DEFAULTS.path}` };
  const closeHttp = (): Promise<void> => new Promise<void>((resolve) => httpServer.close(() => resolve()));

  let server: SidecarServer;
  try {
    server = await serveSidecar(
      (message) => {
        if (message.kind === 'send') {
          try {
            take(message.type, message.data);
          } catch (err) {
            refused++;
            throw err; // reported to onError by the channel
          }
          return undefined;
        }
        if (message.type === 'metrics.text') return registry.metrics();
        if (message.type === 'metrics.address') return where;
        throw new InvalidArgumentError(`The metrics sidecar answers metrics.text and metrics.address, not ${JSON.stringify(message.type)}`);
      },
      { ...serve, ...defaultSocket(serve, METRICS_SIDECAR_DEFAULTS.socketPath), onClose: closeHttp },
    );
  } catch (err) {
    await closeHttp();
    throw err;
  }
  return {
    server,
    http: where,
    metrics: () => registry.metrics(),
    stats: () => ({ samples, refused, series: taken.size }),
  };
}

/** Reads the Prometheus text over a channel (the `metrics.text` request). */
export function metricsText(channel: Pick<SidecarChannel, 'request'>, options?: { readonly timeoutMs?: number }): Promise<string> {
  return channel.request('metrics.text', undefined, options) as Promise<string>;
}
