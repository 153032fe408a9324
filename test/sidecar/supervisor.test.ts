/**
 * SidecarSupervisor with a manual clock and fake processes (the stdio transport over in-memory
 * streams): exponential backoff with jitter, health checks, give-up, all by the injected clock.
 */
import { EventEmitter, getEventListeners } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  acceptSidecarStream,
  ManualClock,
  SidecarSupervisor,
  UnavailableError,
  type SidecarChannel,
  type SidecarProcess,
  type SidecarSpawn,
} from '../../src/index.js';
import { perTest, until } from '../helpers.js';

interface Fake extends SidecarProcess {
  readonly side: SidecarChannel;
  exit(code: number | null, signal?: NodeJS.Signals | null): void;
  /** Stops answering (a stuck event loop): its channel no longer reads. */
  hang(): void;
}

function fakes(clock: ManualClock, behaviour: (n: number) => 'ok' | 'crash' = () => 'ok') {
  const spawned: Fake[] = [];
  let pid = 1000;
  const spawn: SidecarSpawn = () => {
    const n = spawned.length;
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const events = new EventEmitter();
    let exited = false;
    const side = acceptSidecarStream({ readable: stdin, writable: stdout }, (m) => (m.kind === 'request' ? `pid ${fake.pid}` : undefined), { clock });
    const fake: Fake = {
      pid: ++pid,
      stdin,
      stdout,
      side,
      kill: (signal) => {
        queueMicrotask(() => fake.exit(null, signal ?? 'SIGTERM'));
        return true;
      },
      on: (event: string, listener: (...args: any[]) => void) => events.on(event, listener),
      exit: (code, signal = null) => {
        if (exited) return;
        exited = true;
        side.destroy();
        stdin.destroy();
        stdout.destroy();
        events.emit('exit', code, signal);
      },
      hang: () => {
        stdin.pause();
        stdin.removeAllListeners('data');
      },
    };
    spawned.push(fake);
    if (behaviour(n) === 'crash') queueMicrotask(() => fake.exit(1));
    return fake;
  };
  return { spawn, spawned };
}

function make(clock: ManualClock, spawn: SidecarSpawn, extra: Partial<ConstructorParameters<typeof SidecarSupervisor>[0]> = {}) {
  const s = new SidecarSupervisor({
    command: 'fake',
    transport: 'stdio',
    clock,
    random: () => 0.5,
    spawn,
    restart: { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.2, maxFailures: 6 },
    healthCheck: { intervalMs: 1000, timeoutMs: 200, failureThreshold: 2 },
    ...extra,
  });
  perTest.defer(() => s.destroy());
  return s;
}

