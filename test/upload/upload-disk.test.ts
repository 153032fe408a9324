/**
 * Issue 15, finding 4 (uploads) and its closing promises: finished tus uploads expire, the folder
 * never holds more than `maxTotalBytes`, a restarted server resumes and expires what the previous
 * one left, one upload's failure stays with it, and `close()` leaves no timer. Real servers on
 * 127.0.0.1:0, real requests; time on a ManualClock.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClosedError, ErrorCodes, InvalidArgumentError, ManualClock, PollHandle, type PollJob, type PollJobFunction, type PollStartOptions } from '../../src/index.js';
import { UploadHandler, type UploadHandlerOptions } from '../../src/upload/index.js';
import { errorBody, request } from '../hardening/http.js';
import { perTest, serveRig, until } from '../helpers.js';

const tus = { 'tus-resumable': '1.0.0' };
const octets = { ...tus, 'content-type': 'application/offset+octet-stream' };

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-upload-disk-'));
  perTest.defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Rig {
  base: string;
  uploads: UploadHandler;
  clock: ManualClock;
  /** Stops the server and closes the handler (also done after the test). */
  stop: () => Promise<void>;
}

async function rig(directory: string, options: Partial<UploadHandlerOptions> = {}): Promise<Rig> {
  const clock = new ManualClock();
  const uploads = new UploadHandler({ directory, clock, cleanupIntervalMs: 1_000, ...options });
  const server = await serveRig((req, res) => void uploads.handle(req, res));
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await server.close();
      await uploads.close();
    })());
  perTest.defer(stop);
  return { base: server.url, uploads, clock, stop };
}

async function create(base: string, length: number | 'deferred'): Promise<string> {
  const headers = length === 'deferred' ? { ...tus, 'upload-defer-length': '1' } : { ...tus, 'upload-length': String(length) };
  const answer = await request(base, { method: 'POST', path: '/uploads', headers });
  expect(answer.status, answer.body).toBe(201);
  return answer.headers.location!;
}

function patch(base: string, location: string, offset: number, body: Buffer | string, extra: Record<string, string> = {}) {
  return request(base, { method: 'PATCH', path: location, headers: { ...octets, 'upload-offset': String(offset), ...extra }, body });
}

const idOf = (location: string) => location.split('/').pop()!;

/** Advances the clock by `ms` (once the sweeper is armed) and waits for what its sweep removes. */
async function sweepAfter(r: Rig, ms: number, expired: number): Promise<void> {
  await until(() => r.clock.pendingTimers === 1, 'the sweeper to be armed');
  r.clock.advance(ms);
  await until(() => r.uploads.stats().expired >= expired, `${expired} expired uploads to be removed`);
}

