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
];
