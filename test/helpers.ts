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
