/**
 * The demo's graceful shutdown (docs/guides/shutdown.md), on a real process: SIGTERM closes the handlers before the server,
 * so every request it holds gets a proper answer (not a cut connection), then it exits 0 by
 * itself (not by its last-resort deadline, which exits 1).
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { eventually } from '../helpers.js';
import { type DemoChild, killDemoChild, spawnDemo } from './helpers.js';

let demo: DemoChild | undefined;
afterEach(async () => {
  await killDemoChild(demo);
  demo = undefined;
});

interface Stats {
  longPoll: { parked: number };
  sse: { connections: number };
  poll: { held: number; heldStarts: number };
  ws: { connections: number; subscriptions: number };
}
const stats = async (base: string): Promise<Stats> => (await (await fetch(`${base}/stats`)).json()) as Stats;

describe('demo: SIGTERM', () => {
  it('answers every held long poll, SSE stream, Prefer: wait read and WebSocket, then exits 0', async () => {
    demo = await spawnDemo({ LP_TIMEOUT_MS: '120000' });
    const { base } = demo;

    // A long poll parked on an empty topic, after a first message (so its cursor is a real id).
    const pub = (await (await fetch(`${base}/pub/shutdown`, { method: 'POST', body: 'first' })).json()) as { id: string };
    const poll = fetch(`${base}/lp/shutdown?cursor=${encodeURIComponent(pub.id)}`);
    // An SSE stream, read as it comes.
    const sse = await fetch(`${base}/sse/shutdown`);
    expect(sse.status).toBe(200);
    const sseBody = sse.text(); // rejects if the connection is cut instead of ended
    // A long job, and a status read held on its current version.
    const started = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ steps: 60, stepMs: 60_000 }) });
    expect(started.status).toBe(202);
    const jobUrl = new URL(started.headers.get('location')!, base);
    await eventually(async () => ((await (await fetch(jobUrl)).json()) as { state: string }).state === 'running', 'the job to run');
    const etag = (await fetch(jobUrl)).headers.get('etag')!;
    const held = fetch(jobUrl, { headers: { prefer: 'wait=30', 'if-none-match': etag } });
    // And a start held by Prefer: respond-async, wait=N.
    const heldStart = fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'respond-async, wait=30' }, body: JSON.stringify({ steps: 60, stepMs: 60_000 }) });
    // A WebSocket with a subscription.
    const socket = new WebSocket(`${base.replace('http', 'ws')}/ws`, 'patchbay.v1');
    const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
    socket.once('open', () => socket.send(JSON.stringify({ type: 'subscribe', sid: 's', pattern: 'shutdown' })));

    // Awaited in turn below; marked handled so that a cut connection fails the test, not the run.
    for (const pending of [poll, sseBody, held, heldStart]) pending.catch(() => undefined);

    await eventually(async () => {
      const s = await stats(base);
      return s.longPoll.parked === 1 && s.sse.connections === 1 && s.poll.held === 1 && s.poll.heldStarts === 1 && s.ws.subscriptions === 1;
    }, 'the long poll, the SSE stream, the job read and the WebSocket to be held');

    process.kill(demo.child.pid!, 'SIGTERM');

    const lp = await poll;
    expect(lp.status).toBe(204);
    expect(lp.headers.get('patchbay-cursor')).toBe(pub.id);
    expect(await lp.text()).toBe('');

    // Ended cleanly, after the stream's opening.
    expect(await sseBody).toMatch(/^retry: \d+/m);

    // The read's version is still the current one: 304, with when to read again.
    const read = await held;
    expect(read.status).toBe(304);
    expect(read.headers.get('etag')).toBe(etag);
    expect(Number(read.headers.get('retry-after'))).toBeGreaterThan(0);
    // The start: 202 with where to read the job (elsewhere, once this process is gone).
    const start = await heldStart;
    expect(start.status).toBe(202);
    expect(start.headers.get('location')).toMatch(/^\/jobs\/[^/]+$/);
    expect(await start.json()).toMatchObject({ state: expect.stringMatching(/^(pending|running)$/) });

    expect(await closed).toEqual({ code: 1001, reason: 'The server is shutting down' });

    expect(await demo.exited).toBe(0);
    expect(demo.output()).not.toMatch(/exiting anyway|closing failed/);
  });

  it('exits 0 at once on SIGTERM when it holds nothing, even with a keep-alive connection open', async () => {
    demo = await spawnDemo();
    expect((await fetch(`${demo.base}/stats`)).status).toBe(200); // leaves an idle keep-alive connection
    process.kill(demo.child.pid!, 'SIGTERM');
    expect(await demo.exited).toBe(0);
    expect(demo.output()).not.toMatch(/exiting anyway|closing failed/);
  });
});
