/**
 * Option and argument checks, written once so every message reads the same:
 * Expected `heartbeatMs` to be a positive finite number, got `-1` (number).
 *
 * @module
 * @internal
 */
import { realClock, type Clock } from './clock.js';
import { InvalidArgumentError } from './errors.js';

/** Renders a received value for an error message, short and safe. @internal */
export function describe(value: unknown): string {
  let shown: string;
  if (typeof value === 'string') shown = JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  else if (typeof value === 'bigint') shown = `${value}n`;
  else if (typeof value === 'symbol') shown = value.toString();
  else if (typeof value === 'function') shown = '[function]';
  else if (Array.isArray(value)) shown = `[array of ${value.length}]`;
  else if (value !== null && typeof value === 'object') shown = '[object]';
  else shown = String(value);
  return `\`${shown}\` (${value === null ? 'null' : typeof value})`;
}

/** Throws unless `value` is a finite number > 0. @internal */
export function positiveNumber(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be a positive finite number, got ${describe(value)}`);
  }
  return value;
}

/** Throws unless `value` is an integer in [min, max]. @internal */
export function integerInRange(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `Expected \`${name}\` to be an integer from ${min} to ${max}, got ${describe(value)}`,
    );
  }
  return value;
}

/** Throws unless `value` is a number that is not NaN (Infinity and negatives pass). @internal */
export function timeout(name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be a number of milliseconds, got ${describe(value)}`);
  }
  return value;
}

/** Throws unless `value` is a function or undefined. @internal */
export function optionalFunction<T>(name: string, value: T | undefined): T | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidArgumentError(`Expected \`${name}\` to be a function, got ${describe(value)}`);
  }
  return value;
}

/** Throws unless `value` is a boolean or undefined; `undefined` is `false`. @internal */
export function optionalBoolean(name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`Expected \`${name}\` to be a boolean, got ${describe(value)}`);
  return value;
}

/** Throws unless `value` is an AbortSignal or undefined. @internal */
export function optionalSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as AbortSignal).aborted !== 'boolean' ||
    typeof (value as AbortSignal).addEventListener !== 'function'
  ) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be an AbortSignal, got ${describe(value)}`);
  }
  return value as AbortSignal;
}

/** Throws unless `value` is a plain options object or undefined. @internal */
export function optionsObject<T extends object>(name: string, value: T | undefined): T | Record<string, never> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be an object, got ${describe(value)}`);
  }
  return value;
}

/**
 * Throws unless `value` is one of `allowed`; `undefined` gives `fallback`.
 * @internal
 */
export function oneOf<const T extends string>(name: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be one of ${allowed.map((a) => `"${a}"`).join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

/**
 * Throws unless `value` is a {@link Clock} (an object with `now`, `setTimer` and `defer`
 * functions) or undefined; `undefined` gives `realClock`.
 * @internal
 */
export function optionalClock(name: string, value: unknown): Clock {
  if (value === undefined) return realClock;
  const c = value as Partial<Clock> | null;
  if (
    typeof c !== 'object' ||
    c === null ||
    typeof c.now !== 'function' ||
    typeof c.setTimer !== 'function' ||
    typeof c.defer !== 'function'
  ) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be a Clock (now, setTimer, defer), got ${describe(value)}`);
  }
  return value as Clock;
}
