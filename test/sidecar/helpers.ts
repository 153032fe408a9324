/**
 * Helpers for the sidecar tests: in-memory stream pairs, a private temp dir, the recorder fixture's
 * command line, and whether a process is alive. Real-process waits use `eventually` (test/helpers.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { SidecarStream } from '../../src/index.js';

/** Two ends of an in-memory connection. */
export function streamPair(): { app: SidecarStream; sidecar: SidecarStream; cut: () => void } {
  const toSidecar = new PassThrough();
  const toApp = new PassThrough();
  return {
    app: { readable: toApp, writable: toSidecar },
    sidecar: { readable: toSidecar, writable: toApp },
    cut: () => {
      toSidecar.destroy();
      toApp.destroy();
    },
  };
}

/** A fresh private temp dir, removed by the returned function. */
export function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(os.tmpdir(), 'pb-sidecar-test-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `node --import tsx <fixture>`: the command and args for a fixture sidecar in test/sidecar/fixtures. */
export function fixture(name: string): { command: string; args: string[] } {
  return { command: process.execPath, args: ['--import', 'tsx', fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))] };
}

/** Whether a process is alive. */
export function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
