/**
 * The log shipper: the app sends structured log records over a sidecar channel (never waiting
 * on disk: a send is a queued message), and the sidecar batches them into a file of JSON lines
 * (or its stdout), rotating the file by size.
 *
 * @module
 */
import { createWriteStream, existsSync, mkdirSync, renameSync, statSync, unlinkSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock, ClockTimer } from '../core/clock.js';
import { InvalidArgumentError } from '../core/errors.js';
import { describe, integerInRange, optionalClock, optionsObject, positiveNumber } from '../core/validate.js';
import type { SidecarChannel } from '../sidecar/channel.js';
import { serveSidecar, SIDECAR_SOCKET_ENV, SIDECAR_TRANSPORT_ENV, type ServeSidecarOptions, type SidecarServer } from '../sidecar/serve.js';

/** The defaults of the log shipper, shared by the app side and the sidecar side (and the Kubernetes example). */
export const LOG_SHIPPER_DEFAULTS = Object.freeze({
  /** Where the log shipper listens when no supervisor says otherwise. */
  socketPath: '/var/run/patchbay/log-shipper.sock',
  /** Rotate the file once it would grow past this many bytes. */
  maxFileBytes: 10 * 1024 * 1024,
  /** Rotated files kept: `app.log.1` (newest) to `app.log.<maxFiles>`. */
  maxFiles: 5,
  /** The longest a record waits in a batch before it is written. */
  flushIntervalMs: 200,
  /** A batch is written at once when it holds this many records. */
  maxBatchRecords: 1000,
});

/** The message type of a log record. */
export const LOG_MESSAGE_TYPE = 'log';

/** Log levels, in rising order of severity. */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/** One structured log record. */
export interface LogRecord {
  /** ISO 8601 time, set by the app when it logs. */
  readonly time: string;
  /** The level. */
  readonly level: LogLevel;
  /** The message. */
  readonly msg: string;
  /** Any other JSON fields. */
  readonly [field: string]: unknown;
}

/** What can carry log records to the shipper: a channel, or a `SidecarSupervisor`. */
export interface LogTarget {
  /** {@link SidecarChannel.send}. */
  send(type: string, data?: unknown): boolean;
}

const LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

/**
 * The app side of the log shipper: builds records and sends them. Logging never blocks on the
 * sidecar or the disk; if the sidecar is away the records wait in the channel's bounded queue.
 *
 * @example
 * ```ts
 * const shipper = new SidecarSupervisor({ command: process.execPath, args: ['log-shipper.mjs'] });
 * const log = new SidecarLogger(shipper, { fields: { service: 'api' } });
 * log.info('request', { path: '/', ms: 3.2 });
 * ```
 */
export class SidecarLogger {
  readonly #target: LogTarget;
  readonly #fields: Readonly<Record<string, unknown>>;
  readonly #minLevel: number;

  /**
   * @param target - Where records go: a {@link SidecarChannel} or a `SidecarSupervisor`.
   * @param options - `fields` added to every record; `level`, the lowest level sent (default `info`).
   */
  constructor(target: LogTarget, options: { readonly fields?: Readonly<Record<string, unknown>>; readonly level?: LogLevel } = {}) {
    if (typeof target?.send !== 'function') throw new InvalidArgumentError(`Expected a target with send(), got ${describe(target)}`);
    const o = optionsObject('options', options);
    this.#target = target;
    this.#fields = o.fields ?? {};
    const level = o.level ?? 'info';
    if (!LEVELS.includes(level)) throw new InvalidArgumentError(`Expected \`level\` to be one of ${LEVELS.join(', ')}, got ${describe(level)}`);
    this.#minLevel = LEVELS.indexOf(level);
  }

