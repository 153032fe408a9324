// The reference for the Redis suite: plain ioredis pub/sub relayed to node:http by hand, with no
// replay beyond a short buffer. One subscriber connection; each message is numbered, kept in a
// bounded ring of the last KEEP, written to every SSE stream, and answers every held long poll.
// A long poll carries the cursor of the last message it got (`?cursor=<n>`, given back as
// `"cursor"` in each answer): if newer messages are kept it is answered at once with them, so a
// message that arrives while the client is between two polls is not lost; otherwise it waits for
// the next. A first poll (no cursor) waits for the next message. PORT (0: any), REDIS_URL, CHANNEL.
// Prints "listening on <port>".
import http from 'node:http';
import { Redis } from 'ioredis';

const channel = process.env.CHANNEL ?? 'bench';
const sub = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const streams = new Set();
let polls = [];
/** Messages kept for polls that come back late: the last KEEP, by number (seq % KEEP). */
const KEEP = 4096;
const ring = new Array(KEEP);
/** The number of the newest message (the first is 1). */
let seq = 0;

/** The answer to a poll whose last message was `after`: every kept message after it. */
function answer(res, after) {
  let items = '';
  for (let n = Math.max(after + 1, seq - KEEP + 1); n <= seq; n++) items += `${items === '' ? '' : ','}{"data":${ring[n % KEEP]}}`;
  const body = Buffer.from(`{"messages":[${items}],"cursor":"${seq}"}`);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

sub.on('message', (_channel, payload) => {
  seq++;
  ring[seq % KEEP] = payload;
  const event = Buffer.from(`data: ${payload}\n\n`);
  for (const res of streams) res.write(event);
  if (polls.length > 0) {
    // A held poll had seen every message before this one: they all get the same answer.
    const body = Buffer.from(`{"messages":[{"data":${payload}}],"cursor":"${seq}"}`);
    const waiting = polls;
    polls = [];
    for (const res of waiting) {
      if (res.destroyed) continue;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    }
  }
});
await sub.subscribe(channel);

const server = http.createServer((req, res) => {
  const [path, query = ''] = (req.url ?? '/').split('?');
  if (path.startsWith('/sse/')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(':\n\n');
    streams.add(res);
    res.on('close', () => streams.delete(res));
  } else if (path.startsWith('/lp/')) {
    const cursor = /(?:^|&)cursor=(\d+)/.exec(query);
    if (cursor !== null && Number(cursor[1]) < seq) {
      answer(res, Number(cursor[1]));
      return;
    }
    polls.push(res);
    res.on('close', () => {
      const i = polls.indexOf(res);
      if (i !== -1) polls.splice(i, 1);
    });
  } else if (path === '/stats') {
    const body = JSON.stringify({ parked: polls.length, streams: streams.size });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  } else {
    res.writeHead(404);
    res.end();
  }
});
// The same listen backlog as every server of the benchmarks (511: Node's default, which the demo
// uses, and nginx's on Linux), so none is favoured or starved while thousands connect at once.
server.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1', backlog: 511 }, () => console.log(`listening on ${server.address().port}`));
const stop = () => {
  server.close();
  server.closeAllConnections();
  sub.disconnect();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
