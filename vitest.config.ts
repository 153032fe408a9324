import { defineConfig } from 'vitest/config';

/** Marks every process this run starts, so none can outlive it unnoticed (test/leak-guard.ts). */
const run = `${process.pid}-${Date.now().toString(36)}`;

export default defineConfig({
  // The demo imports 'patchbay' as an app would; in tests that name means the sources.
  resolve: {
    alias: [
      { find: /^patchbay$/, replacement: new URL('./src/index.ts', import.meta.url).pathname },
      // The framework adapters live under src/adapters/<name>/ (scripts/entries.js).
      { find: /^patchbay\/(express|fastify|koa|web)$/, replacement: `${new URL('./src/adapters/', import.meta.url).pathname}$1/index.ts` },
      // patchbay/<name> is src/<name>/index.ts (scripts/entries.js).
      { find: /^patchbay\/([a-z]+)$/, replacement: `${new URL('./src/', import.meta.url).pathname}$1/index.ts` },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Type tests (test/**/*.test-d.ts): checked by tsc, not run; `npm test` fails on a type error.
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'], tsconfig: './tsconfig.test.json' },
    environment: 'node',
    env: { PATCHBAY_TEST_RUN: run },
    globalSetup: ['test/leak-guard.ts'],
    setupFiles: ['test/leak-guard.setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-report.json' },
  },
});
