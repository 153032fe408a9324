// Fails when package.json "exports", the tsup entries and the typedoc entry points disagree
// (CONVENTIONS.md rule 3). tsup and typedoc both read scripts/entries.js, so this checks that
// list against package.json and the source tree.
import { existsSync, readFileSync } from 'node:fs';
import { entries } from './entries.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const problems = [];
const exported = Object.keys(pkg.exports).filter((k) => k !== './package.json');
const listed = entries.map((e) => e.subpath);
for (const sub of exported) if (!listed.includes(sub)) problems.push(`package.json exports ${sub} but scripts/entries.js does not`);
for (const e of entries) {
  const exp = pkg.exports[e.subpath];
  if (!exp) {
    problems.push(`scripts/entries.js lists ${e.subpath} but package.json does not export it`);
    continue;
  }
  if (!existsSync(new URL(`../${e.source}`, import.meta.url))) problems.push(`${e.source} does not exist`);
  const want = {
    'import.types': `./dist/${e.out}.d.ts`,
    'import.default': `./dist/${e.out}.js`,
    'require.types': `./dist/${e.out}.d.cts`,
    'require.default': `./dist/${e.out}.cjs`,
  };
  for (const [path, value] of Object.entries(want)) {
    const [cond, leaf] = path.split('.');
    const got = exp?.[cond]?.[leaf];
    if (got !== value) problems.push(`exports["${e.subpath}"].${path} is ${JSON.stringify(got)}, expected ${JSON.stringify(value)}`);
  }
}
if (problems.length > 0) {
  console.error(`check:entries failed:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`check:entries: ${entries.length} entry point(s) agree across package.json, tsup and typedoc`);
