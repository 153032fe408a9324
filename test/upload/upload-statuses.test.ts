/**
 * Issue 15, finding 7 (uploads): the statuses a tus client acts on. A PATCH past the length was
 * answered 500 (tus's size error is an Error *with* a `status_code`, and `instanceof Error` was
 * asked first), so tus clients retried it forever; `PUT` was 404 instead of 405; bodiless `201`
 * and `HEAD` answers said `text/plain`. Real server on 127.0.0.1:0, real requests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/index.js';
import { UploadHandler } from '../../src/upload/index.js';
import { errorBody, request } from '../hardening/http.js';
import { perTest, serveRig } from '../helpers.js';

const tus = { 'tus-resumable': '1.0.0' };
const octets = { ...tus, 'content-type': 'application/offset+octet-stream' };

async function rig(maxSizeBytes = 100) {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-upload-status-'));
  const uploads = new UploadHandler({ directory: dir, maxSizeBytes });
  perTest.defer(async () => {
    await uploads.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { url: base } = await serveRig((req, res) => void uploads.handle(req, res));
  return { base, uploads };
}

async function create(base: string, headers: Record<string, string>): Promise<string> {
  const answer = await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, ...headers } });
  expect(answer.status, answer.body).toBe(201);
  return answer.headers.location!;
}

/** A PATCH whose body is sent chunked (no Content-Length), in these parts. */
function chunkedPatch(base: string, path: string, offset: number, parts: Buffer[]): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method: 'PATCH', headers: { ...octets, 'upload-offset': String(offset) } });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    for (const part of parts) req.write(part);
    req.end();
  });
}

