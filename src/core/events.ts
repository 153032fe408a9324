/**
 * The library's one events base. A class that emits events (today `SidecarChannel` and
 * `SidecarSupervisor`) declares an event map (`<Class>Events`: event name → argument tuple) and
 * offers `on(event, listener)`, which returns the listener's unsubscribe function: typed at the
 * call site, nothing to pair with `off`, and no emitter class in the public API, so the
 * implementation can change without a breaking change.
 *
 * Underneath is `eventemitter3`, patchbay's one runtime dependency: faster than `node:events`
 * for few listeners, and free of Node built-ins. `node:events` is used only where Node itself
 * requires it: `addAbortListener`, and the web adapter's stand-in socket, which Node's `http`
 * code treats as a Node `EventEmitter`. The other primitives report through hooks (`onError`)
 * and `node:diagnostics_channel` channels rather than events.
 *
 * @module
 * @internal
 */
import { EventEmitter } from 'eventemitter3';

/** An event map: each event's name to the tuple of its listener's arguments. @internal */
export type EventMap<M> = { [K in keyof M]: unknown[] };

/** A typed emitter whose `on` returns the unsubscribe. @internal */
export class Events<M extends EventMap<M>> {
  readonly #emitter = new EventEmitter();

  /** Adds `listener` for `event`; the returned function removes it (once, idempotent). */
  on<E extends keyof M & string>(event: E, listener: (...args: M[E]) => void): () => void {
    const fn = listener as (...args: unknown[]) => void;
    this.#emitter.on(event, fn);
    return () => {
      this.#emitter.off(event, fn);
    };
  }

  /** Calls the listeners of `event` with `args`; `false` when it had none. */
  emit<E extends keyof M & string>(event: E, ...args: M[E]): boolean {
    return this.#emitter.emit(event, ...args);
  }

  /** How many listeners `event` has. */
  listenerCount<E extends keyof M & string>(event: E): number {
    return this.#emitter.listenerCount(event);
  }

  /** Removes every listener (of `event`, or of all events). */
  removeAllListeners<E extends keyof M & string>(event?: E): void {
    this.#emitter.removeAllListeners(event);
  }
}
