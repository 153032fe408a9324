/**
 * The two contenders of the purgatory benchmark, behind one small interface so the very same
 * driver runs both:
 *
 * - `naive`: one `setTimeout` per operation plus `Map<key, Set<op>>` for the watchers. Completion
 *   does `clearTimeout`, removes the op from the Set of every key it watches and deletes Sets
 *   that become empty; expiry removes the op from its Sets. What a competent hand-rolled
 *   long-poll server does.
 * - `patchbay`: `Purgatory` from the BUILT package (`dist/`), used only through its public API.
 *
 * Both operation classes have the same user fields and the same hooks, which report into the
 * shared {@link sink}.
 */
import type * as Patchbay from '../../../src/index.js';

/** The contenders, in the order they run (A, B). */
export const CONTENDERS = ['naive', 'patchbay'] as const;
export type ContenderName = (typeof CONTENDERS)[number];

/**
 * Where operation hooks report. Reset by each workload. `ended` counts every operation that
 * completed or expired (both run `onComplete`, Kafka-style); `fired[id]` is the
 * `performance.now()` at which `onExpiration` ran.
 */
export const sink = {
  ended: 0,
  expired: 0,
  canceled: 0,
  /** When set, `fired[op.id] = performance.now()` in `onExpiration`. */
  fired: null as Float64Array | null,
  /** Called after `ended` is incremented, when it reaches `endedTarget`. */
  endedTarget: -1,
  onEndedTarget: null as (() => void) | null,
  /** Called at the first expiration. */
  onFirstExpired: null as (() => void) | null,
  /** Per key: bumped by the driver to say "new data on this key" (the long-poll cursor model). */
  versions: new Int32Array(1),
};

export function resetSink(keyCount: number): void {
  sink.ended = 0;
  sink.expired = 0;
  sink.canceled = 0;
  sink.fired = null;
  sink.endedTarget = -1;
  sink.onEndedTarget = null;
  sink.onFirstExpired = null;
  sink.versions = new Int32Array(keyCount);
}

/** The user side of an operation, identical for both contenders. */
export interface BenchOp {
  /** Index of the op in the workload. */
  readonly id: number;
  /** Index of its (first) key. */
  readonly keyIdx: number;
  /** `sink.versions[keyIdx]` when the op was created: it completes once the key moved past it. */
  readonly cursor: number;
  /** Set by a driver to make this one op completable (per-op completion events). */
  ready: boolean;
  /** A payload slot, as a real op would carry (a response object, a buffer...). */
  result: unknown;
}

function ready(op: BenchOp): boolean {
  return op.ready || sink.versions[op.keyIdx]! > op.cursor;
}

function ended(): void {
  if (++sink.ended === sink.endedTarget) sink.onEndedTarget?.();
}

function expired(op: BenchOp): void {
  if (sink.expired++ === 0) sink.onFirstExpired?.();
  const fired = sink.fired;
  if (fired !== null) fired[op.id] = performance.now();
}

/** What the driver needs from a contender. */
export interface Contender {
  readonly name: ContenderName;
  /** Creates an operation (not yet watched). */
  makeOp(id: number, timeoutMs: number, keyIdx: number): BenchOp;
  /** Completes the op now if it can, else watches it on its keys with its timeout. */
  watch(op: BenchOp, keys: string | readonly string[]): boolean;
  /** Completes every watcher of `key` whose condition holds; returns how many. */
  checkAndComplete(key: string): number;
  /** Completes the op now, whatever its condition (Kafka's `forceComplete`). */
  forceComplete(op: BenchOp): boolean;
  /** Cancels every watcher of `key`; returns how many. */
  cancelForKey(key: string): number;
  /** Operations waiting now. */
  waiting(): number;
  /** Keys with at least one watcher now. */
  keyCount(): number;
}

// ---------------------------------------------------------------------------------------------
// A: naive

const IDLE = 0;
const WAITING = 1;
const DONE = 2;

class NaiveOp implements BenchOp {
  ready = false;
  result: unknown = null;
  timer: NodeJS.Timeout | undefined = undefined;
  keys: string | readonly string[] = '';
  state = IDLE;
  constructor(
    readonly id: number,
    readonly timeoutMs: number,
    readonly keyIdx: number,
    readonly cursor: number,
  ) {}
  tryComplete(): boolean {
    return ready(this);
  }
  onComplete(): void {
    ended();
  }
  onExpiration(): void {
    expired(this);
  }
  onCancel(_reason: unknown): void {
    sink.canceled++;
  }
}

/** One `setTimeout` per op, `Map<key, Set<op>>` for watchers. */
export class NaivePurgatory {
  readonly watchers = new Map<string, Set<NaiveOp>>();
  size = 0;

