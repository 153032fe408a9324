/**
 * Runs before every test file (vitest `setupFiles`): marks the processes this worker starts
 * (they inherit `PATCHBAY_TEST_WORKER=<this pid>`), and after the file's own hooks checks that
 * none of them is still alive: one that is gets killed by PID and fails the file, named.
 * See leak-guard.ts.
 */
import { afterAll } from 'vitest';
import { assertNoLeftovers, WORKER_ENV } from './leak-guard.js';

process.env[WORKER_ENV] = String(process.pid);

// Registered before the file's own hooks, so it runs after them (vitest runs afterAll hooks in
// reverse order).
afterAll(async () => {
  await assertNoLeftovers(WORKER_ENV, String(process.pid), 'its test file (started by this vitest worker)');
}, 10_000);
