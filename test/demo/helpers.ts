/**
 * The demo server in tests (listening with serveRig() from test/helpers.ts): closed with everything
 * it started, its sidecar processes included (the server's 'close' only starts closing them); and
 * the demo as a process (`node demo/server.js`), for what happens on a signal.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { sourceNodeArgs } from '../helpers.js';

/** The part of `createDemo()`'s answer these helpers use. */
export interface DemoLike {
  readonly server: Server;
  readonly sidecars?: { close(): Promise<unknown>; readonly logShipper?: { readonly pid?: number | undefined }; readonly metricsSidecar?: { readonly pid?: number | undefined } } | undefined;
}

/**
 * Closes the demo (again, if a test did already) and waits until its sidecar processes have
 * exited: the supervisors drain, say BYE, then SIGTERM and SIGKILL by PID, each bounded.
 */
export async function closeDemo(demo: DemoLike | undefined): Promise<void> {
  if (demo === undefined) return;
  demo.server.closeAllConnections();
  await new Promise<void>((resolve) => demo.server.close(() => resolve()));
  await demo.sidecars?.close();
}

/** A `node demo/server.js` process (from the sources) that a test started, and what it printed. */
export interface DemoChild {
  readonly child: ChildProcess;
  readonly base: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with its exit code (null after a signal) once it has exited. */
  readonly exited: Promise<number | null>;
}

/**
 * Starts `node demo/server.js` from the sources (sourceNodeArgs) on 127.0.0.1:0 without sidecars,
 * with `env` added, and resolves once it says where it listens. Stop it with {@link killDemoChild}
 * on every path (it is killed by its PID).
 */
export function spawnDemo(env: Record<string, string> = {}): Promise<DemoChild> {
  const child = spawn(process.execPath, [...sourceNodeArgs, 'demo/server.js'], {
    cwd: fileURLToPath(new URL('../../', import.meta.url)),
    env: { ...process.env, PATCHBAY_REDIS_URL: '', PORT: '0', SIDECARS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (out += chunk));
  }
  return new Promise((resolve, reject) => {
    const listening = (): boolean => {
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) resolve({ child, base: `http://127.0.0.1:${m[1]}`, output: () => out, exited });
      return m !== null;
    };
    child.stdout!.on('data', listening);
    void exited.then((code) => reject(new Error(`the demo exited with ${code} before listening: ${out}`)));
  });
}

/** Kills a demo this test started (SIGKILL, by its PID) unless it has exited, and waits until it has. */
export async function killDemoChild(demo: DemoChild | undefined): Promise<void> {
  if (demo === undefined) return;
  if (demo.child.exitCode === null && demo.child.signalCode === null) process.kill(demo.child.pid!, 'SIGKILL');
  await demo.exited;
}
