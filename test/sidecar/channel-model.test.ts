/**
 * A model-based test of SidecarChannel (fc.commands + fc.asyncModelRun): random runs of sends,
 * requests (answered at once or held by the sidecar), replies, aborts, cuts of the connection at
 * any point, reconnections, restarts of a durable sidecar, event-loop turns and clock advances,
 * under each overflow policy, over in-memory stream pairs and a ManualClock.
 *
 * What every run must keep:
 * - **Bounded**: the app's held messages and bytes never pass `maxQueuedMessages`/`maxQueuedBytes`;
 *   once quiet, the sidecar holds no more requests than the app waits for.
 * - **In order, never twice**: the sidecar sees sequence numbers strictly increasing across every
 *   connection and restart, each carrying the payload the model gave that seq.
 * - **Exactly once**: every send accepted and not dropped by the policy is seen exactly once by
 *   the end (a send dropped after it was written may have been seen, at most once).
 * - **Every request settled exactly once**, with the echo of its own payload or a typed error.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  acceptSidecarStream,
  ClosedError,
  ManualClock,
  OverflowError,
  SidecarChannel,
  TimeoutError,
  UnavailableError,
  type SidecarMessage,
  type SidecarOverflowPolicy,
} from '../../src/index.js';
import { perTest, until } from '../helpers.js';
import { streamPair } from './helpers.js';

interface Payload {
  readonly k: number;
  readonly pad: string;
}

interface TrackedRequest {
  readonly k: number;
  readonly controller: AbortController;
  settled: number;
  outcome: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
}

interface Model {
  /** A stream pair is attached and not cut. */
  connected: boolean;
}

interface Real {
  readonly clock: ManualClock;
  readonly app: SidecarChannel;
  readonly policy: SidecarOverflowPolicy;
  readonly maxMessages: number;
  readonly maxBytes: number;
  /** The sidecar's resume records, cleared when the sidecar "restarts". */
  readonly sessions: Map<string, { last: number }>;
  readonly sidecars: SidecarChannel[];
  cut: () => void;
  /** Everything the sidecar's handler saw, in order. */
  readonly seen: SidecarMessage[];
  /** The highest seq the sidecar handled: what a durable sidecar reports as `lastHandled`. */
  maxSeen: number;
  /** Held requests on the sidecar: resolve them with their echo. */
  readonly held: (() => void)[];
  /** Once set (at the end), the sidecar answers every request at once. */
  answerAll: boolean;
  /** The seq the app will give its next accepted message. */
  nextSeq: number;
  nextK: number;
  /** seq -> payload id, for every accepted message. */
  readonly bySeq: Map<number, { k: number; kind: 'send' | 'request' }>;
  /** Sends that must be seen exactly once. */
  readonly must: Set<number>;
  /** Sends dropped by the policy (after or before being written): seen at most once. */
  readonly maybe: Set<number>;
  readonly requests: TrackedRequest[];
  /** `drop` events during the current call. */
  drops: { seq: number; policy: SidecarOverflowPolicy }[];
}

type Cmd = fc.AsyncCommand<Model, Real>;

const pad = (n: number): string => 'x'.repeat(n);

function handlerFor(r: Real) {
  return (m: SidecarMessage, ctx: { signal: AbortSignal }): unknown => {
    r.seen.push(m);
    r.maxSeen = Math.max(r.maxSeen, m.seq);
    if (m.kind === 'send') return undefined;
    const echo = { echo: (m.data as Payload).k };
    if (m.type === 'echo' || r.answerAll) return echo;
    return new Promise((resolve) => {
      const answer = (): void => resolve(echo);
      r.held.push(answer);
      // A held request the requester gave up on (or whose connection went) is answered anyway.
      ctx.signal.addEventListener('abort', () => {
        const i = r.held.indexOf(answer);
        if (i !== -1) r.held.splice(i, 1);
        answer();
      });
    });
  };
}

/** Accounts for what the policy did during one call, given the `accepted` counter before it. */
function account(r: Real, acceptedBefore: number, k: number, kind: 'send' | 'request'): void {
  for (const d of r.drops) {
    if (d.policy !== 'drop-oldest') continue;
    const victim = r.bySeq.get(d.seq);
    expect(victim, `a drop-oldest victim seq ${d.seq} the model knows`).toBeDefined();
    if (victim!.kind === 'send' && r.must.delete(victim!.k)) r.maybe.add(victim!.k);
  }
  if (r.app.stats().accepted === acceptedBefore + 1) {
    r.bySeq.set(r.nextSeq, { k, kind });
    r.nextSeq++;
    if (kind === 'send') r.must.add(k);
  } else {
    expect(r.app.stats().accepted).toBe(acceptedBefore);
  }
  r.drops = [];
}

