/**
 * Exponential backoff with jitter, one shape for everything that retries: the HTTP clients, a
 * sidecar channel that reconnects, and the supervisor that restarts a sidecar.
 *
 * The delay before retry number `n` (1 for the first) is drawn from
 * `[cap * (1 - jitter), cap]`, where `cap = min(maxDelayMs, initialDelayMs * factor^(n-1))`.
 * A `jitter` of 1 is "full jitter" (any delay from 0 to the cap), 0 is none.
 *
 * @module
 */
import { InvalidArgumentError } from './errors.js';
import { describe } from './validate.js';

/** How something waits between attempts after a failure: exponential, with jitter. */
export interface BackoffOptions {
  /**
   * The upper bound of the first delay, in ms. The default depends on what retries (250 for the
   * HTTP clients, 50 for a sidecar channel's reconnect, 100 for a supervisor's restart).
   */
  readonly initialDelayMs?: number;
  /**
   * The largest delay, in ms. Default: 30000 for the HTTP clients, 5000 for a sidecar channel,
   * 10000 for a supervisor.
   */
  readonly maxDelayMs?: number;
  /**
   * How much the bound grows per failed attempt (at least 1).
   * @defaultValue `2`
   */
  readonly factor?: number;
  /**
   * The share of each delay taken at random, from 0 to 1, so that many clients do not retry in
   * step. Default: 1 (full jitter) for the HTTP clients, 0.2 for the sidecar classes.
   */
  readonly jitter?: number;
}

/** Checked backoff options, every field set. @internal */
export interface Backoff {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  readonly jitter: number;
}

/**
 * Checks `options` (named `name` in errors) and fills what is missing from `defaults`.
 *
 * @throws InvalidArgumentError (`PB_ERR_INVALID_ARGUMENT`) for a non-object, a delay that is not
 *   a finite number > 0, `maxDelayMs < initialDelayMs`, a factor < 1 or a jitter out of [0, 1].
 * @internal
 */
export function resolveBackoff(name: string, options: BackoffOptions | undefined, defaults: Backoff): Backoff {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new InvalidArgumentError(`Expected \`${name}\` to be an object, got ${describe(options)}`);
  }
  const o = options ?? {};
  const initialDelayMs = o.initialDelayMs ?? defaults.initialDelayMs;
  const maxDelayMs = o.maxDelayMs ?? Math.max(defaults.maxDelayMs, initialDelayMs);
  const factor = o.factor ?? defaults.factor;
  const jitter = o.jitter ?? defaults.jitter;
  if (typeof initialDelayMs !== 'number' || !Number.isFinite(initialDelayMs) || initialDelayMs <= 0) {
    throw new InvalidArgumentError(`Expected \`${name}.initialDelayMs\` to be a positive finite number, got ${describe(initialDelayMs)}`);
  }
  if (typeof maxDelayMs !== 'number' || !Number.isFinite(maxDelayMs) || maxDelayMs < initialDelayMs) {
    throw new InvalidArgumentError(`Expected \`${name}.maxDelayMs\` to be a finite number >= initialDelayMs, got ${describe(maxDelayMs)}`);
  }
  if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1) {
    throw new InvalidArgumentError(`Expected \`${name}.factor\` to be a finite number >= 1, got ${describe(factor)}`);
  }
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) {
    throw new InvalidArgumentError(`Expected \`${name}.jitter\` to be a number from 0 to 1, got ${describe(jitter)}`);
  }
  return { initialDelayMs, maxDelayMs, factor, jitter };
}

/**
 * The delay before retry number `attempt` (1 for the first retry), never less than `floorMs` (a
 * server's `Retry-After`, say). `random` returns a number in [0, 1); anything else counts as 0.
 *
 * @internal
 */
export function backoffDelay(b: Backoff, attempt: number, random: () => number, floorMs = 0): number {
  const cap = Math.min(b.maxDelayMs, b.initialDelayMs * b.factor ** Math.max(0, attempt - 1));
  const r = random();
  const share = Number.isFinite(r) ? Math.min(1, Math.max(0, r)) : 0;
  return Math.max(floorMs, cap * (1 - b.jitter * share));
}
