/**
 * patchbay: backend communication primitives for Node.js.
 *
 * This entry point holds the core (clock, errors, lifecycle) and the {@link Purgatory}.
 * Later primitives join it, and optional integrations get subpath exports of their own.
 *
 * @module
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
