/**
 * The contenders of the broker benchmark, behind one interface so the very same driver runs
 * them:
 *
 * - `patchbay`: `PubSubBroker` from the BUILT package (`dist/`) with its defaults (an in-memory
 *   backend that also keeps each topic's log for replay), callback subscribers (`onMessage`).
 * - `patchbay-live`: the same with `history: { maxCount: 0 }`: live delivery only, no log, which
 *   is all mqemitter does. Context, not the target.
 * - `mqemitter`: mqemitter 7 (Qlobber matching, fastparallel delivery), concurrency unlimited.
 *
 * Every subscription gets its own listener, made by the same factory, which counts the delivery
 * and nothing else. Every publish carries a fresh `{ seq }` payload object: patchbay publishes it
 * as the message data, mqemitter emits `{ topic, payload }`.
 */
import { createRequire } from 'node:module';
import type * as Patchbay from '../../../src/index.js';
import type { Workload } from './workload.js';

export const CONTENDERS = ['mqemitter', 'patchbay', 'patchbay-live'] as const;
export type ContenderName = (typeof CONTENDERS)[number];

/**
 * `awaited` and `pipelined` publish to a fixed set of subscriptions; `churn` publishes awaited
 * while the subscriptions change (the churn workload of ./workload.ts).
 */
export const MODES = ['awaited', 'pipelined', 'churn'] as const;
export type Mode = (typeof MODES)[number];
/** How {@link Contender.run} publishes; `churn` is `awaited` runs between subscription changes. */
export type RunMode = Exclude<Mode, 'churn'>;

/** Publishes per batch in the pipelined mode. */
export const BATCH = 1000;

/** Where every listener counts. */
export const counter = { deliveries: 0 };

export interface Contender {
  /** Registers every subscription of the workload. */
  subscribeAll(w: Workload): Promise<void>;
  /**
   * Publishes to `topics[seq[i]]` in order. `awaited`: each publish completes before the next
   * starts (patchbay: `await publish()`; mqemitter: the next `emit` from the previous one's
   * callback). `pipelined`: batches of {@link BATCH} publishes issued back to back, completion
   * counted per publish (patchbay: `.then(ack)`; mqemitter: `emit(message, ack)`), the batch
   * awaited once.
   */
  run(mode: RunMode, w: Workload, seq: Uint16Array, seqBase: number): Promise<void>;
  /**
   * Replaces the subscription in `slot` (an index of `Workload.patterns`) with a new one on
   * `pattern` (patchbay's syntax; `mqPattern` is mqemitter's), with a listener of its own;
   * resolves once the old one receives nothing more and the new one receives every later publish.
   */
  replace(slot: number, pattern: string, mqPattern: string): Promise<void>;
  close(): Promise<void>;
}

// --- patchbay -------------------------------------------------------------------------------

type PatchbayModule = typeof Patchbay;

async function loadPatchbay(): Promise<PatchbayModule> {
  const url = new URL('../../../dist/index.js', import.meta.url);
  return (await import(url.href)) as PatchbayModule;
}

function patchbayListener(): (message: unknown) => void {
  return (_message) => {
    counter.deliveries++;
  };
}

