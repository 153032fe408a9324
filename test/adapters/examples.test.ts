// Runs each framework example (examples/<framework>/server.ts) as a user would, in a child
// process on 127.0.0.1:0 (patchbay imports mapped to the sources), and drives it over HTTP:
// publish, long poll, SSE, a job polled to its end, a tus upload. Each child is ended by its PID.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { EventSourceMessage } from 'eventsource-parser';
import { afterEach, describe, expect, it } from 'vitest';
import { readSse, sourceNodeArgs } from '../helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

let child: ChildProcess | undefined;
afterEach(async () => {
  const c = child;
  child = undefined;
  if (c === undefined || c.exitCode !== null) return;
  const exited = new Promise((resolve) => c.once('exit', resolve));
  process.kill(c.pid!, 'SIGTERM');
  const timer = setTimeout(() => process.kill(c.pid!, 'SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
});

async function start(framework: string): Promise<string> {
  const c = spawn(process.execPath, [...sourceNodeArgs, `examples/${framework}/server.ts`], {
    cwd: root,
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = c;
  let output = '';
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`examples/${framework} did not start within 20 s:\n${output}`)), 20_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    c.stdout!.on('data', onData);
    c.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    c.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`examples/${framework} exited (${String(code)}) before listening:\n${output}`));
    });
  });
}

async function nextEvent(res: Response): Promise<EventSourceMessage> {
  const stream = await readSse(res);
  const [event] = await stream.take(1, 'the first SSE event', { timeoutMs: 20_000 });
  await stream.close();
  return event!;
}

describe.each(['express', 'fastify', 'koa', 'hono'])('examples/%s', (framework) => {
  it('serves publish, long poll, SSE, jobs and uploads', async () => {
    const base = await start(framework);
    const pub = (body: string) => fetch(`${base}/pub/demo`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body });

    // A long poll after the first message's cursor and an SSE stream resuming after it both get
    // the second one, whether it is published before or after they arrive (no sleeping).
    const first = (await (await pub('first')).json()) as { id: string };
    const poll = fetch(`${base}/lp/demo?cursor=${first.id}`);
    const stream = await fetch(`${base}/sse/demo`, { headers: { 'last-event-id': first.id } });
    expect(stream.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const published = await pub('hello');
    expect(published.status).toBe(201);
    const { id } = (await published.json()) as { id: string };
    const polled = (await (await poll).json()) as { messages: { id: string; data: unknown }[] };
    expect(polled.messages.map((m) => [m.id, m.data])).toEqual([[id, 'hello']]);
    const event = await nextEvent(stream);
    expect([event.id, event.data]).toEqual([id, 'hello']);

    const job = await fetch(`${base}/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'wait=5' }, body: '{"n":3}' });
    expect(job.status).toBe(200);
    expect(((await job.json()) as { result: unknown }).result).toEqual({ echo: { n: 3 } });

    const tus = { 'tus-resumable': '1.0.0' };
    const created = await fetch(`${base}/uploads`, { method: 'POST', headers: { ...tus, 'upload-length': '3' } });
    expect(created.status).toBe(201);
    const done = await fetch(`${base}${created.headers.get('location')!}`, {
      method: 'PATCH',
      headers: { ...tus, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
      body: 'abc',
    });
    expect(done.status).toBe(204);
    expect(done.headers.get('patchbay-job-location')).toMatch(/^\/jobs\//);

    const wrong = await fetch(`${base}/lp/demo`, { method: 'DELETE' });
    expect(wrong.status).toBe(405);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_METHOD_NOT_ALLOWED');
  });
});
