import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ClosedError, ErrorCodes, InvalidArgumentError, PatchbayError, TimeoutError } from '../../src/index.js';

import * as api from '../../src/index.js';


describe('docs/errors.md', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `(PB_ERR_[A-Z_]+)` \| `(\w+)` \|/gm)].map((m) => [m[1]!, m[2]!] as const);
  // Codes no thrown class carries (a server's own failure, a job lost with its worker).
  const classless = [...doc.matchAll(/^\| `(PB_ERR_[A-Z_]+)` \| \(/gm)].map((m) => m[1]!);

  it('lists exactly the codes of ErrorCodes', () => {
    expect([...rows.map(([code]) => code), ...classless].sort()).toEqual(Object.values(ErrorCodes).sort());
    expect(classless.sort()).toEqual([ErrorCodes.INTERNAL, ErrorCodes.WORKER_LOST]);
  });

  it('has no PB_ERR_ string literal outside src/core/errors.ts (every code is written once)', () => {
    const offenders: string[] = [];
    for (const file of readdirSync(new URL('../../src', import.meta.url), { recursive: true, encoding: 'utf8' })) {
      if (!file.endsWith('.ts') || file === join('core', 'errors.ts')) continue;
      const lines = readFileSync(new URL(`../../src/${file}`, import.meta.url), 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (/^\s*(\*|\/\/)/.test(line)) return; // prose
        if (/['"]PB_ERR_[A-Z_]+['"]/.test(line)) offenders.push(`${file}:${i + 1}`);
      });
    }
    expect(offenders).toEqual([]);
  });

  it('names, for each code, the class that carries it', () => {
    for (const [code, className] of rows) {
      const Cls = (api as Record<string, unknown>)[className] as (new (...args: unknown[]) => PatchbayError) | undefined;
      expect(Cls, `${className} is exported`).toBeDefined();
      // Arguments that fit every constructor: (message) or (method, allow) or (limitBytes).
      const err = new Cls!('x', ['GET']);
      expect(err).toBeInstanceOf(PatchbayError);
      expect(err.code).toBe(code);
    }
  });
});

describe('PatchbayError', () => {
  it('carries code, name, message and cause', () => {
    const cause = new Error('root');
    const err = new InvalidArgumentError('bad', { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(PatchbayError);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).not.toBeInstanceOf(ClosedError);
    expect(err.code).toBe('PB_ERR_INVALID_ARGUMENT');
    expect(err.name).toBe('InvalidArgumentError');
    expect(err.message).toBe('bad');
    expect(err.cause).toBe(cause);
    expect(err.stack).toContain('InvalidArgumentError');
  });

  it('has no cause property when none is given', () => {
    expect('cause' in new ClosedError()).toBe(false);
  });

  it('matches instanceof across copies of the library (ESM and CJS side by side)', async () => {
    // A second copy of the class, as a CJS bundle next to the ESM one would give.
    const src = readFileSync(new URL('../../src/core/errors.ts', import.meta.url), 'utf8');
    const ts = await import('typescript');
    const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
    const mod = { exports: {} as Record<string, unknown> };
    vm.runInThisContext(`(function (exports, module, require) {${js}\n})`)(mod.exports, mod, createRequire(import.meta.url));
    const Other = mod.exports as unknown as { ClosedError: typeof ClosedError; PatchbayError: typeof PatchbayError };
    expect(Other.ClosedError).not.toBe(ClosedError);
    const foreign = new Other.ClosedError('from the other copy');
    expect(foreign).toBeInstanceOf(ClosedError);
    expect(foreign).toBeInstanceOf(PatchbayError);
    expect(foreign).not.toBeInstanceOf(TimeoutError);
    expect(new ClosedError()).toBeInstanceOf(Other.ClosedError);
  });

  it('is not matched by plain objects or other errors', () => {
    expect({ code: 'PB_ERR_CLOSED' }).not.toBeInstanceOf(PatchbayError);
    expect(new Error('x')).not.toBeInstanceOf(PatchbayError);
    expect(null).not.toBeInstanceOf(PatchbayError);
  });

  it('supports user subclasses with ordinary instanceof', () => {
    class MyError extends ClosedError {}
    const err = new MyError();
    expect(err).toBeInstanceOf(MyError);
    expect(err).toBeInstanceOf(ClosedError);
    expect(new ClosedError()).not.toBeInstanceOf(MyError);
    expect(err.name).toBe('MyError');
  });
});
