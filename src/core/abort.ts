/**
 * AbortSignal helpers, written once: check first, reject with `signal.reason`, and always remove
 * the listener, on every path.
 *
 * @module
 */
import * as events from 'node:events';

// Node 20.0-20.4 lack events.addAbortListener; a named import would fail to link there.
const nodeAddAbortListener = (
  events as { addAbortListener?: (signal: AbortSignal, listener: (event: Event) => void) => Disposable }
).addAbortListener;

/**
 * Throws `signal.reason` if the signal has already aborted.
 *
 * @param signal - The signal to check; `undefined` never throws.
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

/**
 * The reason a signal aborted, or a DOMException `AbortError` when the signal carries none.
 *
 * @param signal - An aborted signal.
 */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/**
 * Runs `listener` once when `signal` aborts and returns a `Disposable` that removes it.
 * Uses `events.addAbortListener` where Node has it (20.5+), so other listeners calling
 * `stopImmediatePropagation()` cannot hide the abort.
 *
 * @param signal - The signal to watch.
 * @param listener - Called once, with the signal's reason.
 * @returns A `Disposable` whose `[Symbol.dispose]()` removes the listener; call it on every path.
 */
export function onAbort(signal: AbortSignal, listener: (reason: unknown) => void): Disposable {
  const run = (): void => listener(abortReason(signal));
  if (typeof nodeAddAbortListener === 'function') return nodeAddAbortListener(signal, run);
  signal.addEventListener('abort', run, { once: true });
  return { [Symbol.dispose]: () => signal.removeEventListener('abort', run) };
}
