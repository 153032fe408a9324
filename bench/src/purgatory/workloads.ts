/**
 * The purgatory workloads. Each runs ONE contender in the current process and returns flat
 * figures (numbers) plus checks. The same seed gives both contenders the same timeouts, keys,
 * completion times and order; only the contender differs.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { exponential, logNormalSampler, mulberry32, orderByTime, shuffle, uniformInt } from '../lib/random.js';
import { quantileSorted, median } from '../lib/stats.js';
import { type BenchOp, type Contender, type ContenderName, makeContender, resetSink, sink } from './contenders.js';

export interface WorkloadResult {
  /** Figures, by id (see figures.ts for what each means). */
  readonly figures: Record<string, number>;
  /** Sanity checks (counts that must match); the runner fails on a `false`. */
  readonly checks: Record<string, boolean>;
  /** Extra facts worth keeping in the JSON (sizes, parameters). */
  readonly info: Record<string, number | string>;
}

export interface WorkloadContext {
  readonly contender: ContenderName;
  readonly seed: number;
  /** 1 for the real benchmark; smaller for a quick smoke run. */
  readonly scale: number;
}

export type Workload = (ctx: WorkloadContext) => Promise<WorkloadResult>;

// ---------------------------------------------------------------------------------------------
// helpers

function gc2(): void {
  const gc = globalThis.gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  gc();
  gc();
}

function heapUsed(): number {
  gc2();
  return process.memoryUsage().heapUsed;
}

const now = (): number => performance.now();

/** Sampling interval of every event-loop-delay monitor here. */
const ELD_RESOLUTION_MS = 10;

/**
 * Node's histogram records the time between samples, resolution included (an idle loop reads
 * ~10.1 ms at resolution 10): report only the delay beyond the sampling interval.
 */
function eldMs(nanos: number): number {
  return Math.max(0, nanos / 1e6 - ELD_RESOLUTION_MS);
}

function cpuMs(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000;
}

const scaled = (n: number, scale: number, min = 1): number => Math.max(min, Math.round(n * scale));

function keyNames(prefix: string, count: number): string[] {
  const keys = new Array<string>(count);
  for (let i = 0; i < count; i++) keys[i] = `${prefix}:${i}`;
  return keys;
}

/** Resolves when `sink.ended` reaches `target`, or rejects after `limitMs` (every wait is bounded). */
function whenEnded(target: number, limitMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (sink.ended >= target) {
      resolve();
      return;
    }
    // A ref'd guard: it keeps the process alive (patchbay's timer is unref'd) and bounds the wait.
    const guard = setTimeout(() => {
      sink.onEndedTarget = null;
      reject(new Error(`timed out: ${sink.ended}/${target} operations ended after ${limitMs} ms`));
    }, limitMs);
    sink.endedTarget = target;
    sink.onEndedTarget = () => {
      clearTimeout(guard);
      sink.onEndedTarget = null;
      resolve();
    };
  });
}

/** Lateness of every expiration, in ms, against the real deadline (watch time + timeout). */
function lateness(deadline: Float64Array, fired: Float64Array, countedFrom: number) {
  let early = 0;
  let earliest = 0;
  let expired = 0;
  const counted: number[] = [];
  for (let i = 0; i < fired.length; i++) {
    const f = fired[i]!;
    if (Number.isNaN(f)) continue;
    expired++;
    const late = f - deadline[i]!;
    if (late < 0) {
      early++;
      if (late < earliest) earliest = late;
    }
    if (deadline[i]! >= countedFrom) counted.push(late);
  }
  const sorted = Float64Array.from(counted).sort();
  return {
    expired,
    counted: sorted.length,
    early,
    earliestMs: earliest,
    p50: quantileSorted(sorted, 0.5),
    p99: quantileSorted(sorted, 0.99),
    p999: quantileSorted(sorted, 0.999),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
  };
}

/** A small unmeasured pass on a throwaway contender, so the measured pass runs JIT-compiled code. */
function warmUp(name: ContenderName, keyCount: number, keys: readonly string[]): void {
  const c = makeContender(name);
  const n = 20_000;
  const rng = mulberry32(12345);
  const used = Math.min(keyCount, 200);
  for (let i = 0; i < n; i++) {
    const k = Math.floor(rng() * used);
    c.watch(c.makeOp(i, uniformInt(rng, 10, 30_000), k), keys[k]!);
  }
  for (let k = 0; k < used; k += 2) {
    sink.versions[k]!++;
    c.checkAndComplete(keys[k]!);
  }
  for (let k = 1; k < used; k += 2) c.cancelForKey(keys[k]!);
  if (c.waiting() !== 0) throw new Error('warm-up left operations waiting');
}

