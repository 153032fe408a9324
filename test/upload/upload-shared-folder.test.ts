/**
 * Issue 18, "every core": handlers in several processes (the workers of a cluster) share one
 * upload folder, and a PATCH continues an upload on whichever of them it reaches. Two handlers on
 * one folder stand for two processes (nothing in memory is shared between them); real servers on
 * 127.0.0.1:0; time on ManualClocks.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock, PollHandle } from '../../src/index.js';
import { UploadHandler, type UploadHandlerOptions } from '../../src/upload/index.js';
import { request } from '../hardening/http.js';
import { perTest, serveRig } from '../helpers.js';

const tus = { 'tus-resumable': '1.0.0' };
const octets = { ...tus, 'content-type': 'application/offset+octet-stream' };

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-upload-shared-'));
  perTest.defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function worker(directory: string, options: Partial<UploadHandlerOptions> = {}) {
  const clock = new ManualClock();
  const uploads = new UploadHandler({ directory, clock, ...options });
  const server = await serveRig((req, res) => void uploads.handle(req, res));
  perTest.defer(async () => {
    await server.close();
    await uploads.close();
  });
  return { base: server.url, uploads, clock };
}

function patch(base: string, location: string, offset: number, body: Buffer | string) {
  return request(base, { method: 'PATCH', path: location, headers: { ...octets, 'upload-offset': String(offset) }, body });
}

describe('an upload continues on whichever process the next PATCH reaches (one shared folder)', () => {
  it('chunks alternate between two handlers and the upload completes once, with every byte', async () => {
    const dir = folder();
    const a = await worker(dir);
    const b = await worker(dir);
    const data = Buffer.from('abcdefghijklmnopqrstuvwxyz0123456789');
    const created = await request(a.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': String(data.length) } });
    expect(created.status).toBe(201);
    const location = created.headers.location!;
    const chunks = [0, 9, 18, 27, data.length];
    for (let i = 0; i + 1 < chunks.length; i++) {
      const to = i % 2 === 0 ? b : a; // the first PATCH on the process that did not create it
      const answer = await patch(to.base, location, chunks[i]!, data.subarray(chunks[i]!, chunks[i + 1]!));
      expect(answer.status, answer.body).toBe(204);
      expect(answer.headers['upload-offset']).toBe(String(chunks[i + 1]));
    }
    expect(readFileSync(join(dir, location.split('/').pop()!), 'utf8')).toBe(data.toString());
    for (const w of [a, b]) {
      const head = await request(w.base, { method: 'HEAD', path: location, headers: tus });
      expect(head.headers['upload-offset']).toBe(String(data.length));
    }
    // The process that wrote the last chunk counts it finished; the other, once its sweep looked.
    expect(a.uploads.stats()).toMatchObject({ active: 0, finished: 1, bytesOnDisk: data.length });
    expect(b.uploads.stats()).toMatchObject({ active: 1, finished: 0 });
    await b.uploads.cleanUpExpired();
    expect(b.uploads.stats()).toMatchObject({ active: 0, finished: 1, bytesOnDisk: data.length });
  });

  it("a sweep books what another process wrote to an upload, so its slot and bytes are freed here too", async () => {
    const dir = folder();
    const a = await worker(dir, { maxActiveUploads: 1 });
    const b = await worker(dir);
    const created = await request(a.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '4' } });
    const location = created.headers.location!;
    expect(a.uploads.stats().active).toBe(1);
    expect((await patch(b.base, location, 0, 'done')).status).toBe(204);
    // a's one slot is still taken by what it booked: a second create is refused ...
    expect((await request(a.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '1' } })).status).toBe(503);
    // ... until its sweep looks at the folder.
    await a.uploads.cleanUpExpired();
    expect(a.uploads.stats()).toMatchObject({ active: 0, finished: 1, bytesOnDisk: 4 });
    expect((await request(a.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '1' } })).status).toBe(201);
  });

  it('with one job registry, a completion seen by two processes starts one processing job', async () => {
    const dir = folder();
    const jobs = new PollHandle();
    perTest.defer(() => jobs.close());
    const hash = async (file: { path: string }) => {
      const { readFile } = await import('node:fs/promises');
      return createHash('sha256').update(await readFile(file.path)).digest('hex');
    };
    const a = await worker(dir, { jobs, process: hash });
    const b = await worker(dir, { jobs, process: hash });
    const created = await request(a.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '5' } });
    const location = created.headers.location!;
    const done = await patch(b.base, location, 0, 'hello');
    const job = done.headers['patchbay-job-location'];
    expect(job).toMatch(/^\/jobs\//);
    const head = await request(a.base, { method: 'HEAD', path: location, headers: tus });
    expect(head.headers['patchbay-job-location']).toBe(job);
    expect(jobs.stats()).toMatchObject({ started: 1 });
  });
});
