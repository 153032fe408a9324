/**
 * What the browser tests share: Debian's Chromium (/usr/bin/chromium) driven by playwright-core,
 * a loud skip outside CI when it is missing (in CI, CI=true, a missing browser fails the tests:
 * .ci/run installs it first), and one way to open it with a throwaway profile.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import type { TestResources } from '../helpers.js';

/** Where Debian's package puts the browser. */
export const CHROMIUM = '/usr/bin/chromium';
/** Whether it is there. */
export const HAS_CHROMIUM = existsSync(CHROMIUM);
/** Skip a browser suite: only outside CI, and only without Chromium. */
export const SKIP_BROWSER = !HAS_CHROMIUM && process.env.CI !== 'true';

/** Says, loudly, that `file` is skipped (call it at the top of a browser test file). */
export function warnIfSkipping(file: string): void {
  if (!SKIP_BROWSER) return;
  console.warn(
    `\n${'!'.repeat(78)}\n` +
      `!! SKIPPING ${file}: no Chromium at ${CHROMIUM}.\n` +
      '!! Install it with: apt-get install -y --no-install-recommends chromium\n' +
      `${'!'.repeat(78)}\n`,
  );
}

/** Options of {@link openChromium}. */
export interface OpenChromiumOptions {
  /** The default timeout of every page wait, in ms. */
  readonly waitMs: number;
  /** Where the page's uncaught errors go. */
  readonly pageErrors: string[];
  /** The window size. */
  readonly viewport?: { readonly width: number; readonly height: number };
}

/**
 * Opens headless Chromium on a fresh profile, both registered with `resources` (the browser is
 * closed before its profile is removed), and returns its page and context.
 * @throws Error when there is no Chromium (so CI fails instead of skipping).
 */
export async function openChromium(resources: TestResources, options: OpenChromiumOptions): Promise<{ page: Page; context: BrowserContext }> {
  if (!HAS_CHROMIUM) throw new Error(`CI=true but there is no Chromium at ${CHROMIUM}: apt-get install -y --no-install-recommends chromium`);
  const profile = resources.add(mkdtempSync(join(tmpdir(), 'patchbay-chromium-')), (dir) => rmSync(dir, { recursive: true, force: true }));
  const context = resources.add(
    await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      ...(options.viewport ? { viewport: options.viewport } : {}),
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    }),
    (c) => c.close(),
  );
  context.setDefaultTimeout(options.waitMs);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (error) => options.pageErrors.push(String(error)));
  return { page, context };
}
