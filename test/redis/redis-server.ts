/**
 * A Redis for the tests: `PATCHBAY_TEST_REDIS_URL` when set (CI's, started by .ci/run), else a
 * redis-server of our own on a free loopback port with a throwaway config, when the binary is
 * installed. Without either the Redis tests skip, loudly, except under CI=true, where they fail.
 *
 * Servers started here can be stopped and started again by PID (the restart fault), on the same
 * port, and are killed when the test file ends.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '../helpers.js';

export const REDIS_BINARY = (() => {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
})();

/** Why Redis tests cannot run here, or `undefined` when they can. */
export const redisUnavailableReason: string | undefined =
  process.env.PATCHBAY_TEST_REDIS_URL || REDIS_BINARY
    ? undefined
    : 'no Redis: set PATCHBAY_TEST_REDIS_URL or install redis-server (apt-get install redis-server)';

if (process.env.CI === 'true' && REDIS_BINARY === undefined) {
  // The fault tests stop and start servers of their own: CI must have the binary (.ci/run installs it).
  throw new Error('Redis tests cannot run under CI=true: redis-server is not installed (apt-get install redis-server)');
}
if (redisUnavailableReason !== undefined) {
  console.warn(`\n!!! SKIPPING the Redis tests: ${redisUnavailableReason} !!!\n`);
} else if (REDIS_BINARY === undefined) {
  // PATCHBAY_TEST_REDIS_URL is set but there is no binary: the tests that stop, start or cluster
  // servers of their own (skipIf REDIS_BINARY === undefined) cannot run.
  console.warn('\n!!! SKIPPING the Redis tests that start their own servers (fault, cluster, sentinel, multi-process): redis-server is not installed !!!\n');
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

/** A redis-server this test started (or the shared one from the environment). */
export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** The PID of a server started here (undefined for the shared one). */
  pid(): number | undefined;
  /** Stops it by PID (SIGKILL: no save) and waits until it is gone. Own servers only. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty, unless `persist` was given). Own servers only. */
  start(): Promise<void>;
  /** Stops it for good and removes its directory. */
  dispose(): Promise<void>;
}

/** Starts a redis-server of our own on 127.0.0.1 (needs the binary). */
export async function startRedis(options: { persist?: boolean } = {}): Promise<TestRedis> {
  if (REDIS_BINARY === undefined) throw new Error('redis-server is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-redis-'));
  const port = await freePort();
  const conf = join(dir, 'redis.conf');
  writeFileSync(
    conf,
    [
      'bind 127.0.0.1',
      `port ${port}`,
      'protected-mode yes',
      'daemonize no',
      `dir ${dir}`,
      options.persist ? 'appendonly yes' : 'appendonly no',
      options.persist ? 'appendfsync always' : '',
      'save ""',
      'loglevel warning',
      'logfile ""',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const started = spawn(REDIS_BINARY, [conf], { stdio: ['ignore', 'ignore', 'inherit'] });
    child = started;
    try {
      await eventually(
        async () => {
          if (await ping(port)) return true;
          if (started.exitCode !== null) throw new Error(`redis-server exited with ${started.exitCode}`);
          return false;
        },
        `redis-server on port ${port} to answer`,
        { timeoutMs: 10_000 },
      );
    } catch (error) {
      await stop(); // one that runs but does not answer is not left behind
      throw new Error(`redis-server on port ${port} did not start`, { cause: error });
    }
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    process.kill(c.pid!, 'SIGKILL');
    await gone;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: () => child?.pid,
    stop,
    start,
    dispose: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The shared Redis when the environment names one, else a server of our own. */
export async function testRedis(): Promise<TestRedis> {
  const url = process.env.PATCHBAY_TEST_REDIS_URL;
  if (url) {
    const port = Number(new URL(url).port || 6379);
    const no = (): Promise<void> => Promise.reject(new Error('the shared Redis is not ours to stop'));
    return { url, port, pid: () => undefined, stop: no, start: no, dispose: () => Promise.resolve() };
  }
  return startRedis();
}

/** `PING` over a raw socket: whether a Redis answers on the port. */
export function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

let prefixCount = 0;
/** A key prefix no other test uses. */
export function uniquePrefix(name = 't'): string {
  return `pbtest:${process.pid}:${name}${++prefixCount}:${Math.random().toString(36).slice(2, 8)}:`;
}

/** A Redis Cluster of `n` masters (no replicas) on loopback, started here; needs the binaries. */
export async function startCluster(n = 3): Promise<{ nodes: { host: string; port: number }[]; dispose: () => Promise<void> }> {
  if (REDIS_BINARY === undefined) throw new Error('redis-server is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-cluster-'));
  const children: ChildProcess[] = [];
  const nodes: { host: string; port: number }[] = [];
  const dispose = async (): Promise<void> => {
    await Promise.all(
      children.map((c) => {
        if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
        const gone = new Promise<void>((r) => c.once('exit', () => r()));
        process.kill(c.pid!, 'SIGKILL');
        return gone;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < n; i++) {
      const port = await freePort();
      const conf = join(dir, `node${i}.conf`);
      writeFileSync(
        conf,
        [
          'bind 127.0.0.1',
          `port ${port}`,
          'cluster-enabled yes',
          `cluster-config-file ${join(dir, `nodes${i}.conf`)}`,
          'cluster-node-timeout 2000',
          `dir ${dir}`,
          'save ""',
          'appendonly no',
          'loglevel warning',
          'logfile ""',
        ].join('\n'),
      );
      children.push(spawn(REDIS_BINARY, [conf], { stdio: ['ignore', 'ignore', 'inherit'] }));
      nodes.push({ host: '127.0.0.1', port });
    }
    for (const node of nodes) await eventually(() => ping(node.port), `cluster node ${node.port} to start`, { timeoutMs: 10_000 });
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((x) => `127.0.0.1:${x.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
    // Wait until every node says the cluster is ok.
    for (const node of nodes) {
      await eventually(
        () => spawnSync('redis-cli', ['-p', String(node.port), 'cluster', 'info'], { encoding: 'utf8' }).stdout.includes('cluster_state:ok'),
        `node ${node.port} to report cluster_state:ok`,
        { timeoutMs: 20_000 },
      );
    }
    return { nodes, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** A master and one Sentinel watching it (quorum 1), started here; needs the binary. */
export async function startSentinel(): Promise<{ master: TestRedis; sentinel: { host: string; port: number }; name: string; dispose: () => Promise<void> }> {
  const master = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-sentinel-'));
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    ['bind 127.0.0.1', `port ${port}`, `dir ${dir}`, 'sentinel monitor pbmaster 127.0.0.1 ' + master.port + ' 1', 'sentinel down-after-milliseconds pbmaster 5000'].join('\n'),
  );
  const child = spawn(REDIS_BINARY!, [conf, '--sentinel'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const dispose = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      process.kill(child.pid!, 'SIGKILL');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
    await master.dispose();
  };
  try {
    await eventually(() => ping(port), `redis-sentinel on port ${port} to answer`, { timeoutMs: 10_000 });
  } catch (error) {
    await dispose();
    throw new Error('redis-sentinel did not start', { cause: error });
  }
  return { master, sentinel: { host: '127.0.0.1', port }, name: 'pbmaster', dispose };
}
