/**
 * Regression (UploadHandler): the refusals that tus writes itself, past `onResponseError`, went
 * out as `text/plain`. The module promises a JSON `{ error: { code, message } }` body for every
 * error. Found by the upload fuzzing in parsers.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/index.js';
import { UploadHandler } from '../../src/upload/index.js';
import { closeServers, errorBody, request, serve } from './http.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  await closeServers();
});

async function uploadRig() {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-hardening-'));
  const uploads = new UploadHandler({ directory: join(dir, 'store'), maxSizeBytes: 1_000 });
  cleanups.push(async () => {
    await uploads.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return serve((req, res) => void uploads.handle(req, res));
}

describe('UploadHandler error bodies', () => {
  it('the refusals tus writes itself (412, 400, 404) are JSON under application/json, not text/plain', async () => {
    const { base } = await uploadRig();
    const noVersion = await request(base, { method: 'POST', path: '/uploads', headers: { 'upload-length': '3' } });
    const badHeader = await request(base, { method: 'POST', path: '/uploads', headers: { 'tus-resumable': '1.0.0', 'upload-length': '-1' } });
    const unknown = await request(base, { method: 'PATCH', path: '/uploads/nope', headers: { 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }, body: 'abc' });
    expect([noVersion.status, badHeader.status, unknown.status]).toEqual([412, 400, 404]);
    expect(errorBody(noVersion)).toEqual({ code: ErrorCodes.PROTOCOL, message: 'Tus-Resumable Required' });
    expect(errorBody(badHeader).code).toBe(ErrorCodes.PROTOCOL);
    expect(errorBody(unknown).code).toBe(ErrorCodes.NOT_FOUND);
    for (const a of [noVersion, badHeader, unknown]) {
      expect(a.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(Number(a.headers['content-length'])).toBe(Buffer.byteLength(a.body));
      expect(a.headers['tus-resumable']).toBe('1.0.0');
    }
  });

});
