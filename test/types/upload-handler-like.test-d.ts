/**
 * The adapters' upload routes take an `UploadHandlerLike` (structural, so their declarations need
 * no `@tus/server` types: scripts/check-consumers.mjs proves that from the tarball). These tests
 * keep an `UploadHandler` from `patchbay/upload` fitting every adapter, and a wrong handler out.
 */
import { describe, expectTypeOf, it } from 'vitest';
import * as express from '../../src/adapters/express/index.js';
import type * as fastify from '../../src/adapters/fastify/index.js';
import type * as koa from '../../src/adapters/koa/index.js';
import type * as web from '../../src/adapters/web/index.js';
import type { UploadHandler } from '../../src/upload/index.js';

describe('UploadHandlerLike', () => {
  it('an UploadHandler fits the upload route of every adapter', () => {
    expectTypeOf<UploadHandler<{ size: number }>>().toExtend<express.UploadHandlerLike>();
    expectTypeOf<UploadHandler>().toExtend<Parameters<typeof express.uploads>[0]>();
    expectTypeOf<UploadHandler>().toExtend<Parameters<typeof koa.uploads>[0]>();
    expectTypeOf<UploadHandler>().toExtend<Parameters<typeof web.uploads>[0]>();
    expectTypeOf<UploadHandler>().toExtend<NonNullable<express.RoutesOptions['uploads']>['handler']>();
    expectTypeOf<UploadHandler>().toExtend<NonNullable<fastify.PatchbayPluginOptions['uploads']>['handler']>();
  });

  it('is one type in every adapter', () => {
    expectTypeOf<express.UploadHandlerLike>().toEqualTypeOf<fastify.UploadHandlerLike>();
    expectTypeOf<koa.UploadHandlerLike>().toEqualTypeOf<web.UploadHandlerLike>();
  });

  it('a handler of another shape does not fit', () => {
    // @ts-expect-error: handle must take Node's request and response and return a promise
    express.uploads({ handle: (_request: Request) => Promise.resolve(new Response(null)) });
  });
});