// ---------------------------------------------------------------------------------------------
// W1 and W1-unique, synchronous phases: watch N, complete 90% by key, cancel the rest.

function w1Sync(unique: boolean): Workload {
  return async ({ contender, seed, scale }) => {
    const n = scaled(1_000_000, scale);
    const keyCount = unique ? n : scaled(10_000, scale);
    const rng = mulberry32(seed);
    const timeouts = new Int32Array(n);
    const keyOf = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      timeouts[i] = uniformInt(rng, 10, 30_000);
      keyOf[i] = unique ? i : Math.floor(rng() * keyCount);
    }
    const keys = keyNames(unique ? 'job' : 'topic', keyCount);
    const perm = new Uint32Array(keyCount);
    for (let k = 0; k < keyCount; k++) perm[k] = k;
    shuffle(rng, perm);
    const completeKeys = Math.floor(keyCount * 0.9);

    resetSink(keyCount);
    warmUp(contender, keyCount, keys);
    resetSink(keyCount);
    const c: Contender = makeContender(contender);
    const base = heapUsed();

    const t0 = now();
    for (let i = 0; i < n; i++) {
      const k = keyOf[i]!;
      c.watch(c.makeOp(i, timeouts[i]!, k), keys[k]!);
    }
    const t1 = now();
    const waitingAfterWatch = c.waiting();
    const heapWaiting = heapUsed();

    const versions = sink.versions;
    let woken = 0;
    const t2 = now();
    for (let j = 0; j < completeKeys; j++) {
      const k = perm[j]!;
      versions[k]!++;
      woken += c.checkAndComplete(keys[k]!);
    }
    const t3 = now();
    let canceled = 0;
    for (let j = completeKeys; j < keyCount; j++) canceled += c.cancelForKey(keys[perm[j]!]!);
    const t4 = now();
    const heapEnd = heapUsed();
    const checks = {
      allWatched: waitingAfterWatch === n,
      noneCompletedAtWatch: sink.ended === woken,
      allEnded: woken + canceled === n && c.waiting() === 0,
      noKeysLeft: c.keyCount() === 0,
    };

    // Registration alone: the same ops, built beforehand, watched by a fresh contender.
    const figures: Record<string, number> = {};
    if (!unique) {
      resetSink(keyCount);
      const c2 = makeContender(contender);
      const ops = new Array<BenchOp>(n);
      for (let i = 0; i < n; i++) ops[i] = c2.makeOp(i, timeouts[i]!, keyOf[i]!);
      gc2();
      const r0 = now();
      for (let i = 0; i < n; i++) c2.watch(ops[i]!, keys[keyOf[i]!]!);
      const r1 = now();
      figures['registerOpsPerSec'] = n / ((r1 - r0) / 1000);
      checks.allWatched &&= c2.waiting() === n;
      for (let k = 0; k < keyCount; k++) c2.cancelForKey(keys[k]!);
      checks.allEnded &&= c2.waiting() === 0;
    }

    return {
      figures: {
        ...figures,
        watchOpsPerSec: n / ((t1 - t0) / 1000),
        completeCallsPerSec: completeKeys / ((t3 - t2) / 1000),
        wokenOpsPerSec: woken / ((t3 - t2) / 1000),
        cancelOpsPerSec: canceled / ((t4 - t3) / 1000),
        heapPerWaitingOp: (heapWaiting - base) / n,
        retainedPerEndedOp: (heapEnd - base) / n,
      },
      checks,
      // Reading keys and perm here keeps them alive through every heap measurement above.
      info: { ops: n, keys: keys.length, completeByKeyCalls: completeKeys, woken, canceled, lastKey: keys[perm[0]!]! },
    };
  };
}

// ---------------------------------------------------------------------------------------------
// The real-time driver shared by W1-rt and W4: per-op completion events at precomputed times.

interface RealTimeRun {
  /** The real deadline of each op: performance.now() just before watching + timeout. */
  readonly deadline: Float64Array;
  /** performance.now() when the op's onExpiration ran, NaN if it did not expire. */
  readonly fired: Float64Array;
  /** When the setup (watch all, catch up on completions due meanwhile, GC) ended. */
  readonly setupEnd: number;
  readonly setupMs: number;
  /** CPU ms from the end of setup until the last op ended. */
  readonly runCpuMs: number;
  readonly runWallMs: number;
  readonly eldP99Ms: number;
  readonly eldMaxMs: number;
  readonly completedEarly: number;
}

