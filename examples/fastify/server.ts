// patchbay on Fastify 5: `npx tsx examples/fastify/server.ts` (PORT, default 3000; 127.0.0.1).
//   curl -X POST -H 'content-type: text/plain' --data hello localhost:3000/pub/demo   -> 201 {"id"}
//   curl 'localhost:3000/lp/demo'      (long poll)     curl -N localhost:3000/sse/demo   (SSE)
//   curl -X POST -H 'content-type: application/json' --data '{"n":3}' localhost:3000/jobs
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { LongPollHandler, PollHandle, PollHandler, PubSubBroker, SseHandler } from 'patchbay';
import { patchbayPlugin } from 'patchbay/fastify';
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

const app = Fastify();
// One encapsulated plugin: its routes read raw bodies and write raw responses (reply.hijack());
// the app's other routes keep Fastify's parsers and error handling.
await app.register(patchbayPlugin, {
  publish: { broker, maxBodyBytes: 64 * 1024 }, // POST /pub/:topic
  longPoll: { handler: lp }, // GET /lp/:topic
  sse: { handler: events }, // GET /sse/:topic
  jobs: { handler: poll }, // /jobs
  uploads: { handler: files }, // /uploads
});
app.get('/health', async () => ({ ok: true }));
app.addHook('onClose', async () => {
  await Promise.all([lp.close(), events.close(), poll.close(), files.close()]);
  await jobs.close();
});

const url = await app.listen({ port: Number(process.env['PORT'] ?? 3000), host: '127.0.0.1' });
console.log(`listening on ${url}`);
process.once('SIGTERM', () => {
  app.server.closeAllConnections();
  void app.close();
});