  /**
   * Sends one record.
   * @returns What the channel's `send` returned: `false` when the queue is past its high-water
   *   mark or the record was dropped, or when `level` is below the logger's level.
   */
  log(level: LogLevel, msg: string, fields?: Readonly<Record<string, unknown>>): boolean {
    const rank = LEVELS.indexOf(level);
    if (rank === -1) throw new InvalidArgumentError(`Expected a log level (${LEVELS.join(', ')}), got ${describe(level)}`);
    if (rank < this.#minLevel) return false;
    return this.#target.send(LOG_MESSAGE_TYPE, { time: new Date().toISOString(), level, msg, ...this.#fields, ...fields });
  }

  /** `log('debug', ...)`. */
  debug(msg: string, fields?: Readonly<Record<string, unknown>>): boolean {
    return this.log('debug', msg, fields);
  }

  /** `log('info', ...)`. */
  info(msg: string, fields?: Readonly<Record<string, unknown>>): boolean {
    return this.log('info', msg, fields);
  }

  /** `log('warn', ...)`. */
  warn(msg: string, fields?: Readonly<Record<string, unknown>>): boolean {
    return this.log('warn', msg, fields);
  }

  /** `log('error', ...)`. */
  error(msg: string, fields?: Readonly<Record<string, unknown>>): boolean {
    return this.log('error', msg, fields);
  }
}

/** Options of {@link serveLogShipper}. */
export interface LogShipperOptions extends Omit<ServeSidecarOptions, 'onClose' | 'lastHandled' | 'clock'> {
  /** The file to append JSON lines to, or `'-'` for stdout (no rotation then). */
  readonly file: string;
  /**
   * Rotate once the file would grow past this many bytes.
   * @defaultValue `10485760` (10 MiB)
   */
  readonly maxFileBytes?: number;
  /**
   * Rotated files kept (`file.1` is the newest).
   * @defaultValue `5`
   */
  readonly maxFiles?: number;
  /**
   * The longest a record waits in a batch.
   * @defaultValue `200`
   */
  readonly flushIntervalMs?: number;
  /**
   * A batch is written at once at this many records.
   * @defaultValue `1000`
   */
  readonly maxBatchRecords?: number;
  /** The clock of the batch timer. @defaultValue `realClock` */
  readonly clock?: Clock;
}

/** Counters of a running log shipper. */
export interface LogShipperStats {
  /** The file written (`'-'` for stdout). */
  readonly file: string;
  /** Records written. */
  readonly records: number;
  /** Bytes written. */
  readonly bytes: number;
  /** Batches written. */
  readonly batches: number;
  /** Rotations done. */
  readonly rotations: number;
  /** Bytes in the current file. */
  readonly fileBytes: number;
  /** Messages that were not log records, ignored. */
  readonly ignored: number;
}

/** A running log shipper (from {@link serveLogShipper}). */
export interface LogShipper {
  /** The sidecar server. */
  readonly server: SidecarServer;
  /** Counters. */
  stats(): LogShipperStats;
  /** Writes the pending batch now. */
  flush(): Promise<void>;
}

/** The batching file writer. */
class Writer {
  readonly #file: string;
  readonly #maxFileBytes: number;
  readonly #maxFiles: number;
  readonly #flushIntervalMs: number;
  readonly #maxBatch: number;
  readonly #clock: Clock;
  #out: WriteStream | NodeJS.WritableStream | undefined;
  #fileBytes = 0;
  #lines: string[] = [];
  #batchDone: Promise<void> | undefined;
  #resolveBatch: (() => void) | undefined;
  #rejectBatch: ((e: unknown) => void) | undefined;
  #timer: ClockTimer | undefined;
  #writing: Promise<void> = Promise.resolve();
  records = 0;
  bytes = 0;
  batches = 0;
  rotations = 0;
  ignored = 0;

  constructor(file: string, maxFileBytes: number, maxFiles: number, flushIntervalMs: number, maxBatch: number, clock: Clock) {
    this.#file = file;
    this.#maxFileBytes = maxFileBytes;
    this.#maxFiles = maxFiles;
    this.#flushIntervalMs = flushIntervalMs;
    this.#maxBatch = maxBatch;
    this.#clock = clock;
    if (file === '-') {
      this.#out = process.stdout;
    } else {
      mkdirSync(dirname(file), { recursive: true });
      this.#fileBytes = existsSync(file) ? statSync(file).size : 0;
      this.#out = createWriteStream(file, { flags: 'a' });
    }
  }

  get fileBytes(): number {
    return this.#fileBytes;
  }

  /** Adds a record; the promise settles once its batch is written (then the app's message is acknowledged). */
  add(record: unknown): Promise<void> {
    const line = `${JSON.stringify(record)}\n`;
    this.#lines.push(line);
    if (this.#batchDone === undefined) {
      this.#batchDone = new Promise<void>((resolve, reject) => {
        this.#resolveBatch = resolve;
        this.#rejectBatch = reject;
      });
      this.#timer = this.#clock.setTimer(() => void this.flush(), this.#flushIntervalMs);
    }
    const done = this.#batchDone;
    if (this.#lines.length >= this.#maxBatch) void this.flush();
    return done;
  }

