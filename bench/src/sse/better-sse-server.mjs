// @ts-check
// better-sse on `node:http` for the SSE benchmark, used as its docs recommend: one Channel per
// topic, a Session per connection registered with it, and for each publish one event buffer
// written to every session of the channel (its batching guide: "create an event buffer outside
// of the context of a single session and then write its contents to one or many sessions",
// `channel.activeSessions.forEach((session) => session.batch(buffer))`), so an event is
// serialized once, not once per session as `channel.broadcast()` does.
//
//   GET  /sse/:topic  -> createSession(req, res) (its defaults: `retry: 2000` first, keep-alive
//                        comments every 10 s), then channel.register(session)
//   POST /pub/:topic  -> 201 {"id"}; the body (text, already the JSON the clients read) is the
//                        event's data as it is: createEventBuffer({ serializer: String }),
//                        buffer.push(text, 'message', id), then session.batch(buffer) for each
//                        session (one res.write() each)
//   GET  /stats       -> {"subscribers": n} (sessions registered with the channels)
//
// Run as `node better-sse-server.mjs` (PORT); prints `listening on <port>` on 127.0.0.1.
import http from 'node:http';
import { createChannel, createEventBuffer, createSession } from 'better-sse';

const port = Number(process.env.PORT ?? 0);
const MAX_BODY = 1024 * 1024;

/** @type {Map<string, import('better-sse').Channel>} */
const channels = new Map();
let seq = 0;

/** @param {string} topic */
function channelOf(topic) {
  let channel = channels.get(topic);
  if (channel === undefined) channels.set(topic, (channel = createChannel()));
  return channel;
}

/** @param {http.ServerResponse} res @param {number} status @param {unknown} body */
function json(res, status, body) {
  const buf = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-length': buf.length });
  res.end(buf);
}

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {string} topic */
async function subscribe(req, res, topic) {
  const session = await createSession(req, res);
  channelOf(topic).register(session); // deregistered by the channel when the session disconnects
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
    const channel = channels.get(topic);
    if (channel !== undefined && channel.sessionCount > 0) {
      // The data is text already: written as it is (the default serializer would quote it).
      const buffer = createEventBuffer({ serializer: String }).push(text, 'message', id);
      for (const session of channel.activeSessions) session.batch(buffer).catch(() => {}); // a gone session: the channel drops it
    }
    json(res, 201, { id });
  });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const m = /^\/(pub|sse)\/([A-Za-z0-9_\-~:@.]+)$/.exec(url.pathname);
  if (m !== null && m[1] === 'sse' && req.method === 'GET') {
    subscribe(req, res, m[2]).catch((error) => {
      console.error(error);
      res.destroy();
    });
  } else if (m !== null && m[1] === 'pub' && req.method === 'POST') publish(req, res, m[2]);
  else if (url.pathname === '/stats' && req.method === 'GET') {
    let subscribers = 0;
    for (const c of channels.values()) subscribers += c.sessionCount;
    json(res, 200, { subscribers });
  } else json(res, 404, { error: { code: 'PB_ERR_NOT_FOUND', message: 'no route' } });
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
