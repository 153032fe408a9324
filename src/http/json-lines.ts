/**
 * Streamed responses as NDJSON (newline-delimited JSON): one record per line, written as the
 * source yields them, with backpressure, and closed by an explicit end record so a reader can tell
 * a finished stream from a cut one.
 *
 * ## The wire format
 *
 * `Content-Type: application/x-ndjson; charset=utf-8`, chunked. Every line is one JSON object:
 *
 * | line | meaning |
 * |---|---|
 * | `{"seq":0,"data":…}` | a record; `seq` counts from the stream's `from` (0 by default) |
 * | `{"end":true,"count":N,"next":S}` | the stream is complete: N records were sent, the next `seq` would have been S |
 * | `{"error":{"code","message"},"count":N,"next":S}` | the source failed after N records; nothing follows |
 *
 * A stream that stops without an end or error line was cut (the server went away, or a proxy):
 * the reader resumes with `from` = the last `seq` + 1, when the endpoint supports it.
 *
 * @module
 */
import type { ServerResponse } from 'node:http';
import { abortReason, onAbort } from '../core/abort.js';
import { ErrorCodes, InvalidArgumentError, PatchbayError } from '../core/errors.js';

/** The media type of NDJSON answers. */
export const JSON_LINES_CONTENT_TYPE = 'application/x-ndjson; charset=utf-8';

/** What a JSON-lines stream sends: any iterable or async iterable, or a function given the stream's `from` and signal. */
export type JsonLinesSource<T> =
  | Iterable<T>
  | AsyncIterable<T>
  | ((context: JsonLinesContext) => Iterable<T> | AsyncIterable<T>);

/** What a source function is given. */
export interface JsonLinesContext {
  /** The `seq` of the first record: resume the source from here. */
  readonly from: number;
  /** Aborts when the client goes away or the stream is stopped. */
  readonly signal: AbortSignal;
}

/** Options for {@link streamJsonLines} and {@link jsonLinesResponse}. */
export interface JsonLinesOptions {
  /**
   * The `seq` of the first record (a resumed stream starts where the client left off).
   * @defaultValue 0
   */
  readonly from?: number;
  /** Stops the stream (an error record is not sent; the response ends with an end record's absence). */
  readonly signal?: AbortSignal;
  /**
   * The largest serialized record, in bytes; a larger one ends the stream with an error record
   * (`PB_ERR_INVALID_ARGUMENT`).
   * @defaultValue 1 MiB
   */
  readonly maxRecordBytes?: number;
  /** Extra response headers (node:http form: set before the first byte). */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Send the message of errors that are not {@link PatchbayError}s to the client. Off by
   * default: such errors may hold internals, and are reported as `PB_ERR_INTERNAL`.
   * @defaultValue false
   */
  readonly exposeErrors?: boolean;
}

/** How a stream ended, as {@link streamJsonLines} reports it. */
export interface JsonLinesResult {
  /** `complete`: the end record was written; `error`: the source failed (error record written); `closed`: the client went away or the signal aborted. */
  readonly outcome: 'complete' | 'error' | 'closed';
  /** Records written. */
  readonly count: number;
  /** The `seq` the next record would have had. */
  readonly next: number;
  /** The source's error, for `error`. */
  readonly error?: unknown;
}

const encoder = new TextEncoder();

interface Resolved {
  readonly from: number;
  readonly maxRecordBytes: number;
  readonly exposeErrors: boolean;
}

function resolve(options: JsonLinesOptions | undefined): Resolved {
  const from = options?.from ?? 0;
  if (!Number.isSafeInteger(from) || from < 0) throw new InvalidArgumentError(`from must be a safe integer >= 0, got ${String(options?.from)}`);
  const maxRecordBytes = options?.maxRecordBytes ?? 1024 * 1024;
  if (!Number.isSafeInteger(maxRecordBytes) || maxRecordBytes < 16) throw new InvalidArgumentError(`maxRecordBytes must be an integer >= 16, got ${String(options?.maxRecordBytes)}`);
  return { from, maxRecordBytes, exposeErrors: options?.exposeErrors === true };
}

