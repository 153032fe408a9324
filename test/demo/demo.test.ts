import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the demo is plain JavaScript
import { createDemo } from '../../demo/server.js';
import type { LongPollHandler, PubSubBroker } from '../../src/index.js';
import { serveRig, TestResources, until } from '../helpers.js';

let base = '';
let demo: { server: Server; broker: PubSubBroker; longPoll: LongPollHandler };

const suite = new TestResources();
beforeAll(() =>
  suite.setup(async () => {
    demo = createDemo({ maxBodyBytes: 1024 });
    ({ url: base } = await serveRig(demo.server, { resources: suite }));
  }),
);
afterAll(async () => {
  await suite.teardown();
});

const errorCode = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string } }).error.code;

describe('demo server', () => {
  it('serves the page', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('patchbay demo');
  });

  it('POST /pub/:topic answers 201 with the id; text/plain is a string, JSON its value', async () => {
    const text = await fetch(`${base}/pub/news`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(text.status).toBe(201);
    const { id } = (await text.json()) as { id: string };
    expect(id).toMatch(/^[0-9a-z]+-[0-9a-z]+$/);
    await fetch(`${base}/pub/news`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' });
    const read = await demo.broker.read('news', null, 10);
    expect(read.messages.map((m) => m.data)).toEqual(['hello', { n: 1 }]);
  });

  it('GET /lp/:topic is woken by POST /pub/:topic', async () => {
    const waiting = fetch(`${base}/lp/room`);
    await until(() => demo.longPoll.stats().parked === 1, 'the poll to park');
    const pub = await fetch(`${base}/pub/room`, { method: 'POST', body: 'hi' });
    const { id } = (await pub.json()) as { id: string };
    const res = await waiting;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { messages: { id: string; data: unknown }[]; cursor: string };
    expect(body.messages).toEqual([{ id, topic: 'room', data: 'hi' }]);
    expect(body.cursor).toBe(id);
  });

  it('refuses a body over the limit with 413, publishing nothing', async () => {
    const before = demo.broker.stats().published;
    const res = await fetch(`${base}/pub/big`, { method: 'POST', body: 'x'.repeat(2048) });
    expect(res.status).toBe(413);
    expect(await errorCode(res)).toBe('PB_ERR_BODY_TOO_LARGE');
    expect(demo.broker.stats().published).toBe(before);
  });

  it('answers bad input with a 4xx and a JSON body', async () => {
    const cases: [string, RequestInit | undefined, number, string][] = [
      ['/pub/a..b', { method: 'POST', body: 'x' }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/pub/ok', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{oops' }, 400, 'PB_ERR_PROTOCOL'],
      ['/pub/ok', { method: 'POST', headers: { 'content-type': 'image/png' }, body: 'x' }, 415, 'PB_ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['/pub/ok', { method: 'GET' }, 405, 'PB_ERR_METHOD_NOT_ALLOWED'],
      ['/pub/%E0%A4%A', { method: 'POST', body: 'x' }, 400, 'PB_ERR_INVALID_ARGUMENT'],
      ['/lp/ok?cursor=%00%0d%0a', undefined, 400, 'PB_ERR_INVALID_CURSOR'],
      ['/nope', undefined, 404, 'PB_ERR_NOT_FOUND'],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await fetch(`${base}${path}`, init);
      expect(res.status, path).toBe(status);
      expect(await errorCode(res), path).toBe(code);
    }
  });

  it('treats __proto__ as an ordinary topic', async () => {
    const res = await fetch(`${base}/pub/__proto__`, { method: 'POST', body: 'p' });
    expect(res.status).toBe(201);
    const body = (await (await fetch(`${base}/lp/__proto__?cursor=${(await demo.broker.head()).replace(/-[0-9a-z]+$/, '-0')}`)).json()) as {
      messages: { data: unknown }[];
    };
    expect(body.messages.map((m) => m.data)).toEqual(['p']);
  });
});
