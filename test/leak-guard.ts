/**
 * No child process may outlive the test run. Every process a test starts (sidecars, demo
 * processes, redis-server, Chromium, load generators) inherits an environment marker, so it can
 * be found even after its parent died and it was re-parented to init:
 *
 * - `PATCHBAY_TEST_RUN=<token>`, set for the workers by vitest.config.ts (`test.env`): this
 *   file's global teardown lists every process still alive that carries this run's token, apart
 *   from vitest's own workers, kills each by PID and fails the run naming them.
 * - `PATCHBAY_TEST_WORKER=<worker pid>`, set by leak-guard.setup.ts: after each test file, the
 *   processes that file's worker started must be gone (a short grace for ones already exiting);
 *   any left is killed by PID and the file fails, naming them.
 *
 * Linux only (it reads /proc); elsewhere it says so once and checks nothing.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';

/** A process found still alive. */
export interface Leftover {
  readonly pid: number;
  readonly ppid: number;
  readonly command: string;
}

export const RUN_ENV = 'PATCHBAY_TEST_RUN';
export const WORKER_ENV = 'PATCHBAY_TEST_WORKER';
const HAS_PROC = existsSync('/proc/self/environ');
/** How long processes already on their way out get before they count as left over. */
const GRACE_MS = 10_000; // Chromium or a redis-server may take seconds to exit on a busy machine

/** Whether /proc can be read; when not, says so (once per process) and returns false. */
let warned = false;
export function canCheck(): boolean {
  if (!HAS_PROC && !warned) {
    warned = true;
    console.warn('leak guard: no /proc here, so leftover child processes are not checked');
  }
  return HAS_PROC;
}

/** Live processes (not zombies) whose environment has `name=value`, except this process and what `skip` names. */
export function marked(name: string, value: string, skip: (p: Leftover) => boolean = () => false): Leftover[] {
  const needle = `\0${name}=${value}\0`;
  const found: Leftover[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (!`\0${readFileSync(`/proc/${entry}/environ`, 'latin1')}`.includes(needle)) continue;
      // stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z' || state === 'X') continue; // dead, waiting to be reaped
      const command = readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0').join(' ').trim();
      const p = { pid: Number(entry), ppid: Number(ppid), command };
      if (!skip(p)) found.push(p);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/**
 * Fails (after killing them by PID with SIGKILL) when processes marked `name=value` are still
 * alive once a short grace has passed; `where` says whose they were.
 */
export async function assertNoLeftovers(name: string, value: string, where: string, skip?: (p: Leftover) => boolean): Promise<void> {
  if (!canCheck()) return;
  const deadline = performance.now() + GRACE_MS;
  let left = marked(name, value, skip);
  while (left.length > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    left = marked(name, value, skip);
  }
  if (left.length === 0) return;
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  const list = left.map((p) => `  pid ${p.pid} (parent ${p.ppid}): ${p.command.slice(0, 300)}`).join('\n');
  const message = `${left.length} child process(es) outlived ${where}; killed now with SIGKILL:\n${list}`;
  console.error(`\n${'!'.repeat(78)}\n!! ${message.replaceAll('\n', '\n!! ')}\n${'!'.repeat(78)}\n`);
  throw new Error(message);
}

/** vitest's own workers carry the run's marker too; they are vitest's to stop, not leftovers. */
const isVitestWorker = (p: Leftover): boolean => /[/\\]vitest[/\\]dist[/\\]workers[/\\]/.test(p.command);

/** vitest globalSetup: at the end of the run, no process of this run may be alive. */
export default function setup(project: { config: { env?: Record<string, string | undefined> } }): () => Promise<void> {
  const token = project.config.env?.[RUN_ENV];
  return async () => {
    if (token === undefined || token === '') return;
    try {
      await assertNoLeftovers(RUN_ENV, token, 'the test run', isVitestWorker);
    } catch (error) {
      process.exitCode = 1; // vitest only logs an error thrown by a global teardown
      throw error;
    }
  };
}