class SendCmd implements Cmd {
  constructor(readonly size: number) {}
  check = (): boolean => true;
  async run(_m: Model, r: Real): Promise<void> {
    const k = r.nextK++;
    const before = r.app.stats().accepted;
    try {
      r.app.send('n', { k, pad: pad(this.size) } satisfies Payload);
    } catch (err) {
      expect(err).toBeInstanceOf(OverflowError);
      expect(r.policy).toBe('reject');
    }
    account(r, before, k, 'send');
  }
  toString = (): string => `send(${this.size})`;
}

class RequestCmd implements Cmd {
  constructor(
    readonly hold: boolean,
    readonly timeoutMs: number,
  ) {}
  check = (): boolean => true;
  async run(_m: Model, r: Real): Promise<void> {
    const k = r.nextK++;
    const before = r.app.stats().accepted;
    const tracked: TrackedRequest = { k, controller: new AbortController(), settled: 0, outcome: undefined };
    r.requests.push(tracked);
    r.app.request(this.hold ? 'hold' : 'echo', { k, pad: '' } satisfies Payload, { timeoutMs: this.timeoutMs, signal: tracked.controller.signal }).then(
      (value) => {
        tracked.settled++;
        tracked.outcome = { ok: true, value };
      },
      (error: unknown) => {
        tracked.settled++;
        tracked.outcome = { ok: false, error };
      },
    );
    account(r, before, k, 'request');
  }
  toString = (): string => `request(${this.hold ? 'hold' : 'echo'}, ${this.timeoutMs})`;
}

class ReplyCmd implements Cmd {
  check = (): boolean => true;
  async run(_m: Model, r: Real): Promise<void> {
    r.held.shift()?.();
  }
  toString = (): string => 'reply';
}

class AbortCmd implements Cmd {
  constructor(readonly pick: number) {}
  check = (): boolean => true;
  async run(_m: Model, r: Real): Promise<void> {
    const open = r.requests.filter((q) => q.settled === 0);
    if (open.length > 0) open[this.pick % open.length]!.controller.abort(new Error('gave up'));
  }
  toString = (): string => `abort(${this.pick})`;
}

class CutCmd implements Cmd {
  check = (m: Readonly<Model>): boolean => m.connected;
  async run(m: Model, r: Real): Promise<void> {
    r.cut();
    m.connected = false;
  }
  toString = (): string => 'cut';
}

function connect(r: Real): void {
  const pair = streamPair();
  r.cut = pair.cut;
  r.app.attach(pair.app);
  r.sidecars.push(
    acceptSidecarStream(pair.sidecar, handlerFor(r), { clock: r.clock, sessions: r.sessions, lastHandled: () => r.maxSeen }),
  );
}

class ConnectCmd implements Cmd {
  check = (m: Readonly<Model>): boolean => !m.connected;
  async run(m: Model, r: Real): Promise<void> {
    connect(r);
    m.connected = true;
  }
  toString = (): string => 'connect';
}

/** The sidecar process restarts: it remembers no session, but reports what it durably handled. */
class RestartCmd implements Cmd {
  check = (m: Readonly<Model>): boolean => !m.connected;
  async run(_m: Model, r: Real): Promise<void> {
    r.sessions.clear();
  }
  toString = (): string => 'restart-sidecar';
}

class TurnsCmd implements Cmd {
  constructor(readonly turns: number) {}
  check = (): boolean => true;
  async run(): Promise<void> {
    for (let i = 0; i < this.turns; i++) await new Promise((resolve) => setImmediate(resolve));
  }
  toString = (): string => `turns(${this.turns})`;
}

class AdvanceCmd implements Cmd {
  constructor(readonly ms: number) {}
  check = (): boolean => true;
  async run(_m: Model, r: Real): Promise<void> {
    r.clock.advance(this.ms);
  }
  toString = (): string => `advance(${this.ms})`;
}

/** Checked after every command. */
function checkInvariants(r: Real): void {
  const s = r.app.stats();
  expect(s.queuedMessages).toBeLessThanOrEqual(r.maxMessages);
  expect(s.queuedBytes).toBeLessThanOrEqual(r.maxBytes);
  expect(s.queuedMessages).toBeGreaterThanOrEqual(0);
  let last = 0;
  for (const m of r.seen) {
    expect(m.seq, 'seqs seen by the sidecar strictly increase').toBeGreaterThan(last);
    last = m.seq;
    const known = r.bySeq.get(m.seq);
    expect(known, `seq ${m.seq} is one the app gave`).toBeDefined();
    expect([m.kind, (m.data as Payload).k]).toEqual([known!.kind, known!.k]);
  }
  for (const q of r.requests) expect(q.settled).toBeLessThanOrEqual(1);
}

