import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { ManualClock, PollHandle, type PollJobContext, PollHandler } from '../../src/index.js';
import { perTest, serveRig, until } from '../helpers.js';

/** A rig whose request listener records, per request, whether the answer was ended by the time `handle()` returned. */
async function rig(authorize?: () => boolean) {
  const clock = new ManualClock();
  const jobs = new PollHandle({ clock });
  let ctx: PollJobContext | undefined;
  const handler = new PollHandler({
    jobs,
    authorize,
    run: (_input, context) => {
      ctx = context;
      return new Promise(() => {});
    },
  });
  const endedAtReturn: boolean[] = [];
  const settled: Promise<void>[] = [];
  const server = http.createServer((req, res) => {
    const done = handler.handle(req, res);
    endedAtReturn.push(res.writableEnded);
    settled.push(done);
  });
  server.keepAliveTimeout = 1;
  const { url } = await serveRig(server);
  perTest.defer(() => jobs.close());
  perTest.defer(() => handler.close());
  return { url, endedAtReturn, settled, context: () => ctx };
}

describe('PollHandler: status reads of a local job', () => {
  it('are answered before handle() returns, and handle() resolves', async () => {
    const r = await rig();
    const started = await fetch(`${r.url}/jobs`, { method: 'POST' });
    expect(started.status).toBe(202);
    const { id } = (await started.json()) as { id: string };
    const read = await fetch(`${r.url}/jobs/${id}`);
    expect(read.status).toBe(200);
    expect(r.endedAtReturn.at(-1)).toBe(true);
    const missing = await fetch(`${r.url}/jobs/nope`);
    expect(missing.status).toBe(404);
    expect(r.endedAtReturn.at(-1)).toBe(true);
    await expect(Promise.all(r.settled)).resolves.toBeDefined();
  });

  it('still answer through authorize when one is given', async () => {
    let allowed = true;
    const r = await rig(() => allowed);
    const { id } = (await (await fetch(`${r.url}/jobs`, { method: 'POST' })).json()) as { id: string };
    expect((await fetch(`${r.url}/jobs/${id}`)).status).toBe(200);
    allowed = false;
    expect((await fetch(`${r.url}/jobs/${id}`)).status).toBe(403);
    expect((await fetch(`${r.url}/jobs/${id}`, { method: 'DELETE' })).status).toBe(403);
    allowed = true;
    const canceled = await fetch(`${r.url}/jobs/${id}`, { method: 'DELETE' });
    expect(canceled.status).toBe(200);
    expect(((await canceled.json()) as { state: string }).state).toBe('canceled');
  });

  it('send a Content-Length in bytes for a status with non-ASCII text', async () => {
    const r = await rig();
    const { id } = (await (await fetch(`${r.url}/jobs`, { method: 'POST' })).json()) as { id: string };
    await until(() => r.context() !== undefined, 'the job to run');
    const message = 'étape 1 sur 3 — 🚀';
    r.context()!.progress({ done: 1, total: 3, message });
    const read = await fetch(`${r.url}/jobs/${id}`);
    const bytes = Buffer.from(await read.arrayBuffer());
    expect(read.headers.get('content-length')).toBe(String(bytes.length));
    expect(JSON.parse(bytes.toString('utf8'))).toEqual({ id, state: 'running', progress: { done: 1, total: 3, message } });
  });
});
