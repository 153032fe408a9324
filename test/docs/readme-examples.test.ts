/**
 * The README's TypeScript examples cannot rot: every ```ts block is type-checked against the
 * sources (as `patchbay` and `patchbay/<name>`, the way an app imports them), and the blocks that
 * run on their own (no port to listen on, no process to spawn) are run, and must print what
 * their comments promise.
 *
 * Free names a fragment uses without declaring (`req`, `res`, `broker` from an earlier block, an
 * app's own `db`) get an ambient declaration, added only when the block does not declare the name
 * itself.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { entries as entryList } from '../../scripts/entries.js';
import { sourceNodeArgs } from '../helpers.js';

const entries = entryList as readonly { subpath: string; source: string }[];

const root = fileURLToPath(new URL('../..', import.meta.url));
const out = join(root, 'test', 'docs', '.readme-examples');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

interface Block {
  readonly index: number;
  readonly line: number;
  readonly code: string;
}
const blocks: Block[] = [];
for (const m of readme.matchAll(/```ts\n([\s\S]*?)```/g)) {
  blocks.push({ index: blocks.length, line: readme.slice(0, m.index).split('\n').length + 1, code: m[1]! });
}

/** Names README fragments may use without declaring them, with the type an app would have. */
const AMBIENT: Readonly<Record<string, string>> = {
  req: "import('node:http').IncomingMessage",
  res: "import('node:http').ServerResponse",
  broker: "import('patchbay').PubSubBroker",
  backend: "import('patchbay/redis').RedisBackend",
  app: "(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void",
  userOf: '(req: import("node:http").IncomingMessage) => string',
  isAdmin: '(context: unknown) => boolean',
  db: 'unknown',
  rowsFrom: '(db: unknown, from: number, signal: AbortSignal) => AsyncIterable<unknown>',
};

function declares(code: string, name: string): boolean {
  return new RegExp(`(?:const|let|var|function|class)\\s+${name}\\b|import\\s[^;]*\\b${name}\\b[^;]*from`).test(code);
}

function source(block: Block): string {
  const prelude = Object.entries(AMBIENT)
    .filter(([name, _type]) => new RegExp(`\\b${name}\\b`).test(block.code) && !declares(block.code, name))
    .map(([name, type]) => `declare const ${name}: ${type};`);
  return `// README.md line ${block.line}\n${prelude.join('\n')}\n${block.code}\nexport {};\n`;
}

/** Blocks that run on their own: no free names, no port to listen on, no server to reach, nothing to spawn. */
const runnable = (b: Block) =>
  !/\.listen\(|new SidecarSupervisor|new RedisBackend|express\(\)|https?:\/\//.test(b.code) &&
  !Object.keys(AMBIENT).some((name) => new RegExp(`\\b${name}\\b`).test(b.code) && !declares(b.code, name));

afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('README examples', () => {
  it('has TypeScript examples to check', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    expect(blocks.filter(runnable).length).toBeGreaterThanOrEqual(2);
  });

  it('every ts block type-checks against the sources', () => {
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    const files = blocks.map((b) => {
      const file = join(out, `block-${b.index}.ts`);
      writeFileSync(file, source(b));
      return file;
    });
    const program = ts.createProgram(files, {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
      types: ['node'],
      skipLibCheck: true,
      baseUrl: root,
      // patchbay/<subpath> is its source, as scripts/entries.js lists it.
      paths: Object.fromEntries(entries.map((e) => [e.subpath === '.' ? 'patchbay' : `patchbay/${e.subpath.slice(2)}`, [e.source]])),
      allowImportingTsExtensions: false,
      typeRoots: [join(root, 'node_modules', '@types')],
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file !== undefined && d.file.fileName.startsWith(out))
      .map((d) => {
        const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
        const block = blocks[Number(/block-(\d+)\.ts$/.exec(d.file!.fileName)![1])]!;
        const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
        return `README.md line ${block.line + line - 2 - (source(block).split('\n').length - block.code.split('\n').length - 2)}: ${text}`;
      });
    expect(problems).toEqual([]);
  }, 120_000);

  for (const block of blocks.filter(runnable)) {
    it(`the block at README.md line ${block.line} runs`, () => {
      mkdirSync(out, { recursive: true });
      const file = join(out, `run-${block.index}.ts`);
      writeFileSync(file, source(block));
      const run = spawnSync(process.execPath, [...sourceNodeArgs, file], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      // A `console.log(x); // 'value'` comment states what it prints.
      for (const m of block.code.matchAll(/console\.log\([^)]*\);\s*\/\/\s*'([^']+)'/g)) expect(run.stdout).toContain(m[1]);
    }, 90_000);
  }
});
