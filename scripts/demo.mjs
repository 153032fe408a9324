// `npm run demo`: starts the demo server (demo/server.js) at once on a built checkout. It builds
// dist/ first only when dist/ is missing an entry or older than what it is built from (src/, the
// build's configuration, package.json), saying so in one line and showing the build's output only
// when the build fails. Options come from the environment as for `node demo/server.js` (PORT,
// SIDECARS, PATCHBAY_REDIS_URL, ...).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entries } from './entries.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The newest modification time of the files under `dir` (recursively), in ms. */
function newestUnder(dir) {
  let newest = 0;
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath ?? entry.path, entry.name)).mtimeMs);
  }
  return newest;
}

/** The modification time of a file of the checkout in ms, or undefined when it is missing. */
function mtime(file) {
  try {
    return statSync(join(root, file)).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Why dist/ must be built first, or undefined when it is up to date. */
function staleReason() {
  const outputs = entries.flatMap((e) => [`dist/${e.out}.js`, `dist/${e.out}.cjs`, `dist/${e.out}.d.ts`]);
  const missing = outputs.find((file) => mtime(file) === undefined);
  if (missing !== undefined) return `${missing} is missing`;
  const built = Math.min(...outputs.map(mtime));
  const inputs = ['tsup.config.ts', 'tsconfig.json', 'package.json', 'scripts/entries.js'];
  const changed = inputs.find((file) => (mtime(file) ?? 0) > built);
  if (changed !== undefined) return `${changed} changed since the last build`;
  if (newestUnder('src') > built) return 'src/ changed since the last build';
  return undefined;
}

const reason = staleReason();
if (reason !== undefined) {
  console.log(`patchbay demo: building dist/ first (${reason}); this takes a minute or two...`);
  // `npm run build`, whatever it does; npm_execpath is npm itself when this runs under `npm run demo`.
  const npm = process.env.npm_execpath;
  const args = ['run', 'build', '--silent'];
  const built = npm ? spawnSync(process.execPath, [npm, ...args], { cwd: root, encoding: 'utf8' }) : spawnSync('npm', args, { cwd: root, encoding: 'utf8', shell: process.platform === 'win32' });
  if (built.status !== 0) {
    process.stderr.write(`${built.stdout ?? ''}${built.stderr ?? ''}`);
    console.error(`patchbay demo: the build failed (${built.error?.message ?? `exit ${built.status}`}): fix it, or run npm run build to see it again`);
    process.exit(1);
  }
}

// Imported only now: the demo imports patchbay, which is dist/.
const { runDemo } = await import('../demo/server.js');
runDemo();
