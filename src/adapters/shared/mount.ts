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

/** `path` without one trailing slash. @internal */
export function trimSlash(path: string): string {
  return path.endsWith('/') ? path.slice(0, -1) : path;
}

/**
 * Is `path` the base path or under it? A base segment that starts with `:` (`/rooms/:room/jobs`,
 * as `PollHandler` takes) matches any one non-empty segment. @internal
 */
export function within(path: string, base: string): boolean {
  const b = trimSlash(base);
  if (!b.includes('/:')) return path === b || path.startsWith(`${b}/`);
  const want = b.split('/');
  const got = path.split('/', want.length);
  return got.length === want.length && want.every((segment, i) => (/^:[A-Za-z_]/.test(segment) ? got[i] !== '' : segment === got[i]));
}