/**
 * Watches every op in one synchronous burst, then runs a `setTimeout(…, 1)` driver that, at each
 * op's completion time (`watch time + completeAfter[i]`; `Infinity`: never), marks the op ready
 * and calls `checkAndComplete` on its key. Setup also delivers the completions that fell due
 * while it ran and collects its garbage, so that afterwards the loop is idle but for timers and
 * the driver: lateness then measures the timer mechanism, not a setup backlog or GC of the
 * setup. Resolves once every op completed or expired.
 */
async function realTimeRun(
  c: Contender,
  keys: readonly string[],
  timeouts: Int32Array,
  keyOf: Int32Array,
  completeAfter: Float64Array,
): Promise<RealTimeRun> {
  const n = timeouts.length;
  const deadline = new Float64Array(n);
  const fired = new Float64Array(n).fill(Number.NaN);
  const ops = new Array<BenchOp | undefined>(n);
  sink.fired = fired;
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const k = keyOf[i]!;
    const op = c.makeOp(i, timeouts[i]!, k);
    if (completeAfter[i]! < Infinity) ops[i] = op;
    deadline[i] = now() + timeouts[i]!;
    c.watch(op, keys[k]!);
  }
  // Completion times relative to t0, in order.
  const eventTime = new Float64Array(n);
  let events = 0;
  for (let i = 0; i < n; i++) if (completeAfter[i]! < Infinity) events++;
  const idx = new Uint32Array(events);
  let maxTimeout = 0;
  for (let i = 0, j = 0; i < n; i++) {
    maxTimeout = Math.max(maxTimeout, timeouts[i]!);
    if (completeAfter[i]! < Infinity) {
      eventTime[i] = deadline[i]! - timeouts[i]! + completeAfter[i]! - t0;
      idx[j++] = i;
    }
  }
  const order = orderByTime(eventTime, idx);
  let e = 0;
  let completedEarly = 0;
  const deliver = (): void => {
    const t = now() - t0;
    while (e < events) {
      const i = order[e]!;
      if (eventTime[i]! > t) break;
      const op = ops[i];
      ops[i] = undefined;
      if (op !== undefined) {
        op.ready = true;
        completedEarly += c.checkAndComplete(keys[keyOf[i]!]!);
      }
      e++;
    }
  };
  deliver();
  gc2();
  deliver();
  const setupEnd = now();

  const ended = whenEnded(n, maxTimeout + 10_000);
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  eld.enable();
  const cpu0 = process.cpuUsage();
  let stop = false;
  const tick = (): void => {
    if (stop) return;
    deliver();
    if (e < events) setTimeout(tick, 1);
  };
  setTimeout(tick, 1);
  try {
    await ended;
  } finally {
    stop = true;
  }
  const runCpuMs = cpuMs(process.cpuUsage(cpu0));
  const runWallMs = now() - setupEnd;
  eld.disable();
  sink.fired = null;
  ops.length = 0;
  return {
    deadline,
    fired,
    setupEnd,
    setupMs: setupEnd - t0,
    runCpuMs,
    runWallMs,
    eldP99Ms: eldMs(eld.percentile(99)),
    eldMaxMs: eldMs(eld.max),
    completedEarly,
  };
}

/**
 * W1-rt: 100k ops, 10,000 keys, timeouts 10 ms–3 s, 90% completed by key at a uniform time in
 * [0, timeout), 10% expire. Lateness over the ops whose deadline falls after the setup.
 */
const w1RealTime: Workload = async ({ contender, seed, scale }) => {
  const n = scaled(100_000, scale);
  const keyCount = scaled(10_000, scale);
  const rng = mulberry32(seed);
  const timeouts = new Int32Array(n);
  const keyOf = new Int32Array(n);
  const completeAfter = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    timeouts[i] = uniformInt(rng, 10, 3_000);
    keyOf[i] = Math.floor(rng() * keyCount);
    completeAfter[i] = rng() < 0.9 ? rng() * timeouts[i]! : Infinity;
  }
  const keys = keyNames('topic', keyCount);
  resetSink(keyCount);
  warmUp(contender, keyCount, keys);
  resetSink(keyCount);
  const c = makeContender(contender);
  gc2();
  const run = await realTimeRun(c, keys, timeouts, keyOf, completeAfter);
  const late = lateness(run.deadline, run.fired, run.setupEnd);
  return {
    figures: {
      latenessP50: late.p50,
      latenessP99: late.p99,
      latenessP999: late.p999,
      latenessMax: late.max,
      earlyFires: late.early,
      earliestFireMs: late.earliestMs,
      eldP99Ms: run.eldP99Ms,
      eldMaxMs: run.eldMaxMs,
      runCpuMs: run.runCpuMs,
    },
    checks: {
      allEnded: sink.ended === n && c.waiting() === 0,
      noKeysLeft: c.keyCount() === 0,
      expiredPlusCompleted: sink.expired + run.completedEarly === n,
    },
    info: {
      ops: n,
      keys: keyCount,
      expired: late.expired,
      latenessCounted: late.counted,
      completedEarly: run.completedEarly,
      setupMs: run.setupMs,
      runWallMs: run.runWallMs,
    },
  };
};

