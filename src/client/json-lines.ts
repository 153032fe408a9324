/**
 * Reading NDJSON answers written by `streamJsonLines` (or `jsonLinesResponse`): records as an
 * async iterator, a cut stream told apart from a finished one, and resuming after a cut.
 *
 * @module
 */
import { IncompleteStreamError, InvalidArgumentError, ProtocolError, RemoteError } from '../core/errors.js';
import { optionalClock } from '../core/validate.js';
import {
  type ClientTransportOptions,
  defaultFetch,
  type FetchLike,
  isRecord,
  isRetryableError,
  linkedController,
  reasonOf,
  resolveClientBackoff,
  resolveHeaders,
  RetryState,
  statusError,
} from './transport.js';

/** One record of a JSON-lines stream. */
export interface JsonLine<T = unknown> {
  /** Its position in the stream: resume after it with `from = seq + 1`. */
  readonly seq: number;
  /** The value the server's source yielded. */
  readonly data: T;
}

/** What the end record said: the stream is complete. */
export interface JsonLinesEnd {
  /** Records the server sent in this response. */
  readonly count: number;
  /** The `seq` the next record would have had. */
  readonly next: number;
}

/** Options for {@link readJsonLines}. */
export interface ReadJsonLinesOptions {
  /**
   * The longest line accepted, in bytes (UTF-16 code units, a close bound); a longer one is a
   * {@link ProtocolError}.
   * @defaultValue 16 MiB
   */
  readonly maxLineBytes?: number;
  /** Stops reading (the body is canceled). */
  readonly signal?: AbortSignal;
}

/**
 * Reads a JSON-lines `Response` record by record. Returns (as the generator's return value) the
 * end record; throws {@link IncompleteStreamError} if the body stops without one (a cut stream:
 * its `next` says where to resume), {@link RemoteError} (with the server's code in `remoteCode`)
 * for an error record, {@link ProtocolError} for a line that is not a record, and
 * {@link HttpStatusError} for a non-2xx response. Breaking out of the loop cancels the body.
 *
 * @example
 * ```ts
 * const res = await fetch('http://127.0.0.1:3000/stream/ndjson?n=1000');
 * for await (const { seq, data } of readJsonLines(res)) console.log(seq, data);
 * ```
 */
