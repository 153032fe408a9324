#!/usr/bin/env node
// The consumer check (npm run check:consumers): patchbay as a user installs it, from the packed
// tarball, not from the source tree. It packs the package, installs the tarball into throwaway
// projects under os.tmpdir() and runs `tsc` strict with `skipLibCheck: false` on each:
//
//   (a) patchbay + express, @types/express, @types/node only; imports the root, client, web and
//       express (scripts/consumers/express-app.ts), then loads those entries at runtime: an entry
//       never needs a peer it does not use;
//   (b) every optional peer installed; imports every subpath of scripts/entries.js, as ESM
//       (module nodenext) and as CommonJS (a .cts file, the `require` declarations), then
//       `import()`s and `require()`s every subpath at runtime;
//   (c) (b)'s files with module/moduleResolution node16, and with bundler (module esnext);
//   (d) a browser project (lib dom + es2022, types []) importing patchbay/client
//       (scripts/consumers/browser.ts).
//
// Errors are counted where they are: in patchbay's declarations (node_modules/patchbay) or the
// consumer's own files, which are ours and fail the check, or inside another package (some peers'
// declarations fail on their own with skipLibCheck false: @types/koa, ioredis, srvx), reported
// as "not ours". The projects share npm's cache, and the tsc of this repository runs them.
//
// Usage: node scripts/check-consumers.mjs [--no-build] [--keep] [--verbose]
//   --no-build  pack dist/ as it is (CI builds in an earlier step)
//   --keep      leave the temp directory for a look
//   --verbose   print every error, ours or not
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entries } from './entries.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const verbose = args.has('--verbose');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const specifiers = entries.map((e) => (e.subpath === '.' ? pkg.name : `${pkg.name}/${e.subpath.slice(2)}`));

/** The version this repository has installed, so the projects hit npm's cache and match CI. */
function installed(name) {
  const version = JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
  return `${name}@${version}`;
}

function sh(cmd, argv, cwd) {
  const r = spawnSync(cmd, argv, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) {
    process.stdout.write(r.stdout ?? '');
    process.stderr.write(r.stderr ?? '');
    throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status ?? r.signal}) in ${cwd}`);
  }
  return r.stdout;
}

function writeJson(file, value) {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

const strict = {
  strict: true,
  skipLibCheck: false,
  noEmit: true,
  target: 'es2022',
  esModuleInterop: true,
  forceConsistentCasingInFileNames: true,
  noUncheckedIndexedAccess: true,
  exactOptionalPropertyTypes: true,
};

/** Makes a project: package.json (ESM), the tarball and `deps` installed. */
function project(dir, tarball, deps) {
  mkdirSync(dir, { recursive: true });
  writeJson(join(dir, 'package.json'), { name: `consumer-${dir.split(/[\\/]/).pop()}`, private: true, type: 'module' });
  sh(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock', '--loglevel=error', tarball, ...deps], dir);
}

/** Runs tsc on a tsconfig of `dir`; splits the errors into ours and not ours. */
function typecheck(dir, tsconfig) {
  const r = spawnSync(process.execPath, [tsc, '-p', tsconfig, '--pretty', 'false'], { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const lines = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /error TS\d+/.test(l));
  const ours = [];
  const theirs = [];
  for (const line of lines) {
    const file = line.match(/^(.*?)\(\d+,\d+\): error/)?.[1];
    const path = file === undefined ? '' : relative(dir, resolve(dir, file)).replaceAll('\\', '/');
    // An error without a file (a missing lib, a bad option) is ours too.
    const inPackage = path.startsWith('node_modules/') && !path.startsWith(`node_modules/${pkg.name}/`);
    (inPackage ? theirs : ours).push(line);
  }
  if (r.status !== 0 && lines.length === 0) ours.push(`tsc exited ${r.status}: ${r.stdout}${r.stderr}`.trim());
  return { ours, theirs };
}

/** Loads `specs` in a fresh node at `dir`, with import() or require(); returns the failures. */
function load(dir, specs, how) {
  const get = how === 'import' ? 'await import(s)' : 'require(s)';
  const code = `const failed = [];
