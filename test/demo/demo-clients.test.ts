import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import { fetchJsonLines, LongPollClient, PollClient, readJsonLines } from '../../src/client/index.js';
import type { LongPollHandler } from '../../src/index.js';
import { serveRig, TestResources, until } from '../helpers.js';

// The demo's NDJSON route and long polling, read with the library's own clients.

let base = '';
let demo: { server: Server; longPoll: LongPollHandler };
const uploadsDir = mkdtempSync(join(tmpdir(), 'patchbay-demo-test-uploads-'));

const suite = new TestResources();
beforeAll(() =>
  suite.setup(async () => {
    demo = createDemo({ uploadsDir });
    ({ url: base } = await serveRig(demo.server, { resources: suite }));
  }),
);
afterAll(async () => {
  await suite.teardown();
  rmSync(uploadsDir, { recursive: true, force: true });
});

describe('demo: GET /stream/ndjson', () => {
  it('streams n records and an end record', async () => {
    const lines: unknown[] = [];
    const it = readJsonLines(await fetch(`${base}/stream/ndjson?n=5`));
    for (;;) {
      const step = await it.next();
      if (step.done === true) {
        expect(step.value).toEqual({ count: 5, next: 5 });
        break;
      }
      lines.push(step.value);
    }
    expect(lines).toEqual([0, 1, 2, 3, 4].map((i) => ({ seq: i, data: { i, square: i * i } })));
  });

  it('resumes from ?from=, as fetchJsonLines does after a cut', async () => {
    const got: number[] = [];
    for await (const l of fetchJsonLines<{ i: number }>(`${base}/stream/ndjson?n=10`, { from: 7 })) got.push(l.data.i);
    expect(got).toEqual([7, 8, 9]);
  });

  it('answers bad parameters with 400 and a JSON body', async () => {
    for (const q of ['n=-1', 'n=abc', 'n=2000000', 'n=5&from=6', 'delayMs=5000', 'n=1e3']) {
      const res = await fetch(`${base}/stream/ndjson?${q}`);
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_INVALID_ARGUMENT');
    }
    expect((await fetch(`${base}/stream/ndjson`, { method: 'POST' })).status).toBe(405);
  });
});

describe('demo: LongPollClient on GET /lp/:topic', () => {
  it('receives what POST /pub/:topic publishes, in order', async () => {
    const client = new LongPollClient<string>({ url: `${base}/lp/client-demo` });
    try {
      const it = client.messages();
      const first = it.next();
      await until(() => demo.longPoll.stats().parked === 1, 'the poll to park');
      const ids: string[] = [];
      for (const text of ['one', 'two', 'three']) {
        const res = await fetch(`${base}/pub/client-demo`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: text });
        ids.push(((await res.json()) as { id: string }).id);
      }
      const got = [(await first).value, (await it.next()).value, (await it.next()).value];
      expect(got.map((m) => m?.data)).toEqual(['one', 'two', 'three']);
      expect(got.map((m) => m?.id)).toEqual(ids);
    } finally {
      client.close();
    }
  });
});

describe('demo: POST /uploads (tus) then GET /jobs/:id', () => {
  it('uploads with tus-js-client, then the hashing job is polled to its result', async () => {
    const data = randomBytes(1024 * 1024 + 3);
    const jobLocation = await new Promise<string>((resolve, reject) => {
      const upload = new tus.Upload(data, {
        endpoint: `${base}/uploads`,
        chunkSize: 256 * 1024,
        metadata: { filename: 'demo.bin' },
        onSuccess: (payload) => resolve(payload.lastResponse.getHeader('Patchbay-Job-Location') ?? ''),
        onError: reject,
      });
      upload.start();
    });
    expect(jobLocation).toMatch(/^\/jobs\/[^/]+$/);
    const result = await new PollClient({ baseUrl: base, waitSeconds: 5 }).wait<{ sha256: string; size: number; filename: string }>(jobLocation);
    expect(result).toMatchObject({ sha256: createHash('sha256').update(data).digest('hex'), size: data.length, filename: 'demo.bin' });
  });
});
