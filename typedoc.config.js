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
