// serveNode, the web Request -> node-style handler -> web Response bridge, in memory: no sockets.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { serveNode } from '../../src/adapters/web/index.js';
import { readBody } from '../../src/index.js';

const url = 'http://example.test/path/x?a=1&b=2';

async function readAll(res: Response): Promise<string> {
  return res.body === null ? '' : await res.text();
}

describe('serveNode: requests', () => {
  it('gives the handler the method, path and query, lower-cased headers, the host, and HTTP/1.1', async () => {
    let seen: IncomingMessage | undefined;
    const res = await serveNode(new Request(url, { headers: { 'X-Thing': 'v', Accept: 'text/plain' } }), (req, out) => {
      seen = req;
      out.end();
    });
    expect(res.status).toBe(200);
    expect(seen!.method).toBe('GET');
    expect(seen!.url).toBe('/path/x?a=1&b=2');
    expect(seen!.headers).toMatchObject({ 'x-thing': 'v', accept: 'text/plain', host: 'example.test' });
    expect(seen!.headersDistinct['x-thing']).toEqual(['v']);
    expect(seen!.rawHeaders).toContain('x-thing');
    expect(seen!.httpVersion).toBe('1.1');
    expect(seen!.httpVersionMajor).toBe(1);
    expect(seen!.complete).toBe(true);
    expect(seen!.socket.remoteAddress).toBeUndefined();
  });

  it('streams the request body to readBody, and passes the client address on', async () => {
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('hello '));
        c.enqueue(new TextEncoder().encode('world'));
        c.close();
      },
    });
    const request = new Request(url, { method: 'POST', body, duplex: 'half' } as RequestInit);
    const res = await serveNode(
      request,
      async (req, out) => {
        const text = (await readBody(req, 100)).toString();
        out.end(`${text} from ${req.socket.remoteAddress ?? '?'} complete=${String(req.complete)}`);
      },
      { remoteAddress: '10.0.0.1' },
    );
    expect(await res.text()).toBe('hello world from 10.0.0.1 complete=true');
  });

  it('refuses a request whose body something already read', async () => {
    const request = new Request(url, { method: 'POST', body: 'x' });
    await request.text();
    await expect(serveNode(request, (_req, out) => out.end())).rejects.toThrow(/already read/);
  });

  it('stops pulling a body past the limit', async () => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        pulled++;
        if (pulled > 1000) c.close();
        else c.enqueue(new Uint8Array(1024));
      },
    });
    const res = await serveNode(new Request(url, { method: 'POST', body, duplex: 'half' } as RequestInit), async (req, out) => {
      await readBody(req, 4096).catch((e: Error) => out.writeHead(413).end(e.message));
    });
    expect(res.status).toBe(413);
    expect(pulled).toBeLessThan(100);
  });
});

