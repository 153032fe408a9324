// @ts-check
// The bare `ws` reference for the WebSocket benchmark: what a competent developer writes by hand
// with the `ws` package and no library, speaking the same small protocol as patchbay's /ws.
//
//   GET  /ws (upgrade) -> a WebSocket; {"type":"subscribe","sid","pattern"} (a plain topic) is
//                         answered {"type":"subscribed","sid"} and adds the socket to the topic
//   POST /pub/:topic   -> 201 {"id"}; the JSON body becomes one message, sent to every subscriber
//                         of the topic as {"type":"message","sid","id","topic","data"}
//   GET  /stats        -> {"subscribers": n}
//
// A Map<topic, Set<{ ws, sid, socket }>>; a publish serializes the frame once per sid into a
// Buffer and `ws.send()`s it to each subscriber: the broadcast loop of the `ws` README, with the
// socket corked on its first send of an event-loop turn and uncorked once per turn
// (setImmediate), so a turn's frames to one client leave in one write, as patchbay's WsHandler
// does. No history, no cursors, no heartbeats, no backpressure policy. Run as `node bare-server.mjs` (PORT); it prints
// `listening on <port>` once it listens on 127.0.0.1.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.env.PORT ?? 0);
const MAX_BODY = 1024 * 1024;

/** @typedef {{ ws: import('ws').WebSocket, sid: string, socket: import('node:stream').Duplex }} Sub */
/** @type {Map<string, Set<Sub>>} */
const topics = new Map();
let seq = 0;
let subscribers = 0;
/** The sockets corked this turn. @type {Set<import('node:stream').Duplex>} */
let corked = new Set();

/** Uncorks the sockets corked this turn: their frames go out, one write each. */
function uncorkAll() {
  const due = corked;
  corked = new Set();
  for (const socket of due) socket.uncork();
}

/** @param {Sub} sub @param {Buffer} frame */
function send(sub, frame) {
  if (!corked.has(sub.socket)) {
    if (corked.size === 0) setImmediate(uncorkAll);
    corked.add(sub.socket);
    sub.socket.cork();
  }
  sub.ws.send(frame, { binary: false });
}

/** @param {http.ServerResponse} res @param {number} status @param {unknown} body */
function json(res, status, body) {
  const buf = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-length': buf.length });
  res.end(buf);
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
    let data;
    try {
      data = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      json(res, 400, { error: { code: 'PB_ERR_PROTOCOL', message: 'not JSON' } });
      return;
    }
    const id = String(++seq);
    const set = topics.get(topic);
    if (set !== undefined) {
      const tail = `,"id":${JSON.stringify(id)},"topic":${JSON.stringify(topic)},"data":${JSON.stringify(data)}}`;
      /** @type {Map<string, Buffer>} */
      const frames = new Map();
      for (const sub of set) {
        let frame = frames.get(sub.sid);
        if (frame === undefined) frames.set(sub.sid, (frame = Buffer.from(`{"type":"message","sid":${JSON.stringify(sub.sid)}${tail}`)));
        send(sub, frame);
      }
    }
    json(res, 201, { id });
  });
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false });
wss.on('connection', (/** @type {import('ws').WebSocket} */ ws, /** @type {import('node:stream').Duplex} */ socket) => {
  /** @type {{ topic: string, entry: Sub }[]} */
  const mine = [];
  ws.on('message', (raw) => {
    let frame;
    try {
      frame = JSON.parse(String(raw));
    } catch {
      return;
    }
    if (frame?.type !== 'subscribe' || typeof frame.sid !== 'string' || typeof frame.pattern !== 'string') return;
    let set = topics.get(frame.pattern);
    if (set === undefined) topics.set(frame.pattern, (set = new Set()));
    const entry = { ws, sid: frame.sid, socket };
    set.add(entry);
    mine.push({ topic: frame.pattern, entry });
    subscribers++;
    ws.send(JSON.stringify({ type: 'subscribed', sid: frame.sid }));
  });
  ws.on('error', () => {});
  ws.on('close', () => {
    for (const { topic, entry } of mine) {
      const set = topics.get(topic);
      if (set?.delete(entry)) subscribers--;
      if (set?.size === 0) topics.delete(topic);
    }
  });
});

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const m = /^\/pub\/([A-Za-z0-9_\-~:@.]+)$/.exec(url.pathname);
  if (m !== null && req.method === 'POST') publish(req, res, m[1]);
  else if (url.pathname === '/stats' && req.method === 'GET') json(res, 200, { subscribers });
  else json(res, 404, { error: { code: 'PB_ERR_NOT_FOUND', message: 'no route' } });
});
server.on('upgrade', (req, socket, head) => {
  if (req.url !== '/ws') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, socket));
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
