/**
 * Publishing over HTTP: {@link PublishHandler} checks the origin and `authorize` before it reads
 * a body, then publishes it to a broker topic.
 *
 * @module
 */
export { PublishHandler, type PublishHandlerOptions, type PublishHandlerStats } from './publish-handler.js';
