/**
 * `patchbay/upload`: resumable uploads (tus 1.0) on `@tus/server` and `@tus/file-store`, with
 * limits and the hand-off of a completed upload's processing to a `PollHandle` job.
 * Install the peers: `npm install @tus/server @tus/file-store`.
 *
 * @module patchbay/upload
 */
export {
  JOB_LOCATION_HEADER,
  UploadHandler,
  type UploadAction,
  type UploadedFile,
  type UploadHandlerOptions,
  type UploadHandlerStats,
} from './upload-handler.js';
