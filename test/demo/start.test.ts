/**
 * `npm run demo` (scripts/demo.mjs) starts at once on a built checkout: it builds dist/ only when
 * an entry's output is missing or something the build reads is newer than dist/. Checked on a
 * throwaway checkout whose file times are set, not waited for.
 */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
// @ts-expect-error: the script is plain JavaScript
import { staleReason } from '../../scripts/demo.mjs';
import { entries } from '../../scripts/entries.js';

const stale = staleReason as (root: string) => string | undefined;
const SOURCES = ['src/index.ts', 'src/longpoll/long-poll-handler.ts', 'tsup.config.ts', 'tsconfig.json', 'package.json', 'scripts/entries.js'];
const OUTPUTS = entries.flatMap((e) => [`dist/${e.out}.js`, `dist/${e.out}.cjs`, `dist/${e.out}.d.ts`]);

let root = '';
/** Writes `file` under the checkout with its modification time at `seconds`. */
const put = (file: string, seconds: number): void => {
  const path = join(root, file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, '');
  utimesSync(path, seconds, seconds);
};

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'patchbay-demo-start-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('npm run demo: when it builds', () => {
  it('builds a fresh clone (no dist/)', () => {
    for (const file of SOURCES) put(file, 1000);
    expect(stale(root)).toBe(`${OUTPUTS[0]} is missing`);
  });

  it('builds when one entry output is missing', () => {
    for (const file of SOURCES) put(file, 1000);
    for (const file of OUTPUTS.slice(1)) put(file, 2000);
    expect(stale(root)).toBe(`${OUTPUTS[0]} is missing`);
  });

  it('does not build when dist/ is newer than everything it is built from', () => {
    for (const file of SOURCES) put(file, 1000);
    for (const file of OUTPUTS) put(file, 2000);
    expect(stale(root)).toBeUndefined();
  });

  it('builds when a source file deep under src/ changed after the oldest output', () => {
    for (const file of SOURCES) put(file, 1000);
    for (const file of OUTPUTS) put(file, 2000);
    put(OUTPUTS[3]!, 1500); // an output left from an older build
    put('src/longpoll/long-poll-handler.ts', 1600);
    expect(stale(root)).toBe('src/ changed since the last build');
  });

  it('builds when the build configuration or package.json changed', () => {
    for (const changed of ['tsup.config.ts', 'tsconfig.json', 'package.json', 'scripts/entries.js']) {
      for (const file of SOURCES) put(file, 1000);
      for (const file of OUTPUTS) put(file, 2000);
      put(changed, 3000);
      expect(stale(root), changed).toBe(`${changed} changed since the last build`);
    }
  });
});
