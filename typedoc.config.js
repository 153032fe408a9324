// @ts-check
import { entries } from './scripts/entries.js';

/**
 * TypeDoc builds the "On this page" list and a heading's anchor from the heading's text tokens
 * only, so a heading with code spans ("Frameworks (`patchbay/express`, ...)") lost them there.
 * Giving each code span inside a heading a text child makes them count; the heading itself still
 * renders its code spans as code.
 *
 * @param {import('markdown-it').default} md
 */
function headingCodeSpans(md) {
  md.core.ruler.push('patchbay_heading_code_spans', (state) => {
    state.tokens.forEach((token, i) => {
      if (token.type !== 'inline' || state.tokens[i - 1]?.type !== 'heading_open') return;
      for (const child of token.children ?? []) {
        if (child.type === 'code_inline' && !child.children) {
          const text = new state.Token('text', '', 0);
          text.content = child.content;
          child.children = [text];
        }
      }
    });
  });
}

/** @type {Partial<import('typedoc').TypeDocOptions>} */
export default {
  name: 'patchbay',
  entryPoints: entries.map((e) => e.source),
  entryPointStrategy: 'resolve',
  out: 'docs/api',
  tsconfig: 'tsconfig.json',
  readme: 'README.md',
  // Modules are named by import path (`@module patchbay/express` atop each entry point).
  markdownItLoader: headingCodeSpans,
  // The guides (one per pattern), the sidecar guide, errors, limits, benchmarks, the examples and
  // the changelog, as pages of the site.
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
    'docs/guides/shutdown.md',
    'docs/guides/clients.md',
    'docs/errors.md',
    'docs/limits.md',
    'docs/benchmarks.md',
    'docs/examples.md',
    'docs/changelog.md',
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
