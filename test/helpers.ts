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