/** Wraps each command so the invariants are checked after it. */
function checked(c: Cmd): Cmd {
  return {
    check: (m) => c.check(m),
    run: async (m, r) => {
      await c.run(m, r);
      checkInvariants(r);
    },
    toString: () => c.toString(),
  };
}

const commands = fc.commands(
  [
    fc.integer({ min: 0, max: 200 }).map((n) => checked(new SendCmd(n))),
    fc.integer({ min: 0, max: 200 }).map((n) => checked(new SendCmd(n))),
    fc.tuple(fc.boolean(), fc.constantFrom(100, 1000)).map(([hold, t]) => checked(new RequestCmd(hold, t))),
    fc.constant(checked(new ReplyCmd())),
    fc.nat().map((n) => checked(new AbortCmd(n))),
    fc.constant(checked(new CutCmd())),
    fc.constant(checked(new ConnectCmd())),
    fc.constant(checked(new RestartCmd())),
    fc.integer({ min: 0, max: 4 }).map((n) => checked(new TurnsCmd(n))),
    fc.integer({ min: 0, max: 600 }).map((n) => checked(new AdvanceCmd(n))),
  ],
  { maxCommands: 50, size: 'max' },
);

describe('SidecarChannel model', () => {
  it('delivers every message exactly once, in order, within its bounds, and settles every request once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<SidecarOverflowPolicy>('drop-oldest', 'drop-newest', 'reject'),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 400, max: 2000 }),
        commands,
        async (policy, maxMessages, maxBytes, cmds) => {
          const clock = new ManualClock();
          const app = new SidecarChannel({ clock, overflow: policy, maxQueuedMessages: maxMessages, maxQueuedBytes: maxBytes });
          const real: Real = {
            clock,
            app,
            policy,
            maxMessages,
            maxBytes,
            sessions: new Map(),
            sidecars: [],
            cut: () => undefined,
            seen: [],
            maxSeen: 0,
            held: [],
            answerAll: false,
            nextSeq: 1,
            nextK: 1,
            bySeq: new Map(),
            must: new Set(),
            maybe: new Set(),
            requests: [],
            drops: [],
          };
          app.on('drop', (d) => real.drops.push({ seq: d.seq, policy: d.policy }));
          perTest.defer(() => {
            app.destroy();
            for (const s of real.sidecars) s.destroy();
          });
          const model: Model = { connected: false };
          await fc.asyncModelRun(() => ({ model, real }), cmds);

          // The end: connect, answer everything, let every deadline pass, and wait for quiet.
          if (!model.connected) connect(real);
          real.answerAll = true;
          for (const answer of real.held.splice(0)) answer();
          await until(() => app.connected && app.stats().queuedMessages === 0, 'the queue to be acknowledged');
          clock.advance(1000);
          await until(() => app.stats().pendingRequests === 0, 'every request to settle');
          await until(() => real.requests.every((q) => q.settled === 1), 'every request callback');
          checkInvariants(real);
          expect(real.held, 'the sidecar holds no request the app does not wait for').toHaveLength(0);

          const seenSends = real.seen.filter((m) => m.kind === 'send').map((m) => (m.data as Payload).k);
          for (const k of real.must) expect(seenSends.filter((x) => x === k), `send ${k} seen exactly once`).toHaveLength(1);
          for (const k of seenSends) expect(real.must.has(k) || real.maybe.has(k), `send ${k} was accepted`).toBe(true);
          for (const q of real.requests) {
            if (q.outcome!.ok) expect(q.outcome!.value).toEqual({ echo: q.k });
            else {
              const e = q.outcome!.error;
              const typed = e instanceof UnavailableError || e instanceof TimeoutError || e instanceof OverflowError || e instanceof ClosedError;
              expect(typed || (e as Error).message === 'gave up', `request ${q.k} failed with ${String(e)}`).toBe(true);
            }
          }
          expect(app.stats()).toMatchObject({ queuedMessages: 0, queuedBytes: 0, unacked: 0, pendingRequests: 0 });

          app.destroy();
          for (const s of real.sidecars) s.destroy();
          for (const q of real.requests) expect(q.settled).toBe(1);
        },
      ),
      { numRuns: 150 },
    );
  });
});
