/**
 * Regression (UploadHandler): the refusals that tus writes itself, past `onResponseError`, went
 * out as `text/plain`. The module promises a JSON `{ error: { code, message } }` body for every
 * error. Found by the upload fuzzing in parsers.test.ts.
 * Regression (UploadHandler CORS): tus sent Access-Control-Expose-Headers with CORS off, and
 * answered an origin not in `cors.origin` (`corsOrigins` then) (or none) with the first listed one. Found by
 * security.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CorsOptions, ErrorCodes } from '../../src/index.js';
import { UploadHandler } from '../../src/upload/index.js';
import { perTest, serveRig } from '../helpers.js';
import { errorBody, request } from './http.js';

async function uploadRig(cors?: CorsOptions) {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-hardening-'));
  const uploads = new UploadHandler({ directory: join(dir, 'store'), maxSizeBytes: 1_000, ...(cors ? { cors } : {}) });
  perTest.defer(async () => {
    await uploads.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const { url: base } = await serveRig((req, res) => void uploads.handle(req, res));
  return { base };
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


  it('CORS: none at all by default; with cors only a listed origin is echoed, with Vary: Origin', async () => {
    const tus = { 'tus-resumable': '1.0.0', 'upload-length': '1' };
    const preflight = { 'access-control-request-method': 'POST' };
    const off = await uploadRig();
    for (const answer of [
      await request(off.base, { method: 'POST', path: '/uploads', headers: { ...tus, origin: 'https://a.example' } }),
      await request(off.base, { method: 'OPTIONS', path: '/uploads', headers: { ...preflight, origin: 'https://a.example' } }),
    ]) {
      expect(Object.keys(answer.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    }
    const on = await uploadRig({ origin: ['https://app.example'] });
    for (const origin of ['https://evil.example', undefined]) {
      const headers: Record<string, string> = origin === undefined ? {} : { origin };
      for (const answer of [
        await request(on.base, { method: 'POST', path: '/uploads', headers: { ...tus, ...headers } }),
        await request(on.base, { method: 'OPTIONS', path: '/uploads', headers: { ...preflight, ...headers } }),
      ]) {
        expect(Object.keys(answer.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
      }
    }
    const good = await request(on.base, { method: 'OPTIONS', path: '/uploads', headers: { ...preflight, origin: 'https://app.example' } });
    expect(good.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(good.headers['access-control-allow-methods']).toContain('POST');
    expect(good.headers['vary']).toContain('Origin');
  });

  it('CORS: cors takes the shape every handler takes: a predicate, credentials and the preflight max age', async () => {
    const preflight = { 'access-control-request-method': 'POST' };
    const on = await uploadRig({ origin: (o) => o.endsWith('.app.example'), credentials: true, maxAgeSeconds: 42 });
    const good = await request(on.base, { method: 'OPTIONS', path: '/uploads', headers: { ...preflight, origin: 'https://a.app.example' } });
    expect(good.headers['access-control-allow-origin']).toBe('https://a.app.example');
    expect(good.headers['access-control-allow-credentials']).toBe('true');
    expect(good.headers['access-control-max-age']).toBe('42');
    const other = await request(on.base, { method: 'OPTIONS', path: '/uploads', headers: { ...preflight, origin: 'https://evil.example' } });
    expect(Object.keys(other.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    const any = await uploadRig({});
    const anyAnswer = await request(any.base, { method: 'OPTIONS', path: '/uploads', headers: { ...preflight, origin: 'https://b.example' } });
    expect(anyAnswer.headers['access-control-allow-origin']).toBe('https://b.example');
    expect(anyAnswer.headers['access-control-allow-credentials']).toBeUndefined();
  });
});
