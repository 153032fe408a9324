// Runs Node's own EventSource (undici's, behind `--experimental-eventsource` on Node 20) in a
// child process for test/sse/clients.test.ts, because `undici` is not a dependency of this
// package and vitest's workers do not get that flag.
//
// Usage: node --experimental-eventsource clients-node-eventsource.mjs <url> [type,type...]
// Prints one JSON line per thing that happens:
//   {"kind":"open","readyState":1}
//   {"kind":"message","type":"message","data":"...","lastEventId":"...","readyState":1}
//   {"kind":"error","readyState":0|2}
// and answers lines on stdin: `state` -> {"kind":"state","readyState":n}; `close` -> closes the
// source, prints {"kind":"closed","readyState":2} and exits.
import { createInterface } from 'node:readline';

const EventSourceCtor = globalThis.EventSource;
const emit = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

if (typeof EventSourceCtor !== 'function') {
  emit({ kind: 'fatal', message: 'globalThis.EventSource is missing: run with --experimental-eventsource' });
  process.exit(2);
}

const [url, types = ''] = process.argv.slice(2);
const source = new EventSourceCtor(url);
source.onopen = () => emit({ kind: 'open', readyState: source.readyState });
source.onerror = () => emit({ kind: 'error', readyState: source.readyState });
const onMessage = (e) => emit({ kind: 'message', type: e.type, data: e.data, lastEventId: e.lastEventId, readyState: source.readyState });
source.addEventListener('message', onMessage);
for (const type of types.split(',').filter(Boolean)) source.addEventListener(type, onMessage);

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (line === 'state') emit({ kind: 'state', readyState: source.readyState });
  if (line === 'close') {
    source.close();
    emit({ kind: 'closed', readyState: source.readyState });
    process.exit(0);
  }
});
// The parent going away (stdin closed) ends the child too: no orphaned clients.
rl.on('close', () => {
  source.close();
  process.exit(0);
});
