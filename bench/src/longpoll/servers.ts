/**
 * The three long-poll servers of the benchmark, started and stopped by PID:
 *
 * - `patchbay`: the demo server, `node demo/server.js` (built package), `LP_TIMEOUT_MS=120000`.
 * - `bare`: the hand-written `node:http` reference, `node bench/src/longpoll/bare-server.mjs`.
 * - `nchan`: nginx with Debian's Nchan module, 2 workers, in the foreground, with this
 *   benchmark's own config under a temporary prefix (research/pubsub-poll-sidecar.md §1.10).
 *
 * All three listen on 127.0.0.1 only.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';

export const SERVERS = ['patchbay', 'bare', 'nchan'] as const;
export type ServerName = (typeof SERVERS)[number];

/** How long a poll is held: far beyond any trial, so none times out while measured. */
export const HOLD_MS = 120_000;
export const NCHAN_MODULE = '/usr/lib/nginx/modules/ngx_nchan_module.so';
export const NCHAN_WORKERS = 2;

export interface RunningServer {
  readonly name: ServerName;
  readonly port: number;
  /** The server's processes now (nginx: master and workers). */
  pids(): number[];
  /** Polls the server itself says it holds (patchbay: longPoll.parked; bare: parked; Nchan: subscribers). */
  parked(): Promise<number>;
  /** Stops it by PID (SIGTERM, then SIGKILL) and resolves once every process of it is gone. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Every process started here that may still be alive, so a failure can stop them all by PID. */
export const started = new Set<ChildProcess>();

/** Kills every process started by this module, by PID (SIGKILL), and nginx workers too. */
export function killAllStarted(): void {
  for (const child of started) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue;
    for (const pid of childPids(child.pid)) tryKill(pid, 'SIGKILL');
    tryKill(child.pid, 'SIGKILL');
  }
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
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
const CLOCK_TICKS = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

export function totalRss(server: RunningServer): number {
  return server.pids().reduce((sum, pid) => sum + rssBytes(pid), 0);
}

export function totalCpuMs(server: RunningServer): number {
  return server.pids().reduce((sum, pid) => sum + cpuMs(pid), 0);
}

/** A port nobody listens on now (bound to 0 and released). */
async function freePort(): Promise<number> {
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

/** A small GET on the server (the coordinator's own connection). */
export function getText(port: number, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: timeoutMs }, (res) => {
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

/** Waits for a line on the child's stdout matching `re` (bounded). */
function waitForLine(child: ChildProcess, re: RegExp, timeoutMs: number, what: string): Promise<RegExpExecArray> {
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
async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
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

async function startNode(name: 'patchbay' | 'bare', root: string, nodeFlags: readonly string[]): Promise<RunningServer> {
  const script = name === 'patchbay' ? join(root, 'demo', 'server.js') : join(root, 'bench', 'src', 'longpoll', 'bare-server.mjs');
  const child = spawn(process.execPath, [...nodeFlags, script], {
    cwd: root,
    env: { ...process.env, PORT: '0', LP_TIMEOUT_MS: String(HOLD_MS) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  started.add(child);
  const m = await waitForLine(child, /(?:127\.0\.0\.1:|listening on )(\d+)/, 15_000, name).catch(async (error: unknown) => {
    await stopChild(child, 1000);
    throw error;
  });
  const port = Number(m[1]);
  child.stdout?.resume(); // keep draining
  return {
    name,
    port,
    pids: () => (child.exitCode === null && child.signalCode === null ? [child.pid!] : []),
    async parked() {
      const { status, body } = await getText(port, '/stats');
      if (status !== 200) throw new Error(`${name} /stats answered ${status}`);
      const stats = JSON.parse(body) as { parked?: number; longPoll?: { parked: number } };
      return name === 'patchbay' ? stats.longPoll!.parked : stats.parked!;
    },
    stop: () => stopChild(child, 3000),
  };
}

function nchanConfig(port: number): string {
  return `# Written by bench/src/longpoll/servers.ts for one benchmark trial (loopback only).
load_module ${NCHAN_MODULE};
daemon off;
master_process on;
worker_processes ${NCHAN_WORKERS};
worker_rlimit_nofile 20000;
pid logs/nginx.pid;
error_log logs/error.log warn;

events {
  worker_connections 19900;
}

http {
  access_log off;
  client_body_temp_path tmp/body;   # must NOT equal the compiled-in default (nchan issue #677)
  proxy_temp_path       tmp/proxy;
  fastcgi_temp_path     tmp/fastcgi;
  uwsgi_temp_path       tmp/uwsgi;
  scgi_temp_path        tmp/scgi;
  nchan_shared_memory_size 256M;

  server {
    listen 127.0.0.1:${port};

    location ~ ^/pub/([A-Za-z0-9_-]+)$ {
      nchan_publisher http;
      nchan_channel_id $1;
      nchan_message_buffer_length 100;
      nchan_message_timeout 5m;
    }

    location ~ ^/lp/([A-Za-z0-9_-]+)$ {
      nchan_subscriber longpoll;
      nchan_channel_id $1;
      nchan_subscriber_first_message newest;
      nchan_subscriber_timeout ${Math.round(HOLD_MS / 1000)};
    }

    location = /nchan_status { nchan_stub_status; }
  }
}
`;
}

/** Makes sure nginx and the Nchan module are there; installs them with apt-get if not. */
export function ensureNchan(): void {
  if (existsSync(NCHAN_MODULE) && spawnSync('nginx', ['-v']).status === 0) return;
  console.log('longpoll: installing nginx and libnginx-mod-nchan (apt-get)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const r = spawnSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq nginx libnginx-mod-nchan'], { stdio: 'inherit', env, timeout: 5 * 60_000 });
  if (r.status !== 0 || !existsSync(NCHAN_MODULE)) throw new Error('could not install nginx + libnginx-mod-nchan');
}

export function nginxVersion(): string {
  const r = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  const nchan = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'libnginx-mod-nchan'], { encoding: 'utf8' });
  return `${(r.stderr || r.stdout).trim().replace('nginx version: ', '')}, libnginx-mod-nchan ${nchan.stdout?.trim() || '?'}`;
}

async function startNchan(): Promise<RunningServer> {
  const prefix = mkdtempSync(join(os.tmpdir(), 'patchbay-nchan-'));
  mkdirSync(join(prefix, 'logs'));
  mkdirSync(join(prefix, 'tmp'));
  const port = await freePort();
  const conf = join(prefix, 'nchan.conf');
  writeFileSync(conf, nchanConfig(port));
  const child = spawn('nginx', ['-p', `${prefix}/`, '-c', conf, '-e', join(prefix, 'logs', 'error.log')], { stdio: ['ignore', 'ignore', 'inherit'] });
  started.add(child);
  const masterPid = child.pid!;
  const pids = () => (child.exitCode === null && child.signalCode === null ? [masterPid, ...childPids(masterPid)] : []);
  const stop = async () => {
    const workers = childPids(masterPid);
    await stopChild(child, 5000); // SIGTERM: fast shutdown, the master waits for its workers
    for (let i = 0; i < 50 && workers.some((pid) => existsSync(`/proc/${pid}`)); i++) await sleep(100);
    for (const pid of workers) if (existsSync(`/proc/${pid}`)) tryKill(pid, 'SIGKILL');
    rmSync(prefix, { recursive: true, force: true });
  };
  // Ready once it answers and both workers are up.
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const { status } = await getText(port, '/nchan_status', 1000);
      if (status === 200 && childPids(masterPid).length >= NCHAN_WORKERS) break;
    } catch {
      // not yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = existsSync(join(prefix, 'logs', 'error.log')) ? readFileSync(join(prefix, 'logs', 'error.log'), 'utf8').slice(-800) : '';
      await stop();
      throw new Error(`nginx + Nchan did not start on port ${port}: ${log}`);
    }
    await sleep(100);
  }
  return {
    name: 'nchan',
    port,
    pids,
    async parked() {
      const { status, body } = await getText(port, '/nchan_status');
      if (status !== 200) throw new Error(`nchan_status answered ${status}`);
      const m = /^subscribers: (\d+)$/m.exec(body);
      if (!m) throw new Error(`no subscriber count in nchan_status: ${body.slice(0, 200)}`);
      return Number(m[1]);
    },
    stop,
  };
}

/** @param nodeFlags - Extra `node` flags for the Node servers (profiling: `--cpu-prof`, `--trace-gc`). */
export function startServer(name: ServerName, root: string, nodeFlags: readonly string[] = []): Promise<RunningServer> {
  return name === 'nchan' ? startNchan() : startNode(name, root, nodeFlags);
}
