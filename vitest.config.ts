import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The demo imports 'patchbay' as an app would; in tests that name means the sources.
  resolve: { alias: { patchbay: new URL('./src/index.ts', import.meta.url).pathname } },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-report.json' },
  },
});