export async function* readJsonLines<T = unknown>(response: Response, options: ReadJsonLinesOptions = {}): AsyncGenerator<JsonLine<T>, JsonLinesEnd, undefined> {
  const maxLine = options.maxLineBytes ?? 16 * 1024 * 1024;
  if (!Number.isSafeInteger(maxLine) || maxLine < 16) throw new InvalidArgumentError(`maxLineBytes must be an integer >= 16, got ${String(options.maxLineBytes)}`);
  if (!response.ok) throw statusError('The JSON-lines request', { status: response.status, headers: response.headers, text: await response.text(), url: response.url, redirected: response.redirected });
  if (response.body === null) throw new IncompleteStreamError(0, 'The JSON-lines response has no body');
  const reader = response.body.getReader();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const onAbort = (): void => {
    void reader.cancel(reasonOf(options.signal!)).catch(() => undefined);
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let buffer = '';
  let next: number | undefined;
  let done = false;
  try {
    for (;;) {
      if (options.signal?.aborted) throw reasonOf(options.signal);
      let chunk: { done: boolean; value?: Uint8Array };
      try {
        chunk = await reader.read();
      } catch (error) {
        if (options.signal?.aborted) throw reasonOf(options.signal);
        throw new IncompleteStreamError(next ?? 0, `The JSON-lines stream was cut before its end record (${(error as Error)?.message ?? String(error)})`, { cause: error });
      }
      if (chunk.done) break;
      try {
        buffer += decoder.decode(chunk.value!, { stream: true });
      } catch (error) {
        throw new ProtocolError('The JSON-lines stream is not valid UTF-8', { cause: error });
      }
      let nl: number;
      while ((nl = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim() === '') continue;
        const parsed = parseLine(line);
        if ('end' in parsed) {
          done = true;
          return parsed.end;
        }
        if (next !== undefined && parsed.seq !== next) throw new ProtocolError(`JSON-lines record seq ${parsed.seq} follows seq ${next - 1}: records must be consecutive`);
        next = parsed.seq + 1;
        yield parsed as JsonLine<T>;
      }
      if (buffer.length > maxLine) throw new ProtocolError(`A JSON-lines line is longer than ${maxLine} bytes`);
    }
    if (buffer.trim() !== '') {
      // A last line without its newline: a cut mid-record, unless it is the end record itself.
      let parsed: ReturnType<typeof parseLine> | undefined;
      try {
        parsed = parseLine(buffer);
      } catch {
        parsed = undefined;
      }
      if (parsed !== undefined && 'end' in parsed) {
        done = true;
        return parsed.end;
      }
    }
    throw new IncompleteStreamError(next ?? 0);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    if (!done) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

function parseLine(line: string): JsonLine | { end: JsonLinesEnd } {
  let value: unknown;
  try {
    value = JSON.parse(line) as unknown;
  } catch (error) {
    throw new ProtocolError(`A JSON-lines line is not JSON: ${line.slice(0, 80)}`, { cause: error });
  }
  if (!isRecord(value)) throw new ProtocolError(`A JSON-lines line is not an object: ${line.slice(0, 80)}`);
  if (value['end'] === true) return { end: { count: Number(value['count'] ?? 0), next: Number(value['next'] ?? 0) } };
  if (isRecord(value['error'])) {
    const code = typeof value['error']['code'] === 'string' ? value['error']['code'] : undefined;
    const message = typeof value['error']['message'] === 'string' ? value['error']['message'] : 'The stream\'s source failed';
    throw new RemoteError(`The server's stream failed: ${message}`, code === undefined ? {} : { remoteCode: code });
  }
  const seq = value['seq'];
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0 || !('data' in value)) {
    throw new ProtocolError(`A JSON-lines line is not a record { seq, data }: ${line.slice(0, 80)}`);
  }
  return { seq, data: value['data'] };
}

/** Options for {@link fetchJsonLines}. */
export interface FetchJsonLinesOptions extends ReadJsonLinesOptions, ClientTransportOptions {
  /**
   * Start at this `seq` (sent as the `from` query parameter).
   * @defaultValue 0 (no parameter sent)
   */
  readonly from?: number;
  /**
   * The query parameter that carries where to resume.
   * @defaultValue `"from"`
   */
  readonly fromParam?: string;
  /**
   * Cuts and retryable failures (network errors, 5xx, 408, 429) in a row before giving up.
   * @defaultValue 5
   */
  readonly maxRetries?: number;
  /**
   * The fetch to use.
   * @defaultValue `globalThis.fetch`
   */
  readonly fetch?: FetchLike;
}

/**
 * Fetches a JSON-lines endpoint and yields every record once, in order, resuming after a cut:
 * when the stream stops before its end record (or the request fails in a way worth retrying), it
 * asks again with `from` = the next `seq`, after a jittered backoff, up to `maxRetries` times in a
 * row. Records the server sends again are skipped by `seq`; a record past the expected one (the
 * endpoint ignored `from`) is a {@link ProtocolError}.
 *
 * @example
 * ```ts
 * for await (const { data } of fetchJsonLines('http://127.0.0.1:3000/stream/ndjson?n=100000')) handle(data);
 * ```
 */
export async function* fetchJsonLines<T = unknown>(url: string | URL, options: FetchJsonLinesOptions = {}): AsyncGenerator<JsonLine<T>, JsonLinesEnd, undefined> {
  let target: URL;
  try {
    target = new URL(url);
  } catch (error) {
    throw new InvalidArgumentError(`fetchJsonLines: url must be an absolute URL, got ${String(url)}`, { cause: error });
  }
  const fromParam = options.fromParam ?? 'from';
  let next = options.from ?? 0;
  if (!Number.isSafeInteger(next) || next < 0) throw new InvalidArgumentError(`from must be a safe integer >= 0, got ${String(options.from)}`);
  const maxRetries = options.maxRetries ?? 5;
  if (!(maxRetries >= 0)) throw new InvalidArgumentError(`maxRetries must be >= 0, got ${String(options.maxRetries)}`);
  const retry = new RetryState({
    backoff: resolveClientBackoff(options.backoff),
    maxRetries,
    clock: optionalClock('clock', options.clock),
    random: options.random ?? Math.random,
    retryable: (error) => error instanceof IncompleteStreamError || isRetryableError(error),
  });
  const fetchFn = options.fetch ?? defaultFetch();
  const life = linkedController(options.signal);
  const signal = life.controller.signal;
  try {
    for (;;) {
      const u = new URL(target);
      if (next > 0) u.searchParams.set(fromParam, String(next));
      try {
        const response = await fetchFn(u, { headers: { accept: 'application/x-ndjson', ...(await resolveHeaders(options.headers)) }, signal });
        const lines = readJsonLines<T>(response, { signal, ...(options.maxLineBytes === undefined ? {} : { maxLineBytes: options.maxLineBytes }) });
        for (;;) {
          const step = await lines.next();
          if (step.done === true) return step.value;
          const line = step.value;
          if (line.seq < next) continue; // sent again after a resume
          if (line.seq > next) throw new ProtocolError(`fetchJsonLines: expected seq ${next}, got ${line.seq} (does the endpoint honour "${fromParam}"?)`);
          next = line.seq + 1;
          retry.succeeded();
          yield line;
        }
      } catch (error) {
        if (signal.aborted) throw reasonOf(signal);
        await retry.backOff(error, signal);
      }
    }
  } finally {
    life.dispose();
  }
}
