/**
 * A small seeded PRNG (mulberry32) and the distributions the benchmarks draw from. Every
 * contender gets the same seed, so it faces the very same workload.
 */

/** Uniform floats in [0, 1) from a 32-bit seed (mulberry32, Tommy Ettinger). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform integer in [lo, hi], both ends included. */
export function uniformInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

/** Exponential with the given mean (inter-arrival times of a Poisson process). */
export function exponential(rng: () => number, mean: number): number {
  return -Math.log(1 - rng()) * mean;
}

/** Standard normal, Box-Muller. */
export function normal(rng: () => number): number {
  const u = 1 - rng();
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * Log-normal from its median and 75th percentile, as Kafka's TestPurgatoryPerformance does:
 * mu = ln(p50), sigma = (ln(p75) - mu) / 0.674490.
 */
export function logNormalSampler(rng: () => number, p50: number, p75: number): () => number {
  const mu = Math.log(p50);
  const sigma = (Math.log(p75) - mu) / 0.67449;
  return () => Math.exp(mu + sigma * normal(rng));
}

/** Fisher-Yates shuffle in place. */
export function shuffle<T extends { length: number; [i: number]: number }>(rng: () => number, a: T): T {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

/**
 * Indices 0..n-1 ordered by `times[i]` (ascending), via one native Float64Array sort: each time
 * (ms, kept to the microsecond) is packed with its index into one exact double.
 * Times must lie in [0, 2^31 µs), indices below 2^21.
 */
export function orderByTime(times: Float64Array, indices: Uint32Array): Uint32Array {
  const IDX = 2 ** 21;
  if (indices.length > IDX) throw new Error(`orderByTime: at most ${IDX} entries`);
  const packed = new Float64Array(indices.length);
  for (let j = 0; j < indices.length; j++) {
    const i = indices[j]!;
    const us = Math.max(0, Math.round(times[i]! * 1000));
    packed[j] = us * IDX + i;
  }
  packed.sort();
  const out = new Uint32Array(indices.length);
  for (let j = 0; j < packed.length; j++) out[j] = packed[j]! % IDX;
  return out;
}
