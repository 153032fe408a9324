/**
 * The broker benchmark's workload: one topic space, one subscription set and one publish
 * sequence, drawn from the seeded PRNG, identical for every contender.
 *
 * Topics look like telemetry: `s<site>.d<device>.m<metric>` with 20 sites x 50 devices x 10
 * metrics = 10,000 topics. There are 10,000 subscriptions, half of them wildcards:
 *
 * | kind | pattern (patchbay) | mqemitter | subscriptions | distinct patterns | matches per publish |
 * |---|---|---|---|---|---|
 * | exact | `s3.d17.m4` | `s3/d17/m4` | 5,000 | ≤ 5,000 | 0.5 |
 * | one device, every metric | `s3.d17.*` | `s3/d17/+` | 3,000 | 1,000 | 3 |
 * | one metric, every device of a site | `s3.*.m4` | `s3/+/m4` | 1,500 | 200 | 7.5 |
 * | everything of a site | `s3.>` | `s3/#` | 250 | 20 | 12.5 |
 * | one metric everywhere | `*.*.m4` | `+/+/m4` | 150 | 10 | 15 |
 * | one device and metric, any site | `*.d17.m4` | `+/d17/m4` | 100 | 500 | 0.2 |
 *
 * Publishes pick a topic uniformly, so a publish reaches about 38.7 subscriptions on average
 * (the exact mean of a run is measured and reported). Every topic has three tokens, so `s3.>`
 * (one or more trailing tokens) and `s3/#` (zero or more) match the same topics.
 *
 * The churn workload ({@link makeChurn}) publishes the same sequence while the subscriptions
 * change: every {@link CHURN_EVERY} publishes one subscription, picked at random, is removed and a
 * new one of the same kind (same wildcards, fresh site/device/metric) is added in its place, so
 * the mix stays the same and patchbay's per-topic match cache is emptied and rebuilt each time.
 */
import { mulberry32, uniformInt } from '../lib/random.js';

export const SITES = 20;
export const DEVICES = 50;
export const METRICS = 10;
export const TOPIC_COUNT = SITES * DEVICES * METRICS;
export const SUBSCRIPTIONS = 10_000;

/** The wildcard kinds and how many subscriptions of each (exact ones make up the rest). */
const WILDCARD_KINDS = [
  { count: 3_000, make: (s: number, d: number, _m: number) => `s${s}.d${d}.*` },
  { count: 1_500, make: (s: number, _d: number, m: number) => `s${s}.*.m${m}` },
  { count: 250, make: (s: number, _d: number, _m: number) => `s${s}.>` },
  { count: 150, make: (_s: number, _d: number, m: number) => `*.*.m${m}` },
  { count: 100, make: (_s: number, d: number, m: number) => `*.d${d}.m${m}` },
] as const;

export interface Workload {
  /** Topic strings in patchbay's syntax (`.`-separated), by topic index. */
  readonly topics: readonly string[];
  /** The same topics in mqemitter's syntax (`/`-separated). */
  readonly mqTopics: readonly string[];
  /** Subscription patterns in patchbay's syntax. */
  readonly patterns: readonly string[];
  /** The same patterns in mqemitter's syntax (`*` -> `+`, `>` -> `#`). */
  readonly mqPatterns: readonly string[];
  /** How many of `patterns` have a wildcard. */
  readonly wildcardCount: number;
  /** Topic index of each warm-up publish. */
  readonly warmup: Uint16Array;
  /** Topic index of each measured publish. */
  readonly publishes: Uint16Array;
  /** Deliveries the measured publishes must cause, by the reference matcher. */
  readonly expectedDeliveries: number;
  /** Deliveries the warm-up publishes must cause. */
  readonly expectedWarmupDeliveries: number;
}

export function topicName(s: number, d: number, m: number): string {
  return `s${s}.d${d}.m${m}`;
}

export function toMqemitter(pattern: string): string {
  return pattern
    .split('.')
    .map((t) => (t === '*' ? '+' : t === '>' ? '#' : t))
    .join('/');
}

/**
 * Every pattern that matches a 3-token topic, in patchbay's syntax: each token literal or `*`
 * (8 patterns), plus `>` after 0, 1 or 2 leading tokens, each literal or `*` (1 + 2 + 4).
 * Counting subscriptions per pattern string and summing over these 15 is an exact reference
 * matcher for this topic space, independent of both contenders.
 */
export function matchingPatterns(topic: string): string[] {
  const tokens = topic.split('.');
  const out: string[] = [];
  const prefixes = (n: number): string[][] => {
    if (n === 0) return [[]];
    const shorter = prefixes(n - 1);
    const out2: string[][] = [];
    for (const p of shorter) {
      out2.push([...p, tokens[n - 1]!]);
      out2.push([...p, '*']);
    }
    return out2;
  };
  for (const p of prefixes(tokens.length)) out.push(p.join('.'));
  for (let k = 0; k < tokens.length; k++) for (const p of prefixes(k)) out.push([...p, '>'].join('.'));
  return out;
}

/** In the churn workload, one subscription is replaced before every this-many-th publish. */
export const CHURN_EVERY = 100;

