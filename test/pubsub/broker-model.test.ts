import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { type Backend, matchTokens, MemoryBackend, type Message, PubSubBroker, type Subscription } from '../../src/index.js';

/**
 * A backend whose reads run a few microtasks late, as a remote one's would: publishes issued
 * right after subscribe() are then both delivered live (held) and found by the replay read, so
 * the seam must drop the duplicates.
 */
function laggingBackend(inner: Backend): Backend {
  return {
    attach: (d) => inner.attach(d),
    publish: (rec) => inner.publish(rec),
    read: async (t, c, l) => {
      for (let i = 0; i < 3; i++) await Promise.resolve();
      return inner.read(t, c, l);
    },
    head: () => inner.head(),
    stats: () => inner.stats(),
    close: () => inner.close(),
  };
}

// Model-based runs of the broker against a plain array log: publish, subscribe (from now, from the
// oldest, from any id), unsubscribe and drain, with small per-topic history bounds so trimming
// and gaps happen. Every subscription must see exactly the model's messages: the retained replay
// after its cursor, then every live match, in publish order, once each.

const MAX_COUNT = 4;
const TOPICS = ['a', 'b', 'a.x', 'a.y', 'b.x.z'];
const PATTERNS = ['a', 'a.*', 'a.>', '>', '*', 'b.*.z', 'b.>'];

interface ModelMessage {
  readonly id: string;
  readonly topic: string;
  readonly seq: number;
}
interface ModelSub {
  readonly pattern: string;
  readonly sub: Subscription;
  readonly callback: boolean;
  readonly got: Message[];
  expected: string[];
  open: boolean;
}
interface Model {
  log: ModelMessage[]; // every message ever published, in order
  subs: ModelSub[];
}
interface Real {
  broker: PubSubBroker;
}

const matches = (pattern: string, topic: string): boolean => matchTokens(pattern.split('.'), topic.split('.'));

/** The ids a replay from after `afterSeq` should return: retained (last MAX_COUNT per topic) and matching. */
function retainedAfter(log: ModelMessage[], pattern: string, afterSeq: number): { ids: string[]; gap: boolean } {
  const byTopic = new Map<string, ModelMessage[]>();
  for (const m of log) {
    const list = byTopic.get(m.topic) ?? [];
    list.push(m);
    byTopic.set(m.topic, list);
  }
  const kept = new Set<string>();
  let gap = false;
  for (const [topic, list] of byTopic) {
    if (!matches(pattern, topic)) continue;
    const retained = list.slice(-MAX_COUNT);
    for (const m of retained) kept.add(m.id);
    const trimmed = list.slice(0, -MAX_COUNT);
    if (trimmed.some((m) => m.seq > afterSeq)) gap = true;
  }
  return { ids: log.filter((m) => kept.has(m.id) && m.seq > afterSeq).map((m) => m.id), gap };
}

async function drain(s: ModelSub): Promise<void> {
  if (s.callback || !s.open) return;
  const it = s.sub[Symbol.asyncIterator]();
  while (s.sub.stats().queued > 0) {
    const r = await it.next();
    if (!r.done) s.got.push(r.value);
  }
}

class PublishCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly topic: string,
    readonly value: number,
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const msg = await r.broker.publish(this.topic, this.value);
    const seq = m.log.length + 1;
    m.log.push({ id: msg.id, topic: this.topic, seq });
    expect(msg.topic).toBe(this.topic);
    for (const s of m.subs) if (s.open && matches(s.pattern, this.topic)) s.expected.push(msg.id);
  }
  toString = (): string => `publish(${this.topic}, ${this.value})`;
}

class SubscribeCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly pattern: string,
    readonly from: 'now' | 'oldest' | number,
    readonly callback: boolean,
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    let from = 'now';
    let afterSeq = m.log.length;
    if (this.from === 'oldest') {
      from = 'oldest';
      afterSeq = 0;
    } else if (typeof this.from === 'number' && m.log.length > 0) {
      const at = m.log[this.from % m.log.length]!;
      from = at.id;
      afterSeq = at.seq;
    }
    const got: Message[] = [];
    const sub = await r.broker.subscribe(this.pattern, {
      from,
      maxQueuedMessages: 10_000,
      ...(this.callback ? { onMessage: (msg: Message) => void got.push(msg) } : {}),
    });
    const expected = from === 'now' ? { ids: [], gap: false } : retainedAfter(m.log, this.pattern, afterSeq);
    if (from !== 'now') {
      const info = r.broker.replayInfo(sub)!;
      // 'oldest' never reports a gap; a cursor reports one exactly when something after it was trimmed.
      expect(info.gap).toBe(from === 'oldest' ? false : expected.gap);
      expect(info.replayed).toBe(expected.ids.length);
    }
    m.subs.push({ pattern: this.pattern, sub, callback: this.callback, got, expected: [...expected.ids], open: true });
  }
  toString = (): string => `subscribe(${this.pattern}, from ${this.from}, ${this.callback ? 'callback' : 'iterator'})`;
}

/** Subscribes from the oldest message while publishes land during the replay. */
class SubscribeRacingCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly pattern: string,
    readonly topics: string[],
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const got: Message[] = [];
    const pending = r.broker.subscribe(this.pattern, { from: 'oldest', maxQueuedMessages: 10_000, onMessage: (msg) => void got.push(msg) });
    const published = await Promise.all(this.topics.map((t, i) => r.broker.publish(t, i)));
    const sub = await pending;
    for (const msg of published) {
      m.log.push({ id: msg.id, topic: msg.topic, seq: m.log.length + 1 });
      for (const s of m.subs) if (s.open && matches(s.pattern, msg.topic)) s.expected.push(msg.id);
    }
    // Every retained match, racing ones included, exactly once, in publish order.
    const expected = retainedAfter(m.log, this.pattern, 0).ids;
    const extra = published.filter((x) => matches(this.pattern, x.topic) && !expected.includes(x.id)).map((x) => x.id);
    m.subs.push({ pattern: this.pattern, sub, callback: true, got, expected: [...expected, ...extra].sort((a, b) => seqOf(m, a) - seqOf(m, b)), open: true });
  }
  toString = (): string => `subscribeRacing(${this.pattern}, ${JSON.stringify(this.topics)})`;
}

const seqOf = (m: Model, id: string): number => m.log.find((x) => x.id === id)!.seq;

class UnsubscribeCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number) {}
  check = (m: Readonly<Model>): boolean => m.subs.some((s) => s.open);
  async run(m: Model): Promise<void> {
    const open = m.subs.filter((s) => s.open);
    const s = open[this.index % open.length]!;
    await drain(s);
    s.sub.close();
    s.open = false;
  }
  toString = (): string => `unsubscribe(#${this.index})`;
}

class DrainCmd implements fc.AsyncCommand<Model, Real> {
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    for (const s of m.subs) {
      await drain(s);
      if (s.open) expect(s.got.map((x) => x.id)).toEqual(s.expected);
    }
    expect(r.broker.stats().subscriptions).toBe(m.subs.filter((s) => s.open).length);
  }
  toString = (): string => 'drain()';
}

describe('PubSubBroker model', () => {
  test.prop(
    [
      fc.commands(
        [
          fc.tuple(fc.constantFrom(...TOPICS), fc.integer()).map(([t, v]) => new PublishCmd(t, v)),
          fc
            .tuple(fc.constantFrom(...PATTERNS), fc.oneof(fc.constant('now' as const), fc.constant('oldest' as const), fc.nat()), fc.boolean())
            .map(([p, f, cb]) => new SubscribeCmd(p, f, cb)),
          fc.tuple(fc.constantFrom(...PATTERNS), fc.array(fc.constantFrom(...TOPICS), { maxLength: 6 })).map(([p, ts]) => new SubscribeRacingCmd(p, ts)),
          fc.nat().map((i) => new UnsubscribeCmd(i)),
          fc.constant(new DrainCmd()),
        ],
        { maxCommands: 60, size: 'large' },
      ),
    ],
    { numRuns: 300 },
  )('every subscription gets exactly the model messages: replay, then live, no gap or duplicate at the seam', async (cmds) => {
    const broker = new PubSubBroker({ backend: laggingBackend(new MemoryBackend({ history: { maxCount: MAX_COUNT } })) });
    try {
      await fc.asyncModelRun(() => ({ model: { log: [], subs: [] }, real: { broker } }), [...cmds, new DrainCmd()]);
    } finally {
      await broker.close();
      await broker.backend.close();
    }
  });
});
