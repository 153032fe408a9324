import http, { type IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, ForbiddenError, InvalidArgumentError, isAllowedOrigin, PublishHandler, PubSubBroker, type PublishHandlerOptions } from '../../src/index.js';
import { errorBody, request } from '../hardening/http.js';
import { perTest, serveRig } from '../helpers.js';

async function rig(options: Omit<PublishHandlerOptions, 'broker'> = {}) {
  const broker = new PubSubBroker();
  const handler = new PublishHandler({ ...options, broker });
  perTest.defer(() => broker.close());
  const { url: base } = await serveRig((req, res) => void handler.handle(req, res, decodeURIComponent((req.url ?? '').slice('/pub/'.length))));
  return { broker, handler, base, host: new URL(base).host };
}

const text = { 'content-type': 'text/plain' };

/** The status of a publish that declares a 10 MiB body and sends only its first bytes, ever. */
function answeredBeforeTheBody(base: string, headers: Record<string, string>): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = http.request(`${base}/pub/t`, { method: 'POST', headers: { ...headers, 'content-length': String(10 * 1024 * 1024) } }, (res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    req.on('error', reject);
    req.write('only the first bytes'); // and never the rest
  });
}

describe('PublishHandler: a browser on another site cannot publish', () => {
  it('a cross-site Origin is refused with 403 before anything is stored, text/plain included', async () => {
    const { broker, base, handler } = await rig();
    for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1.evil.example', 'not a url']) {
      const answer = await request(base, { method: 'POST', path: '/pub/t', headers: { ...text, origin }, body: 'x' });
      expect(answer.status, origin).toBe(403);
      expect(errorBody(answer).code).toBe(ErrorCodes.FORBIDDEN);
    }
    expect(broker.stats().published).toBe(0);
    expect(handler.stats().crossSiteRefused).toBe(4);
  });

  it('its own origin, no Origin at all (servers, tools) and an origin cors allows may publish', async () => {
    const { base, host } = await rig({ cors: { origin: ['https://app.example'] } });
    for (const headers of [{ origin: `http://${host}` }, {}, { origin: 'https://app.example' }] as Record<string, string>[]) {
      const answer = await request(base, { method: 'POST', path: '/pub/t', headers: { ...text, ...headers }, body: 'x' });
      expect(answer.status).toBe(201);
    }
    const other = await request(base, { method: 'POST', path: '/pub/t', headers: { ...text, origin: 'https://other.example' }, body: 'x' });
    expect(other.status).toBe(403);
  });
});

describe('PublishHandler: authorized before the body is read', () => {
  it('a refused client gets 403 at once, though its declared body never arrives', async () => {
    const { base, broker } = await rig({ authorize: (_target, req) => req.headers['x-key'] === 'k' });
    const status = await answeredBeforeTheBody(base, text);
    expect(status).toBe(403);
    expect(broker.stats().published).toBe(0);
  });

  it('the hook gets (target, context) and may answer with a grant', async () => {
    const seen: unknown[] = [];
    const { base } = await rig({
      authorize: (target, req) => {
        seen.push(target);
        return req.headers['x-key'] === 'k' ? { identity: 'ann' } : false;
      },
    });
    expect((await request(base, { method: 'POST', path: '/pub/a.b', headers: { ...text, 'x-key': 'k' }, body: 'x' })).status).toBe(201);
    expect(seen).toEqual([{ topics: ['a.b'] }]);
  });
});

