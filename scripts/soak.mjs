#!/usr/bin/env node
// A bounded soak of the demo server: `npm run soak` (10 minutes), `npm run soak -- --minutes 2`.
//
// The demo (demo/server.js, built dist/ as users run it: `npm run build` first) listens on
// 127.0.0.1:0 in this process, without sidecars; this process also drives it, over real sockets,
// with every pattern at once:
//   - a publisher: POST /pub/soak.feed with { seq } every PUBLISH_MS;
//   - long pollers, SSE readers and WebSocket subscribers on that topic, each checking that the
//     sequence numbers arrive complete, in order and once; each reconnects from its cursor
//     every few seconds (churn);
//   - abandoned long polls and SSE streams (sockets destroyed) and Prefer: wait job reads.
// Every 30 s it prints RSS, heap, event-loop delay p99 and the message counts. It fails (exit 1)
// on a lost, duplicated or reordered message, an event-loop delay p99 over 1 s or a reader with
// no progress for 15 s (a stall), or heap growth without bound (the last third of the run's
// heap samples after GC above the first third by more than 50% and 32 MiB); and, after the load
// stops, if any primitive still holds a waiter, stream or subscription.
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket from 'ws';
import { createDemo } from '../demo/server.js';

const args = process.argv.slice(2);
const minutesArg = args.indexOf('--minutes');
const minutes = minutesArg === -1 ? 10 : Number(args[minutesArg + 1]);
if (!Number.isFinite(minutes) || minutes <= 0) throw new Error(`--minutes must be a positive number, got ${args[minutesArg + 1]}`);
const DURATION_MS = minutes * 60_000;
const REPORT_MS = 30_000;
const PUBLISH_MS = 5;
const READERS = 4; // of each kind
const TOPIC = 'soak.feed';

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

const dir = mkdtempSync(join(tmpdir(), 'patchbay-soak-'));
const demo = createDemo({ uploadsDir: dir, sidecars: undefined });
await new Promise((resolve) => demo.server.listen(0, '127.0.0.1', resolve));
const port = demo.server.address().port;
const base = `http://127.0.0.1:${port}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

const failures = [];
const fail = (why) => {
  if (failures.length < 20) failures.push(why);
};
let stopping = false; // the load stops (publisher, abandoner, jobs)
let done = false; // the readers stop too
const live = new Set(); // the readers' open requests and sockets, ended when done
const counts = { published: 0, longPoll: 0, sse: 0, ws: 0, reconnects: 0, abandoned: 0, jobs: 0 };

function httpRequest(method, path, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Checks one reader's sequence: complete, in order, once. */
class Reader {
  constructor(kind, n) {
    this.name = `${kind}#${n}`;
    this.kind = kind;
    this.next = -1; // the first message seen sets it
    this.cursor = undefined;
    this.lastProgress = Date.now();
  }
  take(id, seq) {
    if (this.next !== -1 && seq !== this.next) fail(`${this.name}: expected seq ${this.next}, got ${seq} (${seq > this.next ? 'lost' : 'duplicate or reordered'})`);
    this.next = seq + 1;
    this.cursor = id;
    this.lastProgress = Date.now();
    counts[this.kind]++;
  }
}
const readers = [];

async function publisher() {
  let seq = 0;
  while (!stopping) {
    const res = await httpRequest('POST', `/pub/${TOPIC}`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ seq }) });
    if (res.status !== 201) fail(`publish answered ${res.status}: ${res.body.slice(0, 200)}`);
    else {
      seq++;
      counts.published++;
    }
    await new Promise((resolve) => setTimeout(resolve, PUBLISH_MS));
  }
}

async function longPoller(reader) {
  // Start from the head: the first answer has what came after it.
  while (!done) {
    const cursor = reader.cursor === undefined ? '' : `&cursor=${reader.cursor}`;
    const res = await httpRequest('GET', `/lp/${TOPIC}?timeout=5000${cursor}`).catch((error) => ({ status: 0, body: String(error) }));
    if (res.status === 200) {
      const answer = JSON.parse(res.body);
      if (answer.gap) fail(`${reader.name}: a gap after ${reader.cursor}`);
      for (const m of answer.messages) reader.take(m.id, m.data.seq);
      reader.cursor = answer.cursor;
    } else if (res.status === 204) reader.cursor = res.headers['patchbay-cursor'] ?? reader.cursor;
    else if (!done) fail(`${reader.name}: HTTP ${res.status} ${res.body.slice(0, 200)}`);
  }
}

