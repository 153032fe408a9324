// @ts-check
import { entries } from './scripts/entries.js';

/** @type {Partial<import('typedoc').TypeDocOptions>} */
export default {
  name: 'patchbay',
  entryPoints: entries.map((e) => e.source),
  entryPointStrategy: 'resolve',
  out: 'docs/api',
  tsconfig: 'tsconfig.json',
  readme: 'README.md',
  // The guides (one per pattern of the seed), the sidecar guide, errors and benchmarks, as pages of the site.
  projectDocuments: [
    'docs/guides/request-response.md',
    'docs/guides/sync-async.md',
    'docs/guides/push.md',
    'docs/guides/short-polling.md',
    'docs/guides/long-polling.md',
    'docs/guides/sse.md',
    'docs/guides/pubsub.md',
    'docs/sidecar.md',
    'docs/guides/scaling.md',
    'docs/errors.md',
    'docs/limits.md',
    'docs/benchmarks.md',
  ],
  excludeInternal: true,
  excludePrivate: true,
  excludeProtected: false,
  treatWarningsAsErrors: true,
  treatValidationWarningsAsErrors: true,
  validation: { notExported: true, invalidLink: true, notDocumented: true },
  requiredToBeDocumented: [
    'Enum',
    'EnumMember',
    'Variable',
    'Function',
    'Class',
    'Interface',
    'Property',
    'Method',
    'Accessor',
    'TypeAlias',
  ],
  sort: ['source-order'],
  githubPages: false,
  disableSources: true,
};
