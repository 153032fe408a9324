/**
 * What the library's own layers take from `http/` that is not public API: the reverse of the
 * status/code table (`errorStatus`), for answers a framework or tus made. The adapters may import
 * only a folder's `index.js` or `internal.js` (eslint's layer rule), so this file is how they
 * reach it without making it public.
 *
 * @module
 * @internal
 */
export { codeForStatus } from './respond.js';
