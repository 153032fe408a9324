/**
 * patchbay: backend communication primitives for Node.js.
 *
 * This entry point holds the core (clock, errors, lifecycle), the {@link Purgatory}, the broker,
 * the HTTP handlers (long polling, SSE, publishing, short polling) and the sidecar channel; the
 * optional integrations (clients, Redis, WebSocket, uploads, frameworks) have subpath exports of
 * their own.
 *
 * It exports the public API only: each folder's `index.ts` lists its public names, and the
 * library's own modules import internals by file path. `api/index.api.md` is the surface it
 * commits to.
 *
 * @module patchbay
 */
export * from './core/index.js';
export * from './purgatory/index.js';
export * from './pubsub/index.js';
export * from './http/index.js';
export * from './longpoll/index.js';
export * from './sse/index.js';
export * from './publish/index.js';
export * from './poll/index.js';
export * from './sidecar/index.js';
