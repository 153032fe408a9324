/**
 * The disk ledger of {@link UploadHandler}: every upload in its folder, finished or not, with the
 * bytes it holds and the bytes it has reserved, on the handler's injected clock.
 *
 * Why a ledger and not `du`: the bound must hold before a byte is written, for uploads running at
 * the same time. So every change goes through one synchronous step (no `await` between the check
 * and the booking), and the store is a `FileStore` whose `create`, `write`,
 * `declareUploadLength`, `remove` (a client's `DELETE`) and `expire` (the sweep's) book their
 * effect here:
 *
 * - an upload's *committed* bytes are `max(declared Upload-Length, bytes written)`: a declared
 *   length is reserved in full at creation; a deferred-length upload commits what it writes, and
 *   each chunk is booked before it reaches the disk, so the sum never passes `maxTotalBytes`;
 * - a create is admitted only if its declared length fits next to everything committed, and while
 *   fewer than `maxActive` uploads are unfinished;
 * - each upload has a deadline: `createdAt + expiryMs` while unfinished; once finished,
 *   `min(finishedAt + completedExpiryMs, createdAt + expiryMs)` (tus itself answers `410` to an
 *   upload past `createdAt + expiryMs`, finished or not, so nothing outlives that).
 *
 * Removal and use exclude each other, without tus's per-upload lock (which the sweep cannot take
 * without aborting the request that holds it, and which tus releases before the hand-off):
 *
 * - an upload is *busy* while a write to it runs, and from the write (or create) that finishes it
 *   until that request's hand-off to the job registry is done; {@link UploadLedger.due} skips a
 *   busy upload, and a removal of one is refused;
 * - a removal first *claims* its upload (one synchronous step: not busy, not claimed already);
 *   from then on a write to it is refused, and a second removal (a client `DELETE` racing the
 *   sweep) finds it claimed and does nothing, so it is removed, and counted, once.
 *
 * @module
 * @internal
 */
import { access, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, Transform } from 'node:stream';
import { FileStore } from '@tus/file-store';
import { CapacityError, InvalidStateError } from '../core/errors.js';

/** One upload the ledger knows. @internal */
export interface LedgerEntry {
  /** The declared `Upload-Length`, or undefined while deferred. */
  size: number | undefined;
  /** Bytes of it on disk (booked as they stream in; set to the store's offset after each write). */
  written: number;
  /** When it was created, on the ledger's clock. */
  readonly createdAt: number;
  /** When it was finished, on the ledger's clock, or undefined. */
  finishedAt: number | undefined;
}

/** A ledger entry with its use: see the module documentation. @internal */
interface Booked extends LedgerEntry {
  /** Writes and hand-offs in progress: while above 0, the upload is not removed. */
  busy: number;
  /** A removal has claimed it: no more writes, no second removal. */
  claimed: boolean;
}

/** What {@link UploadLedger.claim} found. @internal */
export type Claim = 'claimed' | 'unknown' | 'busy' | 'removing';

/** Limits and clock of an {@link UploadLedger}. @internal */
export interface LedgerLimits {
  readonly maxTotalBytes: number;
  readonly maxActive: number;
  readonly expiryMs: number;
  readonly completedExpiryMs: number;
  readonly cleanupIntervalMs: number;
  readonly now: () => number;
}

const committed = (e: LedgerEntry): number => Math.max(e.size ?? 0, e.written);

/** The accounting, without any I/O. @internal */
export class UploadLedger {
  readonly #entries = new Map<string, Booked>();
  readonly #limits: LedgerLimits;
  #onDisk = 0;
  #committed = 0;
  #active = 0;
  /** Creates and writes refused for want of room (or of a free slot). */
  refused = 0;

  constructor(limits: LedgerLimits) {
    this.#limits = limits;
  }

