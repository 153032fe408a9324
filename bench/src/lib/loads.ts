/**
 * Load processes for the network suites: each is `node --import tsx <file>` with an IPC channel,
 * holds its share of the client sockets (at most about 5,000, from its own 127.0.0.x source
 * address: one process may hold only 20,000 open files), and answers typed messages. The
 * coordinator waits for a reply by type, bounded in time, and stops every load by PID.
 */
import { type ChildProcess, type Serializable, spawn } from 'node:child_process';

/** One load process: `In` are the messages it takes, `Out` those it sends (each with a `type`). */
export interface Load<In, Out extends { type: string }> {
  readonly child: ChildProcess;
  readonly count: number;
  /** The next message of `type` (earlier ones first), or a rejection after `timeoutMs` or if it exits. */
  next<T extends Out['type']>(type: T, timeoutMs: number): Promise<Extract<Out, { type: T }>>;
  send(m: In): void;
}

const loads = new Set<ChildProcess>();

/**
 * Extra `node` flags for every load process, from `BENCH_LOAD_NODE_FLAGS` (space-separated), for
 * profiling the clients (`--cpu-prof --cpu-prof-dir=...`; `NODE_OPTIONS` does not take `--cpu-prof`).
 */
const loadNodeFlags = (process.env['BENCH_LOAD_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');

/**
 * Spawns a load process running `file` (from `cwd`).
 *
 * @param advanced - Use the `advanced` IPC serialization (typed arrays travel as such).
 */
export function spawnLoad<In, Out extends { type: string }>(file: string, cwd: string, count: number, advanced = false): Load<In, Out> {
  const child = spawn(process.execPath, [...loadNodeFlags, '--import', 'tsx', file], {
    cwd,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: advanced ? 'advanced' : 'json',
  });
  loads.add(child);
  const inbox: Out[] = [];
  let waiter: (() => void) | null = null;
  child.on('message', (m: Out) => {
    inbox.push(m);
    waiter?.();
  });
  child.on('exit', () => {
    loads.delete(child);
    waiter?.();
  });
  return {
    child,
    count,
    async next<T extends Out['type']>(type: T, timeoutMs: number) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = inbox.findIndex((m) => m.type === type);
        if (i !== -1) return inbox.splice(i, 1)[0] as Extract<Out, { type: T }>;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`a load process exited (${child.exitCode ?? child.signalCode}) while waiting for "${type}"`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`a load process did not send "${type}" within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        waiter = null;
      }
    },
    send(m) {
      if (child.connected) child.send(m as Serializable);
    },
  };
}

/** Asks each load to exit (`exit` message), and kills by PID any still there after 3 s. */
export async function stopLoads<In>(list: readonly Load<In, { type: string }>[], exitMessage: In): Promise<void> {
  await Promise.all(
    list.map(async (l) => {
      const c = l.child;
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      l.send(exitMessage);
      const timer = setTimeout(() => c.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }),
  );
}

/** Kills every load process still running, by PID. */
export function killLoads(): void {
  for (const c of loads) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
