/**
 * Shared bits of the hardening suite: a raw `node:http` request helper (so header values are sent
 * as given, byte for byte), the refusal body, and header-safe text. Servers: serveRig() in
 * test/helpers.ts.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import fc from 'fast-check';

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The whole body, or `''` for a stream that was cut after its head. */
  body: string;
}

export interface RequestSpec {
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Resolve on the response head and cut the connection (for SSE and other endless answers). */
  headOnly?: boolean;
}

const agent = new http.Agent({ keepAlive: false });

/** One request, answered or failed; never hangs past `timeoutMs`. */
export function request(base: string, spec: RequestSpec, timeoutMs = 5_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${spec.path}`, { method: spec.method ?? 'GET', headers: spec.headers, agent });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`No answer within ${timeoutMs} ms to ${spec.method ?? 'GET'} ${spec.path}`));
    }, timeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.on('response', (res) => {
      if (spec.headOnly === true && (res.statusCode ?? 0) < 300) {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    req.end(spec.body);
  });
}

/** The `{ error: { code, message } }` body of a refusal, or a thrown assertion-friendly error. */
export function errorBody(answer: Answer): { code: string; message: string } {
  const type = String(answer.headers['content-type'] ?? '');
  if (!type.startsWith('application/json')) throw new Error(`HTTP ${answer.status} with content-type ${type}, not JSON: ${answer.body.slice(0, 200)}`);
  const parsed = JSON.parse(answer.body) as { error?: { code?: unknown; message?: unknown } };
  if (typeof parsed.error?.code !== 'string' || typeof parsed.error.message !== 'string') {
    throw new Error(`HTTP ${answer.status} without { error: { code, message } }: ${answer.body.slice(0, 200)}`);
  }
  return { code: parsed.error.code, message: parsed.error.message };
}

/** Header-safe text: what node:http lets a client send (tab, printable ASCII, Latin-1). */
export const headerChar: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'0123456789abcdefghijklmnopqrstuvwxyz-_., "=;*/W') },
  { weight: 2, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.constantFrom('\t', '\u00e9', '\u00ff', '\u0080') },
);
