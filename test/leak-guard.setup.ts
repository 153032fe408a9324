/**
 * Runs before every test file (vitest `setupFiles`): marks the processes this worker starts
 * (they inherit `PATCHBAY_TEST_WORKER=<this pid>`), and after the file's own hooks checks that
 * none of them is still alive: one that is gets killed by PID and fails the file, named.
 * See leak-guard.ts. It also closes, after each test, what the test registered with `perTest`
 * (test/helpers.ts): servers from serveRig(), `perTest.defer(...)` cleanups.
 */
import { isMainThread } from 'node:worker_threads';
import { afterAll, afterEach } from 'vitest';
import { perTest } from './helpers.js';
import { assertNoLeftovers, WORKER_ENV } from './leak-guard.js';

process.env[WORKER_ENV] = String(process.pid);

// Registered before the file's own hooks, so it runs after them: a file's afterEach may still
// use the servers and handlers of the test.
afterEach(() => perTest.teardown());

// Registered before the file's own hooks, so it runs after them (vitest runs afterAll hooks in
// reverse order).
// Under vitest's `threads` pool every file shares one pid: a per-file check would take other
// files' processes for leftovers, so only the end-of-run check (leak-guard.ts) applies there.
if (isMainThread) {
  afterAll(async () => {
    await assertNoLeftovers(WORKER_ENV, String(process.pid), 'its test file (started by this vitest worker)');
  }, 20_000);
}