  tryCompleteElseWatch(op: NaiveOp, keys: string | readonly string[]): boolean {
    if (op.tryComplete()) {
      op.state = DONE;
      op.onComplete();
      return true;
    }
    op.state = WAITING;
    op.keys = keys;
    if (typeof keys === 'string') this.#add(keys, op);
    else for (const key of keys) this.#add(key, op);
    op.timer = setTimeout(() => this.#expire(op), op.timeoutMs);
    this.size++;
    return false;
  }

  checkAndComplete(key: string): number {
    const set = this.watchers.get(key);
    if (set === undefined) return 0;
    let n = 0;
    // Deleting from a Set while iterating it is safe in JS.
    for (const op of set) {
      if (op.state === WAITING && op.tryComplete()) {
        this.#end(op);
        op.onComplete();
        n++;
      }
    }
    return n;
  }

  forceComplete(op: NaiveOp): boolean {
    if (op.state !== WAITING) return false;
    this.#end(op);
    op.onComplete();
    return true;
  }

  cancelForKey(key: string): number {
    const set = this.watchers.get(key);
    if (set === undefined) return 0;
    const ops = [...set];
    const reason = new Error(`canceled by cancelForKey(${JSON.stringify(key)})`);
    for (const op of ops) {
      this.#end(op);
      op.onCancel(reason);
    }
    return ops.length;
  }

  #add(key: string, op: NaiveOp): void {
    let set = this.watchers.get(key);
    if (set === undefined) {
      set = new Set();
      this.watchers.set(key, set);
    }
    set.add(op);
  }

  #remove(key: string, op: NaiveOp): void {
    const set = this.watchers.get(key);
    if (set !== undefined && set.delete(op) && set.size === 0) this.watchers.delete(key);
  }

  #unwatch(op: NaiveOp): void {
    op.state = DONE;
    const keys = op.keys;
    if (typeof keys === 'string') this.#remove(keys, op);
    else for (const key of keys) this.#remove(key, op);
    op.keys = '';
    this.size--;
  }

  #end(op: NaiveOp): void {
    clearTimeout(op.timer);
    op.timer = undefined;
    this.#unwatch(op);
  }

  #expire(op: NaiveOp): void {
    if (op.state !== WAITING) return;
    op.timer = undefined;
    this.#unwatch(op);
    op.onComplete();
    op.onExpiration();
  }
}

function naive(): Contender {
  const p = new NaivePurgatory();
  return {
    name: 'naive',
    makeOp: (id, timeoutMs, keyIdx) => new NaiveOp(id, timeoutMs, keyIdx, sink.versions[keyIdx]!),
    watch: (op, keys) => p.tryCompleteElseWatch(op as NaiveOp, keys),
    checkAndComplete: (key) => p.checkAndComplete(key),
    forceComplete: (op) => p.forceComplete(op as NaiveOp),
    cancelForKey: (key) => p.cancelForKey(key),
    waiting: () => p.size,
    keyCount: () => p.watchers.size,
  };
}

// ---------------------------------------------------------------------------------------------
// B: patchbay, from the built package. The import is dynamic so that type-checking this file
// does not need `dist/` (types come from the source, which dist is built from); at run time
// the benchmark runner builds first.

type PatchbayModule = typeof Patchbay;
let pb: PatchbayModule | undefined;

/** Loads `dist/index.js` (the built package). Call once before {@link makeContender}. */
export async function loadPatchbay(): Promise<PatchbayModule> {
  if (pb === undefined) {
    const url = new URL('../../../dist/index.js', import.meta.url);
    pb = (await import(url.href)) as PatchbayModule;
  }
  return pb;
}

type PatchbayOp = BenchOp & Patchbay.DelayedOperation;
let patchbayOpClass: (new (id: number, timeoutMs: number, keyIdx: number, cursor: number) => PatchbayOp) | undefined;

function patchbay(options?: Patchbay.PurgatoryOptions): Contender {
  if (pb === undefined) throw new Error('call loadPatchbay() first');
  const lib = pb;
  patchbayOpClass ??= class PatchbayOp extends lib.DelayedOperation implements BenchOp {
    ready = false;
    result: unknown = null;
    constructor(
      readonly id: number,
      timeoutMs: number,
      readonly keyIdx: number,
      readonly cursor: number,
    ) {
      super(timeoutMs);
    }
    override tryComplete(): boolean {
      return ready(this);
    }
    onComplete(): void {
      ended();
    }
    override onExpiration(): void {
      expired(this);
    }
    override onCancel(_reason: unknown): void {
      sink.canceled++;
    }
  };
  const Op = patchbayOpClass;
  const p = new lib.Purgatory(options);
  return {
    name: 'patchbay',
    makeOp: (id, timeoutMs, keyIdx) => new Op(id, timeoutMs, keyIdx, sink.versions[keyIdx]!),
    watch: (op, keys) => p.tryCompleteElseWatch(op as PatchbayOp, keys),
    checkAndComplete: (key) => p.checkAndComplete(key),
    forceComplete: (op) => p.forceComplete(op as PatchbayOp),
    cancelForKey: (key) => p.cancelForKey(key).length,
    waiting: () => p.size,
    keyCount: () => p.stats().keys,
  };
}

/** A fresh contender (its own purgatory). Patchbay uses its defaults (tick 10 ms). */
export function makeContender(name: ContenderName): Contender {
  return name === 'naive' ? naive() : patchbay();
}
