/**
 * The publishing process of the Redis suite. Spawned with an IPC channel; messages:
 *
 * - in `{ type: 'start', kind, redisUrl, prefix, topic, demoPort }`: connects: `patchbay` is a
 *   `PubSubBroker` over a `RedisBackend` (the built package), `ioredis` a plain ioredis client
 *   (`PUBLISH`), `demo` an HTTP keep-alive client of a second demo process (`POST /pub/:topic`);
 *   replies `{ type: 'ready' }`.
 * - in `{ type: 'paced', n, intervalMs }`: publishes `{ i, t }` n times, one every `intervalMs`,
 *   `t` being `process.hrtime` in µs (one monotonic clock for every process on the machine);
 *   replies `{ type: 'done', callUs }` with each publish call's round trip.
 * - in `{ type: 'burst', n, window }`: publishes n messages with at most `window` in flight;
 *   replies `{ type: 'done', startUs, endUs }`.
 * - A request that fails is answered with its usual reply carrying `error`.
 * - in `{ type: 'exit' }`.
 */
import http from 'node:http';
import type * as Patchbay from '../../../src/index.js';
import type * as PatchbayRedis from '../../../src/redis/index.js';

export type ToPublisher =
  | { type: 'start'; kind: 'patchbay' | 'ioredis' | 'demo'; redisUrl: string; prefix: string; topic: string; demoPort: number }
  | { type: 'paced'; n: number; intervalMs: number }
  | { type: 'burst'; n: number; window: number }
  | { type: 'exit' };
export type FromPublisher = { type: 'ready'; error?: string } | { type: 'done'; callUs: number[]; startUs: number; endUs: number; error?: string };

const send = (m: FromPublisher): void => void process.send!(m);
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let publish: (data: { i: number; t: number }) => Promise<unknown> = () => Promise.reject(new Error('not started'));
let close: () => Promise<void> = () => Promise.resolve();

async function start(m: Extract<ToPublisher, { type: 'start' }>): Promise<void> {
  if (m.kind === 'patchbay') {
    const { PubSubBroker } = (await import(new URL('../../../dist/index.js', import.meta.url).href)) as typeof Patchbay;
    const { RedisBackend } = (await import(new URL('../../../dist/redis.js', import.meta.url).href)) as typeof PatchbayRedis;
    const backend = new RedisBackend({ url: m.redisUrl, prefix: m.prefix });
    const broker = new PubSubBroker({ backend });
    await backend.ready();
    publish = (data) => broker.publish(m.topic, data);
    close = async () => {
      await broker.close();
      await backend.close();
    };
  } else if (m.kind === 'ioredis') {
    const { Redis } = await import('ioredis');
    const client = new Redis(m.redisUrl);
    await client.ping();
    publish = (data) => client.publish(m.topic, JSON.stringify(data));
    close = async () => void (await client.quit());
  } else {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    publish = (data) =>
      new Promise((resolve, reject) => {
        const body = Buffer.from(JSON.stringify(data));
        const req = http.request(
          { host: '127.0.0.1', port: m.demoPort, path: `/pub/${m.topic}`, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
          (res) => {
            res.resume();
            res.on('end', () => (res.statusCode === 201 ? resolve(undefined) : reject(new Error(`POST answered ${res.statusCode}`))));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    close = () => Promise.resolve(agent.destroy());
  }
}

async function paced(n: number, intervalMs: number): Promise<void> {
  const callUs: number[] = [];
  const startUs = nowUs();
  let next = performance.now();
  for (let i = 0; i < n; i++) {
    const t = nowUs();
    await publish({ i, t });
    callUs.push(nowUs() - t);
    next += intervalMs;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
  }
  send({ type: 'done', callUs, startUs, endUs: nowUs() });
}

async function burst(n: number, window: number): Promise<void> {
  const startUs = nowUs();
  let sent = 0;
  await new Promise<void>((resolve, reject) => {
    let inFlight = 0;
    let done = 0;
    const pump = (): void => {
      while (inFlight < window && sent < n) {
        const i = sent++;
        inFlight++;
        publish({ i, t: nowUs() }).then(() => {
          inFlight--;
          if (++done === n) resolve();
          else pump();
        }, reject);
      }
    };
    pump();
  });
  send({ type: 'done', callUs: [], startUs, endUs: nowUs() });
}

process.on('message', (m: ToPublisher) => {
  const run = async (): Promise<void> => {
    if (m.type === 'start') {
      await start(m);
      send({ type: 'ready' });
    } else if (m.type === 'paced') await paced(m.n, m.intervalMs);
    else if (m.type === 'burst') await burst(m.n, m.window);
    else if (m.type === 'exit') {
      await close().catch(() => undefined);
      process.exit(0);
    }
  };
  run().catch((error: unknown) => {
    // One reply type per request (the coordinator waits for one type at a time), with the error.
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    if (m.type === 'start') send({ type: 'ready', error: message });
    else send({ type: 'done', callUs: [], startUs: 0, endUs: 0, error: message });
  });
});
