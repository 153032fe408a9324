// patchbay on Hono, through patchbay/web (Request -> Response), served by @hono/node-server:
// `npx tsx examples/hono/server.ts` (PORT, default 3000; 127.0.0.1). The same `app.fetch` runs
// on Bun, Deno or any fetch-style runtime.
//   curl -X POST -H 'content-type: text/plain' --data hello localhost:3000/pub/demo   -> 201 {"id"}
//   curl 'localhost:3000/lp/demo'      (long poll)     curl -N localhost:3000/sse/demo   (SSE)
//   curl -X POST -H 'content-type: application/json' --data '{"n":3}' localhost:3000/jobs
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { LongPollHandler, PollHandle, PollHandler, PubSubBroker, SseHandler } from 'patchbay';
import { UploadHandler } from 'patchbay/upload';
import { longPoll, pollJobs, publish, sse, uploads } from 'patchbay/web';

const broker = new PubSubBroker();
const jobs = new PollHandle();
const lp = new LongPollHandler({ broker });
const events = new SseHandler({ broker, heartbeatMs: 15_000 });
const poll = new PollHandler({ jobs, basePath: '/jobs', run: async (input: unknown) => ({ echo: input }) });
const files = new UploadHandler({
  directory: join(tmpdir(), 'patchbay-example-uploads'),
  basePath: '/uploads',
  jobs,
  process: (file) => ({ size: file.size }),
});

const pub = publish(broker, { maxBodyBytes: 64 * 1024 });
const poller = longPoll(lp);
const stream = sse(events);
const jobRoutes = pollJobs(poll);
const tus = uploads(files);

export const app = new Hono();
// Routes take every method: the handlers answer 405 (and CORS preflights) themselves.
app.all('/pub/:topic', (c) => pub(c.req.raw, c.req.param('topic')));
app.all('/lp/:topic', (c) => poller(c.req.raw, { topics: [c.req.param('topic')] }));
app.all('/sse/:topic', (c) => stream(c.req.raw, { topics: [c.req.param('topic')] }));
app.all('/jobs', (c) => jobRoutes(c.req.raw));
app.all('/jobs/*', (c) => jobRoutes(c.req.raw));
app.all('/uploads', (c) => tus(c.req.raw));
app.all('/uploads/*', (c) => tus(c.req.raw));

const server = serve({ fetch: app.fetch, port: Number(process.env['PORT'] ?? 3000), hostname: '127.0.0.1' }, (info) => {
  console.log(`listening on http://127.0.0.1:${info.port}`);
});

process.once('SIGTERM', () => {
  server.close();
  void Promise.all([lp.close(), events.close(), poll.close(), files.close()]).then(() => jobs.close());
});
