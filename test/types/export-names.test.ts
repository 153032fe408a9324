/**
 * No two types the package exports share a name: across every entry point (scripts/entries.js),
 * one type name means one declaration (the same symbol re-exported from two entries, like the error
 * classes in `.` and `./client`, is one thing). Two types named alike in two entries (the
 * broker's and the adapters' `PublishOptions`, the purgatory's and the client's `WaitOptions`)
 * make a user import the wrong one. Values are another matter: each framework adapter offers the
 * same verbs (`publish`, `longPoll`, `sse`...) on purpose, one framework per app.
 */
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { entries } from '../../scripts/entries.js';

const root = join(import.meta.dirname, '..', '..');

describe('the public surface', () => {
  it('every exported type name, across all entry points, names one declaration', () => {
    const files = entries.map((e) => join(root, e.source));
    const program = ts.createProgram(files, {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: ['node'],
      skipLibCheck: true,
      noEmit: true,
    });
    const checker = program.getTypeChecker();
    const owners = new Map<string, Map<ts.Symbol, string[]>>();
    for (const [i, file] of files.entries()) {
      const source = program.getSourceFile(file);
      const module = source === undefined ? undefined : checker.getSymbolAtLocation(source);
      expect(module, file).toBeDefined();
      for (const exported of checker.getExportsOfModule(module!)) {
        const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
        // Types only: interfaces, type aliases, classes and enums (a class is a type too).
        if ((target.flags & (ts.SymbolFlags.Type | ts.SymbolFlags.Class)) === 0) continue;
        const byName = owners.get(exported.name) ?? new Map<ts.Symbol, string[]>();
        owners.set(exported.name, byName);
        byName.set(target, [...(byName.get(target) ?? []), entries[i]!.subpath]);
      }
    }
    const clashes = [...owners].filter(([, symbols]) => symbols.size > 1).map(([name, symbols]) => `${name}: ${[...symbols.values()].map((s) => s.join('+')).join(' vs ')}`);
    expect(clashes).toEqual([]);
  });
});