function open<T>(source: JsonLinesSource<T>, context: JsonLinesContext): Iterator<T> | AsyncIterator<T> {
  const iterable = typeof source === 'function' ? source(context) : source;
  if (iterable !== null && typeof iterable === 'object') {
    const asyncIt = (iterable as AsyncIterable<T>)[Symbol.asyncIterator];
    if (typeof asyncIt === 'function') return asyncIt.call(iterable);
    const syncIt = (iterable as Iterable<T>)[Symbol.iterator];
    if (typeof syncIt === 'function') return syncIt.call(iterable);
  }
  throw new InvalidArgumentError('A JSON-lines source must be an iterable, an async iterable, or a function returning one');
}

/** Serializes one record line; throws InvalidArgumentError for a value JSON cannot hold or one over the limit. */
function recordLine(seq: number, data: unknown, maxRecordBytes: number): Uint8Array {
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (error) {
    throw new InvalidArgumentError(`Record ${seq} cannot be serialized as JSON: ${(error as Error).message}`, { cause: error });
  }
  // undefined, functions and symbols have no JSON: send null, as JSON.stringify does in arrays.
  const bytes = encoder.encode(`{"seq":${seq},"data":${json ?? 'null'}}\n`);
  if (bytes.byteLength > maxRecordBytes) throw new InvalidArgumentError(`Record ${seq} is ${bytes.byteLength} bytes, over maxRecordBytes (${maxRecordBytes})`);
  return bytes;
}

function errorLine(error: unknown, count: number, next: number, expose: boolean): Uint8Array {
  const body =
    error instanceof PatchbayError
      ? { code: error.code, message: error.message }
      : { code: ErrorCodes.INTERNAL, message: expose && error instanceof Error ? error.message : 'The stream\'s source failed' };
  return encoder.encode(`${JSON.stringify({ error: body, count, next })}\n`);
}

const endLine = (count: number, next: number): Uint8Array => encoder.encode(`{"end":true,"count":${count},"next":${next}}\n`);

/**
 * Aborts `stop` with `signal`'s reason when `signal` aborts (at once if it has); dispose the
 * result to stop listening.
 */
function abortWith(signal: AbortSignal, stop: AbortController): Disposable | undefined {
  if (signal.aborted) {
    stop.abort(abortReason(signal));
    return undefined;
  }
  return onAbort(signal, (reason) => stop.abort(reason));
}

/**
 * Streams `source` to a node:http response as NDJSON (see the module's wire format): chunked,
 * one `{"seq","data"}` line per item, then `{"end":true}`.
 *
 * - Backpressure: when the socket's buffer is full, the source is not pulled again until `drain`.
 * - The client going away (or `signal`) stops the source (`return()` on its iterator, the
 *   function form's signal aborts) and resolves with outcome `closed`; nothing more is written.
 * - A source that throws ends the stream with an error record (the message hidden unless it is a
 *   {@link PatchbayError} or `exposeErrors` is set), and resolves with outcome `error`.
 *
 * Never rejects for the source's or the client's failures once streaming: only bad options, or a
 * source that cannot be opened, reject, before any byte is written.
 *
 * @example
 * ```ts
 * http.createServer(async (req, res) => {
 *   const from = Number(new URL(req.url!, 'http://x').searchParams.get('from') ?? 0);
 *   await streamJsonLines(res, ({ from }) => rowsFrom(db, from), { from });
 * });
 * ```
 * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for bad options or source, before any byte is written.
 */
