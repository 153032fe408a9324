/**
 * `npm run bench -- --report`: regenerates docs/benchmarks.md from `bench/results/` without
 * running anything (see `docs.ts`).
 */
import { relative } from 'node:path';
import { regenerateDoc } from './docs.js';
import { root } from './harness.js';

console.log(`wrote ${relative(root, regenerateDoc())} from bench/results/`);
