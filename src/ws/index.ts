/**
 * Push over WebSocket (the `patchbay/ws` subpath; needs the `ws` package): {@link WsHandler}
 * serves a `PubSubBroker`'s topics to sockets that subscribe, unsubscribe and publish with
 * small JSON frames, resume from a cursor with no gap and no duplicate, and are kept honest by a
 * heartbeat, a bounded send buffer per socket and frame size limits.
 *
 * @module patchbay/ws
 */
export {
  wsChannels,
  WsConnection,
  type WsCloseReason,
  type WsConnectionStats,
  type WsOverflowPolicy,
  type WsTarget,
} from './connection.js';
export {
  WS_SUBPROTOCOL,
  type WsClientFrame,
  type WsErrorFrame,
  type WsLogGapFrame,
  type WsMessageFrame,
  type WsOverflowGapFrame,
  type WsPingFrame,
  type WsPongFrame,
  type WsPublishedFrame,
  type WsPublishFrame,
  type WsRef,
  type WsServerFrame,
  type WsSubscribedFrame,
  type WsSubscribeFrame,
  type WsUnsubscribedFrame,
  type WsUnsubscribeFrame,
} from './protocol.js';
export { WsHandler, type WsAttachOptions, type WsAuthorize, type WsHandlerOptions, type WsHandlerStats } from './ws-handler.js';
