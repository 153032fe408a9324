import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tus from 'tus-js-client';
import { describe, expect, it } from 'vitest';
import { PollClient } from '../../src/client/index.js';
import { CapacityError, InvalidArgumentError, ManualClock, MemoryJobStore, PollHandle, PollHandler, SharedPollHandle } from '../../src/index.js';
import { JOB_LOCATION_HEADER, UploadHandler, type UploadHandlerOptions } from '../../src/upload/index.js';
import { perTest, serveRig, until } from '../helpers.js';

// UploadHandler on a real 127.0.0.1 server, driven by tus-js-client (a tus client nobody here
// wrote), with processing handed to a real PollHandle and polled with patchbay's PollClient.

interface Rig {
  base: string;
  dir: string;
  uploads: UploadHandler<{ sha256: string; size: number }>;
  jobs: PollHandle;
  server: Server;
  /** Every request the server got: method, path and Upload-Offset. */
  log: { method: string; path: string; offset: string | undefined }[];
}

async function sha256File(path: string, onProgress?: (done: number) => void): Promise<string> {
  const hash = createHash('sha256');
  let done = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    onProgress?.(done);
  }
  return hash.digest('hex');
}

async function rig(options: Partial<UploadHandlerOptions<{ sha256: string; size: number }>> = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-upload-test-'));
  const jobs = new PollHandle();
  const uploads = new UploadHandler<{ sha256: string; size: number }>({
    directory: join(dir, 'store'),
    jobs,
    process: async (file, { progress }) => {
      const sha256 = await sha256File(file.path, (done) => progress({ done, total: file.size }));
      return { sha256, size: file.size };
    },
    ...options,
  });
  const jobsHttp = new PollHandler({
    jobs,
    run: () => {
      throw new InvalidArgumentError('Jobs here start from completed uploads');
    },
  });
  const log: Rig['log'] = [];
  const { url: base, server, close } = await serveRig((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    log.push({ method: req.method ?? '', path, offset: req.headers['upload-offset'] as string | undefined });
    if (path === '/uploads' || path.startsWith('/uploads/')) void uploads.handle(req, res);
    else if (path.startsWith('/jobs')) void jobsHttp.handle(req, res);
    else res.writeHead(404).end();
  });
  perTest.defer(async () => {
    await close();
    await uploads.close();
    await jobsHttp.close();
    await jobs.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { base, dir, uploads, jobs, server, log };
}

/**
 * A TCP proxy in front of the server that cuts the first connection carrying a PATCH once it has
 * forwarded `cutAfter` bytes of it (the client sees its connection drop mid-chunk).
 */
async function cuttingProxy(target: string, cutAfter: number): Promise<{ url: string; cuts: () => number }> {
  const port = Number(new URL(target).port);
  let cuts = 0;
  const proxy = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port });
    let patchBytes = -1; // counting starts at the first PATCH on this connection
    let dead = false; // cut: nothing more goes through
    client.on('data', (chunk: Buffer) => {
      if (dead) return;
      if (patchBytes === -1 && cuts === 0) {
        const at = chunk.indexOf('PATCH ');
        if (at !== -1) patchBytes = -at;
      }
      if (patchBytes >= -chunk.length && cuts === 0 && patchBytes !== -1) {
        const room = cutAfter - patchBytes;
        patchBytes += chunk.length;
        if (patchBytes >= cutAfter) {
          cuts++;
          dead = true;
          upstream.write(chunk.subarray(0, Math.max(0, room)), () => {
            // Let the server take in what it got, then drop both sides.
            setImmediate(() => {
              upstream.destroy();
              client.destroy();
            });
          });
          return;
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen({ port: 0, host: '127.0.0.1' }, resolve));
  perTest.defer(() => new Promise<void>((r) => proxy.close(() => r())));
  return { url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, cuts: () => cuts };
}

function upload(endpoint: string, data: Buffer, extra: Partial<tus.UploadOptions> = {}): Promise<{ url: string; jobLocation: string | null }> {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(data, {
      endpoint,
      retryDelays: [0, 20, 50, 100],
      metadata: { filename: 'data.bin', filetype: 'application/octet-stream' },
      onSuccess: (payload) => resolve({ url: u.url!, jobLocation: payload.lastResponse.getHeader(JOB_LOCATION_HEADER) ?? null }),
      onError: reject,
      ...extra,
    });
    u.start();
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('UploadHandler with tus-js-client', () => {
  it('uploads a file whole, byte-identical, then hands its processing to a polled job', async () => {
    const r = await rig();
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const { url, jobLocation } = await upload(`${r.base}/uploads`, data, { chunkSize: 1024 * 1024 });
    const id = url.split('/').pop()!;
    expect(readFileSync(join(r.dir, 'store', id)).equals(data)).toBe(true);
    expect(jobLocation).toBe(`/jobs/${r.uploads.jobFor(id)}`);
    // HEAD on the finished upload names the job too (a client that lost the last answer finds it).
    const head = await fetch(`${r.base}/uploads/${id}`, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0' } });
    expect(head.headers.get('upload-offset')).toBe(String(data.length));
    expect(head.headers.get(JOB_LOCATION_HEADER.toLowerCase())).toBe(jobLocation);
    const progress: unknown[] = [];
    const result = await new PollClient({ baseUrl: r.base }).wait<{ sha256: string; size: number }>(jobLocation!, { onProgress: (s) => progress.push(s.progress) });
    expect(result).toEqual({ sha256: sha(data), size: data.length });
    expect(progress.length).toBeGreaterThan(0);
    expect(r.uploads.stats()).toMatchObject({ active: 0, completed: 1, jobsStarted: 1 });
  });

  it('resumes after the connection is cut mid-chunk: HEAD gives what the store kept, the file ends byte-identical', async () => {
    const r = await rig();
    const data = randomBytes(2 * 1024 * 1024);
    const proxy = await cuttingProxy(r.base, 700 * 1024);
    const { url, jobLocation } = await upload(`${proxy.url}/uploads`, data, { chunkSize: Number.POSITIVE_INFINITY });
    expect(proxy.cuts()).toBe(1);
    const id = url.split('/').pop()!;
    const patches = r.log.filter((l) => l.method === 'PATCH');
    expect(patches.length).toBeGreaterThanOrEqual(2);
    expect(patches[0]!.offset).toBe('0');
    const resumedAt = Number(patches[patches.length - 1]!.offset);
    expect(resumedAt).toBeGreaterThan(0); // bytes that reached the store before the cut were kept
    expect(resumedAt).toBeLessThan(data.length);
    expect(r.log.some((l) => l.method === 'HEAD')).toBe(true);
    const stored = readFileSync(join(r.dir, 'store', id));
    expect(stored.length).toBe(data.length);
    expect(stored.equals(data)).toBe(true);
    const result = await new PollClient({ baseUrl: r.base }).wait<{ sha256: string }>(jobLocation!);
    expect(result.sha256).toBe(sha(data));
  });
});

describe('UploadHandler protocol answers', () => {
  const tusHeaders = { 'tus-resumable': '1.0.0' };
  async function create(base: string, length: number): Promise<string> {
    const res = await fetch(`${base}/uploads`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': String(length) } });
    expect(res.status).toBe(201);
    return res.headers.get('location')!;
  }

  it('answers a wrong offset 409, a missing Tus-Resumable 412, an oversized upload 413, with JSON bodies', async () => {
    const r = await rig({ maxSizeBytes: 1000 });
    const location = await create(r.base, 10);
    expect(location).toMatch(/^\/uploads\/[A-Za-z0-9_-]+$/);
    const patch = (offset: number, headers: Record<string, string> = tusHeaders) =>
      fetch(`${r.base}${location}`, { method: 'PATCH', headers: { ...headers, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
    const wrong = await patch(5);
    expect(wrong.status).toBe(409);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_PROTOCOL');
    const noVersion = await patch(0, {});
    expect(noVersion.status).toBe(412);
    const tooBig = await fetch(`${r.base}/uploads`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': '1001' } });
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_BODY_TOO_LARGE');
    const ok = await patch(0);
    expect(ok.status).toBe(204);
    expect(ok.headers.get('upload-offset')).toBe('3');
  });

  it('never touches a path outside its folder: traversal ids are 404s, nothing written', async () => {
    const r = await rig();
    for (const evil of ['..%2F..%2Fetc%2Fpasswd', '..', '%2e%2e', 'a%00b', '__proto__%2F..', 'x%5C..%5Cy']) {
      for (const method of ['HEAD', 'PATCH', 'DELETE']) {
        const res = await fetch(`${r.base}/uploads/${evil}`, {
          method,
          headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' },
          ...(method === 'PATCH' ? { body: 'zzz' } : {}),
        });
        expect(res.status, `${method} ${evil}`).toBe(404);
      }
    }
    const store = join(r.dir, 'store');
    expect(existsSync(store) ? readdirSync(store) : []).toEqual([]);
    expect(readdirSync(r.dir)).toEqual(['store'].filter((d) => existsSync(join(r.dir, d))));
  });

  it('refuses creates past maxActiveUploads with 503 + Retry-After, and counts terminated ones out', async () => {
    const r = await rig({ maxActiveUploads: 2 });
    const a = await create(r.base, 10);
    await create(r.base, 10);
    const third = await fetch(`${r.base}/uploads`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': '10' } });
    expect(third.status).toBe(503);
    expect(((await third.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_CAPACITY');
    expect(r.uploads.stats()).toMatchObject({ active: 2, refused: 1 });
    const del = await fetch(`${r.base}${a}`, { method: 'DELETE', headers: tusHeaders });
    expect(del.status).toBe(204);
    await until(() => r.uploads.stats().active === 1, 'the terminated upload to be counted out');
    await create(r.base, 10);
  });

  it('expires abandoned uploads on its cleanup timer (manual clock), which then answer 410 or 404', async () => {
    const clock = new ManualClock();
    const r = await rig({ clock, expiryMs: 50, cleanupIntervalMs: 1000 });
    const location = await create(r.base, 10);
    const id = location.split('/').pop()!;
    expect(existsSync(join(r.dir, 'store', id))).toBe(true);
    // Expiry is judged on the injected clock (it was the store's wall clock: this test slept 60 ms).
    clock.advance(1000);
    await until(() => r.uploads.stats().expired === 1, 'the cleanup to remove it');
    expect(existsSync(join(r.dir, 'store', id))).toBe(false);
    expect(r.uploads.stats().active).toBe(0);
    const head = await fetch(`${r.base}${location}`, { method: 'HEAD', headers: tusHeaders });
    expect([404, 410]).toContain(head.status);
    expect(clock.pendingTimers).toBe(1); // re-armed, one timer for the handler
  });

  it('asks authorize before anything, and answers 403 with a JSON body', async () => {
    const r = await rig({ authorize: (req, action) => action !== 'create' || req.headers['x-user'] === 'ok' });
    const denied = await fetch(`${r.base}/uploads`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': '10' } });
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_FORBIDDEN');
    const allowed = await fetch(`${r.base}/uploads`, { method: 'POST', headers: { ...tusHeaders, 'upload-length': '10', 'x-user': 'ok' } });
    expect(allowed.status).toBe(201);
  });

  it('answers a plain Error thrown in a tus hook with 500 PB_ERR_INTERNAL', async () => {
    // The completing PATCH runs onUploadFinish, which hands off to jobs.submit: here it fails.
    const failing = {
      submit: () => Promise.reject(new Error('disk on fire')),
    } as unknown as PollHandle;
    const r = await rig({ jobs: failing });
    const location = await create(r.base, 3);
    const res = await fetch(`${r.base}${location}`, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('PB_ERR_INTERNAL');
    expect(body.error.message).not.toMatch(/disk on fire/); // internals stay on the server
  });

  it('keeps the status and code of a patchbay error from the hand-off: a full job registry is 503 PB_ERR_CAPACITY', async () => {
    const jobs = new PollHandle({ maxLiveJobs: 1 });
    perTest.defer(() => jobs.close());
    jobs.start(() => new Promise(() => {})); // holds the only live slot
    const r = await rig({ jobs });
    const location = await create(r.base, 3);
    const res = await fetch(`${r.base}${location}`, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_CAPACITY');
  });

  it('starts the job of a complete upload whose hand-off failed when the client asks for its offset again', async () => {
    const jobs = new PollHandle();
    perTest.defer(() => jobs.close());
    const submit = jobs.submit.bind(jobs);
    let refuse = true;
    (jobs as { submit: PollHandle['submit'] }).submit = (fn, options) => {
      if (!refuse) return submit(fn, options);
      refuse = false;
      return Promise.reject(new CapacityError('The registry is full', { retryAfterSeconds: 1 }));
    };
    const r = await rig({ jobs });
    const location = await create(r.base, 3);
    const patch = await fetch(`${r.base}${location}`, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
    expect(patch.status).toBe(503);
    expect(((await patch.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_CAPACITY');
    const head = await fetch(`${r.base}${location}`, { method: 'HEAD', headers: tusHeaders });
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe('3');
    const jobLocation = head.headers.get(JOB_LOCATION_HEADER);
    expect(jobLocation).toMatch(/^\/jobs\//);
    const job = jobs.get<{ sha256: string }>(jobLocation!.split('/').pop()!);
    expect((await job.done()).result?.sha256).toBe(createHash('sha256').update('abc').digest('hex'));
    // Asked again: the same job.
    const again = await fetch(`${r.base}${location}`, { method: 'HEAD', headers: tusHeaders });
    expect(again.headers.get(JOB_LOCATION_HEADER)).toBe(jobLocation);
  });

  it('hands a completed upload to a registry that shares its jobs: another registry reads the job', async () => {
    const store = new MemoryJobStore();
    const jobs = new SharedPollHandle({ store });
    const other = new SharedPollHandle({ store });
    perTest.defer(async () => {
      await jobs.close();
      await other.close();
    });
    const r = await rig({ jobs });
    const location = await create(r.base, 3);
    const res = await fetch(`${r.base}${location}`, { method: 'PATCH', headers: { ...tusHeaders, 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
    expect(res.status).toBe(204);
    const jobId = res.headers.get(JOB_LOCATION_HEADER)!.split('/').pop()!;
    const job = await other.lookup<{ sha256: string }>(jobId);
    expect((await job.done()).result?.sha256).toBe(createHash('sha256').update('abc').digest('hex'));
  });

  it('rejects bad options with InvalidArgumentError', () => {
    const bad: unknown[] = [
      {},
      { directory: '' },
      { directory: '/tmp/x', basePath: 'uploads' },
      { directory: '/tmp/x', basePath: '/a/../b' },
      { directory: '/tmp/x', maxSizeBytes: 0 },
      { directory: '/tmp/x', maxActiveUploads: 1.5 },
      { directory: '/tmp/x', jobs: new PollHandle() },
    ];
    for (const options of bad) expect(() => new UploadHandler(options as never), JSON.stringify(options)).toThrow(InvalidArgumentError);
  });
});