describe('finished uploads expire (finding 4: 60 x 2 MiB stayed on disk with active: 0)', () => {
  it('a finished upload is removed completedExpiryMs after it finished, on the injected clock, and then answers 404', async () => {
    const dir = folder();
    const r = await rig(dir, { completedExpiryMs: 10_000 });
    const location = await create(r.base, 5);
    expect((await patch(r.base, location, 0, 'hello')).status).toBe(204);
    expect(r.uploads.stats()).toMatchObject({ active: 0, finished: 1, bytesOnDisk: 5, bytesReserved: 0 });
    r.clock.advance(9_000); // not yet
    expect(await r.uploads.cleanUpExpired()).toBe(0);
    expect(existsSync(join(dir, idOf(location)))).toBe(true);
    await sweepAfter(r, 2_000, 1);
    expect(readdirSync(dir)).toEqual([]); // data and its .json record
    expect(r.uploads.stats()).toMatchObject({ active: 0, finished: 0, bytesOnDisk: 0, expired: 1 });
    expect((await request(r.base, { method: 'HEAD', path: location, headers: tus })).status).toBe(404);
    expect((await request(r.base, { method: 'GET', path: location })).status).toBe(404);
  });

  it('an unfinished upload is removed expiryMs after its creation, on the injected clock (no wall-clock wait)', async () => {
    const dir = folder();
    const r = await rig(dir, { expiryMs: 5_000 });
    const location = await create(r.base, 10);
    expect((await patch(r.base, location, 0, 'abc')).status).toBe(204);
    expect(r.uploads.stats()).toMatchObject({ active: 1, bytesOnDisk: 3, bytesReserved: 7 });
    await sweepAfter(r, 6_000, 1);
    expect(readdirSync(dir)).toEqual([]);
    expect(r.uploads.stats()).toMatchObject({ active: 0, bytesOnDisk: 0, bytesReserved: 0 });
    expect((await request(r.base, { method: 'HEAD', path: location, headers: tus })).status).toBe(404);
    expect(r.clock.pendingTimers).toBe(1); // one sweeper, re-armed
  });

  it('keeps a finished upload while its processing job still runs, and removes it once the job is done', async () => {
    const jobs = new PollHandle();
    perTest.defer(() => jobs.close());
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const dir = folder();
    const r = await rig(dir, { completedExpiryMs: 1_000, jobs, process: () => held });
    const location = await create(r.base, 3);
    expect((await patch(r.base, location, 0, 'abc')).status).toBe(204);
    r.clock.advance(5_000);
    expect(await r.uploads.cleanUpExpired()).toBe(0);
    expect(existsSync(join(dir, idOf(location)))).toBe(true);
    release();
    await until(() => jobs.stats().running === 0, 'the job to end');
    expect(await r.uploads.cleanUpExpired()).toBe(1);
    expect(existsSync(join(dir, idOf(location)))).toBe(false);
  });
});

