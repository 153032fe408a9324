/**
 * The demo server in tests: listening on 127.0.0.1:0, and closed with everything it started,
 * its sidecar processes included (the server's 'close' only starts closing them).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The part of `createDemo()`'s answer these helpers use. */
export interface DemoLike {
  readonly server: Server;
  readonly sidecars?: { close(): Promise<unknown>; readonly logShipper?: { readonly pid?: number | undefined }; readonly metricsSidecar?: { readonly pid?: number | undefined } } | undefined;
}

/** Listens on 127.0.0.1 and a free port; resolves with the base URL. */
export async function listenDemo(demo: DemoLike): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    demo.server.once('error', reject);
    demo.server.listen(0, '127.0.0.1', () => {
      demo.server.off('error', reject);
      resolve();
    });
  });
  return `http://127.0.0.1:${(demo.server.address() as AddressInfo).port}`;
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
