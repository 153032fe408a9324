// What each framework adapter adds beyond the conformance kit: mounting under prefixes, letting
// other requests through, refusing a body that a parser already read, the Fastify plugin's
// encapsulation and error handler, the JSON error middlewares.
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { describe, expect, it } from 'vitest';
import * as pbExpress from '../../src/adapters/express/index.js';
import { patchbayPlugin } from '../../src/adapters/fastify/index.js';
import * as pbKoa from '../../src/adapters/koa/index.js';
import * as pbWeb from '../../src/adapters/web/index.js';
import { InvalidArgumentError, LongPollHandler, PollHandle, PollHandler, PubSubBroker } from '../../src/index.js';
import { perTest, serveRig } from '../helpers.js';

function rig(basePath = '/jobs') {
  const broker = new PubSubBroker();
  const jobs = new PollHandle();
  const poll = new PollHandler({ jobs, basePath, run: () => 'done' });
  const longPoll = new LongPollHandler({ broker, maxHoldMs: 1000 });
  perTest.defer(async () => {
    await longPoll.close();
    await poll.close();
    await jobs.close();
    await broker.close();
  });
  return { broker, poll, longPoll };
}

const post = (url: string, body: string, type = 'application/json') => fetch(url, { method: 'POST', headers: { 'content-type': type }, body });