  /** Writes the pending batch (after the one being written). */
  flush(): Promise<void> {
    this.#timer?.cancel();
    this.#timer = undefined;
    const lines = this.#lines;
    const resolve = this.#resolveBatch;
    const reject = this.#rejectBatch;
    const done = this.#batchDone;
    this.#lines = [];
    this.#batchDone = this.#resolveBatch = this.#rejectBatch = undefined;
    if (lines.length === 0) return this.#writing;
    this.#writing = this.#writing.then(() => this.#write(lines)).then(
      () => resolve?.(),
      (err: unknown) => reject?.(err),
    );
    return done ?? this.#writing;
  }

  async #write(lines: readonly string[]): Promise<void> {
    const text = lines.join('');
    const size = Buffer.byteLength(text);
    if (this.#file !== '-' && this.#fileBytes > 0 && this.#fileBytes + size > this.#maxFileBytes) await this.#rotate();
    const out = this.#out!;
    await new Promise<void>((resolve, reject) => {
      out.write(text, (err?: Error | null) => (err ? reject(err) : resolve()));
    });
    this.#fileBytes += size;
    this.records += lines.length;
    this.bytes += size;
    this.batches++;
  }

  async #rotate(): Promise<void> {
    const old = this.#out as WriteStream;
    await new Promise<void>((resolve) => old.end(resolve));
    const f = this.#file;
    try {
      unlinkSync(`${f}.${this.#maxFiles}`);
    } catch {
      // none yet
    }
    for (let i = this.#maxFiles - 1; i >= 1; i--) if (existsSync(`${f}.${i}`)) renameSync(`${f}.${i}`, `${f}.${i + 1}`);
    renameSync(f, `${f}.1`);
    this.#out = createWriteStream(f, { flags: 'a' });
    this.#fileBytes = 0;
    this.rotations++;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.#writing;
    if (this.#file !== '-') await new Promise<void>((resolve) => (this.#out as WriteStream).end(resolve));
  }
}

/**
 * Runs the log shipper sidecar: takes `log` messages (see {@link SidecarLogger}) and appends
 * them as JSON lines to `file` in batches (every `flushIntervalMs` or `maxBatchRecords`),
 * rotating by size. A record is acknowledged once its batch is written, so a crash loses
 * nothing that was acknowledged; records in flight during a crash may be written twice.
 * Answers `log.stats` (the counters) and `log.flush` requests.
 *
 * @example
 * ```js
 * // log-shipper.mjs, spawned by a SidecarSupervisor (which passes the socket path)
 * import { serveLogShipper } from 'patchbay/sidecars';
 * await serveLogShipper({ file: '/var/log/app/app.log' });
 * ```
 *
 * @param options - See {@link LogShipperOptions}.
 * @returns The running shipper.
 */
export async function serveLogShipper(options: LogShipperOptions): Promise<LogShipper> {
  const o = optionsObject('options', options) as Partial<LogShipperOptions>;
  if (typeof o.file !== 'string' || o.file.length === 0) throw new InvalidArgumentError(`Expected \`file\` to be a path or '-', got ${describe(o.file)}`);
  const writer = new Writer(
    o.file,
    integerInRange('maxFileBytes', o.maxFileBytes ?? LOG_SHIPPER_DEFAULTS.maxFileBytes, 1, Number.MAX_SAFE_INTEGER),
    integerInRange('maxFiles', o.maxFiles ?? LOG_SHIPPER_DEFAULTS.maxFiles, 1, 1000),
    positiveNumber('flushIntervalMs', o.flushIntervalMs ?? LOG_SHIPPER_DEFAULTS.flushIntervalMs),
    integerInRange('maxBatchRecords', o.maxBatchRecords ?? LOG_SHIPPER_DEFAULTS.maxBatchRecords, 1, 1_000_000),
    optionalClock('clock', o.clock),
  );
  const { file: _file, maxFileBytes: _a, maxFiles: _b, flushIntervalMs: _c, maxBatchRecords: _d, ...serve } = o;
  const stats = (): LogShipperStats => ({
    file: o.file!,
    records: writer.records,
    bytes: writer.bytes,
    batches: writer.batches,
    rotations: writer.rotations,
    fileBytes: writer.fileBytes,
    ignored: writer.ignored,
  });
  const server = await serveSidecar(
    (message) => {
      if (message.kind === 'send') {
        if (message.type === LOG_MESSAGE_TYPE && message.data !== null && typeof message.data === 'object') return writer.add(message.data);
        writer.ignored++;
        return undefined;
      }
      if (message.type === 'log.stats') return stats();
      if (message.type === 'log.flush') return writer.flush().then(() => stats());
      throw new InvalidArgumentError(`The log shipper answers log.stats and log.flush, not ${JSON.stringify(message.type)}`);
    },
    {
      ...serve,
      ...defaultSocket(serve, LOG_SHIPPER_DEFAULTS.socketPath),
      onClose: () => writer.close(),
    },
  );
  return { server, stats, flush: () => writer.flush() };
}

/** Reads the shipper's counters over a channel (the `log.stats` request). */
export function logShipperStats(channel: Pick<SidecarChannel, 'request'>, options?: { readonly timeoutMs?: number }): Promise<LogShipperStats> {
  return channel.request('log.stats', undefined, options) as Promise<LogShipperStats>;
}

/** `{ socketPath }` when neither the options nor a supervisor's environment say where to listen. @internal */
export function defaultSocket(serve: Pick<ServeSidecarOptions, 'socketPath' | 'port' | 'stdio'>, socketPath: string): { socketPath?: string } {
  const given = serve.socketPath !== undefined || serve.port !== undefined || serve.stdio !== undefined;
  const fromEnv = process.env[SIDECAR_SOCKET_ENV] !== undefined || process.env[SIDECAR_TRANSPORT_ENV] === 'stdio';
  return given || fromEnv ? {} : { socketPath };
}
