/**
 * Sidecar channels: {@link SidecarChannel} (length-prefixed frames over a Unix socket, stdio or
 * loopback TCP; sends, correlated requests, acknowledgements, replay without duplicates, a
 * bounded queue with an overflow policy), {@link SidecarSupervisor} (spawn, health-check,
 * restart with backoff, give up) and {@link serveSidecar} for the sidecar's own end.
 * Independent of HTTP.
 *
 * @module
 */
export {
  SidecarChannel,
  sidecarChannels,
  type SidecarChannelEvents,
  type SidecarChannelOptions,
  type SidecarChannelStats,
  type SidecarDrainOptions,
  type SidecarPingOptions,
  type SidecarReconnectOptions,
  type SidecarRequestOptions,
} from './channel.js';
export {
  sidecarConnector,
  type SidecarConnector,
  type SidecarStream,
  type SidecarStreamPair,
  type SidecarTarget,
  type SidecarTcpTarget,
} from './connection.js';
export { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES, FrameDecoder, MAX_FRAME_BYTES_LIMIT, type FrameDecoderOptions } from './framing.js';
export { type SidecarContext, type SidecarHandler, type SidecarMessage } from './inbox.js';
export { type SidecarDropCounts, type SidecarDropInfo, type SidecarOverflowPolicy } from './outbox.js';
export {
  acceptSidecarStream,
  serveSidecar,
  SIDECAR_SOCKET_ENV,
  SIDECAR_SUPERVISED_ENV,
  SIDECAR_TRANSPORT_ENV,
  SidecarServer,
  type ServeSidecarOptions,
  type SidecarServerAddress,
  type SidecarServerStats,
} from './serve.js';
export {
  SidecarSupervisor,
  type SidecarExit,
  type SidecarHealthCheckOptions,
  type SidecarProcess,
  type SidecarRestartOptions,
  type SidecarSpawn,
  type SidecarSupervisorEvents,
  type SidecarSupervisorOptions,
  type SidecarSupervisorState,
  type SidecarStartOptions,
  type SidecarSupervisorStats,
} from './supervisor.js';
