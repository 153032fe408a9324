/**
 * What each figure of the purgatory benchmark is, how it is shown, and which direction is better.
 */
import { W2_PROFILES, W2_RATES } from './workloads.js';

export interface Figure {
  /** Workload id (W1, W1-unique, ...). */
  readonly workload: string;
  /** Key in the workload's `figures`. */
  readonly key: string;
  readonly label: string;
  readonly unit: 'ops/s' | 'calls/s' | 'B' | 'ms' | 'count' | '%' | 'µs';
  /** Which direction is better; `none` for figures that are context, not a score. */
  readonly better: 'higher' | 'lower' | 'none';
  readonly description: string;
  /** Whether patchbay / naive means something (not for counts that should be 0, or ~0 bytes). */
  readonly ratio?: boolean;
}

const w1Figures = (w: 'W1' | 'W1-unique'): Figure[] => [
  {
    workload: w,
    key: 'watchOpsPerSec',
    label: 'watch',
    unit: 'ops/s',
    better: 'higher',
    description:
      'Operations registered per wall second: `new Op(...)` plus `tryCompleteElseWatch(op, key)` for 1M non-completable ops, back to back (includes GC during the loop).',
  },
  ...(w === 'W1'
    ? [
        {
          workload: w,
          key: 'registerOpsPerSec',
          label: 'watch, ops built beforehand',
          unit: 'ops/s',
          better: 'higher',
          description:
            'As `watch`, but the 1M ops are constructed first and only `tryCompleteElseWatch` is timed (the contender\'s own work: its allocations, e.g. a Timeout or a watch node, and their GC, still count).',
        } satisfies Figure,
      ]
    : []),
  {
    workload: w,
    key: 'completeCallsPerSec',
    label: 'complete-by-key calls',
    unit: 'calls/s',
    better: 'higher',
    description:
      '`checkAndComplete(key)` calls per wall second, for 90% of the keys in random order; every watcher of the key completes (its cursor is behind the key version).',
  },
  {
    workload: w,
    key: 'wokenOpsPerSec',
    label: 'complete-by-key woken',
    unit: 'ops/s',
    better: 'higher',
    description: 'Operations completed per wall second inside those `checkAndComplete` calls.',
  },
  {
    workload: w,
    key: 'cancelOpsPerSec',
    label: 'cancel-by-key',
    unit: 'ops/s',
    better: 'higher',
    description: 'Operations canceled per wall second by `cancelForKey` on the remaining 10% of keys.',
  },
  {
    workload: w,
    key: 'heapPerWaitingOp',
    label: 'heap per waiting op',
    unit: 'B',
    better: 'lower',
    description:
      '(heapUsed with 1M ops waiting - heapUsed before) / 1M, both after two `gc()` calls. Includes the op object (5 user fields) and everything the contender keeps for it.',
  },
  {
    workload: w,
    key: 'retainedPerEndedOp',
    label: 'retained per ended op',
    unit: 'B',
    better: 'lower',
    description:
      '(heapUsed after every op completed or was canceled - heapUsed before watching) / 1M, after two `gc()` calls; about 0 means nothing is kept.',
    ratio: false,
  },
];

