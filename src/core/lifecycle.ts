/**
 * The one lifecycle every long-lived patchbay object shares, written once:
 * `close()` is graceful and idempotent (concurrent callers share one promise), `destroy(reason)`
 * is immediate, `closed` and `destroyed` tell which happened, `[Symbol.asyncDispose]` calls
 * `close()`, and methods called afterwards throw {@link ClosedError}.
 *
 * @module
 */
import { ClosedError } from './errors.js';

/** Where an object is in its life. */
export type LifecycleState = 'open' | 'closing' | 'closed' | 'destroyed';

/**
 * Base class for objects that hold timers, watchers or sockets.
 *
 * Subclasses implement {@link Resource.onClose} (release gracefully) and
 * {@link Resource.onDestroy} (release now); the base class makes both run at most once and in a
 * sane order: a `destroy()` during a pending `close()` cuts it short.
 */
export abstract class Resource implements AsyncDisposable {
  #state: LifecycleState = 'open';
  #closing: Promise<void> | undefined;

  /** The current lifecycle state. */
  get state(): LifecycleState {
    return this.#state;
  }

  /** `true` once `close()` or `destroy()` has been called. */
  get closed(): boolean {
    return this.#state !== 'open';
  }

  /** `true` once `destroy()` has been called (rather than a graceful `close()`). */
  get destroyed(): boolean {
    return this.#state === 'destroyed';
  }

  /**
   * Closes gracefully: releases every timer, watcher and socket, and settles what still waits
   * with a {@link ClosedError}. Idempotent; concurrent callers get the same promise.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    if (this.#state === 'destroyed') return (this.#closing = Promise.resolve());
    this.#state = 'closing';
    let result: Promise<void>;
    try {
      result = Promise.resolve(this.onClose()).then(() => {
        if (this.#state === 'closing') this.#state = 'closed';
      });
    } catch (err) {
      this.#state = 'closed';
      result = Promise.reject(err);
    }
    return (this.#closing = result);
  }

  /**
   * Releases everything at once. What still waits is settled with `reason`, or with a
   * {@link ClosedError} when none is given. Idempotent.
   */
  destroy(reason?: unknown): void {
    if (this.#state === 'destroyed' || this.#state === 'closed') return;
    this.#state = 'destroyed';
    this.onDestroy(reason);
  }

  /** Calls {@link Resource.close}, so `await using x = new ...()` closes `x` at scope end. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Throws {@link ClosedError} unless the object is open. Call it first in every public method.
   * @param method - The public method's name, for the message.
   */
  protected assertOpen(method: string): void {
    if (this.#state !== 'open') {
      throw new ClosedError(`Cannot call ${this.constructor.name}.${method}() after ${this.#state === 'destroyed' ? 'destroy' : 'close'}()`);
    }
  }

  /** Graceful release; runs once. */
  protected abstract onClose(): void | Promise<void>;
  /** Immediate release; runs once, possibly while `onClose` is pending. */
  protected abstract onDestroy(reason: unknown): void;
}
