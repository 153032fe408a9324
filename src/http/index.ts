/**
 * The node:http helpers the handlers share: bodies with a byte limit, JSON answers and errors
 * (one table from error code to status), and CORS.
 *
 * @module
 */
export { DEFAULT_MAX_BODY_BYTES, decodeBody, readBody } from './body.js';
export { applyCors, type CorsOptions } from './cors.js';
export { errorStatus, sendError, sendJson, type ErrorBody } from './respond.js';
