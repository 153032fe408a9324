/**
 * Short polling of long jobs: {@link PollHandle} (the job registry) and {@link PollHandler} (its
 * HTTP face: `202` + `Location` + `Retry-After`, status with `ETag`/`304`, `Prefer: wait`,
 * `Idempotency-Key`, `DELETE` to cancel, `410` after the TTL), and the {@link JobStore} seam that
 * shares jobs between processes ({@link MemoryJobStore} in one process, `RedisJobStore` from
 * `patchbay/redis` across many).
 *
 * @module
 */
export {
  PollHandle,
  PollJob,
  pollChannels,
  type PollHandleOptions,
  type PollHandleStats,
  type PollJobContext,
  type PollJobError,
  type PollJobFunction,
  type PollJobState,
  type PollProgress,
  type PollSnapshot,
  type PollStartOptions,
  WORKER_LOST,
} from './poll-handle.js';
export { MemoryJobStore, type MemoryJobStoreOptions, type MemoryJobStoreSize } from './store.js';
export type { JobCreate, JobCreateResult, JobLookup, JobStore, JobStoreListener, JobUpdate, StoredJob } from '../core/jobs.js';
export { PollHandler, type PollAction, type PollHandlerOptions, type PollHandlerStats, type PollResultMode } from './poll-handler.js';
