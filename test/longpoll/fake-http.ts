/**
 * A request and a response that stand in for `node:http`'s, for tests that drive
 * {@link LongPollHandler.handle} many times in one turn (interleavings no socket could time): the
 * response records every answer, and `disconnect()` does what a client going away does.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** One recorded answer. */
export interface FakeAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** The response side: counts `writeHead` and `end`, keeps what was written. */
export class FakeResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  destroyed = false;
  /** `writeHead` calls so far (a correct handler calls it at most once). */
  heads = 0;
  /** `end` calls so far. */
  ends = 0;
  #headers: Record<string, string> = {};
  #body = '';

  setHeader(name: string, value: string | number | readonly string[]): this {
    this.#headers[name.toLowerCase()] = String(value);
    return this;
  }

  appendHeader(name: string, value: string): this {
    return this.setHeader(name, value);
  }

  writeHead(status: number, headers?: OutgoingHttpHeaders | readonly string[]): this {
    this.heads++;
    if (this.headersSent) throw new Error('writeHead twice');
    this.statusCode = status;
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) this.setHeader(String(headers[i]), String(headers[i + 1]));
    } else if (headers !== undefined) {
      for (const [k, v] of Object.entries(headers)) if (v !== undefined) this.setHeader(k, v as string);
    }
    this.headersSent = true;
    return this;
  }

  end(chunk?: string | Buffer): this {
    this.ends++;
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (chunk !== undefined) this.#body += chunk.toString();
    this.writableEnded = true;
    this.emit('close');
    return this;
  }

  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit('close');
    }
    return this;
  }

  /** The client goes away. */
  disconnect(): void {
    this.destroy();
  }

  /** Whether an answer was written. */
  get answered(): boolean {
    return this.writableEnded;
  }

  /** The answer written (throws if none). */
  get answer(): FakeAnswer {
    if (!this.writableEnded) throw new Error('not answered');
    return { status: this.statusCode, headers: { ...this.#headers }, body: this.#body };
  }

  /** The answer's body as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.answer.body) as T;
  }
}

/** A GET for `url` (a path and query) and a fresh response, typed as `node:http`'s. */
export function fakeExchange(url: string, headers: Record<string, string> = {}): { req: IncomingMessage; res: ServerResponse; fake: FakeResponse } {
  const req = Object.assign(new EventEmitter(), { method: 'GET', url, headers }) as unknown as IncomingMessage;
  const fake = new FakeResponse();
  return { req, res: fake as unknown as ServerResponse, fake };
}

/** Lets every queued promise callback and I/O turn run, a few times over. */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}