for (const s of ${JSON.stringify(specs)}) {
  try {
    const m = ${get};
    if (Object.keys(m).length === 0) failed.push(s + ' (${how}): no exports');
  } catch (e) {
    failed.push(s + ' (${how}): ' + String(e.message).split('\\n')[0]);
  }
}
console.log(JSON.stringify(failed));
`;
  const file = join(dir, how === 'import' ? 'load.mjs' : 'load.cjs');
  writeFileSync(file, code);
  const out = sh(process.execPath, [file], dir).trim().split('\n').pop();
  return JSON.parse(out);
}

const rows = [];
function row(projectName, settings, result) {
  rows.push({ project: projectName, settings, ours: result.ours.length, theirs: result.theirs.length, pass: result.ours.length === 0 });
  for (const line of result.ours) console.log(`  ours: ${line}`);
  if (verbose) for (const line of result.theirs) console.log(`  not ours: ${line}`);
  else if (result.theirs.length > 0) {
    const packages = new Set(result.theirs.map((l) => l.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/)?.[1] ?? '?'));
    console.log(`  not ours (${result.theirs.length}, in ${[...packages].join(', ')}): --verbose prints them`);
  }
}

const started = Date.now();
if (!args.has('--no-build')) sh(npm, ['run', 'build', '--silent'], root);
const work = mkdtempSync(join(tmpdir(), 'patchbay-consumers-'));
try {
  // --ignore-scripts: dist/ is built; a prepack that builds would build it a second time.
  const packed = JSON.parse(sh(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', work], root));
  const tarball = join(work, packed[0].filename);
  console.log(`packed ${packed[0].filename}: ${packed[0].entryCount} files, ${(packed[0].size / 1024).toFixed(0)} kB (${(packed[0].unpackedSize / 1024).toFixed(0)} kB unpacked)`);

  // (a): express only. (b) every optional peer, and the types of those that ship none.
  const a = join(work, 'express-only');
  const b = join(work, 'all-peers');
  const d = join(work, 'browser');
  const peers = Object.keys(pkg.peerDependencies ?? {});
  const typesFor = ['@types/express', '@types/koa', '@types/ws', '@types/node'];
  project(a, tarball, ['express', '@types/express', '@types/node'].map(installed));
  project(b, tarball, [...peers, ...typesFor].map(installed));
  project(d, tarball, []);

  // (a)
  copyFileSync(join(root, 'scripts', 'consumers', 'express-app.ts'), join(a, 'index.ts'));
  writeJson(join(a, 'tsconfig.json'), { compilerOptions: { ...strict, module: 'nodenext', moduleResolution: 'nodenext', types: ['node'] }, files: ['index.ts'] });
  console.log('(a) express only: tsc');
  row('(a) express only', 'nodenext, root+client+web+express', typecheck(a, 'tsconfig.json'));
  const aSpecs = [pkg.name, `${pkg.name}/client`, `${pkg.name}/web`, `${pkg.name}/express`];
  const aRun = [...load(a, aSpecs, 'import'), ...load(a, aSpecs, 'require')];
  // The proof holds only if the other peers are really absent (npm installs no optional peer).
  const present = peers.filter((p) => p !== 'express' && existsSync(join(a, 'node_modules', p, 'package.json')));
  if (present.length > 0) aRun.push(`peers installed that should not be: ${present.join(', ')}`);
  row('(a) express only', 'node: import() + require() of the 4', { ours: aRun, theirs: [] });

  // (b) and (c): one file importing every subpath as ESM, one requiring every subpath as CJS.
  const esm = specifiers.map((s, i) => `import * as m${i} from '${s}';`).join('\n');
  writeFileSync(join(b, 'index.ts'), `${esm}\nexport const modules = [${specifiers.map((_, i) => `m${i}`).join(', ')}];\n`);
  const requireAll = (specs) => `${specs.map((s, i) => `import m${i} = require('${s}');`).join('\n')}\nexport const modules = [${specs.map((_, i) => `m${i}`).join(', ')}];\n`;
  writeFileSync(join(b, 'require.cts'), requireAll(specifiers));
  // node16 models a Node that cannot require() an ES module, and @tus/server is one: a CommonJS
  // file there cannot load patchbay/upload (Node >= 20.19 can; nodenext and the runtime check
  // below cover it). Every other subpath is required.
  const esmOnlyPeer = `${pkg.name}/upload`;
  writeFileSync(join(b, 'require-node16.cts'), requireAll(specifiers.filter((s) => s !== esmOnlyPeer)));
  const settings = [
    ['(b) every peer', 'nodenext, every subpath (ESM + CJS)', { module: 'nodenext', moduleResolution: 'nodenext' }, ['index.ts', 'require.cts']],
    ['(c) every peer', `node16, every subpath (ESM; CJS but ${esmOnlyPeer.slice(pkg.name.length + 1)})`, { module: 'node16', moduleResolution: 'node16' }, ['index.ts', 'require-node16.cts']],
    ['(c) every peer', 'bundler (module esnext), every subpath', { module: 'esnext', moduleResolution: 'bundler' }, ['index.ts']],
  ];
  for (const [label, description, options, files] of settings) {
    const config = `tsconfig.${options.moduleResolution}.json`;
    writeJson(join(b, config), { compilerOptions: { ...strict, ...options, types: ['node'] }, files });
    console.log(`${label}, ${options.moduleResolution}: tsc`);
    row(label, description, typecheck(b, config));
  }
  const bRun = [...load(b, specifiers, 'import'), ...load(b, specifiers, 'require')];
  row('(b) every peer', `node: import() + require() of ${specifiers.length}`, { ours: bRun, theirs: [] });

  // (d)
  copyFileSync(join(root, 'scripts', 'consumers', 'browser.ts'), join(d, 'index.ts'));
  writeJson(join(d, 'tsconfig.json'), { compilerOptions: { ...strict, module: 'esnext', moduleResolution: 'bundler', lib: ['dom', 'es2022'], types: [] }, files: ['index.ts'] });
  console.log('(d) browser: tsc');
  row('(d) browser', 'bundler, lib dom+es2022, types []', typecheck(d, 'tsconfig.json'));
} finally {
  if (args.has('--keep')) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}

const width = Math.max(...rows.map((r) => r.project.length));
const swidth = Math.max(...rows.map((r) => r.settings.length));
console.log(`\n${'project'.padEnd(width)}  ${'settings'.padEnd(swidth)}  ours  not ours  result`);
for (const r of rows) {
  console.log(`${r.project.padEnd(width)}  ${r.settings.padEnd(swidth)}  ${String(r.ours).padStart(4)}  ${String(r.theirs).padStart(8)}  ${r.pass ? 'pass' : 'FAIL'}`);
}
const failed = rows.filter((r) => !r.pass).length;
console.log(`consumers: ${rows.length - failed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(0)} s)`);
process.exitCode = failed > 0 ? 1 : 0;
