/**
 * The demo page in a real browser, pattern by pattern: Debian's Chromium (/usr/bin/chromium,
 * never a downloaded build) driven by playwright-core clicks through the chat (long polling, SSE
 * and WebSocket push), a job with progress and a cancel, an upload paused mid-way and resumed
 * (its SHA-256 checked against the bytes the page sent), a streamed NDJSON answer and the
 * sidecars' output, and screenshots each (into docs/images/ with PATCHBAY_SCREENSHOTS=1). One test takes the
 * browser offline mid-stream, publishes meanwhile, and checks that every pane got every message
 * exactly once after it comes back.
 *
 * The page loads patchbay/client from dist/: the test builds the package first when dist/ is
 * missing. Outside CI a machine without Chromium skips this file, loudly; in CI (CI=true) a
 * missing browser fails it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { PollHandle, SharedPollHandle } from '../../src/index.js';
import { closeDemo } from '../demo/helpers.js';
import { eventually, serveRig, sourceNodeArgs, TestResources } from '../helpers.js';
import { openChromium, SKIP_BROWSER, warnIfSkipping } from './chromium.js';

const WAIT_MS = 20_000;
const root = fileURLToPath(new URL('../..', import.meta.url));
/** Screenshots go to docs/images/ with PATCHBAY_SCREENSHOTS=1 (to refresh the README's), else to a temp folder. */
const images = process.env['PATCHBAY_SCREENSHOTS'] === '1' ? join(root, 'docs', 'images') : mkdtempSync(join(tmpdir(), 'patchbay-screenshots-'));

warnIfSkipping('test/browser/demo.browser.test.ts');

interface Received {
  readonly id: string;
  readonly data: unknown;
}
/** What the demo page keeps on `window` (this package's tsconfig has no DOM types). */
interface DemoWindow {
  readonly patchbayLp: { readonly received: Received[] };
  readonly patchbaySse: { readonly received: Received[] };
  readonly patchbayWs: { readonly received: Received[] };
  readonly patchbayJob?: { readonly id?: string; readonly state: string; readonly result?: unknown };
  readonly patchbayUpload: { readonly state: string; readonly offset: number; readonly pauses: number; readonly bytes?: Uint8Array; readonly result?: { sha256: string; size: number } };
  readonly patchbayStream?: { readonly count: number; readonly done: boolean; readonly end?: { count: number } };
  readonly patchbaySidecar?: unknown;
}
/**
 * The page's window, typed. Functions passed to page.evaluate run in the page, where an init
 * script defines a global `win` doing the same, so they may call it too.
 */
const win = () => globalThis as unknown as DemoWindow;

let demo: { server: Server; jobs: PollHandle | SharedPollHandle; sidecars: { ready: Promise<unknown>; logFile: string; close(): Promise<unknown> } };
let base = '';
let context: BrowserContext | undefined;
const resources = new TestResources();
let page: Page;
const pageErrors: string[] = [];

async function publish(text: string): Promise<string> {
  const res = await fetch(`${base}/pub/demo`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: text });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

/** Whether the demo's log file has a line for a request to `path`. */
function logged(path: string): boolean {
  try {
    return readFileSync(demo.sidecars.logFile, 'utf8').includes(`"path":${JSON.stringify(path)}`);
  } catch {
    return false;
  }
}

const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true });

/** How long `npm run build` may take on a busy machine. */
const BUILD_MS = 240_000;

/**
 * `npm run build` (the page needs dist/client.js) in a process group of its own, killed whole
 * (npm, its shell and the builders under it, by the group's id) on a timeout or when the setup
 * is stopped.
 */
async function build(signal: AbortSignal): Promise<void> {
  const child = spawn('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit', detached: true });
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('error', () => resolve([null, null]));
    child.once('exit', (code, sig) => resolve([code, sig]));
  });
  const killGroup = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone already
    }
  };
  const timer = setTimeout(killGroup, BUILD_MS);
  signal.addEventListener('abort', killGroup, { once: true });
  const [code, sig] = await exited;
  clearTimeout(timer);
  signal.removeEventListener('abort', killGroup);
  killGroup(); // what npm started and left behind, if anything
  signal.throwIfAborted();
  if (code !== 0) throw new Error(`npm run build failed (${sig ?? `exit code ${code}`}) within ${BUILD_MS} ms: the page needs dist/client.js`);
}