describe('serveNode: responses', () => {
  it('makes a fixed-body Response from writeHead + end, merging setHeader, keeping repeats, dropping hop-by-hop headers', async () => {
    const res = await serveNode(new Request(url), (_req, out) => {
      out.setHeader('x-early', '1');
      out.setHeader('set-cookie', ['a=1', 'b=2']);
      out.appendHeader('vary', 'Origin');
      out.writeHead(201, ['content-type', 'application/json', 'x-multi', 'one', 'x-multi', 'two', 'connection', 'close', 'x-early', '2']);
      out.end('{"ok":true}');
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('x-multi')).toBe('one, two');
    expect(res.headers.get('x-early')).toBe('2');
    expect(res.headers.get('vary')).toBe('Origin');
    expect(res.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(res.headers.get('connection')).toBeNull();
    expect(await res.json()).toEqual({ ok: true });
  });

  it('uses statusCode and set headers when the handler never calls writeHead', async () => {
    const res = await serveNode(new Request(url), (_req, out) => {
      out.statusCode = 202;
      out.setHeader('x-a', 'b');
      out.end(Buffer.from('done'));
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-a')).toBe('b');
    expect(await res.text()).toBe('done');
  });

  it('refuses what ServerResponse refuses: a second writeHead, setHeader after it, bad header values', async () => {
    const errors: string[] = [];
    await serveNode(new Request(url), (_req, out) => {
      out.writeHead(200);
      for (const f of [() => out.writeHead(200), () => out.setHeader('a', 'b'), () => out.removeHeader('a')]) {
        try {
          f();
        } catch (e) {
          errors.push((e as { code: string }).code);
        }
      }
      out.end();
    });
    expect(errors).toEqual(['ERR_HTTP_HEADERS_SENT', 'ERR_HTTP_HEADERS_SENT', 'ERR_HTTP_HEADERS_SENT']);
    await expect(serveNode(new Request(url), (_req, out) => out.setHeader('x', 'a\r\nb'))).rejects.toMatchObject({ code: 'ERR_INVALID_CHAR' });
  });

  it('answers HEAD and 204/304 without a body', async () => {
    const head = await serveNode(new Request(url, { method: 'HEAD' }), (_req, out) => {
      out.writeHead(200, { 'content-length': '5', etag: '"1"' });
      out.end('hello');
    });
    expect(head.body).toBeNull();
    expect(head.headers.get('content-length')).toBe('5');
    const none = await serveNode(new Request(url), (_req, out) => {
      out.writeHead(204);
      out.write('ignored');
      out.end();
    });
    expect(none.status).toBe(204);
    expect(none.body).toBeNull();
  });

  it('streams a body after flushHeaders, with the Response out before the end', async () => {
    let finish!: () => void;
    const res = await serveNode(new Request(url), (_req, out) => {
      out.writeHead(200, { 'content-type': 'text/event-stream' });
      out.flushHeaders();
      out.write('data: 1\n\n');
      finish = () => {
        out.write('data: 2\n\n');
        out.end();
      };
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: 1\n\n');
    finish();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    expect(rest).toBe('data: 2\n\n');
  });

  it('applies backpressure: write() returns false while the client does not read, drain follows reads', async () => {
    let out!: ServerResponse;
    const res = await serveNode(
      new Request(url),
      (_req, o) => {
        out = o;
        o.flushHeaders();
      },
      { highWaterMarkBytes: 1024 },
    );
    const chunk = Buffer.alloc(4096, 1);
    let writes = 0;
    while (out.write(chunk)) writes++;
    expect(writes).toBeLessThan(10); // 1 KiB in the stream, ~16 KiB in the response, then false
    expect(out.writableLength).toBeGreaterThan(0);
    const drained = new Promise<void>((resolve) => out.once('drain', () => resolve()));
    const reader = res.body!.getReader();
    let got = 0;
    const expected = (writes + 1) * chunk.length;
    while (got < expected) got += (await reader.read()).value!.byteLength;
    await drained;
    expect(got).toBe(expected);
    out.end();
    expect((await reader.read()).done).toBe(true);
  });

  it('keeps the promise pending while the handler parks, and resolves it when it answers', async () => {
    let answer!: () => void;
    let settled = false;
    const pending = serveNode(new Request(url), (_req, out) => {
      answer = () => out.writeHead(204).end();
    }).then((r) => {
      settled = true;
      return r;
    });
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    answer();
    expect((await pending).status).toBe(204);
  });
});

describe('serveNode: the client going away, failures', () => {
  it('an abort before the answer closes the response (not finished) and resolves an unread 499', async () => {
    const controller = new AbortController();
    let out!: ServerResponse;
    let req!: IncomingMessage;
    const closed = new Promise<void>((resolve) => {
      void serveNode(new Request(url, { method: 'POST', body: 'x', signal: controller.signal }), (r, o) => {
        req = r;
        out = o;
        o.on('close', () => resolve());
      }).then((res) => expect(res.status).toBe(499));
    });
    controller.abort();
    await closed;
    expect(out.destroyed).toBe(true);
    expect(out.writableFinished).toBe(false);
    expect(req.destroyed).toBe(true);
    expect((req as IncomingMessage & { aborted: boolean }).aborted).toBe(true);
    expect((await serveNode(new Request(url, { signal: AbortSignal.abort() }), () => undefined)).status).toBe(499);
  });

  it('canceling the streamed body closes the response', async () => {
    let out!: ServerResponse;
    const res = await serveNode(new Request(url), (_req, o) => {
      out = o;
      o.flushHeaders();
    });
    const closed = new Promise<void>((resolve) => out.once('close', () => resolve()));
    await res.body!.cancel();
    await closed;
    expect(out.writableFinished).toBe(false);
  });

  it('a handler that throws or rejects before answering rejects the promise', async () => {
    await expect(serveNode(new Request(url), () => {
      throw new Error('sync');
    })).rejects.toThrow('sync');
    await expect(serveNode(new Request(url), async () => {
      throw new Error('async');
    })).rejects.toThrow('async');
  });

  it('a response destroyed before its headers rejects; after them, the body errors instead of ending', async () => {
    await expect(serveNode(new Request(url), (_req, out) => out.destroy(new Error('reset')))).rejects.toThrow('reset');
    const res = await serveNode(new Request(url), (_req, out) => {
      out.write('partial');
      setImmediate(() => out.destroy(new Error('cut')));
    });
    await expect(readAll(res)).rejects.toThrow();
  });
});