// ---------------------------------------------------------------------------------------------
// W1-expire: an expiry burst. 200k ops, timeouts 1–2 s, none completed; CPU from the end of
// setup to the last expiration.

const w1Expire: Workload = async ({ contender, seed, scale }) => {
  const n = scaled(200_000, scale);
  const keyCount = scaled(10_000, scale);
  const rng = mulberry32(seed);
  const timeouts = new Int32Array(n);
  const keyOf = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    timeouts[i] = uniformInt(rng, 1_000, 2_000);
    keyOf[i] = Math.floor(rng() * keyCount);
  }
  const keys = keyNames('topic', keyCount);
  resetSink(keyCount);
  warmUp(contender, keyCount, keys);
  resetSink(keyCount);
  const c = makeContender(contender);
  const deadline = new Float64Array(n);
  const fired = new Float64Array(n).fill(Number.NaN);
  sink.fired = fired;
  gc2();
  for (let i = 0; i < n; i++) {
    const k = keyOf[i]!;
    const op = c.makeOp(i, timeouts[i]!, k);
    deadline[i] = now() + timeouts[i]!;
    c.watch(op, keys[k]!);
  }
  // Collect the setup's garbage now, so the expiry phase's CPU is about expiry.
  gc2();
  const setupEnd = now();
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  eld.enable();
  // The expiry phase: from the first expiration (CPU read before it runs its hooks) to the last.
  let cpu0 = process.cpuUsage();
  sink.onFirstExpired = () => {
    cpu0 = process.cpuUsage();
  };
  let cpuAtEnd = 0;
  let firstFire = Infinity;
  const ended = whenEnded(n, 2_000 + 10_000);
  const onEnd = sink.onEndedTarget;
  sink.onEndedTarget = () => {
    cpuAtEnd = cpuMs(process.cpuUsage(cpu0));
    onEnd?.();
  };
  await ended;
  const endAt = now();
  eld.disable();
  for (let i = 0; i < n; i++) if (fired[i]! < firstFire) firstFire = fired[i]!;
  sink.fired = null;
  const late = lateness(deadline, fired, setupEnd);
  return {
    figures: {
      expireOpsPerCpuSec: n / (cpuAtEnd / 1000),
      expireCpuMs: cpuAtEnd,
      expireEldMaxMs: eldMs(eld.max),
      expireEarlyFires: late.early,
      expireLatenessP99: late.p99,
    },
    checks: { allExpired: sink.expired === n && c.waiting() === 0, noKeysLeft: c.keyCount() === 0 },
    info: { ops: n, keys: keyCount, expiryWallMs: endAt - firstFire, setupToLastMs: endAt - setupEnd },
  };
};

// ---------------------------------------------------------------------------------------------
// W3: thundering herd, 100k waiters on one key, one checkAndComplete. Median of 5 rounds.

const w3: Workload = async ({ contender, seed, scale }) => {
  const n = scaled(100_000, scale);
  const rounds = 5;
  const rng = mulberry32(seed);
  const keys = ['hot'];
  resetSink(1);
  const perRound: number[] = [];
  let allWoken = true;
  for (let r = -1; r < rounds; r++) {
    // Round -1 is a warm-up at a tenth of the size.
    const size = r < 0 ? Math.max(1, Math.floor(n / 10)) : n;
    const c = makeContender(contender);
    for (let i = 0; i < size; i++) c.watch(c.makeOp(i, uniformInt(rng, 10, 30_000), 0), 'hot');
    sink.versions[0]!++;
    const t0 = now();
    const woken = c.checkAndComplete(keys[0]!);
    const t1 = now();
    if (woken !== size || c.waiting() !== 0) allWoken = false;
    if (r >= 0) perRound.push(woken / ((t1 - t0) / 1000));
    gc2();
  }
  return {
    figures: { herdWokenOpsPerSec: median(perRound) },
    checks: { allWoken },
    info: { waiters: n, rounds, perRound: perRound.map((x) => Math.round(x)).join(' ') },
  };
};

