/**
 * Server-Sent Events: the strict serializer, {@link SseStream} with its hub (per-turn flushes,
 * one heartbeat timer, backpressure policies), the `node:http` and web `Response` transports,
 * and {@link SseHandler} for broker topics with `Last-Event-ID` replay.
 *
 * @module
 */
export { formatEvent, serializeComment, serializeEvent, type SseEvent } from './serialize.js';
export { SSE_GAP_HEADER, SSE_OPEN_EVENT, SseHandler, type SseHandlerOptions, type SseHandlerStats, type SseTarget } from './sse-handler.js';
export { nodeSink, sseResponse, type SseResponseOptions } from './sinks.js';
export {
  sseChannels,
  SseHub,
  SseStream,
  type SseCloseOptions,
  type SseCloseReason,
  type SseHubOptions,
  type SseHubStats,
  type SseOverflowPolicy,
  type SseSink,
  type SseStreamOptions,
  type SseStreamStats,
} from './sse-stream.js';