describe('maxTotalBytes bounds the folder', () => {
  it('a create whose Upload-Length does not fit next to what is held and reserved is 503 PB_ERR_CAPACITY with Retry-After; room comes back as uploads expire', async () => {
    const dir = folder();
    const r = await rig(dir, { maxTotalBytes: 100, completedExpiryMs: 10_000 });
    const first = await create(r.base, 60);
    expect(r.uploads.stats()).toMatchObject({ bytesOnDisk: 0, bytesReserved: 60 });
    const refused = await request(r.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '50' } });
    expect(refused.status).toBe(503);
    expect(errorBody(refused).code).toBe(ErrorCodes.CAPACITY);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(await create(r.base, 40)).toMatch(/^\/uploads\//); // exactly fits
    expect((await patch(r.base, first, 0, Buffer.alloc(60))).status).toBe(204);
    expect(r.uploads.stats()).toMatchObject({ bytesOnDisk: 60, bytesReserved: 40, refused: 1 });
    // Finished, but still on disk: still no room.
    expect((await request(r.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '1' } })).status).toBe(503);
    await sweepAfter(r, 11_000, 1);
    expect(r.uploads.stats()).toMatchObject({ bytesOnDisk: 0, bytesReserved: 40 });
    await create(r.base, 60);
    expect(readdirSync(dir).filter((f) => !f.endsWith('.json'))).toHaveLength(2);
  });

  it('creates racing each other cannot overshoot maxTotalBytes or maxActiveUploads: the check and the booking are one step', async () => {
    const r = await rig(folder(), { maxTotalBytes: 100 });
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => request(r.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '30' } })),
    );
    expect(answers.filter((a) => a.status === 201)).toHaveLength(3);
    expect(answers.filter((a) => a.status === 503)).toHaveLength(17);
    expect(r.uploads.stats()).toMatchObject({ active: 3, bytesReserved: 90, refused: 17 });
    const slots = await rig(folder(), { maxActiveUploads: 4 });
    const many = await Promise.all(
      Array.from({ length: 20 }, () => request(slots.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '1' } })),
    );
    expect(many.filter((a) => a.status === 201)).toHaveLength(4);
    expect(slots.uploads.stats().active).toBe(4);
  });

  it('an upload larger than maxTotalBytes alone is 413, not a 503 a client would retry forever', async () => {
    const r = await rig(folder(), { maxTotalBytes: 100 });
    const answer = await request(r.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '101' } });
    expect(answer.status).toBe(413);
    expect(errorBody(answer).code).toBe(ErrorCodes.BODY_TOO_LARGE);
    const options = await request(r.base, { method: 'OPTIONS', path: '/uploads' });
    expect(options.headers['tus-max-size']).toBe('100');
  });

  it('a deferred-length upload cannot write past maxTotalBytes: its PATCH is cut with 503 PB_ERR_CAPACITY, what fit is kept and resumable', async () => {
    const dir = folder();
    const r = await rig(dir, { maxTotalBytes: 100, maxSizeBytes: 100 });
    await create(r.base, 60); // reserves 60
    const deferred = await create(r.base, 'deferred');
    const over = await patch(r.base, deferred, 0, Buffer.alloc(50));
    expect(over.status, over.body).toBe(503);
    expect(errorBody(over).code).toBe(ErrorCodes.CAPACITY);
    const s = r.uploads.stats();
    expect(s.bytesOnDisk + s.bytesReserved).toBeLessThanOrEqual(100);
    const head = await request(r.base, { method: 'HEAD', path: deferred, headers: tus });
    expect(head.status).toBe(200);
    expect(Number(head.headers['upload-offset'])).toBe(s.bytesOnDisk); // the ledger agrees with the disk
    // Declaring a length that does not fit is refused the same way.
    const offset = Number(head.headers['upload-offset']);
    const declare = await patch(r.base, deferred, offset, Buffer.alloc(0), { 'upload-length': '90' });
    expect(declare.status).toBe(503);
    const fits = await patch(r.base, deferred, offset, Buffer.alloc(40 - offset), { 'upload-length': '40' });
    expect(fits.status, fits.body).toBe(204);
    expect(r.uploads.stats()).toMatchObject({ bytesOnDisk: 40, bytesReserved: 60, active: 1, finished: 1 });
  });

  it('many uploads finished in a row never hold more than maxTotalBytes, and all go after completedExpiryMs (the 60 x 2 MiB case, scaled)', async () => {
    const dir = folder();
    const r = await rig(dir, { maxTotalBytes: 10 * 1024, completedExpiryMs: 60_000 });
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 60; i++) {
      const answer = await request(r.base, { method: 'POST', path: '/uploads', headers: { ...octets, 'upload-length': '1024' }, body: Buffer.alloc(1024) });
      if (answer.status === 201) accepted++;
      else {
        expect(answer.status).toBe(503);
        refused++;
      }
      const s = r.uploads.stats();
      expect(s.bytesOnDisk + s.bytesReserved).toBeLessThanOrEqual(10 * 1024);
    }
    expect([accepted, refused]).toEqual([10, 50]);
    expect(r.uploads.stats()).toMatchObject({ active: 0, finished: 10, bytesOnDisk: 10 * 1024 });
    await sweepAfter(r, 61_000, 10);
    expect(readdirSync(dir)).toEqual([]);
    expect(r.uploads.stats()).toMatchObject({ finished: 0, bytesOnDisk: 0 });
  });
});

