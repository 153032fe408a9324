/**
 * The Kafka-style purgatory and the hierarchical timing wheel under it.
 *
 * @module
 */
export {
  DelayedOperation,
  Purgatory,
  purgatoryChannels,
  type OperationState,
  type PurgatoryOptions,
  type PurgatoryStats,
  type WaitOptions,
  type WaitOutcome,
} from './purgatory.js';
export { MAX_TICK, TimerEntry, TimingWheel, type TimingWheelOptions } from './timing-wheel.js';
