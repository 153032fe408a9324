import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeSink, serializeEvent, SseHub, type SseStream } from '../../src/index.js';

/** A server whose one route makes an SSE stream on `hub`; `onStream` gets it (and the response). */
async function serve(hub: SseHub, onStream: (stream: SseStream, res: ServerResponse, req: IncomingMessage) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => onStream(hub.stream(nodeSink(req, res)), res, req));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** A raw client: what the server put on the wire, byte for byte. */
function rawGet(port: number, version: '1.0' | '1.1'): { bytes: () => Buffer; until: (done: (text: string) => boolean) => Promise<string>; end: () => void } {
  const socket = connect(port, '127.0.0.1');
  socket.write(`GET /sse HTTP/${version}\r\nHost: 127.0.0.1\r\n\r\n`);
  const chunks: Buffer[] = [];
  const waiters = new Set<() => void>();
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    for (const w of waiters) w();
  });
  socket.on('close', () => {
    for (const w of waiters) w();
  });
  const bytes = (): Buffer => Buffer.concat(chunks);
  return {
    bytes,
    until: (done) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const text = bytes().toString('latin1');
          if (done(text)) {
            waiters.delete(check);
            resolve(text);
          } else if (socket.destroyed) reject(new Error(`the connection closed first; got ${JSON.stringify(text)}`));
        };
        waiters.add(check);
        check();
      }),
    end: () => socket.destroy(),
  };
}

/** Splits a chunked body strictly: every size line must match its bytes, and the body ends with the last chunk. */
function dechunk(body: string): { chunks: string[]; ended: boolean } {
  const chunks: string[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    if (eol === -1) return { chunks, ended: false };
    const size = Number.parseInt(body.slice(at, eol), 16);
    expect(body.slice(at, eol)).toMatch(/^[0-9a-f]+$/);
    if (size === 0) {
      expect(body.slice(eol)).toBe('\r\n\r\n');
      return { chunks, ended: true };
    }
    const data = body.slice(eol + 2, eol + 2 + size);
    if (body.length < eol + 4 + size) return { chunks, ended: false };
    expect(body.slice(eol + 2 + size, eol + 4 + size)).toBe('\r\n');
    chunks.push(data);
    at = eol + 4 + size;
  }
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

describe('nodeSink on HTTP/1.1', () => {
  it('puts each flush on the wire as one well-formed chunk, the same bytes for every connection, and ends with the last chunk', async () => {
    const hub = new SseHub({ heartbeatMs: 0 });
    const streams: SseStream[] = [];
    const { server, port } = await serve(hub, (stream) => {
      stream.start();
      streams.push(stream);
    });
    servers.push(server);
    const clients = [rawGet(port, '1.1'), rawGet(port, '1.1')];
    await Promise.all(clients.map((c) => c.until((t) => t.includes('\r\n\r\n'))));
    const a = serializeEvent({ id: '1', data: 'one' });
    const b = serializeEvent({ id: '2', data: 'two\nlines' });
    for (const s of streams) {
      s.send(a);
      s.send(b); // the same turn: one chunk
    }
    await Promise.all(clients.map((c) => c.until((t) => t.includes('data: lines'))));
    for (const s of streams) s.send({ data: 'ü'.repeat(200) }); // a multi-byte event, a size over 0xff
    await Promise.all(clients.map((c) => c.until((t) => t.length > 400)));
    for (const s of streams) s.close();
    const texts = await Promise.all(clients.map((c) => c.until((t) => t.endsWith('0\r\n\r\n'))));
    for (const text of texts) {
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(head.toLowerCase()).toContain('transfer-encoding: chunked');
      const { chunks, ended } = dechunk(text.slice(head.length + 4));
      expect(ended).toBe(true);
      expect(chunks.map((c) => Buffer.from(c, 'latin1').toString('utf8'))).toEqual([':\n', 'id: 1\ndata: one\n\nid: 2\ndata: two\ndata: lines\n\n', `data: ${'ü'.repeat(200)}\n\n`]);
    }
    clients.forEach((c) => c.end());
  });

  it('leaves the bytes to res.write when middleware replaced it (compression, say)', async () => {
    const hub = new SseHub({ heartbeatMs: 0 });
    const seen: string[] = [];
    let stream: SseStream | undefined;
    const { server, port } = await serve(hub, (s, res) => {
      const write = res.write.bind(res) as (chunk: Buffer) => boolean;
      res.write = ((chunk: Buffer) => {
        seen.push(Buffer.from(chunk).toString('utf8'));
        return write(chunk);
      }) as typeof res.write;
      s.start();
      stream = s;
    });
    servers.push(server);
    const client = rawGet(port, '1.1');
    await client.until((t) => t.includes('\r\n\r\n'));
    stream!.send({ data: 'via the wrapper' });
    stream!.close();
    const text = await client.until((t) => t.endsWith('0\r\n\r\n'));
    expect(seen).toEqual([':\n', 'data: via the wrapper\n\n']);
    expect(dechunk(text.slice(text.indexOf('\r\n\r\n') + 4)).chunks).toEqual([':\n', 'data: via the wrapper\n\n']);
    client.end();
  });
});

describe('nodeSink on HTTP/1.0', () => {
  it('writes the bytes as they are, unframed (no chunked coding there)', async () => {
    const hub = new SseHub({ heartbeatMs: 0 });
    let stream: SseStream | undefined;
    const { server, port } = await serve(hub, (s) => {
      s.start();
      stream = s;
    });
    servers.push(server);
    const client = rawGet(port, '1.0');
    await client.until((t) => t.includes('\r\n\r\n'));
    stream!.send({ id: '7', data: 'plain' });
    await client.until((t) => t.includes('data: plain'));
    stream!.close();
    const text = await client.until((t) => t.endsWith('data: plain\n\n'));
    expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toBe(':\nid: 7\ndata: plain\n\n');
    client.end();
  });
});