// ---------------------------------------------------------------------------------------------
// W4: leak. Rounds of a small real-time W1; heap after each round vs the baseline after round 0.

const w4: Workload = async ({ contender, seed, scale }) => {
  const n = scaled(100_000, scale);
  const keyCount = scaled(1_000, scale);
  const rounds = 10;
  const rng = mulberry32(seed);
  const keys = keyNames('topic', keyCount);
  resetSink(keyCount);
  warmUp(contender, keyCount, keys);
  const c = makeContender(contender);
  let base = 0;
  const deltas: number[] = [];
  let allEnded = true;
  let measuredOps = 0;
  for (let r = 0; r <= rounds; r++) {
    const timeouts = new Int32Array(n);
    const keyOf = new Int32Array(n);
    const completeAfter = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      timeouts[i] = uniformInt(rng, 10, 300);
      keyOf[i] = Math.floor(rng() * keyCount);
      completeAfter[i] = rng() < 0.9 ? rng() * timeouts[i]! : Infinity;
    }
    sink.ended = 0;
    sink.expired = 0;
    await realTimeRun(c, keys, timeouts, keyOf, completeAfter);
    if (sink.ended !== n || c.waiting() !== 0 || c.keyCount() !== 0) allEnded = false;
    // Measure from a fresh macrotask: when the last op ends inside a driver tick, the microtasks
    // that got us here run on a stack that still holds that tick's timer, closure and op array.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const heap = heapUsed();
    if (r === 0) base = heap;
    else {
      deltas.push(heap - base);
      measuredOps += n;
    }
  }
  // A leak of b bytes per op makes the delta after round r about b * r * n: fit b by least
  // squares through the origin, which averages out the noise of single heap readings.
  let num = 0;
  let den = 0;
  deltas.forEach((d, i) => {
    num += (i + 1) * d;
    den += (i + 1) ** 2 * n;
  });
  return {
    figures: {
      leakRetainedPerOp: num / den,
      leakMaxRoundDeltaBytes: Math.max(...deltas.map(Math.abs)),
    },
    checks: { allEnded },
    info: { opsPerRound: n, keys: keyCount, rounds, measuredOps, deltasBytes: deltas.join(' ') },
  };
};

// ---------------------------------------------------------------------------------------------
// W2: Kafka's TestPurgatoryPerformance load model.

export const W2_RATES = [100_000, 250_000, 500_000, 1_000_000] as const;
export const W2_PROFILES = [
  { id: 'low', p50: 20, p75: 60 },
  { id: 'high', p50: 200, p75: 400 },
] as const;
const W2_TIMEOUT = 200;
const W2_KEY_SPACE = 100;
const W2_KEYS_PER_OP = 3;

export interface W2Config {
  readonly rate: number;
  readonly p50: number;
  readonly p75: number;
  readonly arrivalMs: number;
}

