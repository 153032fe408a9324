/**
 * The demo server in tests (listening with serveRig() from test/helpers.ts): closed with everything
 * it started, its sidecar processes included (the server's 'close' only starts closing them).
 */
import type { Server } from 'node:http';

/** The part of `createDemo()`'s answer these helpers use. */
export interface DemoLike {
  readonly server: Server;
  readonly sidecars?: { close(): Promise<unknown>; readonly logShipper?: { readonly pid?: number | undefined }; readonly metricsSidecar?: { readonly pid?: number | undefined } } | undefined;
}

/**
 * Closes the demo (again, if a test did already) and waits until its sidecar processes have
 * exited: the supervisors drain, say BYE, then SIGTERM and SIGKILL by PID, each bounded.
 */
export async function closeDemo(demo: DemoLike | undefined): Promise<void> {
  if (demo === undefined) return;
  demo.server.closeAllConnections();
  await new Promise<void>((resolve) => demo.server.close(() => resolve()));
  await demo.sidecars?.close();
}
