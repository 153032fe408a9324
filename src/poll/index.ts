/**
 * Short polling of long jobs: a job registry, {@link PollHandle} (jobs in this process) or
 * {@link SharedPollHandle} (jobs shared between processes through a {@link JobStore}:
 * {@link MemoryJobStore} in one process, `RedisJobStore` from `patchbay/redis` across many), both
 * a {@link JobRegistry}; and {@link PollHandler}, the HTTP face of either (`202` + `Location` +
 * `Retry-After`, status with `ETag`/`304`, `Prefer: wait`, `Idempotency-Key`, `DELETE` to cancel,
 * `410` after the TTL).
 *
 * @module
 */
export type { PollSnapshot } from './job-record.js';
export { PollJob, type PollJobContext, type PollJobDoneOptions, type PollJobFunction } from './poll-job.js';
export { JobRegistry, pollChannels, type PollHandleOptions, type PollHandleStats, type PollStartOptions, type PollWaitOptions } from './registry.js';
export { PollHandle } from './poll-handle.js';
export { SharedPollHandle, type SharedPollHandleOptions, type SharedPollHandleStats } from './shared-poll-handle.js';
export { MemoryJobStore, type MemoryJobStoreOptions, type MemoryJobStoreStats } from './store.js';
export type { JobCreate, JobCreateResult, JobLookup, JobStore, JobStoreListener, JobUpdate, PollJobError, PollJobState, PollProgress, StoredJob } from '../core/jobs.js';
export { PollHandler, type PollAction, type PollHandlerOptions, type PollHandlerStats, type PollResultMode, type PollRouteParams } from './poll-handler.js';
