// patchbay on Express 5: `npx tsx examples/express/server.ts` (PORT, default 3000; 127.0.0.1).
//   curl -X POST -H 'content-type: text/plain' --data hello localhost:3000/pub/demo   -> 201 {"id"}
//   curl 'localhost:3000/lp/demo'      (long poll)     curl -N localhost:3000/sse/demo   (SSE)
//   curl -X POST -H 'content-type: application/json' --data '{"n":3}' localhost:3000/jobs
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { LongPollHandler, PollHandle, PollHandler, PubSubBroker, SseHandler } from 'patchbay';
import { jsonErrors, longPoll, pollJobs, publish, sse, uploads } from 'patchbay/express';
import { UploadHandler } from 'patchbay/upload';

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

const app = express();
// Topic routes take every method: the handlers answer 405 (and CORS preflights) themselves.
app.all('/pub/:topic', publish(broker, { maxBodyBytes: 64 * 1024 }));
app.all('/lp/:topic', longPoll(lp));
app.all('/sse/:topic', sse(events));
// Jobs and uploads route under their handler's basePath. No body parser before these routes.
app.use('/jobs', pollJobs(poll));
app.use('/uploads', uploads(files));
app.use(express.json()); // the app's own routes may parse bodies
app.use(jsonErrors()); // what reaches Express's error path, as patchbay JSON errors

const server = app.listen(Number(process.env['PORT'] ?? 3000), '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}`);
});

process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void Promise.all([lp.close(), events.close(), poll.close(), files.close()]).then(() => jobs.close());
});
