/**
 * The small checks and conversions both job registries use: ids, idempotency keys, timeouts,
 * progress values, what a job function returned (its JSON) and what it threw (a
 * {@link PollJobError} safe to show clients).
 *
 * They are plain functions of their arguments, apart from the registries' state, so they are
 * tested through the registries and kept out of the way of their logic.
 *
 * @module
 * @internal
 */
import { randomBytes } from 'node:crypto';
import { ErrorCodes, InvalidArgumentError } from '../core/errors.js';
import type { PollJobError, PollProgress } from '../core/jobs.js';
import { assertJsonValue } from '../core/json.js';
import * as check from '../core/validate.js';

/** The longest delay a timer takes, in ms. @internal */
export const MAX_MS = 2 ** 31 - 1;
/** What a job id looks like (anything else is answered as unknown). @internal */
export const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Throws unless `key` is a string of 1 to 1024 characters. @internal */
export function checkKey(key: unknown): void {
  if (typeof key !== 'string' || key === '' || key.length > 1024) {
    throw new InvalidArgumentError(`Expected \`idempotencyKey\` to be a string of 1 to 1024 characters, got ${check.describe(key)}`);
  }
}

/** A new job (or owner) id: 16 URL-safe characters, unguessable. @internal */
export function newId(): string {
  return randomBytes(12).toString('base64url');
}

/** A timeout option: `undefined` and `Infinity` are none. @internal */
export function timeoutOption(name: string, value: unknown): number {
  if (value === undefined || value === Infinity) return Infinity;
  return check.integerInRange(name, value, 1, MAX_MS);
}

/** A progress report, checked and frozen. @internal */
export function normalizeProgress(value: unknown): PollProgress {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0 || value > 1) {
      throw new InvalidArgumentError(`Expected \`progress\` to be a fraction from 0 to 1, or { done, total?, message? }, got ${check.describe(value)}`);
    }
    return value;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`Expected \`progress\` to be a fraction from 0 to 1, or { done, total?, message? }, got ${check.describe(value)}`);
  }
  const { done, total, message } = value as { done?: unknown; total?: unknown; message?: unknown };
  if (typeof done !== 'number' || !Number.isFinite(done) || done < 0) {
    throw new InvalidArgumentError(`Expected \`progress.done\` to be a finite number >= 0, got ${check.describe(done)}`);
  }
  if (total !== undefined && (typeof total !== 'number' || !Number.isFinite(total) || total < 0)) {
    throw new InvalidArgumentError(`Expected \`progress.total\` to be a finite number >= 0, got ${check.describe(total)}`);
  }
  if (message !== undefined && (typeof message !== 'string' || message.length > 1000)) {
    throw new InvalidArgumentError(`Expected \`progress.message\` to be a string of at most 1000 characters, got ${check.describe(message)}`);
  }
  const out: { done: number; total?: number; message?: string } = { done };
  if (total !== undefined) out.total = total;
  if (message !== undefined) out.message = message;
  return Object.freeze(out);
}

/** Whether two progress reports say the same. @internal */
export function sameProgress(a: PollProgress | null, b: PollProgress): boolean {
  if (typeof a === 'number' || typeof b === 'number' || a === null) return a === b;
  return a.done === b.done && a.total === b.total && a.message === b.message;
}

function errorMessage(error: unknown): string {
  try {
    return error instanceof Error ? String(error.message) : String(error);
  } catch {
    return 'unknown error';
  }
}

/**
 * A job function's value as its outcome: its JSON, or a failure when it has none or is larger
 * than `maxResultBytes`. @internal
 */
export function resultOf(id: string, value: unknown, maxResultBytes: number): { kind: 'succeeded'; resultJson: string } | { kind: 'failed'; error: PollJobError } {
  let json: string | undefined;
  let problem: string | undefined;
  try {
    // Results travel as JSON (to clients, through a job store): held to the rule of published data.
    if (value !== undefined) assertJsonValue(value, { what: 'the result' });
    json = JSON.stringify(value === undefined ? null : value);
    if (json === undefined) problem = `the result is not JSON-serializable (${typeof value})`;
    else if (json.length > maxResultBytes / 3 && Buffer.byteLength(json) > maxResultBytes) {
      problem = `the result is larger than maxResultBytes (${maxResultBytes} bytes as JSON)`;
    }
  } catch (error) {
    problem = `the result is not JSON-serializable: ${errorMessage(error)}`;
  }
  if (problem !== undefined || json === undefined) {
    return { kind: 'failed', error: { name: 'InvalidResultError', code: ErrorCodes.INVALID_ARGUMENT, message: `Job ${id} failed: ${problem}` } };
  }
  return { kind: 'succeeded', resultJson: json };
}

/** The default serialization of what a job threw: name, message, string code; the stack only if asked. @internal */
export function serializeError(error: unknown, exposeStack: boolean): PollJobError {
  let name = 'Error';
  let message = 'The job failed';
  let code: string | undefined;
  let stack: string | undefined;
  try {
    if (typeof error === 'object' && error !== null) {
      const e = error as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown };
      if (typeof e.name === 'string' && e.name !== '') name = e.name.slice(0, 100);
      if (typeof e.message === 'string') message = e.message;
      if (typeof e.code === 'string') code = e.code.slice(0, 100);
      if (exposeStack && typeof e.stack === 'string') stack = e.stack.slice(0, 16_384);
    } else if (error !== undefined) {
      message = String(error);
    }
  } catch {
    // a hostile getter or toString: keep what we have
  }
  const out: { -readonly [K in keyof PollJobError]: PollJobError[K] } = { name, message: message.slice(0, 1000) };
  if (code !== undefined) out.code = code;
  if (stack !== undefined) out.stack = stack;
  return out;
}

/** A job's own serializer applied safely: its fields clipped, the default when it throws or answers nonsense. @internal */
export function serializeWith(custom: ((error: unknown) => PollJobError) | undefined, error: unknown, exposeStack: boolean): PollJobError {
  if (custom !== undefined) {
    try {
      const out = custom(error);
      if (typeof out === 'object' && out !== null && typeof out.message === 'string' && typeof out.name === 'string') {
        return { ...out, message: out.message.slice(0, 1000), name: out.name.slice(0, 100) };
      }
    } catch {
      // fall back to the default
    }
  }
  return serializeError(error, exposeStack);
}
