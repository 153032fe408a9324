/**
 * Memory under hostile clients, measured where nothing else shares the heap: the demo server runs
 * in a child process started with --expose-gc (test/hardening/fixtures/heap-child.mjs), which
 * collects garbage and reports heapUsed + external (Buffers live outside the V8 heap) on request.
 * Each load is bounded, waits for conditions (never for time), and is measured against the bound
 * docs/limits.md promises, with room for what Node itself allocates per socket.
 */
import { type ChildProcess, fork } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { eventually, sourceNodeArgs } from '../helpers.js';

const root = new URL('../../', import.meta.url).pathname;
const MiB = 1024 * 1024;
const MESSAGE = 'x'.repeat(10 * 1024);
const LOG_MESSAGES = 800; // 8 MB: the default per-topic byte bound

interface Memory {
  heapUsed: number;
  external: number;
}

let child: ChildProcess;
let base: string;
let ids: string[] = [];
let nextId = 0;
const pending = new Map<number, (value: Record<string, unknown>) => void>();

function ask<T extends Record<string, unknown>>(op: string): Promise<T> {
  const id = ++nextId;
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`the demo child is gone (${child.exitCode ?? child.signalCode})`));
    const onExit = (): void => reject(new Error(`the demo child exited while asked for ${op}`));
    child.once('exit', onExit);
    pending.set(id, (value) => {
      child.off('exit', onExit);
      resolve(value as T);
    });
    child.send({ id, op });
  });
}

/** Prints a measured figure (for the closing notes and docs/limits.md), with its bound. */
function report(what: string, grown: number, bound: number): void {
  console.info(`heap: ${what}: grew ${(grown / MiB).toFixed(1)} MiB (bound ${(bound / MiB).toFixed(1)} MiB)`);
}

async function held(): Promise<number> {
  const m = await ask<Memory & Record<string, unknown>>('memory');
  return m.heapUsed + m.external;
}

type Stats = { longPoll: Record<string, number>; sse: Record<string, number>; ws: Record<string, number>; broker: Record<string, number> };
const stats = (): Promise<Stats & Record<string, unknown>> => ask('stats');

/** The child is another process, on a busy machine: waits on it get this long. */
const CHILD = { timeoutMs: 20_000 };

/** Sends a GET and never reads a byte of the answer. */
function neverReading(path: string, headers: Record<string, string> = {}): net.Socket {
  const { port } = new URL(base);
  const socket = net.connect(Number(port), '127.0.0.1');
  socket.setNoDelay(true);
  const head = Object.entries({ host: `127.0.0.1:${port}`, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.write(`GET ${path} HTTP/1.1\r\n${head}\r\n`);
  socket.pause();
  socket.on('error', () => undefined);
  return socket;
}

beforeAll(async () => {
  child = fork('test/hardening/fixtures/heap-child.mjs', [], {
    cwd: root,
    execArgv: ['--expose-gc', ...sourceNodeArgs],
    env: { ...process.env, SIDECARS: '0' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  child.on('message', (msg: Record<string, unknown>) => {
    if (typeof msg['port'] === 'number') base = `http://127.0.0.1:${msg['port']}`;
    const resolve = pending.get(msg['id'] as number);
    if (resolve !== undefined) {
      pending.delete(msg['id'] as number);
      resolve(msg);
    }
  });
  await eventually(() => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the demo child exited before listening (${child.exitCode ?? child.signalCode})`);
    return Promise.resolve(base !== undefined);
  }, 'the demo child to listen', { timeoutMs: 60_000 });
  ids = [];
  for (let i = 0; i < LOG_MESSAGES; i++) {
    const res = await fetch(`${base}/pub/big`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: MESSAGE });
    ids.push(((await res.json()) as { id: string }).id);
  }
}, 120_000);

afterAll(async () => {
  if (child === undefined || child.exitCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.send({ op: 'exit' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(timer);
});

describe('memory under hostile clients (isolated --expose-gc demo process)', () => {
  it('many distinct long-poll cursors while a poll is parked keep a bounded answer cache', async () => {
    const before = await held();
    const parked = new AbortController();
    const poll = fetch(`${base}/lp/big`, { signal: parked.signal }).catch(() => undefined);
    await eventually(async () => (await stats()).longPoll['parked'] === 1, 'the poll to park', CHILD);
    const cursors = [...Array.from({ length: 100 }, (_, i) => `zz${i.toString(36)}-1`), ...ids.filter((_, i) => i % 4 === 0)];
    for (let i = 0; i < cursors.length; i += 20) {
      await Promise.all(cursors.slice(i, i + 20).map(async (cursor) => {
        const res = await fetch(`${base}/lp/big?cursor=${cursor}`);
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }));
    }
    const grown = (await held()) - before;
    parked.abort();
    await poll;
    // Before issue 15 every distinct cursor kept its own answer (up to 1 MB here) while a poll was parked: 296 MB.
    report('300 distinct long-poll cursors', grown, 32 * MiB);
    expect(grown).toBeLessThan(32 * MiB);
  }, 120_000);

  it('one WebSocket that never reads, with 100 replays of an 8 MB log, holds about its send-buffer bound', async () => {
    const before = await held();
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    (ws as unknown as { _socket: net.Socket })._socket.pause(); // never reads from now on
    for (let i = 0; i < 100; i++) ws.send(JSON.stringify({ type: 'subscribe', sid: `s${i}`, topics: ['big'], cursor: 'oldest' }));
    // The server takes subscribe frames while it has room; the never-read replays fill its budget, then wait.
    await eventually(async () => (await stats()).ws['bytesQueued']! >= 900 * 1024, 'the replay budget to fill', CHILD);
    const grown = (await held()) - before;
    // What the handler counts as held for the socket: one budget for all its replays (and one for live).
    expect((await stats()).ws['bytesQueued']).toBeLessThanOrEqual(2 * MiB);
    ws.terminate();
    await eventually(async () => (await stats()).ws['connections'] === 0, 'the socket to be gone', CHILD);
    // Before issue 15: 100 replays staged whole, 857 MB.
    report('100 never-read WebSocket replays', grown, 32 * MiB);
    expect(grown).toBeLessThan(32 * MiB);
  }, 120_000);

  it('SSE clients that never read, resuming from the start of an 8 MB log, hold about their send-buffer bound each', async () => {
    const before = await held();
    const sockets = Array.from({ length: 20 }, () => neverReading('/sse/big', { 'last-event-id': ids[0]! }));
    await eventually(async () => (await stats()).sse['connections'] === 20, 'the 20 streams to start', CHILD);
    // Measured once the server holds what it will hold for them: each stream's send buffer full of
    // replay (the client never reads, so the replay waits there), not before.
    await eventually(async () => {
      const sse = (await stats()).sse;
      return sse['bytesBuffered']! + sse['bytesQueued']! + (sse['replayBytesHeld'] ?? 0) >= 20 * 0.9 * MiB;
    }, 'the streams to fill their send buffers', CHILD);
    const grown = (await held()) - before;
    for (const s of sockets) s.destroy();
    await eventually(async () => (await stats()).sse['connections'] === 0, 'the streams to close', CHILD);
    // Before issue 15: each replay queued whole, 8 MB a stream (165 MB).
    report('20 never-reading SSE resumes', grown, 20 * 2.5 * MiB + 16 * MiB);
    // Each stream: maxBufferedBytes (1 MiB) plus the rest of one page, as docs/limits.md says.
    expect(grown).toBeLessThan(20 * 2.5 * MiB + 16 * MiB);
  }, 120_000);
});