describe('PublishHandler: bodies no transport can carry are refused at the door', () => {
  it('JSON nested 5,000 deep, a __proto__ key and a lone surrogate answer 400 with a JSON body, and nothing is stored', async () => {
    const { base, broker } = await rig();
    const bodies = ['['.repeat(5000) + ']'.repeat(5000), '{"a":{"__proto__":{"x":1}}}', '"\\ud800"', '{"k":"\\udc00"}'];
    for (const body of bodies) {
      const answer = await request(base, { method: 'POST', path: '/pub/t', headers: { 'content-type': 'application/json' }, body });
      expect(answer.status).toBe(400);
      expect(errorBody(answer).code).toMatch(/^PB_ERR_(PROTOCOL|INVALID_ARGUMENT)$/);
    }
    expect(broker.stats().published).toBe(0);
  });

  it('a body over maxBodyBytes is 413, a bad topic 400, another method 405', async () => {
    const { base } = await rig({ maxBodyBytes: 10 });
    expect((await request(base, { method: 'POST', path: '/pub/t', headers: text, body: 'x'.repeat(11) })).status).toBe(413);
    expect((await request(base, { method: 'POST', path: '/pub/a..b', headers: text, body: 'x' })).status).toBe(400);
    expect((await request(base, { method: 'POST', path: '/pub/', headers: text, body: 'x' })).status).toBe(400);
    expect((await request(base, { method: 'GET', path: '/pub/t' })).status).toBe(405);
  });

  it('property: any body and content type gets 201 or a 4xx with a JSON error body, never a 5xx', async () => {
    const { base } = await rig({ maxBodyBytes: 4096 });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.json(), fc.string(), fc.constant('['.repeat(100)), fc.constant('{"__proto__":1}')),
        fc.constantFrom('application/json', 'text/plain', 'application/x+json', 'image/png'),
        async (body, type) => {
          const answer = await request(base, { method: 'POST', path: '/pub/t', headers: { 'content-type': type }, body });
          if (answer.status !== 201) {
            expect(answer.status).toBeGreaterThanOrEqual(400);
            expect(answer.status).toBeLessThan(500);
            expect(errorBody(answer).code).toMatch(/^PB_ERR_/);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('isAllowedOrigin: the origin rule, exactly', () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

  it('same host and port by the Origin scheme, HTTP/2 :authority included; never null, never a look-alike', () => {
    expect(isAllowedOrigin(req({ origin: 'https://a.example', host: 'a.example:443' }))).toBe(true);
    expect(isAllowedOrigin(req({ origin: 'http://a.example', host: 'a.example:80' }))).toBe(true);
    expect(isAllowedOrigin(req({ origin: 'https://A.example', ':authority': 'a.example' }))).toBe(true);
    expect(isAllowedOrigin(req({ origin: 'http://[::1]:3000', host: '[::1]:3000' }))).toBe(true);
    expect(isAllowedOrigin(req({ origin: 'https://a.example', host: 'a.example:8443' }))).toBe(false);
    expect(isAllowedOrigin(req({ origin: 'https://a.example.evil', host: 'a.example' }))).toBe(false);
    expect(isAllowedOrigin(req({ origin: 'null', host: 'null' }))).toBe(false);
    expect(isAllowedOrigin(req({ origin: 'https://a.example' }))).toBe(false); // no Host: nothing to be the same as
    expect(isAllowedOrigin(req({ host: 'a.example' }))).toBe(true); // no Origin: not a browser page
  });

  it('a list, a predicate that must answer true, or * written out', () => {
    const r = req({ origin: 'https://app.example', host: 'api.example' });
    expect(isAllowedOrigin(r, ['https://app.example'])).toBe(true);
    expect(isAllowedOrigin(r, (o) => o.endsWith('.example'))).toBe(true);
    expect(isAllowedOrigin(r, (() => 'yes') as unknown as (o: string) => boolean)).toBe(false);
    expect(isAllowedOrigin(r, '*')).toBe(true);
    expect(isAllowedOrigin(r)).toBe(false);
  });

  it('a PublishHandler with cors but no cors.origin lets no other site publish, and a refusal closes the connection', async () => {
    const { base, broker } = await rig({ cors: {} });
    const answer = await request(base, { method: 'POST', path: '/pub/t', headers: { ...text, origin: 'https://evil.example' }, body: 'x' });
    expect(answer.status).toBe(403);
    expect(answer.headers['connection']).toBe('close');
    expect(broker.stats().published).toBe(0);
  });
});

describe('PublishHandler: contentTypes names the media types a publish may carry', () => {
  const publishAs = (base: string, type: string | undefined, body: string) =>
    request(base, { method: 'POST', path: '/pub/t', headers: type === undefined ? {} : { 'content-type': type }, body });

  it('by default text/plain (and no Content-Type), application/json and +json types; another type is 415 and nothing is stored', async () => {
    const { base, broker } = await rig();
    for (const type of ['text/plain', 'text/plain; charset=utf-8', undefined, 'application/json', 'application/x+json', 'Application/JSON']) {
      expect((await publishAs(base, type, type?.toLowerCase().includes('json') ? '{"n":1}' : 'x')).status, String(type)).toBe(201);
    }
    for (const type of ['image/png', 'text/csv', 'application/octet-stream']) {
      const answer = await publishAs(base, type, 'x');
      expect(answer.status, type).toBe(415);
      expect(errorBody(answer).code).toBe(ErrorCodes.UNSUPPORTED_MEDIA_TYPE);
    }
    expect(broker.stats().published).toBe(6);
  });

  it('a list narrows or widens it: text/* types publish as text, a +json type alone admits only itself', async () => {
    const { base, broker } = await rig({ contentTypes: ['text/csv', 'application/vnd.x+json'] });
    expect((await publishAs(base, 'text/csv', 'a,b')).status).toBe(201);
    expect((await publishAs(base, 'application/vnd.x+json', '[1]')).status).toBe(201);
    for (const type of ['text/plain', undefined, 'application/json', 'application/y+json']) {
      expect((await publishAs(base, type, '1')).status, String(type)).toBe(415);
    }
    const read = await broker.read('t', null, 10);
    expect(read.messages.map((m) => m.data)).toEqual(['a,b', [1]]);
  });

  it('the media type is refused before a byte of the body is read', async () => {
    const { base, broker } = await rig();
    const status = await answeredBeforeTheBody(base, { 'content-type': 'image/png' });
    expect(status).toBe(415);
    expect(broker.stats().published).toBe(0);
  });

  it('a list it cannot decode, an empty one or not a list is an InvalidArgumentError at construction', () => {
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    for (const contentTypes of [[], ['image/png'], ['text'], ['application/octet-stream'], 'text/plain', [1]]) {
      expect(() => new PublishHandler({ broker, contentTypes: contentTypes as readonly string[] }), JSON.stringify(contentTypes)).toThrow(
        expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }),
      );
    }
  });
});

describe('PublishHandler: parse validates or transforms the body before it is published', () => {
  it('what parse returns is published; it gets the decoded body, the topic and the context', async () => {
    const seen: unknown[] = [];
    const { base, broker } = await rig({
      parse: (data, topic, req) => {
        seen.push([data, topic, req.headers['x-who']]);
        return { wrapped: data };
      },
    });
    expect((await request(base, { method: 'POST', path: '/pub/t', headers: { 'content-type': 'application/json', 'x-who': 'ann' }, body: '{"n":1}' })).status).toBe(201);
    expect((await request(base, { method: 'POST', path: '/pub/t', headers: text, body: 'hi' })).status).toBe(201);
    expect(seen).toEqual([
      [{ n: 1 }, 't', 'ann'],
      ['hi', 't', undefined],
    ]);
    expect((await broker.read('t', null, 10)).messages.map((m) => m.data)).toEqual([{ wrapped: { n: 1 } }, { wrapped: 'hi' }]);
  });

  it('a PatchbayError thrown (or rejected) answers its status; anything else is 500 PB_ERR_INTERNAL with its message hidden; nothing is stored', async () => {
    const { base, broker } = await rig({
      parse: async (data) => {
        if (data === 'bad') throw new InvalidArgumentError('Expected a good body');
        if (data === 'forbidden') throw new ForbiddenError('Not that');
        if (data === 'bug') throw new TypeError('secret detail');
        return data;
      },
    });
    const bad = await request(base, { method: 'POST', path: '/pub/t', headers: text, body: 'bad' });
    expect([bad.status, errorBody(bad)]).toEqual([400, { code: ErrorCodes.INVALID_ARGUMENT, message: 'Expected a good body' }]);
    const forbidden = await request(base, { method: 'POST', path: '/pub/t', headers: text, body: 'forbidden' });
    expect([forbidden.status, errorBody(forbidden).code]).toEqual([403, ErrorCodes.FORBIDDEN]);
    const bug = await request(base, { method: 'POST', path: '/pub/t', headers: text, body: 'bug' });
    expect(bug.status).toBe(500);
    expect(errorBody(bug).code).toBe(ErrorCodes.INTERNAL);
    expect(bug.body).not.toContain('secret detail');
    expect(broker.stats().published).toBe(0);
    expect((await request(base, { method: 'POST', path: '/pub/t', headers: text, body: 'good' })).status).toBe(201);
  });

  it('parse is not called for a refused client, a refused origin or a refused media type', async () => {
    let calls = 0;
    const { base } = await rig({ authorize: (_t, req) => req.headers['x-key'] === 'k', parse: (d) => (calls++, d) });
    await request(base, { method: 'POST', path: '/pub/t', headers: text, body: 'x' });
    await request(base, { method: 'POST', path: '/pub/t', headers: { ...text, 'x-key': 'k', origin: 'https://evil.example' }, body: 'x' });
    await request(base, { method: 'POST', path: '/pub/t', headers: { 'content-type': 'image/png', 'x-key': 'k' }, body: 'x' });
    expect(calls).toBe(0);
  });

  it('a parse that is not a function is an InvalidArgumentError at construction', () => {
    const broker = new PubSubBroker();
    perTest.defer(() => broker.close());
    expect(() => new PublishHandler({ broker, parse: 'no' as never })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });
});