function sseReader(reader) {
  const connect = () => {
    if (done) return;
    const headers = reader.cursor === undefined ? {} : { 'last-event-id': reader.cursor };
    const req = http.get(`${base}/sse/${TOPIC}`, { headers }, (res) => {
      if (res.statusCode !== 200) fail(`${reader.name}: HTTP ${res.statusCode}`);
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (text) => {
        buffer += text;
        let end;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (/^event: gap$/m.test(block)) fail(`${reader.name}: a gap after ${reader.cursor}`);
          // Every stream opens with this event: its id is where to resume if no message came.
          else if (/^event: patchbay-open$/m.test(block)) reader.cursor = id ?? reader.cursor;
          else if (id !== undefined && data !== undefined) reader.take(id, JSON.parse(data).seq);
        }
      });
      res.on('error', () => {});
      res.on('close', () => setTimeout(connect, 10));
    });
    live.add(req);
    req.on('close', () => live.delete(req));
    req.on('error', () => setTimeout(connect, 50));
    // Churn: cut the stream after a while; the reconnect resumes from the last id.
    setTimeout(() => {
      counts.reconnects++;
      req.destroy();
    }, 3_000 + Math.random() * 4_000);
  };
  connect();
}

function wsReader(reader) {
  const connect = () => {
    if (done) return;
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    socket.on('open', () => socket.send(JSON.stringify({ type: 'subscribe', sid: 's', topics: [TOPIC], ...(reader.cursor ? { cursor: reader.cursor } : {}) })));
    socket.on('message', (raw) => {
      const frame = JSON.parse(String(raw));
      if (frame.type === 'message') reader.take(frame.id, frame.data.seq);
      else if (frame.type === 'gap') fail(`${reader.name}: a gap (${frame.reason}) after ${reader.cursor}`);
      else if (frame.type === 'error') fail(`${reader.name}: ${frame.code} ${frame.message}`);
    });
    live.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => {
      live.delete(socket);
      setTimeout(connect, 10);
    });
    setTimeout(() => {
      counts.reconnects++;
      socket.terminate();
    }, 3_000 + Math.random() * 4_000);
  };
  connect();
}

/** Opens raw requests and destroys them unanswered: long polls, SSE streams. */
async function abandoner() {
  while (!stopping) {
    const sockets = await Promise.all(
      Array.from({ length: 20 }, (_, i) => new Promise((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' }, () => {
          s.write(`GET /${i % 2 ? 'lp' : 'sse'}/soak.abandoned${i % 2 ? '?timeout=30000' : ''} HTTP/1.1\r\nHost: x\r\n\r\n`);
          resolve(s);
        });
        s.on('error', () => resolve(s));
      })),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const s of sockets) s.destroy();
    counts.abandoned += sockets.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