  /** Unfinished uploads. */
  get active(): number {
    return this.#active;
  }
  /** Finished uploads still on disk. */
  get finished(): number {
    return this.#entries.size - this.#active;
  }
  /** Bytes of upload data on disk. */
  get bytesOnDisk(): number {
    return this.#onDisk;
  }
  /** Bytes declared by unfinished uploads and not written yet. */
  get bytesReserved(): number {
    return this.#committed - this.#onDisk;
  }

  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /**
   * Books a new upload, or throws.
   * @throws CapacityError (`PB_ERR_CAPACITY`) with `maxActive` unfinished uploads, or when `size`
   *   does not fit next to what is committed.
   */
  admit(id: string, size: number | undefined): void {
    if (this.#active >= this.#limits.maxActive) {
      this.refused++;
      throw new CapacityError(`${this.#limits.maxActive} uploads are in progress; retry later`, {
        retryAfterSeconds: Math.max(1, Math.ceil(this.#limits.cleanupIntervalMs / 1000)),
      });
    }
    if (size !== undefined && this.#committed + size > this.#limits.maxTotalBytes) {
      this.refused++;
      throw this.#full(size);
    }
    this.add(id, { size, written: 0, createdAt: this.#limits.now(), finishedAt: undefined });
  }

  /** Books an upload as found (at startup), without checks. */
  add(id: string, found: LedgerEntry): void {
    this.forget(id);
    const entry: Booked = { ...found, busy: 0, claimed: false };
    if (entry.finishedAt === undefined && entry.size !== undefined && entry.written >= entry.size) entry.finishedAt = this.#limits.now();
    this.#entries.set(id, entry);
    this.#onDisk += entry.written;
    this.#committed += committed(entry);
    if (entry.finishedAt === undefined) this.#active++;
  }

  /**
   * Books `bytes` more written to `id` before they reach the disk. An id the ledger forgot
   * (removed meanwhile) passes.
   * @throws CapacityError (`PB_ERR_CAPACITY`), nothing booked, when they would pass `maxTotalBytes`.
   */
  take(id: string, bytes: number): void {
    const e = this.#entries.get(id);
    if (e === undefined) return;
    const grow = Math.max(e.size ?? 0, e.written + bytes) - committed(e);
    if (grow > 0 && this.#committed + grow > this.#limits.maxTotalBytes) {
      this.refused++;
      throw this.#full(grow);
    }
    e.written += bytes;
    this.#onDisk += bytes;
    this.#committed += grow;
  }

  /** Sets what the store says `id` holds (after a write, or a failed one), and notes a finish. */
  wrote(id: string, written: number): void {
    const e = this.#entries.get(id);
    if (e === undefined) return;
    const before = committed(e);
    this.#onDisk += written - e.written;
    e.written = written;
    this.#committed += committed(e) - before;
    this.#noteFinish(e);
  }

  /**
   * Books a deferred length declared later. Returns an undo for a store that then fails.
   * @throws CapacityError (`PB_ERR_CAPACITY`) when the length does not fit.
   */
  declare(id: string, size: number): () => void {
    const e = this.#entries.get(id);
    if (e === undefined) return () => {};
    const before = committed(e);
    const grow = Math.max(size, e.written) - before;
    if (grow > 0 && this.#committed + grow > this.#limits.maxTotalBytes) {
      this.refused++;
      throw this.#full(grow);
    }
    const previous = e.size;
    e.size = size;
    this.#committed += grow;
    return () => {
      if (this.#entries.get(id) !== e) return;
      const now = committed(e);
      e.size = previous;
      this.#committed += committed(e) - now;
    };
  }

  /** Drops `id` and everything it booked. */
  forget(id: string): void {
    const e = this.#entries.get(id);
    if (e === undefined) return;
    this.#entries.delete(id);
    this.#onDisk -= e.written;
    this.#committed -= committed(e);
    if (e.finishedAt === undefined) this.#active--;
  }

  /**
   * Marks `id` busy (a write, or a hand-off, begins) and returns its entry, for
   * {@link UploadLedger.release}; undefined when the ledger does not know `id` or a removal has
   * claimed it (the caller refuses the write).
   */
  hold(id: string): LedgerEntry | undefined {
    const e = this.#entries.get(id);
    if (e === undefined || e.claimed) return undefined;
    e.busy++;
    return e;
  }

  /** Ends one {@link UploadLedger.hold} of `entry` (the entry itself: an id may be forgotten meanwhile). */
  release(entry: LedgerEntry): void {
    const e = entry as Booked;
    if (e.busy > 0) e.busy--;
  }

  /**
   * Claims `id` for removal, in one step: `'claimed'` when it was free (writes to it are refused
   * from now on); else why not. {@link UploadLedger.unclaim} gives it back if the removal fails.
   */
  claim(id: string): Claim {
    const e = this.#entries.get(id);
    if (e === undefined) return 'unknown';
    if (e.claimed) return 'removing';
    if (e.busy > 0) return 'busy';
    e.claimed = true;
    return 'claimed';
  }

  /** Gives back a claim whose removal failed (the upload stays, and may be written again). */
  unclaim(id: string): void {
    const e = this.#entries.get(id);
    if (e !== undefined) e.claimed = false;
  }

  /**
   * The unfinished uploads not in use here, with the bytes booked for each: another process that
   * shares the folder may have written to them (see {@link LedgerFileStore.reconcile}).
   */
  idle(): [id: string, written: number][] {
    const out: [string, number][] = [];
    for (const [id, e] of this.#entries) if (e.finishedAt === undefined && e.busy === 0 && !e.claimed) out.push([id, e.written]);
    return out;
  }

  /** When `e` is due for removal, on the ledger's clock. */
  #deadline(e: LedgerEntry): number {
    const { expiryMs, completedExpiryMs } = this.#limits;
    return e.finishedAt === undefined ? e.createdAt + expiryMs : Math.min(e.finishedAt + completedExpiryMs, e.createdAt + expiryMs);
  }

  /** The ids due for removal now, finished or not, except those busy or claimed by a removal already. */
  due(): string[] {
    const now = this.#limits.now();
    const out: string[] = [];
    for (const [id, e] of this.#entries) if (e.busy === 0 && !e.claimed && now >= this.#deadline(e)) out.push(id);
    return out;
  }

  #noteFinish(e: LedgerEntry): void {
    if (e.finishedAt === undefined && e.size !== undefined && e.written >= e.size) {
      e.finishedAt = this.#limits.now();
      this.#active--;
    }
  }

  /** The refusal for want of room: `Retry-After` is when the first booked upload expires, plus one sweep. */
  #full(wanted: number): CapacityError {
    let first = Number.POSITIVE_INFINITY;
    for (const e of this.#entries.values()) first = Math.min(first, this.#deadline(e));
    const waitMs = Number.isFinite(first) ? Math.max(0, first - this.#limits.now()) : 0;
    const { maxTotalBytes, cleanupIntervalMs } = this.#limits;
    return new CapacityError(
      `Uploads hold ${this.#committed} of ${maxTotalBytes} bytes; ${wanted} more do not fit until some expire; retry later`,
      { retryAfterSeconds: Math.max(1, Math.ceil((waitMs + cleanupIntervalMs) / 1000)) },
    );
  }
}

type TusUpload = Parameters<FileStore['create']>[0];
type Source = Parameters<FileStore['write']>[0];

/** What a {@link LedgerFileStore} asks its handler. @internal */
export interface LedgerStoreHooks {
  /** Is `id` in use outside the store (its processing job still running)? Then it is not removed. */
  readonly inUse: (id: string) => boolean;
  /**
   * Keeps `release` for the end of the request being served (its hand-off included), and says
   * whether it did; `false` outside a request (the caller releases at once).
   */
  readonly releaseWithRequest: (release: () => void) => boolean;
}

/** tus's own refusals, as `@tus/utils` words them (a plain object with `status_code` and `body`). */
const NOT_FOUND = { status_code: 404, body: 'The file for this url was not found\n' } as const;
const GONE = { status_code: 410, body: 'The file for this url no longer exists\n' } as const;

/** A `FileStore` that books every change in an {@link UploadLedger}. @internal */
export class LedgerFileStore extends FileStore {
  readonly #ledger: UploadLedger;
  readonly #hooks: LedgerStoreHooks;

  static {
    // FileStore's constructor creates its folder with an asynchronous `mkdir` whose callback
    // throws where nobody can catch it (a folder removed meanwhile would crash the process). The
    // handler has created the folder already, synchronously and with its mode, so here that step
    // does nothing. (The method is private in FileStore's types, hence the prototype.)
    (this.prototype as unknown as { checkOrCreateDirectory: () => void }).checkOrCreateDirectory = () => undefined;
  }

  readonly #now: () => number;

  constructor(directory: string, expiryMs: number, ledger: UploadLedger, hooks: LedgerStoreHooks, now: () => number) {
    super({ directory, expirationPeriodInMilliseconds: expiryMs });
    this.#ledger = ledger;
    this.#hooks = hooks;
    this.#now = now;
  }

  override async create(file: TusUpload): Promise<TusUpload> {
    this.#ledger.admit(file.id, file.size);
    let created: TusUpload;
    try {
      created = await super.create(file);
    } catch (error) {
      this.#ledger.forget(file.id);
      throw error;
    }
    // Finished as created (a zero-length upload): busy until its request has handed it off.
    if (file.size === 0) this.#busyUntilHandedOff(file.id);
    return created;
  }

  override async write(readable: Source, id: string, offset: number): Promise<number> {
    const ledger = this.#ledger;
    // Created, or last written, by another process sharing the folder: booked from the folder;
    // tus checked `offset` against the store, so it is what the disk holds now.
    if (ledger.has(id) || (await this.adopt(id))) ledger.wrote(id, offset);
    // Busy while it writes: the sweep skips it, a removal is refused. Claimed by a removal
    // already (the sweep is removing it): refused, as tus refuses an expired upload.
    const entry = ledger.hold(id);
    if (entry === undefined) throw ledger.has(id) ? GONE : NOT_FOUND;
    let refusal: CapacityError | undefined;
    // Each chunk is booked before it goes on: one past maxTotalBytes fails the stream with the
    // refusal, and pipeline() destroys the request side with that same error (not an abort), so
    // tus answers with it.
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        try {
          ledger.take(id, chunk.length);
        } catch (error) {
          refusal = error as CapacityError;
          callback(refusal);
          return;
        }
        callback(null, chunk);
      },
    });
    const metered = pipeline(readable, meter, () => undefined);
    try {
      const end = await super.write(metered, id, offset);
      ledger.wrote(id, end);
      // This write finished it: busy until the request has handed it off (tus unlocks before).
      if (entry.finishedAt !== undefined) this.#busyUntilHandedOff(id);
      return end;
    } catch (error) {
      // What reached the disk is the truth: ask the store (a failed write may have kept part of it).
      await this.getUpload(id).then(
        (upload) => ledger.wrote(id, upload.offset),
        () => undefined,
      );
      throw refusal ?? error;
    } finally {
      ledger.release(entry);
    }
  }

  override async declareUploadLength(id: string, size: number): Promise<void> {
    await this.adopt(id);
    const undo = this.#ledger.declare(id, size);
    try {
      await super.declareUploadLength(id, size);
    } catch (error) {
      undo();
      throw error;
    }
  }

  /**
   * Termination (a client's `DELETE`, under tus's lock for `id`).
   * @throws InvalidStateError (`PB_ERR_INVALID_STATE`, `409`) while the upload is being written or
   *   handed off, or its processing job still runs.
   */
  override async remove(id: string): Promise<void> {
    const claim = this.#hooks.inUse(id) ? 'busy' : this.#ledger.claim(id);
    if (claim === 'busy') throw new InvalidStateError(`Upload ${id} is in use (being handed to its processing job, or that job still runs); terminate it once the job is done`);
    if (claim === 'removing') throw NOT_FOUND; // the sweep is removing it: expired
    await this.#removeClaimed(id);
  }

  /**
   * Removes `id` for the sweep, unless it is in use or claimed by another removal. Resolves `true`
   * when this call removed it (or forgot it, its bytes gone already), `false` when it left it.
   */
  async expire(id: string): Promise<boolean> {
    if (this.#hooks.inUse(id) || this.#ledger.claim(id) !== 'claimed') return false;
    try {
      await this.#removeClaimed(id);
    } catch {
      // Still booked: its file is still there (a file system refusal); the next sweep tries
      // again. Forgotten: its bytes had vanished already, and its record is removed now.
      return !this.#ledger.has(id);
    }
    return true;
  }

  /** Removes an upload claimed by this caller (or unknown to the ledger). */
  async #removeClaimed(id: string): Promise<void> {
    try {
      await super.remove(id);
    } catch (error) {
      // Its bytes are gone already (the store refuses a missing file): drop its record, forget it,
      // and still refuse (tus answers an unknown upload 404). Still there: stays booked.
      if (await exists(join(this.directory, id))) {
        this.#ledger.unclaim(id);
        throw error;
      }
      await this.configstore.delete(id).catch(() => undefined);
      this.#ledger.forget(id);
      throw error;
    }
    this.#ledger.forget(id);
  }

  /**
   * Books `id` from the folder when the ledger does not know it: an upload a previous process
   * left, or one that another process sharing the folder created (the workers of a cluster).
   * Its age comes from the files' wall-clock times mapped onto the ledger's clock: created at the
   * record's `creation_date`, finished at the data file's last write. Resolves whether it is
   * booked now; an unreadable one (removed meanwhile, or not an upload) is not.
   */
  async adopt(id: string): Promise<boolean> {
    if (this.#ledger.has(id)) return true;
    let record: { size?: unknown; creation_date?: unknown } | undefined;
    let data: Awaited<ReturnType<typeof stat>>;
    try {
      record = (await this.configstore.get(id)) as typeof record;
      data = await stat(join(this.directory, id));
    } catch {
      return false;
    }
    if (record === undefined || !data.isFile()) return false;
    if (this.#ledger.has(id)) return true; // booked meanwhile, by a concurrent request
    // eslint-disable-next-line no-restricted-syntax -- file times are wall-clock: their age is taken on the wall clock, then counted on the injected one
    const wallNow = Date.now();
    const now = this.#now();
    const size = typeof record.size === 'number' && Number.isSafeInteger(record.size) && record.size >= 0 ? record.size : undefined;
    const created = typeof record.creation_date === 'string' ? Date.parse(record.creation_date) : Number.NaN;
    const written = Number(data.size);
    const finished = size !== undefined && written >= size;
    this.#ledger.add(id, {
      size,
      written,
      createdAt: now - (Number.isFinite(created) ? Math.max(0, wallNow - created) : 0),
      finishedAt: finished ? now - Math.max(0, wallNow - Number(data.mtimeMs)) : undefined,
    });
    return true;
  }

  /**
   * Brings the ledger's unfinished uploads up to what the folder holds: another process sharing
   * the folder may have written to one (or finished it) since this one booked it. Growth only:
   * an upload whose bytes vanished is left to the sweep's removal. One `stat` per unfinished
   * upload (at most `maxActive`).
   */
  async reconcile(): Promise<void> {
    for (const [id, booked] of this.#ledger.idle()) {
      let size: number;
      try {
        size = (await stat(join(this.directory, id))).size;
      } catch {
        continue;
      }
      // Checked again after the await: a write here may have begun, or booked more, meanwhile.
      const entry = this.#ledger.hold(id);
      if (entry === undefined) continue;
      if (size > booked && entry.written === booked && (entry as Booked).busy === 1) this.#ledger.wrote(id, size);
      this.#ledger.release(entry);
    }
  }

  #busyUntilHandedOff(id: string): void {
    const held = this.#ledger.hold(id);
    if (held !== undefined && !this.#hooks.releaseWithRequest(() => this.#ledger.release(held))) this.#ledger.release(held);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
