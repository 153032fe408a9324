/**
 * JSON at the edges, with one rule for every entry point.
 *
 * Anything parsed from the network (publish bodies, WebSocket frames, job bodies, sidecar frames,
 * records read back from Redis) goes through {@link parseJson}: its nesting depth is checked by a
 * linear scan of the text before `JSON.parse` runs, and a `__proto__` key at any depth is refused
 * (`Object.assign` and many merge helpers would turn it into a prototype). Refusals are
 * {@link ProtocolError}s (`PB_ERR_PROTOCOL`, a `400` over HTTP).
 *
 * Anything a caller publishes goes through {@link assertJsonValue}: a value every transport can
 * carry is a JSON value no deeper than the limit, with no cycle, no BigInt, function or symbol, and
 * only well-formed Unicode strings (a lone surrogate cannot be written as UTF-8). Refusals are
 * {@link InvalidArgumentError}s (`PB_ERR_INVALID_ARGUMENT`).
 *
 * Why a depth limit: `JSON.stringify` recurses, so a value nested a few thousand deep throws a
 * `RangeError` (stack overflow) wherever it is serialized — possibly in another process, long
 * after it was accepted.
 *
 * @module
 */
import { InvalidArgumentError, ProtocolError } from './errors.js';

/**
 * The nesting depth allowed by default: objects and arrays inside each other, the outermost
 * counting 1. The same default as .NET's `System.Text.Json`.
 */
export const DEFAULT_MAX_JSON_DEPTH = 64;

/** The most a depth limit may be set to: deeper values would risk the stack of `JSON.stringify`. */
export const MAX_JSON_DEPTH_LIMIT = 1000;

/** The one key refused at every depth of JSON from the network and of published values. */
export const RESERVED_JSON_KEY = '__proto__';

/** Options for {@link parseJson} and {@link assertJsonValue}. */
export interface JsonLimits {
  /**
   * The deepest nesting of objects and arrays allowed (the outermost counts 1).
   * @defaultValue {@link DEFAULT_MAX_JSON_DEPTH} (64)
   */
  readonly maxDepth?: number;
  /**
   * Names the value in error messages ("The body", "A frame").
   * @defaultValue `'The JSON'` for {@link parseJson}, `'data'` for {@link assertJsonValue}
   */
  readonly what?: string;
}

/**
 * Checks a `maxDepth` option: an integer from 1 to {@link MAX_JSON_DEPTH_LIMIT}.
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) otherwise.
 */
export function checkMaxDepth(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_JSON_DEPTH_LIMIT) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be an integer from 1 to ${MAX_JSON_DEPTH_LIMIT}, got ${String(value)}`);
  }
  return value;
}

/**
 * Parses JSON text from an untrusted peer.
 *
 * @throws ProtocolError (`PB_ERR_PROTOCOL`) when the text is not JSON, nests deeper than
 *   `maxDepth`, or has a `__proto__` key at any depth.
 */
export function parseJson(text: string, limits?: JsonLimits): unknown {
  const maxDepth = limits?.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const what = limits?.what ?? 'The JSON';
  scan(text, maxDepth, what);
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new ProtocolError(`${what} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

/**
 * One pass over the text, before parsing: counts nesting outside strings and looks at every key
 * that could spell `__proto__`. Never recurses, so no input can overflow the stack here. Text
 * that is not JSON may pass the scan; `JSON.parse` refuses it next.
 */
function scan(text: string, maxDepth: number, what: string): void {
  const n = text.length;
  let depth = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const end = stringEnd(text, i);
      if (end === -1) return; // unterminated: JSON.parse says so
      if (couldBeReserved(text, i, end) && isKey(text, end) && decodeKey(text, i, end) === RESERVED_JSON_KEY) {
        throw new ProtocolError(`${what} has a "__proto__" key, which is refused at any depth`);
      }
      i = end;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) throw new ProtocolError(`${what} nests deeper than ${maxDepth} levels of objects and arrays`);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
}

/** The index of the quote that closes the string opening at `start`, or -1. */
function stringEnd(text: string, start: number): number {
  let j = text.indexOf('"', start + 1);
  while (j !== -1) {
    let slashes = 0;
    for (let k = j - 1; text.charCodeAt(k) === 0x5c /* \ */; k--) slashes++;
    if (slashes % 2 === 0) return j;
    j = text.indexOf('"', j + 1);
  }
  return -1;
}

