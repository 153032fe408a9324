/**
 * Reading request headers that Node may hand over as a list.
 *
 * @module
 * @internal
 */

/** The first value of a request header (Node gives a list for some repeated headers). @internal */
export function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
