/**
 * SidecarSupervisor with real child processes (the recorder fixture under tsx): kill -9 under a
 * steady stream, a hung sidecar, give-up, graceful shutdown, the stdio transport. Waits are
 * bounded (`eventually`, on the real clock: these wait for other processes); children are stopped
 * by pid after each test (`perTest`).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SidecarSupervisor, UnavailableError, type SidecarSupervisorOptions } from '../../src/index.js';
import { alive, fixture, tempDir } from './helpers.js';
import { eventually, perTest } from '../helpers.js';

/** How long to wait for a child process: a node child with tsx takes about half a second to start, more on a loaded machine. */
const CHILD = { timeoutMs: 20_000 };

function supervise(options: Partial<SidecarSupervisorOptions> & { recordFile?: string }): SidecarSupervisor {
  const { recordFile, ...rest } = options;
  const supervisor = new SidecarSupervisor({
    ...fixture('recorder.ts'),
    name: 'recorder',
    output: 'inherit',
    env: recordFile === undefined ? {} : { RECORD_FILE: recordFile },
    startTimeoutMs: 20_000,
    restart: { initialDelayMs: 10, maxDelayMs: 50, maxFailures: 5 },
    healthCheck: { intervalMs: 200, timeoutMs: 2_000, failureThreshold: 3 },
    ...rest,
  });
  const pids = new Set<number>();
  supervisor.on('spawn', (pid) => pid !== undefined && pids.add(pid));
  perTest.defer(() => {
    supervisor.destroy();
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  return supervisor;
}

/** The `seq` column of the recorder's file. */
function recorded(file: string): number[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => Number(line.split(' ')[1]));
}

describe('SidecarSupervisor with real processes', () => {
  it('restarts a sidecar killed with SIGKILL under a steady stream: no message lost or duplicated', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const file = join(tmp.dir, 'records.txt');
    const supervisor = supervise({ recordFile: file, channel: { maxQueuedMessages: 50_000 } });
    await supervisor.start();
    const firstPid = supervisor.pid!;
    const N = 3000;
    let killed = false;
    for (let i = 1; i <= N; i++) {
      supervisor.send('record', { i });
      if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve)); // a steady stream, not one burst
      if (i === 1000) {
        // Wait until some of it has arrived, so the kill lands mid-stream with messages in flight.
        await eventually(() => recorded(file).length >= 200, 'the first records', CHILD);
        process.kill(firstPid, 'SIGKILL');
        killed = true;
      }
    }
    expect(killed).toBe(true);
    await eventually(() => supervisor.stats().restarts >= 1 && supervisor.channel.connected, 'the restart', CHILD);
    await eventually(() => supervisor.channel.stats().queuedMessages === 0, 'every message to be acknowledged', CHILD);
    expect(supervisor.pid).not.toBe(firstPid);
    const seqs = recorded(file);
    expect(seqs).toEqual(Array.from({ length: N }, (_, i) => i + 1)); // all, once, in order
    const stats = supervisor.stats();
    expect(stats.lastExit?.signal).toBe('SIGKILL');
    expect(stats.channel.dropped).toEqual({ oldest: 0, newest: 0, rejected: 0 });
    expect(stats.channel.delivered).toBe(N);
  });

  it('replaces a hung sidecar that fails its health checks', async () => {
    const supervisor = supervise({ healthCheck: { intervalMs: 50, timeoutMs: 150, failureThreshold: 2 } });
    const unhealthy: (number | undefined)[] = [];
    supervisor.on('unhealthy', (pid) => unhealthy.push(pid));
    await supervisor.start();
    const hungPid = supervisor.pid!;
    expect(await supervisor.request('hang')).toBe('hanging');
    await eventually(() => unhealthy.length === 1 && supervisor.channel.connected && supervisor.pid !== hungPid, 'a replacement', CHILD);
    expect(unhealthy).toEqual([hungPid]);
    expect(alive(hungPid)).toBe(false);
    expect(supervisor.stats().lastExit).toMatchObject({ pid: hungPid, signal: 'SIGKILL' });
    expect(await supervisor.request('pid')).toBe(supervisor.pid);
  });

  it('gives up after maxFailures failures in a row, and says so', async () => {
    const errors: unknown[] = [];
    const supervisor = supervise({
      command: process.execPath,
      args: ['-e', 'process.exit(3)'],
      restart: { initialDelayMs: 5, maxDelayMs: 10, maxFailures: 3 },
      onError: (e) => errors.push(e),
    });
    const gaveUp = new Promise<UnavailableError>((resolve) => supervisor.on('give-up', resolve));
    await expect(supervisor.start()).rejects.toBeInstanceOf(UnavailableError);
    const error = await gaveUp;
    expect(error.message).toMatch(/failed 3 times in a row; the supervisor gave up \(last exit: code 3\)/);
    expect(supervisor.stats()).toMatchObject({ state: 'failed', spawns: 3, failures: 3 });
    expect(errors.filter((e) => e instanceof UnavailableError)).toHaveLength(4); // three exits and the give-up
    await expect(supervisor.request('pid')).rejects.toThrow();
  });

  it('answers requests, carries error codes back, and shuts down gracefully: drain, BYE, exit 0', async () => {
    const tmp = tempDir();
    perTest.defer(tmp.remove);
    const file = join(tmp.dir, 'records.txt');
    const supervisor = supervise({ recordFile: file });
    await supervisor.start();
    expect(await supervisor.request('echo', { a: [1, 'two'] })).toEqual({ a: [1, 'two'] });
    await expect(supervisor.request('fail')).rejects.toMatchObject({ code: 'PB_ERR_REMOTE', remoteCode: 'E_FAIL', message: 'asked to fail' });
    for (let i = 0; i < 500; i++) supervisor.send('record', i);
    const pid = supervisor.pid!;
    const exits: unknown[] = [];
    supervisor.on('exit', (e) => exits.push(e));
    await supervisor.close();
    expect(recorded(file)).toHaveLength(500);
    expect(exits).toEqual([{ pid, code: 0, signal: null }]);
    expect(alive(pid)).toBe(false);
    expect(existsSync(supervisor.socketPath)).toBe(false);
    expect(() => supervisor.send('record', 1)).toThrow(/after close/);
  });

  /**
   * Starts the parent fixture (an app supervising a recorder) and waits for the sidecar pid it
   * prints; both processes are killed after the test if still alive.
   */
  async function startApp(env: NodeJS.ProcessEnv = {}): Promise<{ app: ReturnType<typeof spawn>; appGone: Promise<unknown>; sidecarPid: number }> {
    const app = spawn(process.execPath, fixture('parent.ts').args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    let out = '';
    app.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    const appGone = new Promise((resolve) => app.once('exit', resolve));
    perTest.defer(() => {
      if (alive(app.pid)) process.kill(app.pid!, 'SIGKILL');
    });
    await eventually(() => out.includes('\n'), 'the sidecar pid', CHILD);
    const sidecarPid = Number(out.trim());
    perTest.defer(() => {
      if (alive(sidecarPid)) process.kill(sidecarPid, 'SIGKILL');
    });
    return { app, appGone, sidecarPid };
  }

  it('a supervised sidecar does not outlive its app: it exits when the app is killed', async () => {
    const { app, sidecarPid } = await startApp();
    expect(alive(sidecarPid)).toBe(true);
    process.kill(app.pid!, 'SIGKILL');
    await eventually(() => !alive(sidecarPid), 'the orphaned sidecar to exit', CHILD);
  });

  it('a supervised sidecar does not outlive its app killed before the sidecar was listening', async () => {
    // The app dies while the sidecar still loads: by the time the sidecar looks, its parent is
    // init already, so "my parent changed" never fires; it must check its supervisor's pid.
    const { appGone, sidecarPid } = await startApp({ DIE_ON_SPAWN: '1' });
    expect(await appGone).toBeNull(); // killed by its own SIGKILL, no exit code
    await eventually(() => !alive(sidecarPid), 'the sidecar orphaned while loading to exit', CHILD);
  });

  it('talks over the child\'s stdio when asked', async () => {
    const supervisor = supervise({ transport: 'stdio', output: 'ignore' });
    await supervisor.start();
    expect(supervisor.socketPath).toBe('');
    expect(await supervisor.request('echo', 'over stdio')).toBe('over stdio');
    const pid = supervisor.pid!;
    await supervisor.close();
    expect(alive(pid)).toBe(false);
  });
});