describe('a restarted server (finding 4: the demo folder was named after the pid)', () => {
  it('an upload begun on one handler resumes on the next on the same folder: HEAD gives the offset, PATCH completes it', async () => {
    const dir = folder();
    const first = await rig(dir);
    const location = await create(first.base, 10);
    expect((await patch(first.base, location, 0, 'abcd')).status).toBe(204);
    await first.stop();
    const second = await rig(dir);
    await until(() => second.uploads.stats().active === 1, 'the startup scan');
    expect(second.uploads.stats()).toMatchObject({ active: 1, bytesOnDisk: 4, bytesReserved: 6 });
    const head = await request(second.base, { method: 'HEAD', path: location, headers: tus });
    expect(head.status).toBe(200);
    expect(head.headers['upload-offset']).toBe('4');
    expect(head.headers['upload-length']).toBe('10');
    const done = await patch(second.base, location, 4, 'efghij');
    expect(done.status).toBe(204);
    expect(done.headers['upload-offset']).toBe('10');
    expect(second.uploads.stats()).toMatchObject({ active: 0, finished: 1, bytesOnDisk: 10 });
  });

  it('uploads left by a previous handler count against the limits and expire on the next one’s clock', async () => {
    const dir = folder();
    const first = await rig(dir);
    const unfinished = await create(first.base, 10);
    expect((await patch(first.base, unfinished, 0, 'abcd')).status).toBe(204);
    const finished = await create(first.base, 5);
    expect((await patch(first.base, finished, 0, 'hello')).status).toBe(204);
    await first.stop();
    const second = await rig(dir, { maxTotalBytes: 20, maxActiveUploads: 1, expiryMs: 50_000, completedExpiryMs: 10_000 });
    await until(() => second.uploads.stats().finished === 1 && second.uploads.stats().active === 1, 'the startup scan');
    expect(second.uploads.stats()).toMatchObject({ active: 1, finished: 1, bytesOnDisk: 9, bytesReserved: 6 });
    const noSlot = await request(second.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '1' } });
    expect(noSlot.status).toBe(503); // maxActiveUploads: the inherited unfinished one holds it
    await sweepAfter(second, 11_000, 1);
    expect(existsSync(join(dir, idOf(finished)))).toBe(false);
    expect(existsSync(join(dir, idOf(unfinished)))).toBe(true);
    await sweepAfter(second, 40_000, 2);
    expect(readdirSync(dir)).toEqual([]);
    expect(second.uploads.stats()).toMatchObject({ active: 0, finished: 0, bytesOnDisk: 0, bytesReserved: 0, expired: 2 });
  });
});

/** A job registry whose submit waits at a gate the test opens (the hand-off, held half-way). */
class GatedJobs extends PollHandle {
  submits = 0;
  gate: Promise<void> = Promise.resolve();
  override async submit<T = unknown>(fn: PollJobFunction<T>, options?: PollStartOptions): Promise<PollJob<T>> {
    this.submits++;
    await this.gate;
    return super.submit(fn, options);
  }
}

