import { defineConfig } from 'tsup';
import { entries } from './scripts/entries.js';

// `patchbay/client` runs in browsers too, where a project has no `@types/node` to declare
// `Symbol.dispose` (its `LongPollClient` is `Disposable`). The declarations therefore name the lib
// that does. TypeScript drops `/// <reference lib>` from emitted declarations, so the rollup adds
// it as a banner; on every declaration file, as tsup passes no function to its dts worker (the
// other entries need `@types/node`, which declares the same). scripts/check-consumers.mjs
// type-checks the client in a browser project.
const disposableLib = '/// <reference lib="esnext.disposable" />';

export default defineConfig({
  entry: Object.fromEntries(entries.map((e) => [e.out, e.source])),
  format: ['esm', 'cjs'],
  dts: {
    compilerOptions: { stripInternal: true },
    banner: disposableLib,
  },
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  splitting: true,
  treeshake: true,
});
