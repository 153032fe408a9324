/**
 * Sizes beyond one process: the long-poll and SSE suites hold at most 19,000 clients per server
 * process (one process may hold only 20,000 open files), so their contenders of one process run
 * at sizes up to 19,000 and their contenders of several processes (patchbay-x2, Nchan's workers)
 * also at 19,000 per process: 38,000 for two. A suite's trials are then run in two passes, the
 * sizes every contender takes first, then the larger sizes with the multi-process contenders only.
 */
import { X2_WORKERS } from './patchbay-cluster.js';
import { runSizedTrials, type TrialDone } from './trials.js';

/** Clients one server process holds at most in the suites (20,000 open files per process). */
export const PER_PROCESS_MAX = 19_000;

/** The largest size of the suites: 19,000 per process for the contenders of `X2_WORKERS` processes. */
export const MULTI_PROCESS_MAX = X2_WORKERS * PER_PROCESS_MAX;

/** The servers that run at `size`: every one up to `PER_PROCESS_MAX`, above it only those in `multi`. */
export function serversAtSize<N extends string>(servers: readonly N[], size: number, multi: readonly N[]): N[] {
  return size <= PER_PROCESS_MAX ? [...servers] : servers.filter((s) => multi.includes(s));
}

/**
 * `runSizedTrials` over the sizes up to `PER_PROCESS_MAX` with every server, then over the larger
 * sizes with the servers in `multi` only; the results of both passes in one map.
 */
export async function runSizedTrialsPerProcess<N extends string, R>(
  plan: { readonly runs: number; readonly sizes: readonly number[]; readonly servers: readonly N[] },
  multi: readonly N[],
  busyBefore: number[],
  trial: (name: N, size: number) => Promise<R>,
  done: (trial: TrialDone<N, R>) => void,
): Promise<Map<string, R[]>> {
  const small = plan.sizes.filter((s) => s <= PER_PROCESS_MAX);
  const large = plan.sizes.filter((s) => s > PER_PROCESS_MAX);
  const results = small.length > 0 ? await runSizedTrials({ ...plan, sizes: small }, busyBefore, trial, done) : new Map<string, R[]>();
  const bigServers = plan.servers.filter((s) => multi.includes(s));
  if (large.length > 0 && bigServers.length > 0) {
    for (const [k, v] of await runSizedTrials({ runs: plan.runs, sizes: large, servers: bigServers }, busyBefore, trial, done)) results.set(k, v);
  }
  return results;
}