/**
 * The subscription changes of the churn workload: replacement `r` happens before publish
 * `g = (r + 1) × CHURN_EVERY`, counting the warm-up publishes first and the measured ones after
 * them, and puts `patterns[r]` in subscription slot `slots[r]` (an index of `Workload.patterns`).
 */
export interface Churn {
  readonly slots: Uint16Array;
  readonly patterns: readonly string[];
  readonly mqPatterns: readonly string[];
  /** Deliveries the measured publishes must cause with these changes, by the reference matcher. */
  readonly expectedDeliveries: number;
  /** Deliveries the warm-up publishes must cause with these changes. */
  readonly expectedWarmupDeliveries: number;
}

/** A subscription of the same kind as `pattern`: its wildcards kept, each literal token drawn afresh. */
function sameKind(pattern: string, rng: () => number): string {
  return pattern
    .split('.')
    .map((t) => {
      if (t === '*' || t === '>') return t;
      const range = t[0] === 's' ? SITES : t[0] === 'd' ? DEVICES : METRICS;
      return `${t[0]}${uniformInt(rng, 0, range - 1)}`;
    })
    .join('.');
}

/** The churn workload's subscription changes for `w`, from their own seeded PRNG. */
export function makeChurn(w: Workload, seed: number): Churn {
  const rng = mulberry32(seed ^ 0x5eed_c4a2);
  const total = w.warmup.length + w.publishes.length;
  const count = Math.max(0, Math.floor((total - 1) / CHURN_EVERY));
  const slots = new Uint16Array(count);
  const patterns: string[] = [];
  const current = [...w.patterns];
  for (let r = 0; r < count; r++) {
    const slot = uniformInt(rng, 0, current.length - 1);
    slots[r] = slot;
    const next = sameKind(current[slot]!, rng);
    patterns.push(next);
    current[slot] = next;
  }
  // Replay the changes against the reference matcher to count the deliveries they cause.
  const perPattern = new Map<string, number>();
  for (const p of w.patterns) perPattern.set(p, (perPattern.get(p) ?? 0) + 1);
  const matching = w.topics.map(matchingPatterns);
  const live = [...w.patterns];
  let warmupDeliveries = 0;
  let deliveries = 0;
  for (let g = 0; g < total; g++) {
    if (g > 0 && g % CHURN_EVERY === 0) {
      const r = g / CHURN_EVERY - 1;
      const slot = slots[r]!;
      perPattern.set(live[slot]!, perPattern.get(live[slot]!)! - 1);
      live[slot] = patterns[r]!;
      perPattern.set(live[slot]!, (perPattern.get(live[slot]!) ?? 0) + 1);
    }
    const topic = g < w.warmup.length ? w.warmup[g]! : w.publishes[g - w.warmup.length]!;
    const n = matching[topic]!.reduce((sum, p) => sum + (perPattern.get(p) ?? 0), 0);
    if (g < w.warmup.length) warmupDeliveries += n;
    else deliveries += n;
  }
  return { slots, patterns, mqPatterns: patterns.map(toMqemitter), expectedDeliveries: deliveries, expectedWarmupDeliveries: warmupDeliveries };
}

export function makeWorkload(seed: number, publishCount: number, warmupCount: number): Workload {
  const rng = mulberry32(seed);
  const topics: string[] = [];
  for (let s = 0; s < SITES; s++) for (let d = 0; d < DEVICES; d++) for (let m = 0; m < METRICS; m++) topics.push(topicName(s, d, m));

  const patterns: string[] = [];
  let wildcardCount = 0;
  for (const kind of WILDCARD_KINDS) {
    for (let i = 0; i < kind.count; i++) {
      patterns.push(kind.make(uniformInt(rng, 0, SITES - 1), uniformInt(rng, 0, DEVICES - 1), uniformInt(rng, 0, METRICS - 1)));
      wildcardCount++;
    }
  }
  while (patterns.length < SUBSCRIPTIONS) patterns.push(topics[uniformInt(rng, 0, TOPIC_COUNT - 1)]!);
  // Interleave exact and wildcard subscriptions, as they would arrive in a live system.
  for (let i = patterns.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = patterns[i]!;
    patterns[i] = patterns[j]!;
    patterns[j] = t;
  }

  const draw = (n: number): Uint16Array => {
    const a = new Uint16Array(n);
    for (let i = 0; i < n; i++) a[i] = uniformInt(rng, 0, TOPIC_COUNT - 1);
    return a;
  };
  const warmup = draw(warmupCount);
  const publishes = draw(publishCount);

  const perPattern = new Map<string, number>();
  for (const p of patterns) perPattern.set(p, (perPattern.get(p) ?? 0) + 1);
  const perTopic = topics.map((t) => matchingPatterns(t).reduce((n, p) => n + (perPattern.get(p) ?? 0), 0));
  const sum = (a: Uint16Array): number => {
    let n = 0;
    for (let i = 0; i < a.length; i++) n += perTopic[a[i]!]!;
    return n;
  };

  return {
    topics,
    mqTopics: topics.map(toMqemitter),
    patterns,
    mqPatterns: patterns.map(toMqemitter),
    wildcardCount,
    warmup,
    publishes,
    expectedDeliveries: sum(publishes),
    expectedWarmupDeliveries: sum(warmup),
  };
}
