import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { PubSubBroker } from '../../src/index.js';
import { RedisBackend, type RedisBackendOptions } from '../../src/redis/index.js';
import { testRedis, type TestRedis, uniquePrefix } from './redis-server.js';

/** What {@link redisSuite} gives a suite: the test Redis, a raw client on it, and per-test cleanups. */
export interface RedisSuite {
  readonly redis: TestRedis;
  /** A plain ioredis client, for writing and reading keys by hand. */
  readonly raw: Redis;
  /** Run in reverse order after each test. */
  readonly cleanups: (() => Promise<unknown> | unknown)[];
}

/**
 * Registers, in the calling `describe`, the hooks that start (or share) the test Redis with a raw
 * client before the suite, run the cleanups after each test, and let go of both after the suite.
 */
export function redisSuite(): RedisSuite {
  let redis: TestRedis | undefined;
  let raw: Redis | undefined;
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  beforeAll(async () => {
    redis = await testRedis();
    raw = new Redis(redis.url);
  });
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });
  afterAll(async () => {
    raw?.disconnect();
    await redis?.dispose();
  });
  return {
    get redis() {
      return redis!;
    },
    get raw() {
      return raw!;
    },
    cleanups,
  };
}

/** Two backends ("processes" A and B) on one Redis and a fresh prefix, each with its broker; closed by `cleanups`. */
export async function backendPair(
  url: string,
  cleanups: (() => Promise<unknown> | unknown)[],
  options: Partial<RedisBackendOptions> = {},
  optionsB: Partial<RedisBackendOptions> = {},
  prefix = uniquePrefix(),
) {
  const a = new RedisBackend({ url, prefix, ...options });
  const b = new RedisBackend({ url, prefix, ...options, ...optionsB });
  const brokerA = new PubSubBroker({ backend: a });
  const brokerB = new PubSubBroker({ backend: b });
  cleanups.push(async () => {
    await brokerA.close();
    await brokerB.close();
    await a.close();
    await b.close();
  });
  await Promise.all([a.ready(), b.ready()]);
  return { prefix, a, b, brokerA, brokerB };
}

/** An HTTP server on 127.0.0.1:0 running `handler`; resolves with its base URL and a closer. */
export async function serve(handler: http.RequestListener): Promise<{ base: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** One SSE event as parsed by {@link readSse}. */
export interface SseEvent {
  readonly id: string | undefined;
  readonly event: string | undefined;
  readonly data: string;
}

/**
 * Follows an SSE response: pushes every event into `events` until `signal` aborts or the
 * stream ends. Resolves with the response status and headers once they arrive.
 */
export async function readSse(url: string, events: SseEvent[], signal: AbortSignal, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; done: Promise<void> }> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal });
  const done = (async () => {
    if (res.body === null) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id: string | undefined;
          let event: string | undefined;
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          // The opening event (patchbay-open) carries the stream's starting id; it is not a message.
          if ((data.length > 0 || event !== undefined) && event !== 'patchbay-open') events.push({ id, event, data: data.join('\n') });
        }
      }
    } catch {
      // aborted or cut
    }
  })();
  return { status: res.status, headers: res.headers, done };
}
