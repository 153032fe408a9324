// The reference for the Redis suite: plain ioredis pub/sub relayed to node:http by hand, with no
// history and no cursors. One subscriber connection; each message is written to every SSE
// stream and answers every held long poll (a poll that arrives between two messages waits for
// the next). PORT (0: any), REDIS_URL, CHANNEL. Prints "listening on <port>".
import http from 'node:http';
import { Redis } from 'ioredis';

const channel = process.env.CHANNEL ?? 'bench';
const sub = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const streams = new Set();
let polls = [];

sub.on('message', (_channel, payload) => {
  const event = Buffer.from(`data: ${payload}\n\n`);
  for (const res of streams) res.write(event);
  if (polls.length > 0) {
    const body = Buffer.from(`{"messages":[{"data":${payload}}]}`);
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
  const path = (req.url ?? '/').split('?')[0];
  if (path.startsWith('/sse/')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(':\n\n');
    streams.add(res);
    res.on('close', () => streams.delete(res));
  } else if (path.startsWith('/lp/')) {
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