/** `"__proto__"` is 9 characters; with escapes each may take up to 6. */
function couldBeReserved(text: string, start: number, end: number): boolean {
  const len = end - start - 1;
  if (len === 9) return text.charCodeAt(start + 1) === 0x5f /* _ */ || text.charCodeAt(start + 1) === 0x5c;
  return len > 9 && len <= 54 && text.indexOf('\\', start + 1) < end;
}

function isKey(text: string, end: number): boolean {
  for (let k = end + 1; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (c === 0x3a /* : */) return true;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  }
  return false;
}

function decodeKey(text: string, start: number, end: number): string | undefined {
  try {
    return JSON.parse(text.slice(start, end + 1)) as string;
  } catch {
    return undefined;
  }
}

/**
 * Asserts that `value` is data every transport can carry: a JSON value (objects with a `toJSON`
 * method are checked as what it returns) nested at most `maxDepth` deep, without cycles, BigInt,
 * functions or symbols, whose strings and keys are well-formed Unicode, with no `__proto__` key.
 * `undefined` inside an object or array is allowed (JSON leaves it out, or writes `null`), as are
 * byte arrays (`Uint8Array`, which count as one level: JSON writes them as an object).
 *
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) naming the first thing that is wrong and where.
 */
export function assertJsonValue(value: unknown, limits?: JsonLimits): void {
  const maxDepth = limits?.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const what = limits?.what ?? 'data';
  // Strings are by far the most common payload: no walk, no allocation.
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw new InvalidArgumentError(`\`${what}\` holds a string that is not well-formed Unicode (a lone surrogate), which UTF-8 cannot carry`);
    return;
  }
  if (typeof value !== 'object' || value === null) {
    leaf(value, what, []);
    return;
  }
  walk(value, [], 0, new Set(), maxDepth, what);
}

/** The keys from the value down to where a problem is, kept as a stack: a path string is built only for an error. */
type Path = (string | number)[];

function pathText(what: string, path: Path): string {
  let out = what;
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : `.${key.slice(0, 40)}`;
  return out;
}

function leaf(value: unknown, what: string, path: Path): void {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) {
        throw new InvalidArgumentError(`\`${pathText(what, path)}\` is a string that is not well-formed Unicode (a lone surrogate), which UTF-8 cannot carry`);
      }
      return;
    case 'bigint':
      throw new InvalidArgumentError(`\`${pathText(what, path)}\` is a BigInt, which JSON cannot carry: send it as a string`);
    case 'function':
    case 'symbol':
      throw new InvalidArgumentError(`\`${pathText(what, path)}\` is a ${typeof value}, which JSON cannot carry`);
    default:
  }
}

function walk(input: object, path: Path, depth: number, ancestors: Set<object>, maxDepth: number, what: string): void {
  let value: object = input;
  const toJSON = (input as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    const json = (toJSON as (key: string) => unknown).call(input, '');
    if (typeof json !== 'object' || json === null) {
      leaf(json, what, path);
      return;
    }
    value = json;
  }
  if (depth + 1 > maxDepth) throw new InvalidArgumentError(`\`${what}\` nests deeper than ${maxDepth} levels of objects and arrays (at ${pathText(what, path)})`);
  // Bytes: JSON writes them as an object of numbers, one level down, so they count as a level.
  if (ArrayBuffer.isView(value)) return;
  if (ancestors.has(value)) throw new InvalidArgumentError(`\`${pathText(what, path)}\` refers back to itself (a cycle), which JSON cannot carry`);
  ancestors.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item === undefined || item === null) continue;
      path.push(i);
      if (typeof item === 'object') walk(item, path, depth + 1, ancestors, maxDepth, what);
      else leaf(item, what, path);
      path.pop();
    }
  } else {
    for (const key of Object.keys(value)) {
      if (key === RESERVED_JSON_KEY) throw new InvalidArgumentError(`\`${pathText(what, path)}\` has a "__proto__" key, which is refused at any depth`);
      if (!key.isWellFormed()) throw new InvalidArgumentError(`\`${pathText(what, path)}\` has a key that is not well-formed Unicode (a lone surrogate)`);
      const item: unknown = (value as Record<string, unknown>)[key];
      if (item === undefined || item === null) continue;
      path.push(key);
      if (typeof item === 'object') walk(item, path, depth + 1, ancestors, maxDepth, what);
      else leaf(item, what, path);
      path.pop();
    }
  }
  ancestors.delete(value);
}
