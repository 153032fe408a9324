/**
 * The node:http helpers the handlers share: bodies with a byte limit, JSON answers and errors
 * (one table from error code to status), CORS, and streamed NDJSON answers.
 *
 * @module
 */
export { DEFAULT_MAX_BODY_BYTES, decodeBody, readBody } from './body.js';
export { applyCors, type CorsOptions } from './cors.js';
export { isAllowedOrigin } from './origin.js';
export { decodePathSegment, requestQuery, requestUrl } from './url.js';
export {
  JSON_LINES_CONTENT_TYPE,
  jsonLinesResponse,
  streamJsonLines,
  type JsonLinesContext,
  type JsonLinesOptions,
  type JsonLinesResult,
  type JsonLinesSource,
} from './json-lines.js';
export { errorStatus, sendError, sendJson, type ErrorBody } from './respond.js';