export async function streamJsonLines<T>(res: ServerResponse, source: JsonLinesSource<T>, options?: JsonLinesOptions): Promise<JsonLinesResult> {
  const o = resolve(options);
  const stop = new AbortController();
  let iterator: Iterator<T> | AsyncIterator<T> | undefined = open(source, { from: o.from, signal: stop.signal });
  // Removed in `finally`, on every path.
  const stopWith = options?.signal === undefined ? undefined : abortWith(options.signal, stop);
  let wake: (() => void) | undefined;
  const onGone = (): void => {
    if (!stop.signal.aborted) stop.abort(new Error('The client went away'));
    wake?.();
  };
  res.once('close', onGone);
  const onStop = onAbort(stop.signal, () => wake?.());
  let count = 0;
  let next = o.from;
  try {
    if (!res.headersSent) {
      res.writeHead(200, {
        'content-type': JSON_LINES_CONTENT_TYPE,
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'x-accel-buffering': 'no',
        ...options?.headers,
      });
      res.flushHeaders();
    }
    for (;;) {
      if (stop.signal.aborted || res.destroyed) return { outcome: 'closed', count, next };
      let step: IteratorResult<T>;
      let line: Uint8Array;
      try {
        step = await iterator.next();
        if (step.done === true) break;
        line = recordLine(next, step.value, o.maxRecordBytes);
      } catch (error) {
        if (stop.signal.aborted || res.destroyed) return { outcome: 'closed', count, next };
        iterator = undefined; // a throwing iterator is finished; do not call return()
        res.end(errorLine(error, count, next, o.exposeErrors));
        return { outcome: 'error', count, next, error };
      }
      if (stop.signal.aborted || res.destroyed) return { outcome: 'closed', count, next };
      count++;
      next++;
      if (!res.write(line)) {
        await new Promise<void>((r) => {
          wake = r;
          res.once('drain', r);
        });
        res.off('drain', wake!);
        wake = undefined;
      }
    }
    iterator = undefined;
    res.end(endLine(count, next));
    return { outcome: 'complete', count, next };
  } finally {
    res.off('close', onGone);
    stopWith?.[Symbol.dispose]();
    onStop[Symbol.dispose]();
    if (iterator !== undefined && typeof iterator.return === 'function') {
      try {
        await iterator.return();
      } catch {
        // the source failed while being stopped: nothing is listening any more
      }
    }
    if (stop.signal.aborted && !res.writableEnded) res.destroy();
  }
}

/**
 * The web-standard form of {@link streamJsonLines}: a `Response` whose body pulls one record
 * from the source per read, so a slow reader slows the source (nothing piles up), and whose
 * cancellation (the client went away) stops the source.
 *
 * @example
 * ```ts
 * // hono, or anything with Request -> Response:
 * app.get('/rows', (c) => jsonLinesResponse(rows(), { signal: c.req.raw.signal }));
 * ```
 * @throws {@link InvalidArgumentError} (`PB_ERR_INVALID_ARGUMENT`) for bad options or source.
 */
export function jsonLinesResponse<T>(source: JsonLinesSource<T>, options?: JsonLinesOptions & { readonly status?: number }): Response {
  const o = resolve(options);
  const stop = new AbortController();
  // Removed once the stream is finished (ended, failed or canceled).
  let stopWith = options?.signal === undefined ? undefined : abortWith(options.signal, stop);
  let iterator: Iterator<T> | AsyncIterator<T> | undefined = open(source, { from: o.from, signal: stop.signal });
  let count = 0;
  let next = o.from;
  const release = (): void => {
    stopWith?.[Symbol.dispose]();
    stopWith = undefined;
  };
  const finish = async (): Promise<void> => {
    release();
    const it = iterator;
    iterator = undefined;
    if (it !== undefined && typeof it.return === 'function') {
      try {
        await it.return();
      } catch {
        // nothing is listening any more
      }
    }
  };
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const it = iterator;
        if (it === undefined) return;
        if (stop.signal.aborted) {
          await finish();
          controller.error(stop.signal.reason ?? new Error('The stream was stopped'));
          return;
        }
        let line: Uint8Array;
        try {
          const step = await it.next();
          if (step.done === true) {
            iterator = undefined;
            release();
            controller.enqueue(endLine(count, next));
            controller.close();
            return;
          }
          line = recordLine(next, step.value, o.maxRecordBytes);
        } catch (error) {
          iterator = undefined;
          release();
          if (stop.signal.aborted) {
            controller.error(stop.signal.reason);
            return;
          }
          controller.enqueue(errorLine(error, count, next, o.exposeErrors));
          controller.close();
          return;
        }
        count++;
        next++;
        controller.enqueue(line);
      },
      async cancel(reason) {
        stop.abort(reason);
        await finish();
      },
    },
    { highWaterMark: 1 },
  );
  return new Response(body, {
    status: options?.status ?? 200,
    headers: {
      'content-type': JSON_LINES_CONTENT_TYPE,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...options?.headers,
    },
  });
}
