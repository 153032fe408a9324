/**
 * What every adapter's upload route accepts. It is structural on purpose: an `UploadHandler`
 * from `patchbay/upload` fits it, and an adapter's declarations name no type of `@tus/server` (an
 * optional peer), so an app that does not upload type-checks without installing it.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * A handler of resumable uploads, as the adapters' upload routes take it: an `UploadHandler`
 * from `patchbay/upload` (or anything that serves Node's request and response and routes under
 * its own base path).
 */
export interface UploadHandlerLike {
  /**
   * Serves one request and settles when it is answered.
   * @param req - The request.
   * @param res - The response.
   */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}
