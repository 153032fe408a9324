/**
 * Server processes for the network suites (longpoll, sse), started and stopped by PID: a Node
 * server script, the process table from /proc (children, RSS, CPU time), a free loopback port,
 * and a small GET on the coordinator's own connection. Everything listens on 127.0.0.1 only.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';

/** A server process (or process tree) the suite started. */
export interface ServerProcess {
  readonly port: number;
  /** The server's processes now (nginx: master and workers); empty once it is gone. */
  pids(): number[];
  /** Stops it by PID (SIGTERM, then SIGKILL) and resolves once every process of it is gone. */
  stop(): Promise<void>;
}

/** Every process started here that may still be alive, so a failure can stop them all by PID. */
export const started = new Set<ChildProcess>();

/** Kills every process started by this module, by PID (SIGKILL), and their children (nginx workers). */
export function killAllStarted(): void {
  for (const child of started) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    for (const pid of childPids(child.pid)) tryKill(pid, 'SIGKILL');
    tryKill(child.pid, 'SIGKILL');
  }
}

export function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** PIDs whose parent is `ppid` (from /proc). */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** VmRSS of one process in bytes, or NaN when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

const CLOCK_TICKS = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** CPU time (user + system) of one process in ms, at the kernel's tick resolution. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** VmRSS summed over the server's processes. */
export function totalRss(server: Pick<ServerProcess, 'pids'>): number {
  return server.pids().reduce((sum, pid) => sum + rssBytes(pid), 0);
}

/** CPU time summed over the server's processes. */
export function totalCpuMs(server: Pick<ServerProcess, 'pids'>): number {
  return server.pids().reduce((sum, pid) => sum + cpuMs(pid), 0);
}

/** A port nobody listens on now (bound to 0 and released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/**
 * A small GET on the server: on the coordinator's own keep-alive connection, or with `fresh` on
 * a new connection (closed after), which a server of several processes may give to any of them.
 */
export function getText(port: number, path: string, timeoutMs = 5000, fresh = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: fresh ? false : agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

/** `GET path` answered 200 with JSON: the parsed body. */
export async function getJson<T>(port: number, path: string, what: string): Promise<T> {
  const { status, body } = await getText(port, path);
  if (status !== 200) throw new Error(`${what}: GET ${path} answered ${status}`);
  return JSON.parse(body) as T;
}

/** Waits for a line on the child's stdout matching `re` (bounded). */
export function waitForLine(child: ChildProcess, re: RegExp, timeoutMs: number, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => done(new Error(`${what} did not start within ${timeoutMs} ms; output: ${out.slice(0, 400)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const m = re.exec(out);
      if (m) done(null, m);
    };
    const onExit = (code: number | null) => done(new Error(`${what} exited (${code}) before listening; output: ${out.slice(0, 400)}`));
    const done = (error: Error | null, m?: RegExpExecArray) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(m!);
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Stops a child by PID: SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    started.delete(child);
    return;
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  tryKill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => tryKill(child.pid!, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  started.delete(child);
}

/**
 * Starts `node <nodeFlags> <script>` with `PORT=0` (plus `env`) and resolves once it prints the
 * port it listens on (`127.0.0.1:<port>` or `listening on <port>`).
 */
export async function startNodeServer(
  script: string,
  options: { readonly cwd: string; readonly name: string; readonly env?: Readonly<Record<string, string>>; readonly nodeFlags?: readonly string[] },
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), script], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  started.add(child);
  const m = await waitForLine(child, /(?:127\.0\.0\.1:|listening on )(\d+)/, 15_000, options.name).catch(async (error: unknown) => {
    await stopChild(child, 1000);
    throw error;
  });
  child.stdout?.resume(); // keep draining
  return {
    port: Number(m[1]),
    pids: () => (child.exitCode === null && child.signalCode === null ? [child.pid!] : []),
    stop: () => stopChild(child, 3000),
  };
}

/**
 * A private copy of the built package and the demo (`package.json`, `dist/`, `demo/`) under
 * `bench/node_modules/.patchbay-snapshot-<pid>/`, so a long suite keeps running the code it
 * built even when someone rebuilds `dist/` or edits `demo/` in the same checkout meanwhile.
 * Inside it, `import 'patchbay'` resolves to the copy (a package's self-reference) and the
 * dependencies to the repository's `node_modules` (found by walking up). `remove()` deletes it.
 */
export function snapshotPackage(root: string): { readonly dir: string; remove(): void } {
  const dir = join(root, 'bench', 'node_modules', `.patchbay-snapshot-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const entry of ['package.json', 'dist', 'demo']) cpSync(join(root, entry), join(dir, entry), { recursive: true });
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { exports?: Record<string, unknown> };
  // Every file the exports map names must be there: a rebuild racing the copy would leave holes.
  const files = JSON.stringify(pkg.exports ?? {}).match(/"\.\/dist\/[^"]+"/g) ?? [];
  for (const f of files) if (!existsSync(join(dir, JSON.parse(f) as string))) throw new Error(`the snapshot of the package lacks ${f}: was dist/ being rebuilt? Run again.`);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
