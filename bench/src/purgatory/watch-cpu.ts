/**
 * The W1 / W1-unique watch phase alone, timed in process CPU (not wall clock), for A/B runs on a
 * shared machine and for `--cpu-prof`: `node --expose-gc --import tsx bench/src/purgatory/watch-cpu.ts
 * <naive|patchbay> <unique: 0|1>`. Prints one JSON line. Not part of `npm run bench`.
 */
import { loadPatchbay, makeContender, resetSink, sink } from './contenders.js';
import { mulberry32, uniformInt } from '../lib/random.js';
const [name, uniq] = process.argv.slice(2) as ['naive' | 'patchbay', string];
const unique = uniq === '1';
await loadPatchbay();
const n = 1_000_000, keyCount = unique ? n : 10_000;
const rng = mulberry32(1000);
const timeouts = new Int32Array(n), keyOf = new Int32Array(n);
for (let i = 0; i < n; i++) { timeouts[i] = uniformInt(rng, 10, 30_000); keyOf[i] = unique ? i : Math.floor(rng() * keyCount); }
const keys = Array.from({ length: keyCount }, (_, i) => `${unique ? 'job' : 'topic'}:${i}`);
resetSink(keyCount);
{ const c = makeContender(name); for (let i = 0; i < 20000; i++) { const k = i % 200; c.watch(c.makeOp(i, timeouts[i]!, k), keys[k]!); } for (let k = 0; k < 200; k++) c.cancelForKey(keys[k]!); }
resetSink(keyCount);
const c = makeContender(name);
globalThis.gc!(); globalThis.gc!();
const cpu0 = process.cpuUsage(); const t0 = performance.now();
for (let i = 0; i < n; i++) { const k = keyOf[i]!; c.watch(c.makeOp(i, timeouts[i]!, k), keys[k]!); }
const t1 = performance.now(); const cpu = process.cpuUsage(cpu0);
const tc0 = process.cpuUsage();
for (let k = 0; k < keyCount; k++) { sink.versions[k]!++; c.checkAndComplete(keys[k]!); }
const tc = process.cpuUsage(tc0);
console.log(JSON.stringify({ name, unique, watchCpuMs: (cpu.user + cpu.system) / 1000, watchWallMs: t1 - t0, userMs: cpu.user / 1000, completeCpuMs: (tc.user + tc.system) / 1000 }));
process.exit(0);
