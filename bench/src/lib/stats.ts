/** Summaries used by every suite: percentiles, median and range. */

/** The q-quantile (0..1) of an ascending-sorted array, nearest-rank. NaN when empty. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** Median of a list (mean of the middle two for an even count). NaN when empty. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** Median, min and max of the runs of one figure. */
export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: readonly number[];
}

export function summarize(values: readonly number[]): Summary {
  const v = values.filter((x) => !Number.isNaN(x));
  return {
    median: median(v),
    min: v.length === 0 ? Number.NaN : Math.min(...v),
    max: v.length === 0 ? Number.NaN : Math.max(...v),
    runs: values,
  };
}
