// @ts-check
// hono's `streamSSE` on `@hono/node-server` for the SSE benchmark. hono has no channel or
// broadcast, so the app keeps what its docs suggest: a Set of the open SSE streams per topic.
//
//   GET  /sse/:topic  -> streamSSE(c, cb): cb adds the stream to the topic's Set, writes a first
//                        comment, and stays open until the client goes (onAbort)
//   POST /pub/:topic  -> 201 {"id"}; the body (text) is the data: stream.writeSSE({ data, id })
//                        on each stream of the topic (each formats the event and writes it)
//   GET  /stats       -> {"subscribers": n}
//
// Run as `node hono-server.mjs` (PORT); prints `listening on <port>` on 127.0.0.1.
import { createAdaptorServer } from '@hono/node-server';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';

const port = Number(process.env.PORT ?? 0);

/** @type {Map<string, Set<import('hono/streaming').SSEStreamingApi>>} */
const topics = new Map();
let seq = 0;
let subscribers = 0;

const app = new Hono();

app.get('/sse/:topic', (c) => {
  const topic = c.req.param('topic');
  return streamSSE(c, async (stream) => {
    let set = topics.get(topic);
    if (set === undefined) topics.set(topic, (set = new Set()));
    const mine = set;
    mine.add(stream);
    subscribers++;
    const gone = new Promise((resolve) => {
      stream.onAbort(() => {
        if (mine.delete(stream)) subscribers--;
        if (mine.size === 0 && topics.get(topic) === mine) topics.delete(topic);
        resolve(undefined);
      });
    });
    await stream.write(':ok\n\n');
    await gone;
  });
});

app.post('/pub/:topic', async (c) => {
  const data = await c.req.text();
  seq++;
  const id = String(seq);
  const set = topics.get(c.req.param('topic'));
  if (set !== undefined) for (const stream of set) void stream.writeSSE({ data, id });
  return c.json({ id }, 201);
});

app.get('/stats', (c) => c.json({ subscribers }));

// hono's own `serve()` is `createAdaptorServer()` + `listen(port, hostname)`; done by hand here
// only to pass the backlog.
const server = createAdaptorServer({ fetch: app.fetch });
// The same listen backlog as every server of the benchmarks (511: Node's default, which the demo
// uses, and nginx's on Linux), so none is favoured or starved while thousands connect at once.
server.listen({ port, host: '127.0.0.1', backlog: 511 }, () => {
  const address = server.address();
  console.log(`listening on ${typeof address === 'object' && address !== null ? address.port : port}`);
});
const stop = () => {
  server.close(() => process.exit(0));
  if ('closeAllConnections' in server) server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