async function patchbay(live: boolean): Promise<Contender> {
  const pb = await loadPatchbay();
  const broker = new pb.PubSubBroker(live ? { history: { maxCount: 0 } } : {});
  const subs: { close(): void }[] = [];
  return {
    async subscribeAll(w) {
      for (const pattern of w.patterns) subs.push(await broker.subscribe(pattern, { onMessage: patchbayListener() }));
    },
    async replace(slot, pattern) {
      subs[slot]!.close();
      subs[slot] = await broker.subscribe(pattern, { onMessage: patchbayListener() });
    },
    async run(mode, w, seq, seqBase) {
      const topics = w.topics;
      const n = seq.length;
      if (mode === 'awaited') {
        for (let i = 0; i < n; i++) await broker.publish(topics[seq[i]!]!, { seq: seqBase + i });
        return;
      }
      let acked = 0;
      let target = 0;
      let wake: (() => void) | null = null;
      const ack = (): void => {
        if (++acked === target && wake !== null) wake();
      };
      for (let start = 0; start < n; start += BATCH) {
        const end = Math.min(n, start + BATCH);
        target = end;
        for (let i = start; i < end; i++) void broker.publish(topics[seq[i]!]!, { seq: seqBase + i }).then(ack);
        if (acked !== target) await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
    },
    async close() {
      await broker.close();
    },
  };
}

// --- mqemitter ------------------------------------------------------------------------------

/** The part of mqemitter's API used here (its own typings live in bench/node_modules). */
interface MQEmitter {
  on(topic: string, listener: (message: MqMessage, done: () => void) => void): unknown;
  removeListener(topic: string, listener: (message: MqMessage, done: () => void) => void, done?: () => void): unknown;
  emit(message: MqMessage, callback?: (error?: Error) => void): unknown;
  close(callback: () => void): void;
}
interface MqMessage {
  topic: string;
  payload: unknown;
}

function mqListener(): (message: MqMessage, done: () => void) => void {
  return (_message, done) => {
    counter.deliveries++;
    done();
  };
}

function mqemitter(): Contender {
  // Resolved from bench/node_modules (npm ci --prefix bench), not typed through the root project.
  const factory = createRequire(import.meta.url)('mqemitter') as (opts?: object) => MQEmitter;
  const mq = factory();
  const subs: { pattern: string; listener: (message: MqMessage, done: () => void) => void }[] = [];
  return {
    subscribeAll(w) {
      for (const pattern of w.mqPatterns) {
        const listener = mqListener();
        mq.on(pattern, listener);
        subs.push({ pattern, listener });
      }
      return Promise.resolve();
    },
    async replace(slot, _pattern, mqPattern) {
      const old = subs[slot]!;
      // mqemitter removes a listener on the next turn; its callback says when.
      await new Promise<void>((resolve) => mq.removeListener(old.pattern, old.listener, resolve));
      const listener = mqListener();
      mq.on(mqPattern, listener);
      subs[slot] = { pattern: mqPattern, listener };
    },
    run(mode, w, seq, seqBase) {
      const topics = w.mqTopics;
      const n = seq.length;
      if (mode === 'awaited') {
        // Continuation-passing, as mqemitter is used: the next emit starts from the previous
        // one's callback. Delivery is synchronous here, so a trampoline keeps the stack flat.
        return new Promise<void>((resolve, reject) => {
          let i = 0;
          let inside = false;
          let completedInside = false;
          const next = (error?: Error): void => {
            if (error) {
              reject(error);
              return;
            }
            if (inside) {
              completedInside = true;
              return;
            }
            for (;;) {
              if (i >= n) {
                resolve();
                return;
              }
              const k = i++;
              inside = true;
              completedInside = false;
              mq.emit({ topic: topics[seq[k]!]!, payload: { seq: seqBase + k } }, next);
              inside = false;
              if (!completedInside) return; // it will call next() later
            }
          };
          next();
        });
      }
      return (async () => {
        let acked = 0;
        let target = 0;
        let wake: (() => void) | null = null;
        const ack = (): void => {
          if (++acked === target && wake !== null) wake();
        };
        for (let start = 0; start < n; start += BATCH) {
          const end = Math.min(n, start + BATCH);
          target = end;
          for (let i = start; i < end; i++) mq.emit({ topic: topics[seq[i]!]!, payload: { seq: seqBase + i } }, ack);
          if (acked !== target) await new Promise<void>((resolve) => (wake = resolve));
          wake = null;
        }
      })();
    },
    close() {
      return new Promise<void>((resolve) => mq.close(resolve));
    },
  };
}

export async function makeContender(name: ContenderName): Promise<Contender> {
  switch (name) {
    case 'patchbay':
      return patchbay(false);
    case 'patchbay-live':
      return patchbay(true);
    case 'mqemitter':
      return mqemitter();
  }
}