describe('SidecarSupervisor (manual clock, fake processes)', () => {
  it('restarts with exponential backoff and jitter, and gives up after maxFailures in a row', async () => {
    const clock = new ManualClock();
    const { spawn, spawned } = fakes(clock, () => 'crash');
    const s = make(clock, spawn);
    const delays: number[] = [];
    s.on('restart', (_failures, delay) => delays.push(delay));
    const gaveUp: UnavailableError[] = [];
    s.on('give-up', (e) => gaveUp.push(e));
    const started = s.start().catch((e: unknown) => e);
    for (let i = 0; i < 10 && gaveUp.length === 0; i++) {
      await until(() => delays.length > i || gaveUp.length > 0, 'a failure');
      clock.advance(2000);
    }
    // 100 * 2^n, capped at 1000, minus the jitter share (0.2 * random 0.5 = 10%).
    expect(delays).toEqual([90, 180, 360, 720, 900]);
    expect(spawned).toHaveLength(6);
    expect(await started).toBeInstanceOf(UnavailableError);
    expect(s.stats()).toMatchObject({ state: 'failed', failures: 6, restarts: 5 });
    expect(() => s.send('x')).toThrow(); // the channel is gone
  });

  it('start({ signal }) stops only that wait: the sidecar goes on starting and the listener is removed', async () => {
    const clock = new ManualClock();
    const { spawn } = fakes(clock, (n) => (n < 1 ? 'crash' : 'ok'));
    const s = make(clock, spawn);
    const controller = new AbortController();
    const abandoned = s.start({ signal: controller.signal }).catch((e: unknown) => e);
    const kept = s.start();
    await until(() => s.stats().failures === 1, 'the first crash');
    controller.abort(new Error('gave up waiting'));
    expect(await abandoned).toMatchObject({ message: 'gave up waiting' });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    clock.advance(90);
    await kept;
    expect(s.stats()).toMatchObject({ state: 'ready', spawns: 2 });
    await expect(s.start({ signal: AbortSignal.abort(new Error('late')) })).rejects.toThrow('late');
    await expect(s.start({ signal: 'no' as never })).rejects.toThrow(/`signal`/);
  });

  it('a passed health check clears the failure count', async () => {
    const clock = new ManualClock();
    const { spawn, spawned } = fakes(clock, (n) => (n < 2 ? 'crash' : 'ok'));
    const s = make(clock, spawn);
    const ready = s.start();
    await until(() => s.stats().failures === 1, 'first crash');
    clock.advance(90);
    await until(() => s.stats().failures === 2, 'second crash');
    clock.advance(180);
    await ready;
    expect(s.stats()).toMatchObject({ state: 'ready', failures: 2, spawns: 3 });
    clock.advance(1000); // health check
    await until(() => s.stats().failures === 0, 'the passed check');
    expect(s.stats().lastPingMs).toBe(0);
    expect(await s.request('who')).toBe(`pid ${spawned[2]!.pid}`);
  });

  it('kills a sidecar whose pings go unanswered and starts a new one; nothing sent is lost', async () => {
    const clock = new ManualClock();
    const { spawn, spawned } = fakes(clock);
    const s = make(clock, spawn);
    await s.start();
    const unhealthy: unknown[] = [];
    s.on('unhealthy', (pid, n) => unhealthy.push([pid, n]));
    spawned[0]!.hang();
    s.send('kept', 1);
    clock.advance(1000); // check 1
    clock.advance(200); // ...times out
    await until(() => s.stats().healthCheckFailures === 1, 'the first failed check');
    clock.advance(1000);
    clock.advance(200);
    await until(() => unhealthy.length === 1, 'unhealthy');
    expect(unhealthy).toEqual([[spawned[0]!.pid, 2]]);
    await until(() => s.stats().state === 'backoff', 'the kill');
    clock.advance(90);
    await until(() => s.channel.connected, 'the replacement');
    expect(spawned).toHaveLength(2);
    await until(() => s.channel.stats().delivered === 1, 'the replay');
    expect(s.stats().lastExit).toMatchObject({ pid: spawned[0]!.pid, signal: 'SIGKILL' });
  });

  it('counts a start that takes longer than startTimeoutMs as a failure', async () => {
    const clock = new ManualClock();
    const { spawn, spawned } = fakes(clock);
    const slow: SidecarSpawn = (c, a, o) => {
      const p = spawn(c, a, o) as Fake;
      if (spawned.length === 1) p.hang(); // never answers HELLO
      return p;
    };
    const s = make(clock, slow, { startTimeoutMs: 3000 });
    const ready = s.start();
    clock.advance(3000);
    await until(() => s.stats().state === 'backoff', 'the failed start');
    clock.advance(90);
    await ready;
    expect(s.stats()).toMatchObject({ spawns: 2, failures: 1 });
  });

  it('validates its options', () => {
    expect(() => new SidecarSupervisor({ command: '' })).toThrow(/command/);
    expect(() => new SidecarSupervisor({ command: 'x', transport: 'pipe' as never })).toThrow(/transport/);
    expect(() => new SidecarSupervisor({ command: 'x', transport: 'stdio', restart: { jitter: 2 } })).toThrow(/jitter/);
    expect(() => new SidecarSupervisor({ command: 'x', transport: 'stdio', healthCheck: { failureThreshold: 0 } })).toThrow(/failureThreshold/);
  });
});
