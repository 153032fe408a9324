// `npm run demo`: starts the demo server (demo/server.js) at once on a built checkout. It builds
// dist/ first only when dist/ is missing an entry or older than what it is built from (src/, the
// build's configuration, package.json), saying so in one line and showing the build's output only
// when the build fails. Options come from the environment as for `node demo/server.js` (PORT,
// SIDECARS, PATCHBAY_REDIS_URL, WORKERS, ...): with WORKERS=N the demo runs as N worker processes,
// each running demo/server.js (demo/cluster.js), on the dist/ built here once.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { entries } from './entries.js';

/** The newest modification time of the files under `dir` of `root` (recursively), in ms. */
function newestUnder(root, dir) {
  let newest = 0;
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath ?? entry.path, entry.name)).mtimeMs);
  }
  return newest;
}

/** The modification time of a file of `root` in ms, or undefined when it is missing. */
function mtime(root, file) {
  try {
    return statSync(join(root, file)).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * Why the checkout at `root` must build dist/ before the demo runs, or undefined when dist/ is up
 * to date: an entry's `.js`, `.cjs` or `.d.ts` is missing, or a file under src/ or one the build
 * reads is newer than the oldest of them.
 * @param {string} root
 * @returns {string | undefined}
 */
export function staleReason(root) {
  const outputs = entries.flatMap((e) => [`dist/${e.out}.js`, `dist/${e.out}.cjs`, `dist/${e.out}.d.ts`]);
  const missing = outputs.find((file) => mtime(root, file) === undefined);
  if (missing !== undefined) return `${missing} is missing`;
  const built = Math.min(...outputs.map((file) => mtime(root, file)));
  const inputs = ['tsup.config.ts', 'tsconfig.json', 'package.json', 'scripts/entries.js'];
  const changed = inputs.find((file) => (mtime(root, file) ?? 0) > built);
  if (changed !== undefined) return `${changed} changed since the last build`;
  if (newestUnder(root, 'src') > built) return 'src/ changed since the last build';
  return undefined;
}

/** Builds dist/ when it is stale (one line, the build's output only if it fails), then runs the demo. */
async function main() {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const reason = staleReason(root);
  if (reason !== undefined) build(root, reason);
  // Imported only now: the demo imports patchbay, which is dist/.
  const { runDemo } = await import('../demo/server.js');
  runDemo();
}

/** Runs `npm run build` quietly; on failure, shows its output and exits 1. */
function build(root, reason) {
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

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
