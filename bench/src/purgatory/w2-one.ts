/**
 * One W2 run (after a small warm-up), for `--cpu-prof`: `node --expose-gc --import tsx
 * bench/src/purgatory/w2-one.ts <naive|patchbay> <low|high> [rate]`. Prints w2Run's JSON. Not part
 * of `npm run bench`.
 */
import { loadPatchbay } from './contenders.js';
import { w2Run } from './workloads.js';
const [name, profile, rate] = process.argv.slice(2) as ['naive' | 'patchbay', string, string];
await loadPatchbay();
const p = profile === 'high' ? { p50: 200, p75: 400 } : { p50: 20, p75: 60 };
await w2Run(name, 77, { rate: 100_000, ...p, arrivalMs: 200 });
const r = await w2Run(name, 1000, { rate: Number(rate ?? 1_000_000), ...p, arrivalMs: 1000 });
console.log(JSON.stringify(r));
process.exit(0);
