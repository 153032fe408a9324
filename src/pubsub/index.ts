/**
 * Many-to-many topics: the {@link PubSubBroker}, its subscriptions, topic patterns, the bounded
 * message log and the backend port with its in-memory default.
 *
 * @module
 */
export {
  patternsOverlap,
  targetOverlaps,
  type AccessGrant,
  type AccessVerdict,
  type Authorize,
} from './access.js';
export {
  PubSubBroker,
  type PubSubAuthorize,
  type PubSubBrokerOptions,
  type PubSubBrokerStats,
  type PublishOptions,
  type ReadOptions,
  type ReplayInfo,
  type RequestOptions,
  type SubscribeOptions,
} from './broker.js';
export { MemoryBackend, type Backend, type BackendRead, type BackendStats, type MemoryBackendOptions, type PublishRecord } from './backend.js';
export { Message, parseCursor, type Cursor, type MessageHeaders } from './message.js';
export { MessageLog, type LogRead, type MessageLogLimits } from './message-log.js';
export { pubsubChannels, Subscription, type OverflowPolicy, type SubscriptionStats } from './subscription.js';
export type { TopicTarget } from './target.js';
export { MAX_TOPIC_LENGTH, MAX_TOPIC_TOKENS, matchTokens, parsePattern, parseTopic, TopicIndex } from './topic.js';