describe('express', () => {
  it('a route that forgot its target (/rooms/:room/poll) never serves ?pattern=> or ?topic= from the query (issue 15)', async () => {
    const { broker, longPoll } = rig();
    await broker.publish('admin.secrets', 'the launch codes');
    const app = express();
    app.all('/rooms/:room/poll', pbExpress.longPoll(longPoll)); // no :topic param, no target option
    const { url: base } = await serveRig(app);
    const head = (await broker.head()).replace(/-[0-9a-z]+$/, '-0');
    for (const query of ['pattern=%3E', 'pattern=admin.*', 'topic=admin.secrets']) {
      const res = await fetch(`${base}/rooms/lobby/poll?${query}&cursor=${head}&timeout=0`);
      expect(res.status, query).toBe(400);
      const body = await res.text();
      expect(body).not.toContain('launch codes');
      expect((JSON.parse(body) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'PB_ERR_INVALID_ARGUMENT', message: expect.stringContaining('queryTarget') });
    }
  });

  it('serves jobs under a router prefix (the handler sees req.originalUrl) and lets other paths through with basePath', async () => {
    const { poll } = rig('/api/jobs');
    const app = express();
    const api = express.Router();
    api.use(pbExpress.pollJobs(poll, { basePath: '/api/jobs' }));
    api.get('/other', (_req, res) => void res.send('other'));
    app.use('/api', api);
    const { url: base } = await serveRig(app);
    const start = await post(`${base}/api/jobs`, '{}');
    expect(start.status).toBe(202);
    expect(start.headers.get('location')).toMatch(/^\/api\/jobs\//);
    expect((await fetch(`${base}${start.headers.get('location')!}`)).status).toBe(200);
    expect(await (await fetch(`${base}/api/other`)).text()).toBe('other');
  });

  it('routes() registers the demo routes on a router, with JSON errors for them', async () => {
    const { poll, broker, longPoll } = rig('/api/jobs');
    const app = express();
    app.use('/api', pbExpress.routes(express.Router(), { publish: { broker }, longPoll: { handler: longPoll }, jobs: { handler: poll } }));
    const { url: base } = await serveRig(app);
    const pub = await post(`${base}/api/pub/t`, 'hi', 'text/plain');
    expect(pub.status).toBe(201);
    const { id } = (await pub.json()) as { id: string };
    const lp = await fetch(`${base}/api/lp/t?cursor=${(await broker.head())}&timeout=0`);
    expect(lp.status).toBe(204);
    expect(lp.headers.get('patchbay-cursor')).toBe(id);
    expect((await post(`${base}/api/jobs`, '{}')).headers.get('location')).toMatch(/^\/api\/jobs\//);
    const bad = await post(`${base}/api/pub/%E0%A4%A`, 'x', 'text/plain');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_INVALID_ARGUMENT');
  });

  it('refuses to wait on a body a parser already read, through the error path', async () => {
    const { broker } = rig();
    const app = express();
    app.use(express.json());
    app.all('/pub/:topic', pbExpress.publish(broker));
    const errors: unknown[] = [];
    app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      errors.push(error);
      res.status(500).end();
    });
    const { url: base } = await serveRig(app);
    expect((await post(`${base}/pub/t`, '{"a":1}')).status).toBe(500);
    expect(String(errors[0])).toMatch(/already read/);
    // A body the parser left alone (text/plain) is still published.
    expect((await post(`${base}/pub/t`, 'hi', 'text/plain')).status).toBe(201);
  });

  it('answers a PatchbayError from a target function, and jsonErrors hides other errors', async () => {
    const { longPoll } = rig();
    const app = express();
    app.all('/lp', pbExpress.longPoll(longPoll, { target: () => { throw new InvalidArgumentError('no target'); } }));
    app.get('/boom', () => { throw new Error('secret'); });
    app.use(pbExpress.jsonErrors());
    const { url: base } = await serveRig(app);
    const lp = await fetch(`${base}/lp`);
    expect(lp.status).toBe(400);
    expect(await lp.json()).toEqual({ error: { code: 'PB_ERR_INVALID_ARGUMENT', message: 'no target' } });
    const boom = await fetch(`${base}/boom`);
    expect(boom.status).toBe(500);
    expect(await boom.json()).toEqual({ error: { code: 'PB_ERR_INTERNAL', message: 'Internal server error' } });
  });
  it('serves jobs under a route with parameters (/rooms/:room/summarize): Location follows the room', async () => {
    const jobs = new PollHandle();
    const poll = new PollHandler<{ room: string }, string>({
      jobs,
      basePath: '/rooms/:room/summarize',
      parse: (_body, _req, params) => ({ room: params['room']! }),
      run: (input) => `summary of ${input.room}`,
    });
    perTest.defer(async () => {
      await poll.close();
      await jobs.close();
    });
    const atRoute = express();
    atRoute.use('/rooms/:room/summarize', pbExpress.pollJobs(poll));
    // Mounted without a path, the basePath option lets other routes through.
    const anywhere = express();
    anywhere.use(pbExpress.pollJobs(poll, { basePath: '/rooms/:room/summarize' }));
    anywhere.get('/rooms/:room/other', (req, res) => void res.send(`other ${req.params.room}`));
    const bases = [(await serveRig(atRoute)).url, (await serveRig(anywhere)).url];
    for (const [base, room] of [[bases[0]!, '7'], [bases[1]!, 'blue']] as const) {
      const start = await post(`${base}/rooms/${room}/summarize`, '{}');
      expect(start.status).toBe(202);
      const location = start.headers.get('location')!;
      expect(location).toMatch(new RegExp(`^/rooms/${room}/summarize/[^/]+$`));
      const read = await fetch(`${base}${location}`, { headers: { prefer: 'wait=5' } });
      expect(await read.json()).toMatchObject({ state: 'succeeded', result: `summary of ${room}` });
    }
    const base = bases[1]!;
    expect(await (await fetch(`${base}/rooms/7/other`)).text()).toBe('other 7');
  });
});

