// @ts-check
// The bare `node:http` reference for the long-poll benchmark: the demo server's long-poll
// protocol written by hand, the way a competent developer would without a library.
//
//   POST /pub/:topic        -> 201 {"id"}; answers every request held on the topic
//   GET  /lp/:topic?cursor= -> 200 {"messages":[{id,topic,data}],"cursor","gap","more"} when there is
//                              something after the cursor; otherwise held until a publish, or
//                              204 with Patchbay-Cursor after the hold (LP_TIMEOUT_MS)
//   GET  /stats             -> {"parked": n}
//
// An array log per topic (the last 1,000 messages), a Map<topic, Set<held>> of parked requests,
// and one setTimeout per parked request for its hold. A publish serializes the answer once
// (every parked request is caught up, so its new messages are exactly the one just published)
// and writes the same bytes to each. Run as `node bare-server.mjs` (PORT, LP_TIMEOUT_MS); it
// prints `listening on <port>` once it listens on 127.0.0.1.
import http from 'node:http';

const port = Number(process.env.PORT ?? 0);
const holdMs = Number(process.env.LP_TIMEOUT_MS ?? 30_000);
const MAX_LOG = 1000;
const MAX_BATCH = 100;
const MAX_BODY = 1024 * 1024;

/** @typedef {{ id: string, seq: number, topic: string, data: unknown }} Msg */
/** @typedef {{ res: http.ServerResponse, topic: string, cursor: number, timer: NodeJS.Timeout | undefined }} Held */

/** @type {Map<string, Msg[]>} */
const logs = new Map();
/** @type {Map<string, Set<Held>>} */
const held = new Map();
let seq = 0;
let parked = 0;

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 */
function json(res, status, body, cursor = '') {
  const buf = Buffer.from(JSON.stringify(body));
  /** @type {Record<string, string | number>} */
  const headers = { 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-length': buf.length };
  if (cursor !== '') headers['Patchbay-Cursor'] = cursor;
  res.writeHead(status, headers);
  res.end(buf);
}

/** Messages of `topic` after `cursor`, at most MAX_BATCH. @param {string} topic @param {number} cursor */
function after(topic, cursor) {
  const log = logs.get(topic);
  if (log === undefined || log.length === 0 || log[log.length - 1].seq <= cursor) return [];
  let lo = 0;
  let hi = log.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (log[mid].seq <= cursor) lo = mid + 1;
    else hi = mid;
  }
  return log.slice(lo, lo + MAX_BATCH);
}

/** @param {Held} h */
function unpark(h) {
  const set = held.get(h.topic);
  if (set === undefined || !set.delete(h)) return false;
  if (set.size === 0) held.delete(h.topic);
  clearTimeout(h.timer);
  parked--;
  return true;
}

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {string} topic @param {URLSearchParams} query */
function poll(req, res, topic, query) {
  const raw = query.get('cursor');
  const cursor = raw === null || raw === '' ? seq : Number(raw);
  if (!Number.isSafeInteger(cursor) || cursor < 0 || cursor > seq) {
    json(res, 400, { error: { code: 'PB_ERR_INVALID_CURSOR', message: 'bad cursor' } });
    return;
  }
  const ready = after(topic, cursor);
  if (ready.length > 0) {
    const last = ready[ready.length - 1].id;
    json(res, 200, { messages: ready.map((m) => ({ id: m.id, topic: m.topic, data: m.data })), cursor: last, gap: false, more: false }, last);
    return;
  }
  /** @type {Held} */
  const h = { res, topic, cursor, timer: undefined };
  h.timer = setTimeout(() => {
    if (!unpark(h)) return;
    res.writeHead(204, { 'cache-control': 'no-store', 'Patchbay-Cursor': String(cursor) });
    res.end();
  }, holdMs);
  let set = held.get(topic);
  if (set === undefined) held.set(topic, (set = new Set()));
  set.add(h);
  parked++;
  res.on('close', () => unpark(h));
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
    let data;
    try {
      data = (req.headers['content-type'] ?? '').startsWith('application/json') ? JSON.parse(text) : text;
    } catch {
      json(res, 400, { error: { code: 'PB_ERR_INVALID_ARGUMENT', message: 'bad JSON' } });
      return;
    }
    seq++;
    const id = String(seq);
    /** @type {Msg} */
    const msg = { id, seq, topic, data };
    let log = logs.get(topic);
    if (log === undefined) logs.set(topic, (log = []));
    log.push(msg);
    if (log.length > MAX_LOG * 2) log.splice(0, log.length - MAX_LOG);
    const set = held.get(topic);
    if (set !== undefined) {
      held.delete(topic);
      parked -= set.size;
      const body = Buffer.from(JSON.stringify({ messages: [{ id, topic, data }], cursor: id, gap: false, more: false }));
      const headers = { 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-length': body.length, 'Patchbay-Cursor': id };
      for (const h of set) {
        clearTimeout(h.timer);
        if (h.res.destroyed) continue;
        h.res.writeHead(200, headers);
        h.res.end(body);
      }
    }
    json(res, 201, { id });
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const m = /^\/(pub|lp)\/([A-Za-z0-9_\-~:@.]+)$/.exec(url.pathname);
  if (m !== null && m[1] === 'lp' && req.method === 'GET') poll(req, res, m[2], url.searchParams);
  else if (m !== null && m[1] === 'pub' && req.method === 'POST') publish(req, res, m[2]);
  else if (url.pathname === '/stats' && req.method === 'GET') json(res, 200, { parked });
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
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
