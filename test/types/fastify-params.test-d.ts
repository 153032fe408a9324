/**
 * Type tests for the Fastify plugin's route functions: `request.params` is typed (every string
 * param by default, the app's own shape through the plugin's type parameter), where it used to be
 * `unknown`. Run by vitest's typecheck mode; nothing here executes.
 */
import Fastify from 'fastify';
import { describe, expectTypeOf, it } from 'vitest';
import { patchbayPlugin, type PatchbayPluginOptions, type TopicRoute } from '../../src/adapters/fastify/index.js';
import { LongPollHandler, type LongPollTarget, PubSubBroker, SseHandler } from '../../src/index.js';

describe('patchbayPlugin: request.params', () => {
  it('reads as strings (or undefined) by default, in target and topic', async () => {
    const broker = new PubSubBroker();
    const app = Fastify();
    await app.register(patchbayPlugin, {
      publish: { broker, path: '/pub/:room', topic: (request) => request.params.room },
      longPoll: {
        handler: new LongPollHandler({ broker }),
        path: '/lp/:room',
        target: (request) => {
          expectTypeOf(request.params.room).toEqualTypeOf<string | undefined>();
          return { topics: [`room.${request.params.room ?? 'lobby'}`] };
        },
      },
    });
  });

  it('takes the app params shape through the type parameter, as Fastify does with Params', async () => {
    const broker = new PubSubBroker();
    const app = Fastify();
    await app.register(patchbayPlugin<{ room: string }>, {
      sse: {
        handler: new SseHandler({ broker }),
        path: '/sse/:room',
        target: (request) => {
          expectTypeOf(request.params).toEqualTypeOf<{ room: string }>();
          // @ts-expect-error: the route has no :user parameter
          void request.params.user;
          return { topics: [`room.${request.params.room}`] };
        },
      },
    });
    const options: PatchbayPluginOptions<{ room: string }> = {
      longPoll: { handler: new LongPollHandler({ broker }), path: '/lp/:room', target: (request) => ({ topics: [request.params.room] }) },
    };
    void options;
    expectTypeOf<Parameters<NonNullable<TopicRoute<LongPollHandler, LongPollTarget, { id: string }>['target']>>[0]['params']>().toEqualTypeOf<{ id: string }>();
  });
});