describe('fastify', () => {
  it('is encapsulated: routes outside it keep their JSON parser; with a prefix, the handler sees the full URL', async () => {
    const { poll, broker } = rig('/api/jobs');
    const app = Fastify();
    perTest.defer(() => app.close());
    app.post('/echo', async (request) => request.body);
    await app.register(patchbayPlugin, { prefix: '/api', jobs: { handler: poll }, publish: { broker } });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    expect(await (await post(`${base}/echo`, '{"a":1}')).json()).toEqual({ a: 1 });
    const start = await post(`${base}/api/jobs`, '{}');
    expect(start.status).toBe(202);
    expect(start.headers.get('location')).toMatch(/^\/api\/jobs\//);
    const pub = await post(`${base}/api/pub/t`, '{"a":1}');
    expect(pub.status).toBe(201);
    expect((await broker.read('t', null, 1)).messages[0]!.data).toEqual({ a: 1 });
  });

  it('answers what fails before a handler as patchbay JSON errors: a target that throws, a malformed Content-Type', async () => {
    const { longPoll, broker } = rig();
    const app = Fastify();
    perTest.defer(() => app.close());
    await app.register(patchbayPlugin, {
      longPoll: { handler: longPoll, path: '/lp', target: () => { throw new InvalidArgumentError('no target'); } },
      publish: { broker },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const lp = await fetch(`${base}/lp`);
    expect(lp.status).toBe(400);
    expect(await lp.json()).toEqual({ error: { code: 'PB_ERR_INVALID_ARGUMENT', message: 'no target' } });
    const bad = await post(`${base}/pub/t`, 'x', 'not a type');
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(bad.status).toBeLessThan(500);
    expect(bad.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(((await bad.json()) as { error: { code: string } }).error.code).toMatch(/^PB_ERR_/);
  });
});

describe('koa', () => {
  it('lets other paths through with basePath, and jsonErrors answers thrown errors as JSON', async () => {
    const { poll } = rig();
    const app = new Koa();
    app.silent = true;
    const router = new Router();
    router.get('/boom', () => { throw new Error('secret'); });
    router.get('/teapot', (ctx) => ctx.throw(418, 'short and stout'));
    router.get('/other', (ctx) => { ctx.body = 'other'; });
    app.use(pbKoa.jsonErrors());
    app.use(pbKoa.pollJobs(poll, { basePath: '/jobs' }));
    app.use(router.routes());
    const { url: base } = await serveRig(app.callback());
    expect((await post(`${base}/jobs`, '{}')).status).toBe(202);
    expect(await (await fetch(`${base}/other`)).text()).toBe('other');
    const boom = await fetch(`${base}/boom`);
    expect(boom.status).toBe(500);
    expect(await boom.json()).toEqual({ error: { code: 'PB_ERR_INTERNAL', message: 'Internal server error' } });
    const teapot = await fetch(`${base}/teapot`);
    expect(teapot.status).toBe(400);
    expect(await teapot.json()).toEqual({ error: { code: 'PB_ERR_PROTOCOL', message: 'short and stout' } });
  });

  it('refuses to wait on a body something already read', async () => {
    const { broker } = rig();
    const app = new Koa();
    app.silent = true;
    app.use(async (ctx, next) => {
      for await (const _ of ctx.req) void _; // a body parser
      await next();
    });
    const router = new Router();
    router.all('/pub/:topic', pbKoa.publish(broker));
    app.use(router.routes());
    const { url: base } = await serveRig(app.callback());
    const res = await post(`${base}/pub/t`, '{}');
    expect(res.status).toBe(500);
  });
});

describe('web', () => {
  it('publish asks authorize with the web Request', async () => {
    const { broker } = rig();
    const pub = pbWeb.publish(broker, { authorize: (_target, request) => request.headers.get('x-key') === 'k' });
    const refused = await pub(new Request('http://x/pub/t', { method: 'POST', body: 'a' }), 't');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('PB_ERR_FORBIDDEN');
    const ok = await pub(new Request('http://x/pub/t', { method: 'POST', body: 'a', headers: { 'x-key': 'k' } }), 't');
    expect(ok.status).toBe(201);
    expect(() => pbWeb.publish(broker, { maxBodyBytes: -1 })).toThrow(InvalidArgumentError);
  });
});
