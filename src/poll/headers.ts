/**
 * The request headers of the short-polling protocol, parsed strictly and cheaply:
 * `Prefer` (RFC 7240), `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header) and
 * `If-None-Match` (RFC 9110 §13.1.2, weak comparison).
 *
 * @module
 * @internal
 */
import { InvalidArgumentError } from '../core/errors.js';

/** What a `Prefer` header asks of the poll handler. @internal */
export interface Preferences {
  /** `respond-async` was asked for. */
  readonly respondAsync: boolean;
  /** `wait=N` in seconds (the first `wait` only, as RFC 7240 §2 says), or `undefined`. */
  readonly wait: number | undefined;
}

const NONE: Preferences = Object.freeze({ respondAsync: false, wait: undefined });
/** Waits longer than this many seconds are all "huge": they are clamped by the handler anyway. */
const HUGE_WAIT = 1e9;

/**
 * Parses `Prefer` (several headers arrive joined with commas, which RFC 7240 §2 makes
 * equivalent). Preferences other than `respond-async` and `wait` are ignored, as are their
 * parameters (after `;`). Only the first instance of each preference counts.
 *
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) when `wait` has no value or a value
 *   that is not delta-seconds (digits only: no sign, no fraction), or the header is not a list of
 *   tokens (an unterminated quoted string).
 * @internal
 */
export function parsePrefer(header: string | undefined): Preferences {
  if (header === undefined || header === '') return NONE;
  let respondAsync = false;
  let wait: number | undefined;
  let seenWait = false;
  for (const item of splitList(header, 'Prefer')) {
    const semi = indexOutsideQuotes(item, ';');
    const pref = (semi === -1 ? item : item.slice(0, semi)).trim();
    if (pref === '') continue;
    const eq = pref.indexOf('=');
    const name = (eq === -1 ? pref : pref.slice(0, eq)).trim().toLowerCase();
    if (name === 'respond-async') {
      respondAsync = true;
    } else if (name === 'wait' && !seenWait) {
      seenWait = true;
      const raw = eq === -1 ? '' : unquote(pref.slice(eq + 1).trim());
      if (!/^\d+$/.test(raw)) {
        throw new InvalidArgumentError(
          `Expected \`Prefer: wait\` to be a whole number of seconds (RFC 7240 delta-seconds), got ${JSON.stringify(raw.slice(0, 40))}`,
        );
      }
      wait = raw.length > 9 ? HUGE_WAIT : Number(raw);
    }
  }
  return respondAsync || wait !== undefined ? { respondAsync, wait } : NONE;
}

/** Longest `Idempotency-Key` accepted, in characters. @internal */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/**
 * The `Idempotency-Key` of a request: a Structured Field string (`"…"`, with `\"` and `\\`
 * escapes) or, as most clients send it, the bare key. 1 to 255 printable ASCII characters.
 *
 * @param values - Every `Idempotency-Key` header of the request (`req.headersDistinct`).
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for more than one header (the draft
 *   forbids it), an empty or overlong key, or characters outside printable ASCII.
 * @internal
 */
export function parseIdempotencyKey(values: readonly string[] | undefined): string | undefined {
  if (values === undefined || values.length === 0) return undefined;
  if (values.length > 1) throw new InvalidArgumentError('Send at most one Idempotency-Key header');
  let key = values[0]!.trim();
  if (key.startsWith('"')) {
    const m = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/.exec(key);
    if (m === null) throw new InvalidArgumentError('Expected `Idempotency-Key` to be a Structured Field string: printable ASCII in double quotes, with \\" and \\\\ escapes');
    key = m[1]!.replace(/\\(["\\])/g, '$1');
  }
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH || !/^[\x20-\x7e]+$/.test(key)) {
    throw new InvalidArgumentError(
      `Expected \`Idempotency-Key\` to be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters, got ${key.length} characters`,
    );
  }
  return key;
}

/** `If-None-Match: *`. @internal */
export const ANY_TAG = -1;

/**
 * The job versions an `If-None-Match` names: our entity tags are `"<version>"` (weak `W/` forms
 * compare equal, as RFC 9110 says for `If-None-Match`). Tags that are not ours match nothing and
 * are dropped; `*` is {@link ANY_TAG}. Returns `undefined` without the header, a number for
 * one tag (the common case, no array), an array for several.
 * @internal
 */
export function parseIfNoneMatch(header: string | undefined): number | readonly number[] | undefined {
  if (header === undefined) return undefined;
  const one = /^\s*(?:W\/)?"(0|[1-9]\d{0,14})"\s*$/.exec(header);
  if (one !== null) return Number(one[1]);
  if (header.trim() === '*') return ANY_TAG;
  const out: number[] = [];
  for (const m of header.matchAll(/(?:^|,)\s*(?:W\/)?"(0|[1-9]\d{0,14})"\s*(?=,|$)/g)) {
    out.push(Number(m[1]));
    if (out.length >= 32) break;
  }
  return out.length === 1 ? out[0]! : out;
}

/** Whether `version` is one of the tags from {@link parseIfNoneMatch}. @internal */
export function tagsMatch(tags: number | readonly number[], version: number): boolean {
  if (typeof tags === 'number') return tags === version || tags === ANY_TAG;
  return tags.includes(version);
}

function splitList(header: string, name: string): string[] {
  if (header.indexOf('"') === -1) return header.split(',');
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const c = header.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c) i++;
      else if (c === 0x22) quoted = false;
    } else if (c === 0x22) quoted = true;
    else if (c === 0x2c) {
      out.push(header.slice(start, i));
      start = i + 1;
    }
  }
  if (quoted) throw new InvalidArgumentError(`The ${name} header has an unterminated quoted string`);
  out.push(header.slice(start));
  return out;
}

function indexOutsideQuotes(text: string, char: string): number {
  if (text.indexOf('"') === -1) return text.indexOf(char);
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === char) return i;
  }
  return -1;
}

function unquote(word: string): string {
  if (word.length >= 2 && word.startsWith('"') && word.endsWith('"')) return word.slice(1, -1).replace(/\\(.)/g, '$1');
  return word;
}
