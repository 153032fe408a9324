import { defineConfig, type Options } from 'tsup';
import { entries } from './scripts/entries.js';

// `patchbay/client` runs in browsers too, where a project has no `@types/node` to declare
// `Symbol.dispose` (its `LongPollClient` is `Disposable`). The declarations therefore name the lib
// that does. TypeScript drops `/// <reference lib>` from emitted declarations, so the rollup adds
// it as a banner; on every declaration file, as tsup passes no function to its dts worker (the
// other entries need `@types/node`, which declares the same). scripts/check-consumers.mjs
// type-checks the client in a browser project.
const disposableLib = '/// <reference lib="esnext.disposable" />';

/**
 * `dist/browser/client.js`: `patchbay/client` as one ES module with everything inlined (no Node
 * built-in, no bare import), for a page that loads it with `<script type="module">` from a static
 * server, without a bundler. test/browser/client.browser.test.ts builds it with these options.
 */
export const browserClient: Options = {
  entry: { client: 'src/client/index.ts' },
  outDir: 'dist/browser',
  format: ['esm'],
  platform: 'browser',
  target: 'es2022',
  noExternal: [/.*/],
  dts: false,
  sourcemap: true,
  esbuildOptions(options) {
    options.sourcesContent = false;
  },
  clean: true,
  splitting: false,
  treeshake: true,
};

export default defineConfig([
  {
    entry: Object.fromEntries(entries.map((e) => [e.out, e.source])),
    format: ['esm', 'cjs'],
    dts: {
      compilerOptions: { stripInternal: true },
      banner: disposableLib,
    },
    // Maps point into src/ by line; the sources themselves are not embedded (they were most of the package's bytes).
    sourcemap: true,
    esbuildOptions(options) {
      options.sourcesContent = false;
    },
    clean: ['!browser/**'],
    target: 'node20',
    platform: 'node',
    splitting: true,
    treeshake: true,
  },
  browserClient,
]);
