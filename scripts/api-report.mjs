// The API report: what every public entry point (scripts/entries.js) exports, as API Extractor
// sees it in the declarations, one api/<entry>.api.md per entry, committed. `npm run api` rewrites
// the reports; `npm run check:api` (in CI, before the tests) fails when the public surface differs
// from the committed reports, so every change to it shows in review.
//
// The declarations come from one `tsc --emitDeclarationOnly --stripInternal` of src/ into .api/
// (the shapes tsup's dts build rolls up, without building the bundles): fast and deterministic.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { entries } from './entries.js';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const check = process.argv.includes('--check');
const out = join(root, '.api');
const dts = join(out, 'dts');

// PATCHBAY_API_EXTRACTOR: where @microsoft/api-extractor is, when not in this project's node_modules.
const { Extractor, ExtractorConfig } = await import(process.env.PATCHBAY_API_EXTRACTOR ?? '@microsoft/api-extractor');

rmSync(out, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--declaration', '--emitDeclarationOnly', '--stripInternal', '--sourceMap', 'false', '--outDir', dts], {
  stdio: 'inherit',
});

let failed = 0;
for (const entry of entries) {
  const mainEntryPointFilePath = join(dts, entry.source.replace(/^src\//, '').replace(/\.ts$/, '.d.ts'));
  const config = ExtractorConfig.prepare({
    configObject: {
      projectFolder: root,
      mainEntryPointFilePath,
      compiler: {
        overrideTsconfig: {
          compilerOptions: { target: 'ES2022', lib: ['ES2023', 'ES2024.String', 'ESNext.Disposable'], module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'], strict: true, skipLibCheck: true },
          files: [mainEntryPointFilePath],
        },
      },
      apiReport: {
        enabled: true,
        reportFileName: `${entry.out}.api.md`,
        reportFolder: join(root, 'api'),
        reportTempFolder: join(out, 'temp'),
        includeForgottenExports: false,
      },
      docModel: { enabled: false },
      dtsRollup: { enabled: false },
      tsdocMetadata: { enabled: false },
      newlineKind: 'lf',
      messages: {
        compilerMessageReporting: { default: { logLevel: 'warning' } },
        extractorMessageReporting: {
          default: { logLevel: 'none' },
          // A type the surface uses but no entry exports: listed in the report, for review.
          'ae-forgotten-export': { logLevel: 'none', addToApiReportFile: true },
        },
        tsdocMessageReporting: { default: { logLevel: 'none' } },
      },
    },
    configObjectFullPath: undefined,
    packageJsonFullPath: join(root, 'package.json'),
  });
  // Every entry is reported under the package's name and its subpath.
  config.packageName = entry.subpath === '.' ? 'patchbay' : `patchbay/${entry.subpath.slice(2)}`;
  const result = Extractor.invoke(config, { localBuild: !check, showVerboseMessages: false, messageCallback: (m) => void (m.handled = m.logLevel === 'none') });
  if (result.apiReportChanged) {
    failed++;
    console.error(check ? `api/${entry.out}.api.md: the public surface of ${config.packageName} changed; run \`npm run api\` and commit the report` : `api/${entry.out}.api.md updated`);
  } else if (!result.succeeded) {
    failed++;
    console.error(`api/${entry.out}.api.md: API Extractor failed (${result.errorCount} errors)`);
  }
}
mkdirSync(out, { recursive: true });
rmSync(out, { recursive: true, force: true });
if (check && failed > 0) process.exit(1);
console.log(check ? `API reports match (${entries.length} entries)` : `API reports written to api/ (${entries.length} entries)`);
