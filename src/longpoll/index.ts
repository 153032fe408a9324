/**
 * Long polling over the purgatory: {@link LongPollHandler}.
 *
 * @module
 */
export { CURSOR_HEADER, GAP_HEADER, LongPollHandler, type LongPollHandlerOptions, type LongPollStats, type LongPollTarget } from './long-poll-handler.js';
