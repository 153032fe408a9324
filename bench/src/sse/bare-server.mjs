// @ts-check
// The bare `node:http` SSE reference for the SSE benchmark: what a competent developer writes
// by hand without a library.
//
//   GET  /sse/:topic  -> 200 text/event-stream; a first comment once the client is subscribed
//   POST /pub/:topic  -> 201 {"id"}; the body (text) becomes one event's data, sent to every
//                        subscriber of the topic
//   GET  /stats       -> {"subscribers": n}
//
// A Map<topic, Set<ServerResponse>>; a publish serializes the event once into a Buffer
// (`id: <n>` and the body split into `data: ` lines) and queues it on its topic; once per
// event-loop turn (setImmediate) each topic's queued events are joined into one Buffer and written
// to each response of the topic with one `res.write()`, as patchbay's SseHub does (one write per
// connection per turn). No history, no heartbeats, no backpressure policy. Run as
// `node bare-server.mjs` (PORT); it prints `listening on <port>` once it listens on 127.0.0.1.
import http from 'node:http';

const port = Number(process.env.PORT ?? 0);
const MAX_BODY = 1024 * 1024;
const HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' };

/** @type {Map<string, Set<http.ServerResponse>>} */
const topics = new Map();
let seq = 0;
let subscribers = 0;
/** Events published this turn and not yet written, per topic. @type {Map<string, Buffer[]>} */
let pending = new Map();

/** Writes each topic's events of this turn to its subscribers, joined: one write per subscriber. */
function flush() {
  const due = pending;
  pending = new Map();
  for (const [topic, events] of due) {
    const set = topics.get(topic);
    if (set === undefined) continue;
    const bytes = events.length === 1 ? events[0] : Buffer.concat(events);
    for (const sub of set) sub.write(bytes);
  }
}

/** @param {http.ServerResponse} res @param {number} status @param {unknown} body */
function json(res, status, body) {
  const buf = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-length': buf.length });
  res.end(buf);
}

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {string} topic */
function subscribe(req, res, topic) {
  res.writeHead(200, HEADERS);
  let set = topics.get(topic);
  if (set === undefined) topics.set(topic, (set = new Set()));
  set.add(res);
  subscribers++;
  res.write(':ok\n\n');
  res.on('close', () => {
    if (set.delete(res)) subscribers--;
    if (set.size === 0 && topics.get(topic) === set) topics.delete(topic);
  });
}

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {string} topic */
function publish(req, res, topic) {
  /** @type {Buffer[]} */
  const chunks = [];
  let size = 0;
  req.on('data', (/** @type {Buffer} */ chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) req.destroy();
    else chunks.push(chunk);
  });
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    seq++;
    const id = String(seq);
    const set = topics.get(topic);
    if (set !== undefined) {
      let out = `id: ${id}\n`;
      for (const line of text.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
      const events = pending.get(topic);
      if (events !== undefined) events.push(Buffer.from(`${out}\n`));
      else {
        if (pending.size === 0) setImmediate(flush);
        pending.set(topic, [Buffer.from(`${out}\n`)]);
      }
    }
    json(res, 201, { id });
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const m = /^\/(pub|sse)\/([A-Za-z0-9_\-~:@.]+)$/.exec(url.pathname);
  if (m !== null && m[1] === 'sse' && req.method === 'GET') subscribe(req, res, m[2]);
  else if (m !== null && m[1] === 'pub' && req.method === 'POST') publish(req, res, m[2]);
  else if (url.pathname === '/stats' && req.method === 'GET') json(res, 200, { subscribers });
  else json(res, 404, { error: { code: 'PB_ERR_NOT_FOUND', message: 'no route' } });
});
// The same listen backlog as every server of the benchmarks (511: Node's default, which the demo
// uses, and nginx's on Linux), so none is favoured or starved while thousands connect at once.
server.listen({ port, host: '127.0.0.1', backlog: 511 }, () => {
  const address = server.address();
  console.log(`listening on ${typeof address === 'object' && address !== null ? address.port : port}`);
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
