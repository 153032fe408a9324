/**
 * The trial loop of the server suites (longpoll, sse, ws) and cleaning up after them. Every
 * trial runs on a fresh server process, after waiting for a quiet machine (a trial whose machine
 * stays busy is skipped, not counted: `quietTrialStart`); the servers take
 * turns in an order that rotates from run to run, so that none always goes first (on a cold
 * machine) or last (after the others warmed it). Whatever a suite started (load processes,
 * servers) is killed by PID when it exits, however it exits.
 */
import { quietTrialStart, rotate } from './harness.js';
import { killLoads } from './loads.js';
import { killAllStarted } from './processes.js';

/** Kills every load process and every server process the suite started, by PID. */
export function killAll(): void {
  killLoads();
  killAllStarted();
}

/** Kills everything the suite started when it exits, and on SIGINT or SIGTERM (exiting 130 or 143). */
export function killAllOnExit(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
  process.on('exit', killAll);
}

/** The key of a (server, size) in the results of `runSizedTrials`. */
export const trialKey = (name: string, size: number): string => `${name}@${size}`;

/** One trial done, for the suite's progress line and its checks. */
export interface TrialDone<N extends string, R> {
  /** From 0. */
  readonly run: number;
  readonly size: number;
  readonly name: N;
  readonly result: R;
  /** Share of the machine's CPU other processes used just before the trial. */
  readonly busy: number;
  /** How long the trial took, server start to stop. */
  readonly ms: number;
}

/**
 * Runs every trial: for each run, each size, the servers in turn (rotated by the run number),
 * each after waiting for a quiet machine; calls `done` after each. A trial whose machine stays
 * busy through the retries of `quietTrialStart` is not run: it is recorded as skipped (in
 * `trialStarts`, which the results file and the docs section report) and has no result. A trial
 * that throws kills everything and ends the loop with its error.
 *
 * @param busyBefore - Where to record how busy the machine was before each trial that ran.
 * @returns The results by `trialKey(name, size)`, one per run.
 */
export async function runSizedTrials<N extends string, R>(
  plan: { readonly runs: number; readonly sizes: readonly number[]; readonly servers: readonly N[] },
  busyBefore: number[],
  trial: (name: N, size: number) => Promise<R>,
  done: (trial: TrialDone<N, R>) => void,
): Promise<Map<string, R[]>> {
  const results = new Map<string, R[]>();
  try {
    for (let run = 0; run < plan.runs; run++) {
      for (const size of plan.sizes) {
        for (const name of rotate(plan.servers, run)) {
          const start = await quietTrialStart(`${trialKey(name, size)} run ${run + 1}`);
          if (start.skipped) {
            console.log(`  run ${run + 1}/${plan.runs}  ${trialKey(name, size)}: SKIPPED, the machine stayed busy (others ${(start.busy * 100).toFixed(0)}% after ${start.attempts} tries)`);
            continue;
          }
          const busy = start.busy;
          busyBefore.push(busy);
          const t = Date.now();
          const result = await trial(name, size);
          const list = results.get(trialKey(name, size)) ?? [];
          list.push(result);
          results.set(trialKey(name, size), list);
          done({ run, size, name, result, busy, ms: Date.now() - t });
        }
      }
    }
  } catch (error) {
    killAll();
    throw error;
  }
  return results;
}