export const FIGURES: readonly Figure[] = [
  ...w1Figures('W1'),
  ...w1Figures('W1-unique'),
  {
    workload: 'W3',
    key: 'herdWokenOpsPerSec',
    label: 'woken, 100k waiters on 1 key',
    unit: 'ops/s',
    better: 'higher',
    description: 'Operations completed per wall second by one `checkAndComplete` of a key with 100k waiters (median of 5 rounds).',
  },
  {
    workload: 'W1-expire',
    key: 'expireOpsPerCpuSec',
    label: 'expire per CPU second',
    unit: 'ops/s',
    better: 'higher',
    description:
      '200k ops with timeouts 1-2 s (1001 distinct ms values), none completed: expirations / process CPU seconds (user+system, all threads) from the first expiration to the last (setup garbage collected beforehand). Includes the timer wake-ups, the contender expiry work, the onExpiration hook and GC.',
  },
  {
    workload: 'W1-expire',
    key: 'expireEldMaxMs',
    label: 'expiry burst: longest loop block',
    unit: 'ms',
    better: 'lower',
    description: 'Max event-loop delay during the expiry burst (`monitorEventLoopDelay`, 10 ms resolution, the 10 ms sampling interval subtracted): about the longest the loop was blocked.',
  },
  {
    workload: 'W1-expire',
    key: 'expireEarlyFires',
    label: 'expiry burst: early fires',
    unit: 'count',
    better: 'lower',
    description: 'Expirations that ran before their real deadline (performance.now() before watch + timeout).',
    ratio: false,
  },
  {
    workload: 'W1-rt',
    key: 'latenessP50',
    label: 'lateness p50',
    unit: 'ms',
    better: 'lower',
    description:
      'Real-time W1 (100k ops, 10 ms-3 s, 90% completed by key at a uniform time before their deadline): performance.now() in onExpiration - (performance.now() just before watching + timeout), over the expirations whose deadline falls after the setup (watch all, deliver completions due meanwhile, GC). Patchbay rounds deadlines up to its 10 ms tick, so its p50 is about 5 ms by design.',
    ratio: false,
  },
  { workload: 'W1-rt', key: 'latenessP99', label: 'lateness p99', unit: 'ms', better: 'lower', description: 'As above, 99th percentile.', ratio: false },
  { workload: 'W1-rt', key: 'latenessP999', label: 'lateness p99.9', unit: 'ms', better: 'lower', description: 'As above, 99.9th percentile.', ratio: false },
  { workload: 'W1-rt', key: 'latenessMax', label: 'lateness max', unit: 'ms', better: 'lower', description: 'As above, maximum.', ratio: false },
  {
    workload: 'W1-rt',
    key: 'earlyFires',
    label: 'early fires',
    unit: 'count',
    better: 'lower',
    description: 'Expirations (all of them, ~10k) that ran before their real deadline.',
    ratio: false,
  },
  {
    workload: 'W1-rt',
    key: 'earliestFireMs',
    label: 'earliest fire',
    unit: 'ms',
    better: 'none',
    description: 'The most negative lateness seen (0 when nothing fired early).',
    ratio: false,
  },
  {
    workload: 'W1-rt',
    key: 'eldP99Ms',
    label: 'event-loop delay p99',
    unit: 'ms',
    better: 'lower',
    description: '`monitorEventLoopDelay` (10 ms resolution, the sampling interval subtracted) p99 from the end of setup to the last op ending.',
  },
  {
    workload: 'W1-rt',
    key: 'runCpuMs',
    label: 'CPU after setup',
    unit: 'ms',
    better: 'lower',
    description:
      'Process CPU from the end of setup to the last op ending (~3 s wall): the driver (a 1 ms setTimeout loop, the same for both), ~80k completions by key, ~8k expirations, timer wake-ups, GC.',
  },
  {
    workload: 'W4',
    key: 'leakRetainedPerOp',
    label: 'leak: retained bytes per op (fit over 10 rounds)',
    unit: 'B',
    better: 'lower',
    description:
      '10 rounds of a real-time W1 (100k ops, 1000 keys, 10-300 ms, 90% completed by key, 10% expired): heapUsed after each round (two `gc()` calls, from a fresh macrotask) minus heapUsed after round 0; a leak of b bytes per op would make round r about b x r x 100k above baseline, so b is fitted by least squares over the 10 rounds.',
    ratio: false,
  },
  {
    workload: 'W4',
    key: 'leakMaxRoundDeltaBytes',
    label: 'leak: largest round delta',
    unit: 'B',
    better: 'lower',
    description: 'The largest |heapUsed after round r - after round 0| over the 10 rounds, in bytes.',
    ratio: false,
  },
  ...W2_PROFILES.flatMap((p) =>
    W2_RATES.flatMap((rate): Figure[] => {
      const id = `${p.id}.${rate / 1000}k`;
      const name = `${p.id === 'low' ? 'low-timeout' : 'high-timeout'} @ ${rate >= 1e6 ? `${rate / 1e6}M` : `${rate / 1000}k`}/s`;
      return [
        {
          workload: 'W2',
          key: `w2.${id}.actualRate`,
          label: `${name}: actual rate`,
          unit: 'ops/s',
          better: 'higher',
          description: `Kafka TestPurgatoryPerformance model (Poisson arrivals, 3 of 100 keys, timeout 200 ms, log-normal completion p50/p75 = ${p.p50}/${p.p75} ms, forceComplete when due): ops / wall time until the last arrival was watched.`,
        },
        {
          workload: 'W2',
          key: `w2.${id}.cpuPct`,
          label: `${name}: CPU`,
          unit: '%',
          better: 'lower',
          description: 'Process CPU / wall time over the arrival phase (100% = one core; GC threads can push it past 100%).',
        },
      ];
    }),
  ),
];
