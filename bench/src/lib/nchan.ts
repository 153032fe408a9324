/**
 * nginx with Debian's Nchan module for the network suites: installs it when missing, and runs
 * it in the foreground with a suite's own `server { }` locations under a temporary prefix,
 * `NCHAN_WORKERS` workers, on 127.0.0.1 only (research/pubsub-poll-sidecar.md §1.10).
 *
 * Each worker may hold 20,000 open files (the machine's hard limit). Up to 19,000 clients (the
 * sizes every contender runs) the config is the one the suites always used: `worker_connections
 * 19900`, one listen socket the workers share. Above that (38,000: 19,000 per worker) two things
 * change, both needed to hold the clients at all:
 *
 * - `listen … reuseport`: one listen socket per worker, and the kernel spreads the connections
 *   over them by hash, so each worker gets about half (without it the workers race for each
 *   connection, and one may take more than its 20,000 files);
 * - `worker_connections 32768`: a worker counts in its connections both sockets and Nchan's own
 *   internal connections without a file; with 19,900 a worker holding about 18,700 client
 *   sockets logged "19900 worker_connections are not enough, reusing connections" and closed
 *   held subscribers. Open files stay capped by `worker_rlimit_nofile 20000`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { sleep } from './harness.js';
import { childPids, freePort, getText, type ServerProcess, started, stopChild, tryKill } from './processes.js';

export const NCHAN_MODULE = '/usr/lib/nginx/modules/ngx_nchan_module.so';
export const NCHAN_WORKERS = 2;

/** Makes sure nginx and the Nchan module are there; installs them with apt-get if not. */
export function ensureNchan(): void {
  if (existsSync(NCHAN_MODULE) && spawnSync('nginx', ['-v']).status === 0) return;
  console.log('bench: installing nginx and libnginx-mod-nchan (apt-get)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const r = spawnSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq nginx libnginx-mod-nchan'], { stdio: 'inherit', env, timeout: 5 * 60_000 });
  if (r.status !== 0 || !existsSync(NCHAN_MODULE)) throw new Error('could not install nginx + libnginx-mod-nchan');
}

/** `nginx/1.22.1, libnginx-mod-nchan 1:1.3.6+dfsg-2`, say. */
export function nginxVersion(): string {
  const r = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  const nchan = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'libnginx-mod-nchan'], { encoding: 'utf8' });
  return `${(r.stderr || r.stdout).trim().replace('nginx version: ', '')}, libnginx-mod-nchan ${nchan.stdout?.trim() || '?'}`;
}

/** Above this many clients a trial's nginx uses `reuseport` and more worker connections (see above). */
export const NCHAN_LARGE_CLIENTS = 19_000;

function nchanConfig(port: number, locations: string, comment: string, clients: number): string {
  const large = clients > NCHAN_LARGE_CLIENTS;
  return `# ${comment} (loopback only).
load_module ${NCHAN_MODULE};
daemon off;
master_process on;
worker_processes ${NCHAN_WORKERS};
worker_rlimit_nofile 20000;
pid logs/nginx.pid;
error_log logs/error.log warn;

events {
  worker_connections ${large ? 32768 : 19900};
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
    listen 127.0.0.1:${port}${large ? ' reuseport' : ''};

${locations
  .trim()
  .split('\n')
  .map((l) => (l === '' ? '' : `    ${l}`))
  .join('\n')}

    location = /nchan_status { nchan_stub_status; }
  }
}
`;
}

/** A running nginx + Nchan. */
export interface NchanServer extends ServerProcess {
  /** `subscribers` from `nchan_stub_status`. */
  subscribers(): Promise<number>;
}

/**
 * Starts nginx + Nchan with `locations` (the `location` blocks of its one server) and resolves
 * once it answers and all its workers are up.
 *
 * @param comment - The config's first line: who wrote it, for what.
 * @param clients - How many clients the trial connects (above 19,000 the config holds more; see above).
 */
export async function startNchan(locations: string, comment: string, clients = 0): Promise<NchanServer> {
  const prefix = mkdtempSync(join(os.tmpdir(), 'patchbay-nchan-'));
  mkdirSync(join(prefix, 'logs'));
  mkdirSync(join(prefix, 'tmp'));
  const port = await freePort();
  const conf = join(prefix, 'nchan.conf');
  writeFileSync(conf, nchanConfig(port, locations, comment, clients));
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
    port,
    pids,
    stop,
    async subscribers() {
      const { status, body } = await getText(port, '/nchan_status');
      if (status !== 200) throw new Error(`nchan_status answered ${status}`);
      const m = /^subscribers: (\d+)$/m.exec(body);
      if (!m) throw new Error(`no subscriber count in nchan_status: ${body.slice(0, 200)}`);
      return Number(m[1]);
    },
  };
}
