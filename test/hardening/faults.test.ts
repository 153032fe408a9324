/**
 * Process faults: the demo server restarted mid-stream (a new process means a new in-memory log,
 * with a new epoch). Clients come back with the cursors they held: every transport says, in its
 * documented way, that what came before the restart is gone (a gap), then delivers every message
 * published after it, each once and in order.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { PubSubBroker } from '../../src/index.js';
import { perTest, readSse, serveRig, until } from '../helpers.js';

interface Demo {
  server: Server;
  broker: PubSubBroker;
}
async function start(): Promise<{ demo: Demo; base: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-faults-'));
  const demo = createDemo({ uploadsDir: dir, sidecars: undefined }) as Demo;
  const { port, close } = await serveRig(demo.server);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await close();
    rmSync(dir, { recursive: true, force: true });
  };
  perTest.defer(stop);
  return { demo, base: `127.0.0.1:${port}`, stop };
}

describe('the demo server restarted mid-stream', () => {
  it('long poll, SSE and WebSocket clients resume from their old cursors: a gap, then every new message once', async () => {
    const first = await start();
    const before: string[] = [];
    for (let i = 0; i < 5; i++) before.push((await first.demo.broker.publish('feed', { i })).id);
    const cursor = before[2]!; // each client had seen up to here
    // An SSE stream is live when the server goes down.
    const live = await readSse(`http://${first.base}/sse/feed`, { headers: { 'last-event-id': cursor } });
    const seenLive = live.events;
    await until(() => seenLive.length === 2, 'the replay before the restart');
    expect(seenLive.map((e) => e.id)).toEqual(before.slice(3));
    await first.stop();
    await live.ended; // cut by the restart
    await live.close();

    const second = await start();
    const resumeFrom = seenLive.at(-1)!.id!;

    // Long poll with the old cursor: a gap, and the new log from its start.
    const after: string[] = [];
    after.push((await second.demo.broker.publish('feed', { i: 'new-0' })).id);
    const lp = await fetch(`http://${second.base}/lp/feed?cursor=${resumeFrom}`);
    expect(lp.status).toBe(200);
    expect(lp.headers.get('patchbay-gap')).toBe('1');
    const lpBody = (await lp.json()) as { gap: boolean; messages: { id: string }[] };
    expect(lpBody.gap).toBe(true);
    expect(lpBody.messages.map((m) => m.id)).toEqual(after);

    // SSE with the old Last-Event-ID: the gap header and event, then the new messages.
    const sse = await readSse(`http://${second.base}/sse/feed`, { headers: { 'last-event-id': resumeFrom } });
    expect(sse.res.headers.get('patchbay-gap')).toBe('1');
    const events = sse.events;

    // WebSocket with the old cursor: a gap frame, then the new messages.
    const ws = new WebSocket(`ws://${second.base}/ws`);
    const frames: { type: string; id?: string; sid?: string }[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data)) as { type: string }));
    ws.on('error', () => {});
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ type: 'subscribe', sid: 's', topics: ['feed'], cursor: resumeFrom }));
    await until(() => frames.some((f) => f.type === 'subscribed'), 'the WebSocket subscription');

    for (let i = 1; i < 4; i++) after.push((await second.demo.broker.publish('feed', { i: `new-${i}` })).id);
    await until(() => events.filter((e) => e.event !== 'gap').length === after.length, 'SSE to get every new message');
    await until(() => frames.filter((f) => f.type === 'message').length === after.length, 'the WebSocket to get every new message');
    expect(events[0]!.event).toBe('gap');
    expect(events.filter((e) => e.event !== 'gap').map((e) => e.id)).toEqual(after);
    expect(frames.some((f) => f.type === 'gap')).toBe(true);
    expect(frames.filter((f) => f.type === 'message').map((f) => f.id)).toEqual(after);
    // Old ids are never confused with new ones: the epochs differ.
    expect(after.every((id) => !before.includes(id))).toBe(true);
    expect(after[0]!.split('-')[0]).not.toBe(before[0]!.split('-')[0]);

    await sse.close();
    ws.terminate();
  });
});
