/**
 * Long polling over the purgatory: {@link LongPollHandler}.
 *
 * @module
 */
export {
  CURSOR_HEADER,
  DEFAULT_MAX_ANSWER_BYTES,
  DEFAULT_MAX_CACHED_BYTES,
  GAP_HEADER,
  LongPollHandler,
  type LongPollHandlerOptions,
  type LongPollHandlerStats,
  type LongPollTarget,
} from './long-poll-handler.js';
