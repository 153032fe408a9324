/**
 * Waits, one event-loop turn at a time, until `condition()` holds. Bounded: fails after
 * `maxTurns` turns instead of hanging, and never sleeps on a timer.
 */
export async function until(condition: () => boolean, what: string, maxTurns = 200_000): Promise<void> {
  for (let turn = 0; turn < maxTurns; turn++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`Timed out after ${maxTurns} event-loop turns waiting for ${what}`);
}

/**
 * Waits until `condition()` (sync or async) holds, checking every few ms on the real clock: for
 * what another process does (a child's exit, a line in its log, a browser's request), where event-
 * loop turns say nothing about time. Bounded: fails naming `what` after `deadlineMs`.
 */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, deadlineMs = 10_000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    if (await condition()) return;
    if (performance.now() > deadline) throw new Error(`Timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * What a `beforeAll` starts, stopped by the matching `afterAll` on every path: a test that failed,
 * a setup that threw, and a setup that timed out. vitest runs `afterAll` when `beforeAll` times
 * out but does not stop it, so a setup that goes on afterwards would start processes nobody
 * stops. Here `teardown()` first aborts `signal` (so `wait` rejects and `add` refuses from then
 * on), waits (bounded) for the setup to settle, then runs every closer, last added first; a
 * resource added after that is closed at once.
 *
 * @example
 * ```ts
 * const resources = new TestResources();
 * beforeAll(() => resources.setup(async (r) => {
 *   demo = r.add(createDemo(), closeDemo);
 *   await r.wait(listen(demo.server));
 * }));
 * afterAll(() => resources.teardown());
 * ```
 */
export class TestResources {
  readonly #abort = new AbortController();
  readonly #closers: (() => unknown)[] = [];
  #setups: Promise<unknown>[] = [];
  #closed = false;

  /** Aborted when the teardown starts. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Runs `fn` (the body of a `beforeAll`); the teardown waits for it to settle. */
  setup(fn: (resources: this) => Promise<void>): Promise<void> {
    const running = fn(this);
    this.#setups.push(running.catch(() => undefined));
    return running;
  }

  /**
   * Registers `value` to be closed by `close` at teardown, and returns it. After the teardown
   * started it is still closed (by the teardown, or at once when the teardown is done), and this
   * throws, so the setup stops.
   */
  add<T>(value: T, close: (value: T) => unknown): T {
    const closer = (): unknown => close(value);
    if (this.#closed) {
      void Promise.resolve().then(closer).catch(() => undefined);
    } else {
      this.#closers.push(closer);
    }
    this.#abort.signal.throwIfAborted();
    return value;
  }

  /** Waits for `promise`, or rejects as soon as the teardown starts (for waits that start nothing). */
  wait<T>(promise: Promise<T>): Promise<T> {
    const signal = this.#abort.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /**
   * Stops the setup, then closes everything added, last first; every closer runs even when one
   * fails, and the failures are thrown together at the end.
   */
  async teardown(settleMs = 10_000): Promise<void> {
    this.#abort.abort(new Error('torn down: the setup was stopped'));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.#setups), new Promise((resolve) => (timer = setTimeout(resolve, settleMs)))]);
    clearTimeout(timer);
    this.#closed = true;
    const errors: unknown[] = [];
    for (const close of this.#closers.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, `${errors.length} resource(s) failed to close: ${errors.map(String).join('; ')}`);
  }
}
