/**
 * Path helpers for adapters that mount a handler under its base path.
 *
 * @module
 */

/** The path of a request target, without its query. @internal */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** Is `path` the base path or under it? @internal */
export function within(path: string, base: string): boolean {
  const b = base.endsWith('/') ? base.slice(0, -1) : base;
  return path === b || path.startsWith(`${b}/`);
}
