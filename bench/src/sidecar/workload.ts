/** What the sidecar suite measures: the contenders, the modes and the sizes (shared by main.ts and child.ts). */

export const CONTENDERS = ['ipc', 'ndjson', 'patchbay'] as const;
export type ContenderName = (typeof CONTENDERS)[number];
export const MODES = ['throughput', 'latency', 'latency-c32'] as const;
export type Mode = (typeof MODES)[number];

/** One child's figures. */
export interface ChildResult {
  readonly figures: Record<string, number>;
  readonly info: Record<string, number | string>;
}

/** Messages per throughput run, and requests per latency run, at scale 1. */
export const MESSAGES = 300_000;
export const REQUESTS = 20_000;

/** The message: a small structured log record, as an app would ship to a sidecar. */
export const record = (i: number) => ({ seq: i, level: 'info', msg: 'request handled', method: 'GET', path: '/orders/42', status: 200, ms: 1.25 });
