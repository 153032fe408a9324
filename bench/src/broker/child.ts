/**
 * One measurement in a fresh process:
 * `node --expose-gc --import tsx child.ts <contender> <mode> <seed> <scale>`.
 * Prints one `RESULT {json}` line on stdout.
 */
import { performance } from 'node:perf_hooks';
import { CONTENDERS, type ContenderName, counter, makeContender, MODES, type Mode } from './contenders.js';
import { CHURN_EVERY, makeChurn, makeWorkload } from './workload.js';

export interface ChildResult {
  readonly figures: Record<string, number>;
  readonly checks: Record<string, boolean>;
  readonly info: Record<string, number | string>;
}

/** Measured publishes and warm-up publishes at scale 1. */
export const PUBLISHES = 200_000;
export const WARMUP = 20_000;

const [name, modeArg, seedArg, scaleArg] = process.argv.slice(2);
if (!CONTENDERS.includes(name as ContenderName)) throw new Error(`unknown contender ${String(name)}`);
if (!MODES.includes(modeArg as Mode)) throw new Error(`unknown mode ${String(modeArg)}`);
const gc = globalThis.gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const mode = modeArg as Mode;
const seed = Number(seedArg ?? 1);
const scale = Number(scaleArg ?? 1);

const w = makeWorkload(seed, Math.round(PUBLISHES * scale), Math.round(WARMUP * scale));
const contender = await makeContender(name as ContenderName);
const churn = mode === 'churn' ? makeChurn(w, seed) : undefined;

/**
 * Publishes `seq` (global publish numbers from `seqBase`) in `mode`; in `churn`, awaited runs of
 * at most CHURN_EVERY publishes with the workload's subscription change before each publish
 * number that is a multiple of CHURN_EVERY.
 */
async function publishAll(seq: Uint16Array, seqBase: number): Promise<void> {
  if (churn === undefined) return contender.run(mode as Exclude<Mode, 'churn'>, w, seq, seqBase);
  for (let a = 0; a < seq.length; ) {
    const g = seqBase + a;
    if (g > 0 && g % CHURN_EVERY === 0) {
      const r = g / CHURN_EVERY - 1;
      await contender.replace(churn.slots[r]!, churn.patterns[r]!, churn.mqPatterns[r]!);
    }
    const b = Math.min(seq.length, a + CHURN_EVERY - (g % CHURN_EVERY));
    await contender.run('awaited', w, seq.subarray(a, b), g);
    a = b;
  }
}

gc();
const heap0 = process.memoryUsage().heapUsed;
const tSub = performance.now();
await contender.subscribeAll(w);
const subscribeMs = performance.now() - tSub;
gc();
const heapPerSubscription = (process.memoryUsage().heapUsed - heap0) / w.patterns.length;

counter.deliveries = 0;
await publishAll(w.warmup, 0);
const warmupDeliveries = counter.deliveries;

gc();
counter.deliveries = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await publishAll(w.publishes, w.warmup.length);
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const deliveries = counter.deliveries;
await contender.close();

const result: ChildResult = {
  figures: {
    deliveredPerSec: deliveries / seconds,
    publishesPerSec: w.publishes.length / seconds,
    nsPerDelivery: (seconds * 1e9) / deliveries,
    cpuPct: ((cpu.user + cpu.system) / 1e4 / seconds),
    subscribeMs,
    heapPerSubscription,
  },
  checks: {
    deliveries: deliveries === (churn ?? w).expectedDeliveries,
    warmupDeliveries: warmupDeliveries === (churn ?? w).expectedWarmupDeliveries,
  },
  info: {
    publishes: w.publishes.length,
    warmupPublishes: w.warmup.length,
    deliveries,
    expectedDeliveries: (churn ?? w).expectedDeliveries,
    subscriptionChanges: churn?.slots.length ?? 0,
    meanMatchesPerPublish: deliveries / w.publishes.length,
    wildcardSubscriptions: w.wildcardCount,
    distinctPatterns: new Set(w.patterns).size,
    seconds,
  },
};
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
process.exit(0);
