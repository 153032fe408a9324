/**
 * Ready sidecars, each with its app side and its sidecar side: a log shipper
 * ({@link SidecarLogger}, {@link serveLogShipper}: batched JSON lines with rotation by size) and
 * a metrics sidecar ({@link SidecarMetrics}, {@link serveMetricsSidecar}: `prom-client`
 * aggregation served in the Prometheus text format on a loopback port). `prom-client` is an
 * optional peer dependency, needed only where the metrics sidecar runs.
 *
 * @module patchbay/sidecars
 */
export {
  LOG_MESSAGE_TYPE,
  LOG_SHIPPER_DEFAULTS,
  logShipperStats,
  serveLogShipper,
  SidecarLogger,
  type LogLevel,
  type LogRecord,
  type LogShipper,
  type LogShipperOptions,
  type LogShipperStats,
  type LogTarget,
} from './log-shipper.js';
export {
  METRICS_MESSAGE_TYPES,
  METRICS_SIDECAR_DEFAULTS,
  metricsText,
  serveMetricsSidecar,
  SidecarMetrics,
  type MetricLabels,
  type MetricsHttpAddress,
  type MetricsSidecar,
  type MetricsSidecarOptions,
  type MetricsSidecarStats,
  type MetricsTarget,
} from './metrics.js';
