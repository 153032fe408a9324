/**
 * The disk ledger of {@link UploadHandler}: every upload in its folder, finished or not, with the
 * bytes it holds and the bytes it has reserved, on the handler's injected clock.
 *
 * Why a ledger and not `du`: the bound must hold before a byte is written, for uploads running at
 * the same time. So every change goes through one synchronous step (no `await` between the check
 * and the booking), and the store is a `FileStore` whose `create`, `write`,
 * `declareUploadLength` and `remove` book their effect here:
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
 * @module
 * @internal
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, Transform } from 'node:stream';
import { FileStore } from '@tus/file-store';
import { CapacityError } from '../core/errors.js';

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
  readonly #entries = new Map<string, LedgerEntry>();
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

  ids(): string[] {
    return [...this.#entries.keys()];
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
  add(id: string, entry: LedgerEntry): void {
    this.forget(id);
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

  /** When `id` is due for removal, on the ledger's clock. */
  deadline(e: LedgerEntry): number {
    const { expiryMs, completedExpiryMs } = this.#limits;
    return e.finishedAt === undefined ? e.createdAt + expiryMs : Math.min(e.finishedAt + completedExpiryMs, e.createdAt + expiryMs);
  }

  /** The ids due for removal now, finished or not. */
  due(): { id: string; finished: boolean }[] {
    const now = this.#limits.now();
    const out: { id: string; finished: boolean }[] = [];
    for (const [id, e] of this.#entries) if (now >= this.deadline(e)) out.push({ id, finished: e.finishedAt !== undefined });
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
    for (const e of this.#entries.values()) first = Math.min(first, this.deadline(e));
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

/** A `FileStore` that books every change in an {@link UploadLedger}. @internal */
export class LedgerFileStore extends FileStore {
  readonly #ledger: UploadLedger;

  constructor(directory: string, expiryMs: number, ledger: UploadLedger) {
    super({ directory, expirationPeriodInMilliseconds: expiryMs });
    this.#ledger = ledger;
  }

  override async create(file: TusUpload): Promise<TusUpload> {
    this.#ledger.admit(file.id, file.size);
    try {
      return await super.create(file);
    } catch (error) {
      this.#ledger.forget(file.id);
      throw error;
    }
  }

  override async write(readable: Source, id: string, offset: number): Promise<number> {
    const ledger = this.#ledger;
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
      return end;
    } catch (error) {
      // What reached the disk is the truth: ask the store (a failed write may have kept part of it).
      await this.getUpload(id).then(
        (upload) => ledger.wrote(id, upload.offset),
        () => undefined,
      );
      throw refusal ?? error;
    }
  }

  override async declareUploadLength(id: string, size: number): Promise<void> {
    const undo = this.#ledger.declare(id, size);
    try {
      await super.declareUploadLength(id, size);
    } catch (error) {
      undo();
      throw error;
    }
  }

  override async remove(id: string): Promise<void> {
    try {
      await super.remove(id);
    } catch (error) {
      // Its bytes are gone already (the store refuses a missing file): drop its record, forget it,
      // and still refuse (tus answers an unknown upload 404). Still there: stays booked.
      if (await exists(join(this.directory, id))) throw error;
      await this.configstore.delete(id).catch(() => undefined);
      this.#ledger.forget(id);
      throw error;
    }
    this.#ledger.forget(id);
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