describe('PATCH past the length is 413, never a 5xx a tus client retries forever', () => {
  it('a chunked PATCH past Upload-Length: 413 PB_ERR_BODY_TOO_LARGE, and the upload stays resumable', async () => {
    const { base, uploads } = await rig();
    const location = await create(base, { 'upload-length': '10' });
    const answer = await chunkedPatch(base, location, 0, [Buffer.alloc(8), Buffer.alloc(8)]);
    expect(answer.status).toBe(413);
    expect(errorBody({ ...answer })).toMatchObject({ code: ErrorCodes.BODY_TOO_LARGE });
    const head = await request(base, { method: 'HEAD', path: location, headers: tus });
    const offset = Number(head.headers['upload-offset']);
    expect(offset).toBeLessThanOrEqual(10);
    expect((await request(base, { method: 'PATCH', path: location, headers: { ...octets, 'upload-offset': String(offset) }, body: Buffer.alloc(10 - offset) })).status).toBe(204);
    expect(uploads.stats()).toMatchObject({ finished: 1, bytesOnDisk: 10 });
  });

  it('a deferred-length upload written past maxSizeBytes (chunked): 413 PB_ERR_BODY_TOO_LARGE', async () => {
    const { base, uploads } = await rig(100);
    const location = await create(base, { 'upload-defer-length': '1' });
    const answer = await chunkedPatch(base, location, 0, [Buffer.alloc(80), Buffer.alloc(80)]);
    expect(answer.status).toBe(413);
    expect(errorBody(answer).code).toBe(ErrorCodes.BODY_TOO_LARGE);
    expect(uploads.stats().bytesOnDisk).toBeLessThanOrEqual(100);
  });

  it('a deferred length declared past maxSizeBytes: 413 PB_ERR_BODY_TOO_LARGE', async () => {
    const { base } = await rig(100);
    const location = await create(base, { 'upload-defer-length': '1' });
    const answer = await request(base, { method: 'PATCH', path: location, headers: { ...octets, 'upload-offset': '0', 'upload-length': '101' }, body: 'abc' });
    expect(answer.status).toBe(413);
    expect(errorBody(answer).code).toBe(ErrorCodes.BODY_TOO_LARGE);
  });

  it('whatever the body and its declared length, a PATCH is answered 2xx or 4xx, never 5xx (property)', async () => {
    const { base } = await rig(64);
    await fc.assert(
      fc.asyncProperty(
        fc.option(fc.integer({ min: 0, max: 64 }), { nil: undefined }),
        fc.array(fc.integer({ min: 0, max: 48 }), { minLength: 1, maxLength: 4 }),
        async (length, parts) => {
          const location = await create(base, length === undefined ? { 'upload-defer-length': '1' } : { 'upload-length': String(length) });
          const answer = await chunkedPatch(base, location, 0, parts.map((n) => Buffer.alloc(n)));
          expect(answer.status, answer.body).toBeLessThan(500);
          if (answer.status >= 400) expect(errorBody(answer).code).toBe(ErrorCodes.BODY_TOO_LARGE);
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('methods tus does not have are 405 with Allow', () => {
  it('PUT on an upload and on the collection: 405 PB_ERR_METHOD_NOT_ALLOWED with Allow; nothing written', async () => {
    const { base, uploads } = await rig();
    const location = await create(base, { 'upload-length': '10' });
    const onUpload = await request(base, { method: 'PUT', path: location, headers: octets, body: 'abc' });
    expect(onUpload.status).toBe(405);
    expect(errorBody(onUpload).code).toBe(ErrorCodes.METHOD_NOT_ALLOWED);
    expect(onUpload.headers.allow).toBe('OPTIONS, HEAD, GET, PATCH, DELETE');
    const onCollection = await request(base, { method: 'PUT', path: '/uploads', headers: tus, body: 'abc' });
    expect(onCollection.status).toBe(405);
    expect(onCollection.headers.allow).toBe('OPTIONS, POST');
    expect(uploads.stats().bytesOnDisk).toBe(0);
  });
});

describe('termination', () => {
  it('DELETE of an unknown upload is 404; of a known one 204, and its bytes are counted out', async () => {
    const { base, uploads } = await rig();
    expect((await request(base, { method: 'DELETE', path: '/uploads/0', headers: tus })).status).toBe(404);
    const location = await create(base, { 'upload-length': '10' });
    expect((await request(base, { method: 'PATCH', path: location, headers: { ...octets, 'upload-offset': '0' }, body: 'abc' })).status).toBe(204);
    expect(uploads.stats()).toMatchObject({ active: 1, bytesOnDisk: 3, bytesReserved: 7 });
    expect((await request(base, { method: 'DELETE', path: location, headers: tus })).status).toBe(204);
    expect(uploads.stats()).toMatchObject({ active: 0, bytesOnDisk: 0, bytesReserved: 0 });
    expect((await request(base, { method: 'DELETE', path: location, headers: tus })).status).toBe(404);
  });
});

describe('answers without a body carry no misleading Content-Type', () => {
  it('201 of a create, HEAD, and the 204s of PATCH and DELETE: no Content-Type, no text/plain', async () => {
    const { base } = await rig();
    const created = await request(base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '3' } });
    expect(created.status).toBe(201);
    expect(created.headers['content-type']).toBeUndefined();
    expect(created.headers['content-length']).toBe('0');
    expect(created.body).toBe('');
    const location = created.headers.location!;
    const head = await request(base, { method: 'HEAD', path: location, headers: tus });
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toBeUndefined();
    expect(head.headers['upload-offset']).toBe('0');
    const patched = await request(base, { method: 'PATCH', path: location, headers: { ...octets, 'upload-offset': '0' }, body: 'abc' });
    expect(patched.status).toBe(204);
    expect(patched.headers['content-type']).toBeUndefined();
    const withUpload = await request(base, { method: 'POST', path: '/uploads', headers: { ...octets, 'upload-length': '3' }, body: 'xyz' });
    expect(withUpload.status).toBe(201);
    expect(withUpload.headers['content-type']).toBeUndefined();
    const deleted = await request(base, { method: 'DELETE', path: withUpload.headers.location!, headers: tus });
    expect(deleted.status).toBe(204);
    expect(deleted.headers['content-type']).toBeUndefined();
  });
});
