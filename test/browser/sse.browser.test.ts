/**
 * The demo page in a real browser: Debian's Chromium (/usr/bin/chromium, never a downloaded
 * build) driven by playwright-core. The page's EventSource follows /sse/demo; the server cuts
 * the stream twice (a destroyed socket, then a clean end of the 200 stream), the browser comes
 * back with Last-Event-ID, and what it received must be exactly what was published: no loss,
 * no duplicate, in order.
 *
 * Outside CI a machine without Chromium skips this file, loudly. In CI (CI=true) a missing
 * browser fails it: .ci/run installs Chromium first.
 */
import { existsSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { SseHandler } from '../../src/index.js';
import { closeDemo } from '../demo/helpers.js';
import { eventually, serveRig, TestResources } from '../helpers.js';
import { CHROMIUM, HAS_CHROMIUM, openChromium, SKIP_BROWSER, warnIfSkipping } from './chromium.js';

const SCREENSHOT = '/tmp/patchbay-sse-browser.png';
const WAIT_MS = 10_000;

warnIfSkipping('test/browser/sse.browser.test.ts');

interface Received {
  readonly id: string;
  readonly data: string;
}

/** What the demo page keeps on `window` (this package's tsconfig has no DOM types). */
interface DemoWindow {
  readonly patchbaySse?: { readonly received: Received[]; readonly source: { readonly readyState: number } };
}

let demo: { server: Server; sse: SseHandler };
let base = '';
const resources = new TestResources();
let page: Page;
const pageErrors: string[] = [];
/** Every /sse request: its Last-Event-ID and socket, and whether it is still open. */
const sseRequests: { lastEventId: string | undefined; socket: Socket; open: boolean }[] = [];
/** While set, /sse requests carrying Last-Event-ID (reconnects) wait here. */
let gate: (() => void)[] | null = null;

const received = (): Promise<Received[]> => page.evaluate(() => (globalThis as unknown as DemoWindow).patchbaySse!.received);
const receivedCount = (n: number): Promise<unknown> =>
  page.waitForFunction((count) => ((globalThis as unknown as DemoWindow).patchbaySse?.received.length ?? 0) >= count, n, { timeout: WAIT_MS });

describe.skipIf(SKIP_BROWSER)('the demo page in Chromium', () => {
  beforeAll(() =>
    resources.setup(async (r) => {
      demo = r.add<typeof demo>(createDemo({ sseRetryMs: 50 }), closeDemo);
      // Put a gate and a request log in front of the demo's own request handler.
      const [handler] = demo.server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
      demo.server.removeAllListeners('request');
      demo.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        if (!req.url?.startsWith('/sse/')) {
          handler!(req, res);
          return;
        }
        const raw = req.headers['last-event-id'];
        const entry = { lastEventId: Array.isArray(raw) ? raw[0] : raw, socket: req.socket, open: true };
        sseRequests.push(entry);
        res.once('close', () => {
          entry.open = false;
        });
        if (gate !== null && entry.lastEventId !== undefined) gate.push(() => handler!(req, res));
        else handler!(req, res);
      });
      // Held reconnects are let go before the server closes (closers run last added first).
      r.add(null, () => {
        const held = gate ?? [];
        gate = null;
        for (const release of held) release();
      });
      base = (await r.wait(serveRig(demo.server, { resources: r }))).url;
      if (!HAS_CHROMIUM) return; // in CI: the test fails, it does not skip
      ({ page } = await openChromium(r, { waitMs: WAIT_MS, pageErrors }));
    }),
  60_000);

  afterAll(() => resources.teardown(), 60_000);

  const published: Received[] = [];
  async function publish(data: string, json = false): Promise<void> {
    const res = await fetch(`${base}/pub/demo`, {
      method: 'POST',
      headers: { 'content-type': json ? 'application/json' : 'text/plain' },
      body: data,
    });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    published.push({ id, data: json ? JSON.stringify(JSON.parse(data)) : data });
  }

  it('receives every published event exactly once across server-side cuts, resuming with Last-Event-ID', async () => {
    expect(HAS_CHROMIUM, `Chromium must be installed at ${CHROMIUM} (CI installs it in .ci/run)`).toBe(true);
    await page.goto(`${base}/`);
    await page.waitForFunction(() => (globalThis as unknown as DemoWindow).patchbaySse?.source.readyState === 1, undefined, { timeout: WAIT_MS });

    await publish('hello');
    await publish('two\nlines');
    await publish('ünïcødé ✓ 日本');
    await publish('{"n":1}', true);
    await receivedCount(4);
    expect(await received()).toEqual(published);

    // Cut 1: destroy the socket. The reconnect is held until the missed events are published.
    gate = [];
    const live = sseRequests.filter((r) => r.open);
    expect(live).toHaveLength(1);
    live[0]!.socket.destroy();
    await eventually(() => gate!.length === 1, 'the browser to reconnect', { timeoutMs: WAIT_MS });
    expect(sseRequests.at(-1)!.lastEventId).toBe(published[3]!.id);
    for (let i = 0; i < 3; i++) await publish(`missed ${i}`);
    const release = gate;
    gate = null;
    for (const r of release) r();
    await receivedCount(7);
    expect(await received()).toEqual(published);

    // Cut 2: a clean end of the 200 stream; publish at once, racing the reconnect.
    demo.sse.hub.closeAll();
    for (let i = 0; i < 3; i++) await publish(`racing ${i}`);
    await receivedCount(10);
    await eventually(() => sseRequests.filter((r) => r.open).length === 1, 'the stream to be live again', { timeoutMs: WAIT_MS });
    await publish('last');
    await receivedCount(11);

    expect(await received()).toEqual(published);
    expect(sseRequests).toHaveLength(3);
    expect(sseRequests[0]!.lastEventId).toBeUndefined();
    expect(sseRequests[1]!.lastEventId).toBe(published[3]!.id);
    expect(published.map((p) => p.id)).toContain(sseRequests[2]!.lastEventId);
    expect(pageErrors).toEqual([]);

    const log = await page.locator('#sse').textContent();
    expect(log).toContain(`event ${published.at(-1)!.id}: last`);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
  });
});
