// The package's public entry points, in one place. tsup builds these, typedoc documents them,
// and scripts/check-entries.mjs fails when package.json "exports" disagrees with this list.
/** @type {{ subpath: string, source: string, out: string }[]} */
export const entries = [
  { subpath: '.', source: 'src/index.ts', out: 'index' },
  { subpath: './sidecars', source: 'src/sidecars/index.ts', out: 'sidecars' },
  { subpath: './client', source: 'src/client/index.ts', out: 'client' },
  { subpath: './redis', source: 'src/redis/index.ts', out: 'redis' },
  { subpath: './upload', source: 'src/upload/index.ts', out: 'upload' },
  { subpath: './ws', source: 'src/ws/index.ts', out: 'ws' },
  { subpath: './express', source: 'src/adapters/express/index.ts', out: 'express' },
  { subpath: './fastify', source: 'src/adapters/fastify/index.ts', out: 'fastify' },
  { subpath: './koa', source: 'src/adapters/koa/index.ts', out: 'koa' },
  { subpath: './web', source: 'src/adapters/web/index.ts', out: 'web' },
];
