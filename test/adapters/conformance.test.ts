// The adapter conformance kit against plain node:http (the reference: the demo's routes, by hand)
// and every adapter on its real framework, each on 127.0.0.1:0.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import { createAdaptorServer } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import * as pbExpress from '../../src/adapters/express/index.js';
import { patchbayPlugin } from '../../src/adapters/fastify/index.js';
import * as pbKoa from '../../src/adapters/koa/index.js';
import * as pbWeb from '../../src/adapters/web/index.js';
import { InvalidArgumentError, NotFoundError, PublishHandler, sendError } from '../../src/index.js';
import { adapterConformance, type KitHandlers } from '../conformance/adapter-kit.js';
import { serveRig } from '../helpers.js';

/** The reference: node:http routed by hand, publish as in demo/server.js. */
adapterConformance('node:http', async (h: KitHandlers) => {
  const publish = new PublishHandler({ broker: h.broker, maxBodyBytes: h.maxBodyBytes, ...h.publishOptions });
  const route = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const match = /^\/(pub|lp|sse)\/([^/]+)$/.exec(url.pathname);
    let topic = '';
    if (match) {
      try {
        topic = decodeURIComponent(match[2]!);
      } catch {
        throw new InvalidArgumentError('The topic in the path is not valid percent-encoding');
      }
    }
    if (match?.[1] === 'pub') {
      await publish.handle(req, res, topic);
    } else if (match?.[1] === 'lp') {
      await h.longPoll.handle(req, res, { topics: [topic] });
    } else if (match?.[1] === 'sse') {
      await h.sse.handle(req, res, { topics: [topic] });
    } else if (url.pathname === '/jobs' || url.pathname.startsWith('/jobs/')) {
      await h.poll.handle(req, res);
    } else if (url.pathname === '/uploads' || url.pathname.startsWith('/uploads/')) {
      await h.uploads.handle(req, res);
    } else {
      throw new NotFoundError(`No route for ${url.pathname}`);
    }
  };
  return serveRig(
    http.createServer((req, res) => route(req, res).catch((error: unknown) => sendError(res, error))),
    { resources: h.resources },
  );
});

adapterConformance('express', async (h) => {
  const app = express();
  app.all('/pub/:topic', pbExpress.publish(h.broker, { maxBodyBytes: h.maxBodyBytes, ...h.publishOptions }));
  app.all('/lp/:topic', pbExpress.longPoll(h.longPoll));
  app.all('/sse/:topic', pbExpress.sse(h.sse));
  app.use('/jobs', pbExpress.pollJobs(h.poll));
  app.use(pbExpress.uploads(h.uploads, { basePath: '/uploads' }));
  app.use(pbExpress.jsonErrors());
  return serveRig(http.createServer(app), { resources: h.resources });
});

adapterConformance('express (routes() on a Router)', async (h) => {
  const app = express();
  app.use(
    pbExpress.routes(express.Router(), {
      publish: { broker: h.broker, maxBodyBytes: h.maxBodyBytes, ...h.publishOptions },
      longPoll: { handler: h.longPoll },
      sse: { handler: h.sse },
      jobs: { handler: h.poll },
      uploads: { handler: h.uploads },
    }),
  );
  return serveRig(http.createServer(app), { resources: h.resources });
});

adapterConformance(
  'fastify',
  async (h) => {
    const app = Fastify();
    await app.register(patchbayPlugin, {
      publish: { broker: h.broker, maxBodyBytes: h.maxBodyBytes, ...h.publishOptions },
      longPoll: { handler: h.longPoll },
      sse: { handler: h.sse },
      jobs: { handler: h.poll },
      uploads: { handler: h.uploads },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close: async () => {
        app.server.closeAllConnections();
        await app.close();
      },
    };
  },
  { routerRefusesBadPercentEncoding: true },
);

adapterConformance('koa', async (h) => {
  const app = new Koa();
  const router = new Router();
  router.all('/pub/:topic', pbKoa.publish(h.broker, { maxBodyBytes: h.maxBodyBytes, ...h.publishOptions }));
  router.all('/lp/:topic', pbKoa.longPoll(h.longPoll));
  router.all('/sse/:topic', pbKoa.sse(h.sse));
  app.use(pbKoa.jsonErrors());
  app.use(router.routes());
  app.use(pbKoa.pollJobs(h.poll, { basePath: '/jobs' }));
  app.use(pbKoa.uploads(h.uploads, { basePath: '/uploads' }));
  return serveRig(http.createServer(app.callback()), { resources: h.resources });
});

adapterConformance('web (hono on @hono/node-server)', async (h) => {
  const app = new Hono();
  const pub = pbWeb.publish(h.broker, { maxBodyBytes: h.maxBodyBytes, ...h.publishOptions });
  const lp = pbWeb.longPoll(h.longPoll);
  const events = pbWeb.sse(h.sse);
  const jobs = pbWeb.pollJobs(h.poll);
  const tus = pbWeb.uploads(h.uploads);
  app.all('/pub/:topic', (c) => pub(c.req.raw, c.req.param('topic')));
  app.all('/lp/:topic', (c) => lp(c.req.raw, { topics: [c.req.param('topic')] }));
  app.all('/sse/:topic', (c) => events(c.req.raw, { topics: [c.req.param('topic')] }));
  app.all('/jobs', (c) => jobs(c.req.raw));
  app.all('/jobs/*', (c) => jobs(c.req.raw));
  app.all('/uploads', (c) => tus(c.req.raw));
  app.all('/uploads/*', (c) => tus(c.req.raw));
  // overrideGlobalObjects: false keeps the process's own Request/Response (@tus/server builds its
  // answers with the global Response; Hono's lighter one would drop their implicit Content-Type).
  return serveRig(createAdaptorServer({ fetch: app.fetch, overrideGlobalObjects: false }) as http.Server, { resources: h.resources });
});
