import http, { type ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  fetchJsonLines,
  HttpStatusError,
  IncompleteStreamError,
  type JsonLine,
  ManualClock,
  ProtocolError,
  readJsonLines,
  RemoteError,
} from '../../src/client/index.js';
import { InvalidArgumentError, jsonLinesResponse, type JsonLinesResult, streamJsonLines } from '../../src/index.js';
import { serveRig, until } from '../helpers.js';

// streamJsonLines on a real 127.0.0.1 server, read back with the client's readers over fetch.

/** The base URL of a server for `handler`, closed after the test. */
async function serve(handler: (req: http.IncomingMessage, res: ServerResponse) => void): Promise<string> {
  return (await serveRig(handler)).url;
}

async function collect<T>(it: AsyncGenerator<JsonLine<T>, unknown>): Promise<{ lines: JsonLine<T>[]; end: unknown }> {
  const lines: JsonLine<T>[] = [];
  for (;;) {
    const step = await it.next();
    if (step.done === true) return { lines, end: step.value };
    lines.push(step.value);
  }
}

function range(n: number, from = 0): number[] {
  return Array.from({ length: n - from }, (_, i) => from + i);
}

describe('streamJsonLines + readJsonLines', () => {
  it('streams every record in order, then the end record; the reader returns it', async () => {
    let result: JsonLinesResult | undefined;
    const base = await serve((_req, res) => {
      void streamJsonLines(res, range(1000).map((i) => ({ i }))).then((r) => (result = r));
    });
    const res = await fetch(base);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const { lines, end } = await collect(readJsonLines<{ i: number }>(res));
    expect(lines.map((l) => l.seq)).toEqual(range(1000));
    expect(lines.map((l) => l.data.i)).toEqual(range(1000));
    expect(end).toEqual({ count: 1000, next: 1000 });
    await until(() => result !== undefined, 'the server side to finish');
    expect(result).toEqual({ outcome: 'complete', count: 1000, next: 1000 });
  });

  it('an empty source still ends with an end record; undefined items become null', async () => {
    const base = await serve((req, res) => void streamJsonLines(res, req.url === '/empty' ? [] : [undefined, 1]));
    expect(await collect(readJsonLines(await fetch(`${base}/empty`)))).toEqual({ lines: [], end: { count: 0, next: 0 } });
    expect((await collect(readJsonLines(await fetch(`${base}/u`)))).lines).toEqual([
      { seq: 0, data: null },
      { seq: 1, data: 1 },
    ]);
  });

  it('respects backpressure: a reader that stops reading stops the source', async () => {
    let pulled = 0;
    let serverRes: ServerResponse | undefined;
    const big = 'x'.repeat(64 * 1024);
    const base = await serve((_req, res) => {
      serverRes = res;
      void streamJsonLines(res, function* () {
        for (let i = 0; i < 1000; i++) {
          pulled++;
          yield big; // 1000 x 64 KiB = 64 MiB if nothing held it back
        }
      });
    });
    let clientRes!: http.IncomingMessage;
    await new Promise<void>((resolve) => {
      http.get(base, (r) => {
        clientRes = r;
        r.pause();
        resolve();
      });
    });
    await until(() => serverRes?.writableNeedDrain === true, 'the server to wait for drain');
    const stalled = pulled;
    for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
    expect(pulled).toBe(stalled); // nothing pulled while the socket is full
    expect(pulled).toBeLessThan(400);
    // Read it all: every record arrives, in order.
    let text = '';
    clientRes.setEncoding('utf8');
    clientRes.on('data', (c: string) => (text += c));
    clientRes.resume();
    await new Promise((r) => clientRes.on('end', r));
    const lines = text.trim().split('\n');
    expect(lines.length).toBe(1001);
    expect(JSON.parse(lines[999]!)).toEqual({ seq: 999, data: big });
    expect(JSON.parse(lines[1000]!)).toEqual({ end: true, count: 1000, next: 1000 });
  });

  it('stops the source when the client goes away (return() runs, outcome closed)', async () => {
    let finallyRan = false;
    let result: JsonLinesResult | undefined;
    let signalAborted = false;
    const base = await serve((_req, res) => {
      void streamJsonLines(res, async function* ({ signal }) {
        try {
          for (let i = 0; ; i++) {
            yield i;
            if (i % 100 === 99) await new Promise((r) => setImmediate(r));
          }
        } finally {
          finallyRan = true;
          signalAborted = signal.aborted;
        }
      }).then((r) => (result = r));
    });
    const ac = new AbortController();
    const res = await fetch(base, { signal: ac.signal });
    const it = readJsonLines<number>(res);
    for (let i = 0; i < 10; i++) expect((await it.next()).value).toEqual({ seq: i, data: i });
    ac.abort();
    await until(() => result !== undefined, 'the server to notice');
    expect(result!.outcome).toBe('closed');
    expect(finallyRan).toBe(true);
    expect(signalAborted).toBe(true);
  });

  it('a failing source ends with an error record: its code, and no internals unless exposed', async () => {
    const base = await serve((req, res) => {
      void streamJsonLines(
        res,
        (async function* () {
          yield 1;
          if (req.url === '/typed') throw new InvalidArgumentError('bad row 2');
          throw new Error('password=hunter2 in a stack');
        })(),
        { exposeErrors: req.url === '/exposed' },
      );
    });
    const read = async (path: string) => {
      const lines: number[] = [];
      try {
        for await (const l of readJsonLines<number>(await fetch(`${base}${path}`))) lines.push(l.data);
      } catch (error) {
        return { lines, error };
      }
      return { lines, error: null };
    };
    const typed = await read('/typed');
    expect(typed.lines).toEqual([1]);
    expect(typed.error).toBeInstanceOf(RemoteError);
    expect(typed.error).toMatchObject({ remoteCode: 'PB_ERR_INVALID_ARGUMENT' });
    expect((typed.error as Error).message).toContain('bad row 2');
    const hidden = await read('/hidden');
    expect(hidden.error).toMatchObject({ remoteCode: 'PB_ERR_INTERNAL' });
    expect((hidden.error as Error).message).not.toContain('hunter2');
    const exposed = await read('/exposed');
    expect((exposed.error as Error).message).toContain('hunter2');
  });

  it('a record JSON cannot hold, or one over maxRecordBytes, ends the stream with an error record', async () => {
    const base = await serve((req, res) => {
      const items: unknown[] = req.url === '/bigint' ? [1, 2n] : [1, 'y'.repeat(100)];
      void streamJsonLines(res, items, { maxRecordBytes: 64 });
    });
    for (const path of ['/bigint', '/big']) {
      const it = readJsonLines(await fetch(`${base}${path}`));
      expect((await it.next()).value).toEqual({ seq: 0, data: 1 });
      await expect(it.next()).rejects.toMatchObject({ remoteCode: 'PB_ERR_INVALID_ARGUMENT' });
    }
  });

  it('a cut stream is IncompleteStreamError with where to resume, never a quiet end', async () => {
    const base = await serve((_req, res) => {
      void streamJsonLines(res, async function* () {
        for (let i = 0; i < 5; i++) yield i;
        await new Promise((r) => setImmediate(r));
        res.socket?.destroy(); // the connection drops mid-stream
        yield 99;
      });
    });
    const it = readJsonLines<number>(await fetch(base));
    const got: number[] = [];
    let error: unknown;
    try {
      for (;;) {
        const step = await it.next();
        if (step.done === true) break;
        got.push(step.value.data);
      }
    } catch (e) {
      error = e;
    }
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(error).toBeInstanceOf(IncompleteStreamError);
    expect((error as IncompleteStreamError).next).toBe(5);
  });

  it('fetchJsonLines resumes after cuts with from = next, and yields each record exactly once', async () => {
    const requests: string[] = [];
    const base = await serve((req, res) => {
      requests.push(req.url ?? '');
      const from = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('from') ?? 0);
      const cutAt = requests.length <= 3 ? from + 7 : Number.POSITIVE_INFINITY; // three cuts, then whole
      void streamJsonLines(
        res,
        async function* ({ from: start }) {
          // Starts one record before the client's `from` (see below) to prove the reader skips duplicates.
          for (let i = start; i < 40; i++) {
            if (i === cutAt) {
              await new Promise((r) => setImmediate(r));
              res.socket?.destroy();
              return;
            }
            yield i * 10;
          }
        },
        { from: Math.max(0, from - 1) },
      );
    });
    const clock = new ManualClock();
    const it = fetchJsonLines<number>(`${base}/rows`, { clock, random: () => 0 });
    const got: number[] = [];
    const pump = (async () => {
      for (;;) {
        const step = await it.next();
        if (step.done === true) return step.value;
        got.push(step.value.data);
      }
    })();
    // Backoff 0 ms on the manual clock: release each wait as it is armed.
    let end: unknown;
    void pump.then((v) => (end = v));
    while (end === undefined) {
      await until(() => clock.pendingTimers > 0 || end !== undefined, 'a backoff wait or the end');
      clock.advance(0);
    }
    expect(requests, JSON.stringify(got)).toEqual(['/rows', '/rows?from=7', '/rows?from=14', '/rows?from=21']);
    expect(got).toEqual(range(40).map((i) => i * 10));
    expect(requests).toEqual(['/rows', '/rows?from=7', '/rows?from=14', '/rows?from=21']);
    expect(end).toEqual({ count: 20, next: 40 });
  });

  it('fetchJsonLines gives up after maxRetries cuts in a row, and rejects a 4xx at once', async () => {
    let n = 0;
    const base = await serve((req, res) => {
      n++;
      if (req.url === '/missing') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"PB_ERR_NOT_FOUND","message":"no such stream"}}');
        return;
      }
      void streamJsonLines(res, async function* () {
        await new Promise((r) => setImmediate(r));
        res.socket?.destroy();
        yield 1;
      });
    });
    const clock = new ManualClock();
    const it = fetchJsonLines(`${base}/cut`, { clock, random: () => 0, maxRetries: 2 });
    const p = it.next();
    let settled = false;
    void p.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (!settled) {
      await until(() => clock.pendingTimers > 0 || settled, 'a wait');
      clock.advance(0);
    }
    await expect(p).rejects.toBeInstanceOf(IncompleteStreamError);
    expect(n).toBe(3);
    const missing = fetchJsonLines(`${base}/missing`, { clock });
    await expect(missing.next()).rejects.toMatchObject({ status: 404, serverCode: 'PB_ERR_NOT_FOUND' });
    expect(n).toBe(4);
  });

  it("fetchJsonLines waits out a 503's Retry-After before it asks again", async () => {
    let n = 0;
    const base = await serve((_req, res) => {
      n++;
      if (n === 1) {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '3' }).end('{"error":{"code":"PB_ERR_UNAVAILABLE","message":"busy"}}');
        return;
      }
      void streamJsonLines(res, async function* () {
        yield 'row';
      });
    });
    const clock = new ManualClock();
    const it = fetchJsonLines<string>(`${base}/busy`, { clock, random: () => 0 });
    const first = it.next();
    await until(() => clock.pendingTimers > 0, 'the backoff wait');
    clock.advance(2999);
    expect(clock.pendingTimers).toBe(1); // still waiting: not before Retry-After
    expect(n).toBe(1);
    clock.advance(1);
    expect((await first).value).toMatchObject({ data: 'row' });
    expect(n).toBe(2);
  });

  it('readJsonLines rejects garbage: non-JSON, non-records, gaps in seq, an HTTP error', async () => {
    const bodies: Record<string, string> = {
      '/text': 'hello\n',
      '/array': '[1]\n',
      '/noseq': '{"data":1}\n',
      '/gap': '{"seq":0,"data":1}\n{"seq":2,"data":1}\n{"end":true,"count":2,"next":3}\n',
    };
    const base = await serve((req, res) => {
      if (req.url === '/404') res.writeHead(404).end();
      else res.writeHead(200).end(bodies[req.url ?? '']);
    });
    for (const path of Object.keys(bodies)) {
      await expect(collect(readJsonLines(await fetch(`${base}${path}`))), path).rejects.toBeInstanceOf(ProtocolError);
    }
    await expect(collect(readJsonLines(await fetch(`${base}/404`)))).rejects.toBeInstanceOf(HttpStatusError);
  });

  it('rejects bad options before writing anything', async () => {
    const res = { writeHead: () => expect.fail('must not write') } as unknown as ServerResponse;
    await expect(streamJsonLines(res, [], { from: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(streamJsonLines(res, [], { maxRecordBytes: 1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(streamJsonLines(res, 42 as never)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('jsonLinesResponse (web form)', () => {
  it('pulls from the source only as the reader reads, and ends with the end record', async () => {
    let pulled = 0;
    const response = jsonLinesResponse(
      (function* () {
        for (let i = 0; i < 1000; i++) {
          pulled++;
          yield i;
        }
      })(),
      { from: 5 },
    );
    expect(response.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    const it = readJsonLines<number>(response);
    for (let i = 0; i < 3; i++) expect((await it.next()).value).toEqual({ seq: 5 + i, data: i });
    expect(pulled).toBeLessThanOrEqual(5);
    const rest = await collect(it);
    expect(rest.lines.length).toBe(997);
    expect(rest.end).toEqual({ count: 1000, next: 1005 });
  });

  it('canceling the body stops the source', async () => {
    let finallyRan = false;
    const response = jsonLinesResponse(
      (async function* () {
        try {
          for (let i = 0; ; i++) yield i;
        } finally {
          finallyRan = true;
        }
      })(),
    );
    const it = readJsonLines(response);
    await it.next();
    await it.return(undefined as never); // breaking out of for-await does this
    await until(() => finallyRan, 'the source to be stopped');
  });
});
