import { defineConfig } from 'tsup';
import { entries } from './scripts/entries.js';

export default defineConfig({
  entry: Object.fromEntries(entries.map((e) => [e.out, e.source])),
  format: ['esm', 'cjs'],
  dts: { compilerOptions: { stripInternal: true } },
  // Maps point into src/ by line; the sources themselves are not embedded (they were most of the package's bytes).
  sourcemap: true,
  esbuildOptions(options) {
    options.sourcesContent = false;
  },
  clean: true,
  target: 'node20',
  platform: 'node',
  splitting: true,
  treeshake: true,
});