/** A gate: `wait` settles once `open()` is called. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

describe('the sweep never removes an upload in use (review of issue 15)', () => {
  it('an upload whose PATCH is still writing when its deadline passes is kept: the write completes with 204 and its bytes, and a later sweep removes it', async () => {
    const dir = folder();
    const r = await rig(dir, { expiryMs: 5_000 });
    const location = await create(r.base, 10);
    const req = http.request(`${r.base}${location}`, { method: 'PATCH', headers: { ...octets, 'upload-offset': '0', 'content-length': '10' } });
    const answered = new Promise<{ status: number | undefined; offset: unknown }>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, offset: res.headers['upload-offset'] }));
      });
      req.on('error', reject);
    });
    req.write('abcd');
    await until(() => r.uploads.stats().bytesOnDisk === 4, 'the PATCH to be writing');
    // Past its deadline on the injected clock (the sweeper fires too); tus's own 410 is decided
    // on the wall clock, so the PATCH goes on.
    r.clock.advance(6_000);
    expect(await r.uploads.cleanUpExpired()).toBe(0);
    expect(existsSync(join(dir, idOf(location)))).toBe(true);
    req.end('efghij');
    expect(await answered).toEqual({ status: 204, offset: '10' });
    expect(readFileSync(join(dir, idOf(location)), 'utf8')).toBe('abcdefghij');
    expect(r.uploads.stats()).toMatchObject({ finished: 1, bytesOnDisk: 10, expired: 0 });
    expect(await r.uploads.cleanUpExpired()).toBe(1); // no longer in use, and due
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an upload finished at its deadline is kept until its processing job is registered, and the job finds its file', async () => {
    const jobs = new GatedJobs();
    perTest.defer(() => jobs.close());
    const submit = gate();
    jobs.gate = submit.wait;
    let fileThere: boolean | undefined;
    const dir = folder();
    const r = await rig(dir, {
      expiryMs: 5_000,
      jobs,
      process: (file) => {
        fileThere = existsSync(file.path);
        return file.size;
      },
    });
    const location = await create(r.base, 3);
    await until(() => r.clock.pendingTimers === 1, 'the sweeper to be armed');
    r.clock.advance(4_999); // its sweep finds nothing due yet
    await until(() => r.clock.pendingTimers === 1, 'the sweeper to be armed again');
    const done = patch(r.base, location, 0, 'abc');
    await until(() => jobs.submits === 1, 'the hand-off to wait on the job registry');
    r.clock.advance(1); // finished at 4 999, created at 0: due at 5 000
    expect(await r.uploads.cleanUpExpired()).toBe(0);
    expect(existsSync(join(dir, idOf(location)))).toBe(true);
    submit.open();
    const answer = await done;
    expect(answer.status, answer.body).toBe(204);
    const jobLocation = String(answer.headers['patchbay-job-location']);
    expect(jobLocation).toMatch(/^\/jobs\//);
    expect(await jobs.get(jobLocation.split('/').pop()!).done()).toMatchObject({ state: 'succeeded', result: 3 });
    expect(fileThere).toBe(true);
    expect(await r.uploads.cleanUpExpired()).toBe(1); // the job is done: now it goes
  });

  it('a client DELETE of a finished upload whose processing job still runs is 409 PB_ERR_INVALID_STATE, and the file stays for the job', async () => {
    const jobs = new PollHandle();
    perTest.defer(() => jobs.close());
    const job = gate();
    const dir = folder();
    const r = await rig(dir, { jobs, process: () => job.wait });
    const location = await create(r.base, 3);
    expect((await patch(r.base, location, 0, 'abc')).status).toBe(204);
    const refused = await request(r.base, { method: 'DELETE', path: location, headers: tus });
    expect(refused.status).toBe(409);
    expect(errorBody(refused).code).toBe(ErrorCodes.INVALID_STATE);
    expect(existsSync(join(dir, idOf(location)))).toBe(true);
    expect(r.uploads.stats()).toMatchObject({ finished: 1, bytesOnDisk: 3 });
    job.open();
    await until(() => jobs.stats().running === 0, 'the job to end');
    expect((await request(r.base, { method: 'DELETE', path: location, headers: tus })).status).toBe(204);
    expect(readdirSync(dir)).toEqual([]);
    expect(r.uploads.stats()).toMatchObject({ finished: 0, bytesOnDisk: 0, expired: 0 });
  });

  it('a DELETE racing the sweep removes the upload once and is not counted as expired', async () => {
    const dir = folder();
    const r = await rig(dir, { expiryMs: 5_000 });
    const location = await create(r.base, 10);
    // Hold every removal half-way: data unlinked, its .json record not yet.
    const configstore = (r.uploads.tus.datastore as unknown as { configstore: { delete: (id: string) => Promise<void> } }).configstore;
    const original = configstore.delete.bind(configstore);
    const records = gate();
    configstore.delete = async (id) => {
      await records.wait;
      return original(id);
    };
    const deleting = request(r.base, { method: 'DELETE', path: location, headers: tus });
    await until(() => !existsSync(join(dir, idOf(location))), 'the DELETE to unlink the data');
    r.clock.advance(6_000); // due now (and the sweeper fires)
    const swept = r.uploads.cleanUpExpired();
    records.open();
    expect(await swept).toBe(0);
    expect((await deleting).status).toBe(204);
    expect(readdirSync(dir)).toEqual([]);
    expect(r.uploads.stats()).toMatchObject({ active: 0, bytesOnDisk: 0, bytesReserved: 0, expired: 0 });
  });
});

describe('containment and lifecycle', () => {
  it('cleanUpExpired() after close() rejects with ClosedError and removes nothing', async () => {
    const dir = folder();
    const r = await rig(dir, { expiryMs: 5_000 });
    const location = await create(r.base, 10);
    await r.stop();
    r.clock.advance(6_000);
    await expect(r.uploads.cleanUpExpired()).rejects.toThrow(ClosedError);
    expect(existsSync(join(dir, idOf(location)))).toBe(true);
  });

  it('creates its folder (and missing parents) private to this user: mode 0o700', async () => {
    const parent = join(folder(), 'parent');
    const directory = join(parent, 'uploads');
    const uploads = new UploadHandler({ directory, clock: new ManualClock() });
    perTest.defer(() => uploads.close());
    expect(statSync(directory).mode & 0o777).toBe(0o700);
    expect(statSync(parent).mode & 0o777).toBe(0o700);
  });

  it('a client cut off mid-PATCH leaves its upload resumable, the ledger equal to the disk, and other uploads unaffected', async () => {
    const r = await rig(folder());
    const a = await create(r.base, 1000);
    const b = await create(r.base, 10);
    // Promise 1000 bytes, send 300, vanish.
    await new Promise<void>((resolve) => {
      const req = http.request(`${r.base}${a}`, { method: 'PATCH', headers: { ...octets, 'upload-offset': '0', 'content-length': '1000' } });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(300), () => setImmediate(() => req.destroy()));
      req.on('close', () => resolve());
    });
    expect((await patch(r.base, b, 0, 'ten bytes!')).status).toBe(204);
    const head = await request(r.base, { method: 'HEAD', path: a, headers: tus });
    expect(head.status).toBe(200);
    const offset = Number(head.headers['upload-offset']);
    await until(() => r.uploads.stats().bytesOnDisk === offset + 10, 'the ledger to match the disk');
    expect((await patch(r.base, a, offset, Buffer.alloc(1000 - offset))).status).toBe(204);
    expect(r.uploads.stats()).toMatchObject({ active: 0, finished: 2, bytesOnDisk: 1010, bytesReserved: 0 });
  });

  it('an upload whose bytes vanished answers for itself (410), the others keep working, and the sweep forgets it', async () => {
    const dir = folder();
    const r = await rig(dir, { expiryMs: 5_000 });
    const gone = await create(r.base, 10);
    r.clock.advance(3_000);
    const fine = await create(r.base, 3);
    rmSync(join(dir, idOf(gone)));
    const answer = await patch(r.base, gone, 0, 'abc');
    expect(answer.status).toBe(410);
    expect(errorBody(answer).code).toBe(ErrorCodes.GONE);
    expect((await patch(r.base, fine, 0, 'abc')).status).toBe(204);
    await sweepAfter(r, 3_000, 1); // due: the vanished one (created at 0), not the other (at 3 s)
    expect(readdirSync(dir).sort()).toEqual([idOf(fine), `${idOf(fine)}.json`].sort());
    expect(r.uploads.stats()).toMatchObject({ active: 0, finished: 1, bytesOnDisk: 3, bytesReserved: 0 });
  });

  it('close() releases its timer, waits for the startup scan, and answers later requests 503 PB_ERR_CLOSED', async () => {
    const r = await rig(folder());
    expect(r.clock.pendingTimers).toBe(1);
    await r.uploads.close();
    expect(r.clock.pendingTimers).toBe(0);
    const answer = await request(r.base, { method: 'POST', path: '/uploads', headers: { ...tus, 'upload-length': '1' } });
    expect(answer.status).toBe(503);
    expect(errorBody(answer).code).toBe(ErrorCodes.CLOSED);
  });

  it('rejects bad limits with InvalidArgumentError', () => {
    for (const bad of [{ maxTotalBytes: 0 }, { maxTotalBytes: 1.5 }, { completedExpiryMs: -1 }, { completedExpiryMs: Number.NaN }]) {
      expect(() => new UploadHandler({ directory: join(tmpdir(), 'never-created'), ...bad }), JSON.stringify(bad)).toThrow(/must be a positive integer/);
    }
    // A folder that cannot be created is refused here, not thrown later where nobody can catch it.
    const file = join(folder(), 'a-file');
    writeFileSync(file, 'x');
    expect(() => new UploadHandler({ directory: join(file, 'uploads') })).toThrow(InvalidArgumentError);
  });
});