export async function w2Run(contender: ContenderName, seed: number, cfg: W2Config) {
  const rng = mulberry32(seed);
  const n = Math.max(1, Math.round((cfg.rate * cfg.arrivalMs) / 1000));
  const arrivals = new Float64Array(n);
  const completeAt = new Float64Array(n);
  const keyOf = new Uint8Array(n * W2_KEYS_PER_OP);
  const latency = logNormalSampler(rng, cfg.p50, cfg.p75);
  let t = 0;
  let m = 0;
  for (let i = 0; i < n; i++) {
    t += exponential(rng, 1000 / cfg.rate);
    arrivals[i] = t;
    const lat = latency();
    completeAt[i] = lat < W2_TIMEOUT ? t + lat : Infinity;
    if (lat < W2_TIMEOUT) m++;
    // Three distinct keys out of 100.
    const a = Math.floor(rng() * W2_KEY_SPACE);
    let b = Math.floor(rng() * (W2_KEY_SPACE - 1));
    if (b >= a) b++;
    let d = Math.floor(rng() * (W2_KEY_SPACE - 2));
    if (d >= Math.min(a, b)) d++;
    if (d >= Math.max(a, b)) d++;
    keyOf[i * 3] = a;
    keyOf[i * 3 + 1] = b;
    keyOf[i * 3 + 2] = d;
  }
  const idx = new Uint32Array(m);
  for (let i = 0, j = 0; i < n; i++) if (completeAt[i]! < Infinity) idx[j++] = i;
  const order = orderByTime(completeAt, idx);
  const keys = keyNames('k', W2_KEY_SPACE);
  resetSink(W2_KEY_SPACE);
  const c = makeContender(contender);
  const ops = new Array<BenchOp | undefined>(n);
  gc2();

  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  const ended = whenEnded(n, cfg.arrivalMs * 20 + 10_000);
  const t0 = now();
  const cpu0 = process.cpuUsage();
  eld.enable();
  let ai = 0;
  let ci = 0;
  let lastWatch = -1;
  let cpuArrivals = 0;
  let maxLag = 0;
  let stop = false;
  const loop = (): void => {
    if (stop) return;
    const tNow = now() - t0;
    if (ai < n && arrivals[ai]! <= tNow) maxLag = Math.max(maxLag, tNow - arrivals[ai]!);
    while (ai < n && arrivals[ai]! <= tNow) {
      const j = ai * 3;
      const op = c.makeOp(ai, W2_TIMEOUT, keyOf[j]!);
      // The driver keeps only the ops it will complete; the others are the contender's alone.
      if (completeAt[ai]! < Infinity) ops[ai] = op;
      c.watch(op, [keys[keyOf[j]!]!, keys[keyOf[j + 1]!]!, keys[keyOf[j + 2]!]!]);
      ai++;
    }
    if (ai === n && lastWatch < 0) {
      lastWatch = now() - t0;
      cpuArrivals = cpuMs(process.cpuUsage(cpu0));
    }
    while (ci < m) {
      const i = order[ci]!;
      if (completeAt[i]! > tNow) break;
      const op = ops[i];
      ops[i] = undefined;
      if (op !== undefined) c.forceComplete(op);
      ci++;
    }
    if (ai < n || ci < m) setTimeout(loop, 1);
  };
  setTimeout(loop, 0);
  try {
    await ended;
  } finally {
    stop = true;
  }
  const totalMs = now() - t0;
  const cpuTotal = cpuMs(process.cpuUsage(cpu0));
  eld.disable();
  return {
    n,
    actualRate: n / (lastWatch / 1000),
    scheduledRate: n / (arrivals[n - 1]! / 1000),
    cpuPct: (cpuArrivals / lastWatch) * 100,
    cpuUsPerOp: (cpuTotal * 1000) / n,
    maxLagMs: maxLag,
    eldP99Ms: eldMs(eld.percentile(99)),
    totalMs,
    expired: sink.expired,
    ok: sink.ended === n && c.waiting() === 0 && c.keyCount() === 0,
  };
}

const w2: Workload = async ({ contender, seed, scale }) => {
  const arrivalMs = Math.max(100, Math.round(1_000 * scale));
  // Warm-up, unmeasured.
  await w2Run(contender, seed ^ 0xabcdef, { rate: 100_000, p50: 20, p75: 60, arrivalMs: 200 });
  const figures: Record<string, number> = {};
  const checks: Record<string, boolean> = {};
  const info: Record<string, number | string> = { arrivalMs, timeoutMs: W2_TIMEOUT, keySpace: W2_KEY_SPACE, keysPerOp: 3 };
  for (const profile of W2_PROFILES) {
    for (const rate of W2_RATES) {
      const r = await w2Run(contender, seed, { rate, p50: profile.p50, p75: profile.p75, arrivalMs });
      const id = `${profile.id}.${rate / 1000}k`;
      figures[`w2.${id}.actualRate`] = r.actualRate;
      figures[`w2.${id}.cpuPct`] = r.cpuPct;
      figures[`w2.${id}.cpuUsPerOp`] = r.cpuUsPerOp;
      figures[`w2.${id}.maxLagMs`] = r.maxLagMs;
      checks[`w2.${id}.allEnded`] = r.ok;
      info[`w2.${id}`] =
        `n=${r.n} scheduled=${Math.round(r.scheduledRate)}/s expired=${r.expired} total=${r.totalMs.toFixed(0)}ms eldP99=${r.eldP99Ms.toFixed(2)}ms`;
      gc2();
    }
  }
  return { figures, checks, info };
};

/** Every workload, by id, in the order the runner runs them. */
export const WORKLOADS: Record<string, Workload> = {
  W1: w1Sync(false),
  'W1-unique': w1Sync(true),
  'W1-rt': w1RealTime,
  'W1-expire': w1Expire,
  W3: w3,
  W4: w4,
  W2: w2,
};
