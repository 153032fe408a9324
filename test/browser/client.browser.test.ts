/**
 * `patchbay/client` in a page without a bundler: the single-file ES module that tsup builds
 * (`dist/browser/client.js`, built here from tsup.config.ts's `browserClient` options into a
 * temporary folder) is served by a static server next to a page that loads it with
 * `<script type="module">`, and a `LongPollClient` with a relative URL (`/lp/news`, resolved
 * against the page's location) receives what is published, in order, in Debian's Chromium
 * (/usr/bin/chromium) driven by playwright-core.
 *
 * Outside CI a machine without Chromium skips this file, loudly. In CI (CI=true) a missing
 * browser fails it: .ci/run installs Chromium first.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// tsup's own esbuild (one copy in node_modules): its service process must not outlive the file.
import { stop as stopEsbuild } from 'esbuild';
import type { Page } from 'playwright-core';
import { build } from 'tsup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LongPollHandler, PubSubBroker } from '../../src/index.js';
import { serveRig, TestResources } from '../helpers.js';
import { CHROMIUM, HAS_CHROMIUM, openChromium, SKIP_BROWSER, warnIfSkipping } from './chromium.js';
import { browserClient } from '../../tsup.config.js';

const WAIT_MS = 10_000;

warnIfSkipping('test/browser/client.browser.test.ts');

/** The page: the module is loaded from the server's root, the client polls a relative URL. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>patchbay client without a bundler</title>
<script type="module">
  import { LongPollClient } from '/client.js';
  const state = { received: [], polls: 0, error: null };
  globalThis.patchbayClient = state;
  const client = new LongPollClient({ url: 'lp/news', holdMs: 5000 });
  (async () => {
    for await (const message of client) {
      state.received.push(message.data);
      state.polls = client.polls;
    }
  })().catch((error) => { state.error = String(error); });
</script>`;

/** What the page keeps on `window` (this package's tsconfig has no DOM types). */
interface ClientWindow {
  readonly patchbayClient?: { readonly received: unknown[]; readonly error: string | null };
}

const resources = new TestResources();
const seen: string[] = [];
const pageErrors: string[] = [];
let broker: PubSubBroker;
let base = '';
let bundle = '';
let page: Page;

describe.skipIf(SKIP_BROWSER)('patchbay/client as one ES module in Chromium', () => {
  beforeAll(() =>
    resources.setup(async (r) => {
      const out = r.add(mkdtempSync(join(tmpdir(), 'patchbay-browser-client-')), (dir) => rmSync(dir, { recursive: true, force: true }));
      try {
        await build({ ...browserClient, outDir: out, config: false, silent: true, sourcemap: false });
      } finally {
        await stopEsbuild();
      }
      bundle = readFileSync(join(out, 'client.js'), 'utf8');
      broker = r.add(new PubSubBroker(), (b) => b.close());
      const longPoll = r.add(new LongPollHandler({ broker }), (h) => h.close());
      const server = http.createServer((req, res) => {
        seen.push(`${req.method} ${req.url}`);
        if (req.url === '/app/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
        else if (req.url === '/client.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(bundle);
        else if (req.url?.startsWith('/app/lp/news')) void longPoll.handle(req, res, { topics: ['news'] });
        else res.writeHead(404).end();
      });
      base = (await r.wait(serveRig(server, { resources: r }))).url;
      if (!HAS_CHROMIUM) return; // in CI: the test fails, it does not skip
      ({ page } = await openChromium(r, { waitMs: WAIT_MS, pageErrors }));
    }),
  60_000);

  afterAll(() => resources.teardown(), 60_000);

  it('is one file with no import, and long-polls a relative URL from a static page', async () => {
    // No import or export-from statement, no dynamic import, no require: nothing for a page to resolve.
    expect(bundle).not.toMatch(/^\s*import[\s{*"']|^\s*export\s[^;\n]*\bfrom\s|\bimport\(|\brequire\(/m);
    expect(HAS_CHROMIUM, `Chromium must be installed at ${CHROMIUM} (CI installs it in .ci/run)`).toBe(true);
    await page.goto(`${base}/app/`);
    await page.waitForFunction(() => (globalThis as unknown as ClientWindow).patchbayClient !== undefined, undefined, { timeout: WAIT_MS });
    const published = ['hello', 'ünïcødé ✓', { n: 1 }];
    for (const data of published) await broker.publish('news', data);
    await page.waitForFunction((n) => ((globalThis as unknown as ClientWindow).patchbayClient?.received.length ?? 0) >= n, published.length, { timeout: WAIT_MS });
    const state = await page.evaluate(() => (globalThis as unknown as ClientWindow).patchbayClient!);
    expect(state.received).toEqual(published);
    expect(state.error).toBeNull();
    expect(pageErrors).toEqual([]);
    // The relative 'lp/news' resolved against the page (/app/), as fetch would.
    expect(seen.filter((s) => s.startsWith('GET /app/lp/news?')).length).toBeGreaterThanOrEqual(1);
  });
});