async function jobRunner() {
  while (!stopping) {
    const start = await httpRequest('POST', '/jobs', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ steps: 3, stepMs: 100 }) });
    if (start.status !== 202) fail(`job start answered ${start.status}: ${start.body.slice(0, 200)}`);
    else {
      let location = start.headers.location;
      for (let i = 0; i < 20 && location; i++) {
        const read = await httpRequest('GET', location, { headers: { prefer: 'wait=5' } });
        if (read.status === 303 || (read.status === 200 && read.headers['content-location'] === undefined && JSON.parse(read.body).state === undefined)) {
          counts.jobs++;
          break;
        }
        if (read.status !== 200) {
          fail(`job read answered ${read.status}`);
          break;
        }
        const state = JSON.parse(read.body).state;
        if (state === 'succeeded') {
          counts.jobs++;
          break;
        }
        if (state === 'failed' || state === 'canceled' || state === 'expired') {
          fail(`job ended ${state}`);
          break;
        }
        location = read.headers.location ?? location;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();
const heapSamples = [];
const mib = (n) => (n / 2 ** 20).toFixed(1);
const started = Date.now();
const rows = [];

function report() {
  gc();
  const { rss, heapUsed } = process.memoryUsage();
  heapSamples.push(heapUsed);
  const p99 = delay.percentile(99) / 1e6;
  delay.reset();
  if (p99 > 1_000) fail(`event-loop delay p99 ${p99.toFixed(0)} ms`);
  const now = Date.now();
  for (const r of readers) if (now - r.lastProgress > 15_000) fail(`${r.name}: no message for ${now - r.lastProgress} ms (stall)`);
  const row = { t: Math.round((now - started) / 1000), rss: mib(rss), heap: mib(heapUsed), p99: p99.toFixed(1), ...counts };
  rows.push(row);
  console.log(
    `t=${String(row.t).padStart(4)}s rss=${row.rss} MiB heap=${row.heap} MiB loop-p99=${row.p99} ms published=${counts.published} lp=${counts.longPoll} sse=${counts.sse} ws=${counts.ws} reconnects=${counts.reconnects} abandoned=${counts.abandoned} jobs=${counts.jobs}${failures.length ? ` FAILURES=${failures.length}` : ''}`,
  );
}

console.log(`soak: the demo on ${base} for ${minutes} min: ${READERS} long pollers, ${READERS} SSE readers, ${READERS} WebSocket subscribers, a publisher every ${PUBLISH_MS} ms, churn, abandoned requests, jobs`);
for (let i = 0; i < READERS; i++) {
  const lp = new Reader('longPoll', i);
  const sse = new Reader('sse', i);
  const ws = new Reader('ws', i);
  readers.push(lp, sse, ws);
  void longPoller(lp);
  sseReader(sse);
  wsReader(ws);
}
await new Promise((resolve) => setTimeout(resolve, 500)); // readers subscribe before the first publish
const work = [publisher(), abandoner(), jobRunner()];
const timer = setInterval(report, REPORT_MS);
await new Promise((resolve) => setTimeout(resolve, DURATION_MS));
clearInterval(timer);
report();
stopping = true;
await Promise.allSettled(work);
// Let readers catch up, then check every reader saw every message.
await new Promise((resolve) => setTimeout(resolve, 2_000));
const last = counts.published - 1;
for (const r of readers) if (r.next - 1 !== last && r.next !== -1) fail(`${r.name}: ended at seq ${r.next - 1}, the publisher at ${last}`);

done = true;
for (const c of live) {
  if (c instanceof WebSocket) c.terminate();
  else c.destroy();
}

// Memory: the last third of the samples against the first third.
const third = Math.max(1, Math.floor(heapSamples.length / 3));
const avg = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const early = avg(heapSamples.slice(0, third));
const late = avg(heapSamples.slice(-third));
if (late > early * 1.5 && late - early > 32 * 2 ** 20) fail(`heap grew from ${mib(early)} MiB to ${mib(late)} MiB`);

// Everything released once the clients are gone.
demo.server.closeAllConnections();
await new Promise((resolve) => setTimeout(resolve, 1_000));
const held = {
  parked: demo.longPoll.stats().parked,
  sse: demo.sse.stats().connections,
  ws: demo.ws.stats().connections,
  held: demo.poll.stats().held,
  waiting: demo.jobs.stats().waiting,
};
if (Object.values(held).some((n) => n !== 0)) fail(`still held after the load: ${JSON.stringify(held)}`);
await new Promise((resolve) => demo.server.close(resolve));
agent.destroy();
rmSync(dir, { recursive: true, force: true });

console.log(`\nsoak: ${minutes} min, ${counts.published} published; delivered ${counts.longPoll} by long poll, ${counts.sse} by SSE, ${counts.ws} by WebSocket; ${counts.reconnects} reconnects, ${counts.abandoned} abandoned requests, ${counts.jobs} jobs`);
console.log(`heap after GC: first third ${mib(early)} MiB, last third ${mib(late)} MiB`);
console.log(`\n| t (s) | RSS (MiB) | heap (MiB) | loop p99 (ms) | published | long poll | SSE | WebSocket | reconnects | abandoned | jobs |`);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.t} | ${r.rss} | ${r.heap} | ${r.p99} | ${r.published} | ${r.longPoll} | ${r.sse} | ${r.ws} | ${r.reconnects} | ${r.abandoned} | ${r.jobs} |`);
if (failures.length > 0) {
  console.error(`\nsoak FAILED:\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log('\nsoak passed: nothing lost, duplicated or reordered; no stall; memory bounded; everything released');
process.exit(0);
