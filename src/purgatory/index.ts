/**
 * The Kafka-style purgatory. The hierarchical timing wheel under it (`timing-wheel.ts`) is an
 * internal of the purgatory, not part of the public API.
 *
 * @module
 */
export {
  DelayedOperation,
  type DelayedOperationOptions,
  Purgatory,
  purgatoryChannels,
  type OperationState,
  type PurgatoryOptions,
  type PurgatoryStats,
  type WaitOptions,
  type WaitOutcome,
} from './purgatory.js';
