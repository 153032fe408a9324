// @ts-check
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/**
 * The layers of DESIGN.md, bottom first, and what each may import. An import that points up or
 * sideways fails lint. Adapters may use only the public entry points (the folders' index.ts).
 */
export const layers = {
  core: [],
  purgatory: ['core'],
  pubsub: ['core'],
  sidecar: ['core'],
  sidecars: ['core', 'sidecar'],
  http: ['core'],
  client: ['core'],
  longpoll: ['core', 'http', 'purgatory', 'pubsub'],
  sse: ['core', 'http', 'purgatory', 'pubsub'],
  poll: ['core', 'http', 'purgatory', 'pubsub'],
  upload: ['core', 'http', 'purgatory', 'pubsub', 'poll'],
  ws: ['core', 'http', 'purgatory', 'pubsub'],
  publish: ['core', 'http', 'pubsub'],
  redis: ['core', 'pubsub', 'purgatory'],
  adapters: ['core', 'http', 'longpoll', 'sse', 'poll', 'upload', 'ws', 'publish', 'pubsub', 'purgatory'],
};

/** Layers that must stay free of node:http (and, for client, of any node: built-in). */
const noHttp = ['core', 'purgatory', 'pubsub', 'sidecar', 'client'];

const layerRules = Object.entries(layers).map(([layer, allowed]) => {
  const forbidden = Object.keys(layers).filter((other) => other !== layer && !allowed.includes(other));
  /** @type {({ group: string[], message: string } | { regex: string, message: string })[]} */
  const patterns = forbidden.map((other) => ({
    group: [`../${other}`, `../${other}/*`, `../../${other}`, `../../${other}/*`, `**/src/${other}/*`],
    message: `Layer "${layer}" must not import "${other}": imports point down only (DESIGN.md, Layers). ${layer} may use: ${allowed.join(', ') || 'nothing'}.`,
  }));
  if (layer === 'client') {
    patterns.push({ group: ['node:*'], message: 'patchbay/client runs in browsers too: no Node built-ins (DESIGN.md).' });
  }
  if (layer === 'adapters') {
    patterns.push({
      regex: `^(\\.\\./)+(${allowed.join('|')})/(?!(index|internal)\\.js$)`,
      message: 'Adapters use only a folder\'s entry points: its public index.js, or its internal.js for what the library shares but does not publish.',
    });
  }
  /** @type {{ name: string, message: string }[]} */
  const paths = noHttp.includes(layer)
    ? ['node:http', 'http', 'node:https', 'https', 'node:http2', 'http2'].map((name) => ({
        name,
        message: `Layer "${layer}" knows nothing of HTTP (DESIGN.md).`,
      }))
    : [];
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns, paths }] },
  };
});

export default tseslint.config(
  { ignores: ['dist/', 'docs/api/', 'coverage/', 'node_modules/', 'bench/node_modules/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'no-console': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-console': 'error',
      'no-restricted-syntax': [
        'error',
        { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'Use the injected Clock (monotonic), not Date.now().' },
      ],
    },
  },
  ...layerRules,
  {
    // Frameworks are optional peer dependencies: the adapters import their types only.
    files: ['src/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: ['express', 'fastify', 'koa', '@koa/router', 'hono'].map((name) => ({
            name,
            message: 'Frameworks are optional peer dependencies: import their types only (`import type`).',
            allowTypeImports: true,
          })),
        },
      ],
    },
  },
  {
    // The demo page's own script runs in the browser.
    files: ['demo/public/**/*.js'],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off', '@typescript-eslint/no-explicit-any': 'off' },
  },
);
