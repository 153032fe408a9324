/**
 * One measurement in a fresh process: `node --expose-gc --import tsx child.ts <contender> <workload> <seed> <scale>`.
 * Prints one `RESULT {json}` line on stdout.
 */
import { CONTENDERS, type ContenderName, loadPatchbay } from './contenders.js';
import { WORKLOADS } from './workloads.js';

const [contender, workload, seedArg, scaleArg] = process.argv.slice(2);
if (!CONTENDERS.includes(contender as ContenderName)) throw new Error(`unknown contender ${String(contender)}`);
const run = workload === undefined ? undefined : WORKLOADS[workload];
if (run === undefined) throw new Error(`unknown workload ${String(workload)}; known: ${Object.keys(WORKLOADS).join(', ')}`);
if (globalThis.gc === undefined) throw new Error('run with --expose-gc');

await loadPatchbay();
const result = await run({ contender: contender as ContenderName, seed: Number(seedArg ?? 1), scale: Number(scaleArg ?? 1) });
const cpu = process.cpuUsage();
process.stdout.write(`RESULT ${JSON.stringify({ ...result, processCpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
// Nothing may be left waiting, but do not let a stray timer hold the process either.
process.exit(0);