const shot = (section: string, name: string) => page.locator(`#${section}`).screenshot({ path: join(images, `${name}.png`) });

describe.skipIf(SKIP_BROWSER)('the demo page in Chromium, every pattern', () => {
  beforeAll(
    () =>
      resources.setup(async (r) => {
        if (!existsSync(join(root, 'dist', 'client.js'))) await build(r.signal);
        mkdirSync(images, { recursive: true });
        if (process.env['PATCHBAY_SCREENSHOTS'] !== '1') r.add(images, removeDir);
        const uploadsDir = r.add(mkdtempSync(join(tmpdir(), 'patchbay-browser-uploads-')), removeDir);
        const sidecarDir = r.add(mkdtempSync(join(tmpdir(), 'patchbay-browser-sidecars-')), removeDir);
        demo = r.add<typeof demo>(
          createDemo({ sseRetryMs: 100, uploadsDir, sidecars: { dir: sidecarDir, metricsPort: 0, nodeArgs: [...sourceNodeArgs] } }),
          closeDemo,
        );
        base = (await r.wait(serveRig(demo.server, { resources: r }))).url;
        await r.wait(demo.sidecars.ready);
        ({ page, context } = await openChromium(r, { waitMs: WAIT_MS, pageErrors, viewport: { width: 1100, height: 900 } }));
        await context.addInitScript(() => {
          (globalThis as unknown as { win: () => unknown }).win = () => globalThis;
        });
        await page.goto(`${base}/`);
        // Ready: the long poll is parked, the SSE stream and the WebSocket are open.
        await page.waitForFunction(() => (globalThis as unknown as { patchbaySse?: { source: { readyState: number } } }).patchbaySse?.source.readyState === 1);
        await page.waitForFunction(() => (globalThis as unknown as { patchbayWs?: { socket?: { readyState: number } } }).patchbayWs?.socket?.readyState === 1);
      }),
    BUILD_MS + 120_000,
  );

  // Chromium, then the demo with its sidecar processes (awaited until they exit), then the folders.
  afterAll(() => resources.teardown(), 120_000);

  it('chat: a message sent from the page arrives over long polling, SSE and WebSocket', async () => {
    await page.fill('#text', 'hello from the browser');
    await page.click('#send');
    for (const pane of ['patchbayLp', 'patchbaySse', 'patchbayWs'] as const) {
      await page.waitForFunction((p) => (globalThis as unknown as Record<string, { received: unknown[] }>)[p]!.received.length >= 1, pane);
    }
    const got = await page.evaluate(() => [win().patchbayLp.received, win().patchbaySse.received, win().patchbayWs.received].map((r) => r.map((m) => m.data)));
    expect(got).toEqual([['hello from the browser'], ['hello from the browser'], ['hello from the browser']]);
    expect(await page.locator('#lp-list li').first().textContent()).toBe('hello from the browser');
    await shot('chat', 'chat');
    await shot('push', 'push');
  });

  it('a job: progress to the end, then one canceled mid-way (DELETE reaches the server)', async () => {
    await page.fill('#steps', '4');
    await page.fill('#stepMs', '150');
    await page.click('#job-start');
    await page.waitForFunction(() => win().patchbayJob?.state === 'succeeded');
    const done = await page.evaluate(() => win().patchbayJob);
    expect(done?.result).toMatchObject({ steps: 4 });
    expect(await page.locator('#job-progress').evaluate((el) => (el as unknown as { value: number }).value)).toBe(1);
    await shot('job', 'job');

    await page.fill('#steps', '100');
    await page.fill('#stepMs', '200');
    await page.click('#job-start');
    await page.waitForFunction(() => win().patchbayJob?.state === 'running' && win().patchbayJob?.id !== undefined);
    const id = await page.evaluate(() => win().patchbayJob!.id!);
    await page.click('#job-cancel');
    await page.waitForFunction(() => win().patchbayJob?.state === 'canceled');
    expect((await demo.jobs.lookup(id)).state).toBe('canceled');
  });

  it('an upload paused mid-way and resumed ends byte-identical, then its hash is polled', async () => {
    await page.click('#upload-random');
    await page.waitForFunction(() => win().patchbayUpload.offset >= 1024 * 1024);
    await page.click('#upload-pause');
    await page.waitForFunction(() => win().patchbayUpload.state === 'paused');
    const pausedAt = await page.evaluate(() => win().patchbayUpload.offset);
    await page.click('#upload-resume');
    await page.waitForFunction(() => win().patchbayUpload.state === 'done', undefined, { timeout: 60_000 });
    const { result, expected } = await page.evaluate(async () => {
      const u = win().patchbayUpload;
      const digest = await (globalThis as unknown as { crypto: { subtle: { digest(a: string, b: Uint8Array): Promise<ArrayBuffer> } } }).crypto.subtle.digest('SHA-256', u.bytes!);
      const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
      return { result: u.result, expected: hex };
    });
    expect(pausedAt).toBeGreaterThan(0);
    expect(result).toMatchObject({ sha256: expected, size: 8 * 1024 * 1024 });
    await shot('upload', 'upload');
  });

  it('a streamed NDJSON answer: every record, then the end record', async () => {
    await page.click('#stream-start');
    await page.waitForFunction(() => win().patchbayStream?.done === true);
    expect(await page.evaluate(() => win().patchbayStream)).toMatchObject({ count: 2000, done: true, end: { count: 2000 } });
    await shot('stream', 'stream');
  });

  it('the sidecars: log lines and request counters from the page\'s own requests', async () => {
    // Each refresh is one GET /sidecar, which asks both sidecars with a 2 s deadline: on a busy
    // machine one answer may be a timeout, so refresh until the page shows what is awaited (bounded).
    const refreshUntil = async (id: string, text: string, what: string): Promise<void> => {
      const end = Date.now() + WAIT_MS;
      for (;;) {
        await page.click('#sidecar-refresh');
        const shown = await page
          .waitForFunction(
            ([el, t]) => (globalThis as unknown as { document: { getElementById(id: string): { textContent: string } } }).document.getElementById(el!).textContent.includes(t!),
            [id, text],
            { timeout: 3000 },
          )
          .then(() => true, () => false);
        if (shown) return;
        if (Date.now() > end) throw new Error(`Timed out after ${WAIT_MS} ms of refreshes waiting for ${what}`);
      }
    };
    await refreshUntil('sidecar-metrics', 'demo_requests_total', 'the request counters on the page');
    // That refresh is logged when its answer ends, and the shipper writes in batches: wait until
    // its line is in the file, then refresh again to see it on the page.
    await eventually(() => logged('/sidecar'), 'the log shipper to write the line of the first GET /sidecar', { timeoutMs: WAIT_MS });
    await refreshUntil('sidecar-log', '"path":"/sidecar"', 'the GET /sidecar line in the page\'s log pane');
    // The page shows what the sidecars hold: counters of its requests, and their log lines.
    expect(await page.textContent('#sidecar-metrics')).toMatch(/demo_requests_total\{[^}]*\} [1-9]/);
    expect(await page.textContent('#sidecar-log')).toContain('"path":"/sidecar"');
    await shot('sidecar', 'sidecar');
  });

  it('offline mid-stream: after reconnecting, every pane has every message exactly once, in order', async () => {
    const before = await page.evaluate(() => [win().patchbayLp.received.length, win().patchbaySse.received.length, win().patchbayWs.received.length]);
    const ids = [await publish('before the cut')];
    await context!.setOffline(true);
    for (let i = 0; i < 5; i++) ids.push(await publish(`while offline ${i}`));
    await context!.setOffline(false);
    ids.push(await publish('after the cut'));
    for (const pane of ['patchbayLp', 'patchbaySse', 'patchbayWs'] as const) {
      const start = before[['patchbayLp', 'patchbaySse', 'patchbayWs'].indexOf(pane)]!;
      await page.waitForFunction(
        ({ p, n }) => (globalThis as unknown as Record<string, { received: unknown[] }>)[p]!.received.length >= n,
        { p: pane, n: start + ids.length },
        { timeout: 30_000 },
      );
      const got = await page.evaluate(({ p, s }) => (globalThis as unknown as Record<string, { received: Received[] }>)[p]!.received.slice(s).map((m) => m.id), { p: pane, s: start });
      expect(got, pane).toEqual(ids);
    }
    expect(pageErrors).toEqual([]);
  });
});
