// The patchbay demo server: an app built from the library's public classes, nothing more.
// `npm run demo` (scripts/demo.mjs) builds the package when its sources changed and starts it on
// 127.0.0.1 (PORT, default 3000); `node demo/server.js` starts it on the dist/ that is there.
// Routes follow DESIGN.md ("The demo server's routes"); later primitives add theirs here.
import cluster from 'node:cluster';
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UploadHandler } from 'patchbay/upload';
import { RedisBackend, RedisJobStore } from 'patchbay/redis';
import { WsHandler } from 'patchbay/ws';
import { startDemoSidecars } from './sidecars.js';
import { runPrimary, SHUTDOWN_MESSAGE, workersFromEnv } from './cluster.js';
import {
  InvalidArgumentError,
  isAllowedOrigin,
  LongPollHandler,
  MethodNotAllowedError,
  NotFoundError,
  PollHandle,
  SharedPollHandle,
  PollHandler,
  PubSubBroker,
  PublishHandler,
  requestUrl,
  sendError,
  sendJson,
  SseHandler,
  streamJsonLines,
} from 'patchbay';

// The page that shows every pattern live (demo/public): static files, and the browser builds of
// patchbay/client (from dist/, built by `npm run demo`) and tus-js-client.
const publicFiles = {
  '/': ['public/index.html', 'text/html; charset=utf-8'],
  '/app.js': ['public/app.js', 'text/javascript; charset=utf-8'],
  '/app.css': ['public/app.css', 'text/css; charset=utf-8'],
  '/vendor/tus.min.js': ['../node_modules/tus-js-client/dist/tus.min.js', 'text/javascript; charset=utf-8'],
};

/** Serves a file of the page, or `dist/<name>.js` under /vendor/patchbay/; false when the path is neither. */
async function servePublic(pathname, req, res) {
  let file;
  let type = 'text/javascript; charset=utf-8';
  const vendor = /^\/vendor\/patchbay\/([A-Za-z0-9_-]+\.js)$/.exec(pathname);
  if (vendor) file = new URL(`../dist/${vendor[1]}`, import.meta.url);
  else if (Object.hasOwn(publicFiles, pathname)) {
    file = new URL(publicFiles[pathname][0], import.meta.url);
    type = publicFiles[pathname][1];
  } else return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new MethodNotAllowedError(req.method, ['GET', 'HEAD']);
  let body;
  try {
    body = await readFile(file);
  } catch {
    throw new NotFoundError(vendor ? `${pathname} is not built: run npm run build` : `No file for ${pathname}`);
  }
  res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}

/** An integer query parameter in [min, max], or `fallback` when absent; anything else is a 400. */
function intQuery(url, name, min, max, fallback) {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new InvalidArgumentError(`Query parameter ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw.slice(0, 40))}`);
  }
  return Number(raw);
}

/** The bounds of a demo job: steps x stepMs, at most an hour in all. */
const MAX_STEPS = 1000;
const MAX_STEP_MS = 60_000;
const MAX_JOB_MS = 3_600_000;

/** Validates a demo job's body: exactly `{ "steps": 1..1000, "stepMs": 0..60000 }`, at most an hour in all. */
function parseDemoJob(body) {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidArgumentError('Send a JSON object { "steps": n, "stepMs": ms }');
  }
  for (const key of Object.keys(body)) {
    if (key !== 'steps' && key !== 'stepMs') throw new InvalidArgumentError(`Unknown field ${JSON.stringify(key.slice(0, 40))}: send { "steps": n, "stepMs": ms }`);
  }
  const { steps, stepMs } = body;
  if (!Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS) throw new InvalidArgumentError(`"steps" must be an integer from 1 to ${MAX_STEPS}`);
  if (!Number.isInteger(stepMs) || stepMs < 0 || stepMs > MAX_STEP_MS) throw new InvalidArgumentError(`"stepMs" must be an integer from 0 to ${MAX_STEP_MS}`);
  if (steps * stepMs > MAX_JOB_MS) throw new InvalidArgumentError(`steps x stepMs must be at most ${MAX_JOB_MS} ms`);
  return { steps, stepMs };
}

/**
 * Waits `ms`, or rejects with the signal's reason when it aborts: a timer and one listener, about
 * half the memory of `timers/promises` with a signal (it matters with thousands of live jobs).
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The demo job: `steps` steps of `stepMs` each, reporting progress after each; stops when canceled. */
async function runDemoJob({ steps, stepMs }, { signal, progress }) {
  for (let i = 1; i <= steps; i++) {
    await sleep(stepMs, signal);
    progress({ done: i, total: steps, message: `step ${i} of ${steps}` });
  }
  return { steps, stepMs };
}

/** The demo's upload processing: the file's SHA-256 and size, with progress as bytes hashed. */
async function hashUpload(file, { progress, signal }) {
  const hash = createHash('sha256');
  let done = 0;
  for await (const chunk of createReadStream(file.path, { signal })) {
    hash.update(chunk);
    done += chunk.length;
    progress({ done, total: file.size, message: 'hashing' });
  }
  return { id: file.id, filename: file.metadata.filename ?? null, size: file.size, sha256: hash.digest('hex') };
}

/**
 * Builds the demo server (not yet listening); its `close()` shuts it down gracefully
 * (docs/guides/shutdown.md), as closing its server does.
 * @param {{ maxHoldMs?: number, maxBodyBytes?: number, sseRetryMs?: number, uploadsDir?: string, maxUploadBytes?: number, jobs?: { ttlMs?: number, maxLiveJobs?: number, maxStoredResults?: number, maxWaitSeconds?: number, leaseMs?: number }, stopTokenSecret?: string, workerHeader?: boolean }} [options]
 *   `stopTokenSecret` (or PATCHBAY_STOP_TOKEN_SECRET) signs SSE stop tokens, so processes given
 *   the same one honor each other's; `workerHeader` adds `Patchbay-Worker: <pid>` to every answer.
 */
export function createDemo(options = {}) {
  // PATCHBAY_REDIS_URL (or options.redisUrl) puts the topics on Redis, so several demo processes
  // share them: a publish on one wakes long polls and SSE streams held by the others.
  const redisUrl = options.redisUrl ?? process.env.PATCHBAY_REDIS_URL;
  const backend = redisUrl ? new RedisBackend({ url: redisUrl, prefix: options.redisPrefix ?? process.env.PATCHBAY_REDIS_PREFIX ?? 'patchbay-demo:' }) : undefined;
  const broker = new PubSubBroker({ backend });
  const longPoll = new LongPollHandler({ broker, maxHoldMs: options.maxHoldMs ?? 30_000 });
  // A stop token (a client closed with { reconnect: false }) is signed: with one secret for every
  // process (WORKERS=N gives its workers one), any process answers its reconnect with 204.
  const stopTokenSecret = options.stopTokenSecret ?? (process.env.PATCHBAY_STOP_TOKEN_SECRET || undefined);
  const sse = new SseHandler({ broker, retryMs: options.sseRetryMs ?? 1000, retryJitter: 0.25, lastEventIdQuery: 'lastEventId', stopTokenSecret });
  // WebSocket push on GET /ws (attached to the server's upgrades below); anyone may publish, as on POST /pub/:topic.
  // The page subscribes to `room.*`, so patterns are allowed (the demo has no private topics); a
  // page of another site may not open a socket through a visitor's browser.
  const ws = new WsHandler({ broker, allowPatterns: true, authorize: { upgrade: (req) => isAllowedOrigin(req), publish: () => true } });
  const publish = new PublishHandler({ broker, maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024 });
  const jobOptions = options.jobs ?? {};
  // On Redis the jobs are shared too: a job started on one demo process is read, awaited and
  // canceled through any other, and a process that dies has its jobs failed after its lease.
  const jobLimits = { ttlMs: jobOptions.ttlMs ?? 600_000, maxLiveJobs: jobOptions.maxLiveJobs ?? 1000, maxStoredResults: jobOptions.maxStoredResults ?? 10_000 };
  const jobs =
    backend === undefined
      ? new PollHandle(jobLimits)
      : new SharedPollHandle({ ...jobLimits, store: new RedisJobStore({ backend }), leaseMs: jobOptions.leaseMs ?? 30_000 });
  const poll = new PollHandler({
    jobs,
    basePath: '/jobs',
    resultMode: 'redirect',
    maxWaitSeconds: jobOptions.maxWaitSeconds ?? 30,
    maxBodyBytes: 1024,
    parse: parseDemoJob,
    run: runDemoJob,
  });

  // Resumable uploads (tus 1.0); a finished upload's SHA-256 is computed as a job polled on /jobs.
  const uploads = new UploadHandler({
    // A stable folder (not one per pid): a restarted demo resumes unfinished uploads, and its
    // expiry removes what an earlier run left; with WORKERS=N every worker serves every upload in
    // it (a PATCH continues an upload on whichever worker it reaches).
    directory: options.uploadsDir ?? process.env.UPLOADS_DIR ?? join(tmpdir(), `patchbay-demo-uploads-${process.getuid?.() ?? 'user'}`),
    basePath: '/uploads',
    maxSizeBytes: options.maxUploadBytes ?? 100 * 1024 * 1024,
    maxActiveUploads: 50,
    maxTotalBytes: 1024 * 1024 * 1024,
    expiryMs: 3_600_000,
    completedExpiryMs: 600_000,
    jobs,
    jobsBasePath: '/jobs',
    process: hashUpload,
  });

  // The log shipper and metrics sidecars (demo/sidecars.js), when asked for: GET /sidecar.
  const sidecars = options.sidecars ? startDemoSidecars(options.sidecars) : undefined;

  const route = async (req, res) => {
    const url = requestUrl(req);
    const match = /^\/(pub|lp|sse)\/([^/]+)$/.exec(url.pathname);
    let topic = '';
    if (match) {
      try {
        topic = decodeURIComponent(match[2]);
      } catch {
        throw new InvalidArgumentError('The topic in the path is not valid percent-encoding');
      }
    }
    if (await servePublic(url.pathname, req, res)) {
      // the page, its script and style, and the browser builds it loads
    } else if (match?.[1] === 'pub') {
      // Anyone may publish (it is a demo), but not a page of another site through a visitor's browser.
      await publish.handle(req, res, topic);
    } else if (match?.[1] === 'lp') {
      await longPoll.handle(req, res, { topics: [topic] });
    } else if (match?.[1] === 'sse') {
      await sse.handle(req, res, { topics: [topic] });
    } else if (url.pathname === '/stream/ndjson') {
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method, ['GET']);
      const n = intQuery(url, 'n', 0, 1_000_000, 100);
      const from = intQuery(url, 'from', 0, n, 0);
      const delayMs = intQuery(url, 'delayMs', 0, 1000, 0);
      // n records { i, square }, from `from` on (so a cut client resumes), with an end record.
      await streamJsonLines(
        res,
        async function* ({ from: start, signal }) {
          for (let i = start; i < n; i++) {
            if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
            if (signal.aborted) return;
            yield { i, square: i * i };
          }
        },
        { from },
      );
    } else if (url.pathname === '/uploads' || url.pathname.startsWith('/uploads/')) {
      await uploads.handle(req, res);
    } else if (url.pathname === '/sidecar' && sidecars) {
      await sidecars.handle(req, res);
    } else if (url.pathname === '/ws') {
      // Upgrades never get here (ws.attach takes them): a plain request is told to upgrade.
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method, ['GET']);
      sendJson(res, 426, { error: { code: 'PB_ERR_PROTOCOL', message: 'GET /ws is a WebSocket endpoint: send an Upgrade: websocket request' } }, { upgrade: 'websocket' });
    } else if (url.pathname === '/stats' && req.method === 'GET') {
      sendJson(res, 200, { pid: process.pid, broker: broker.stats(), publish: publish.stats(), longPoll: longPoll.stats(), sse: sse.stats(), jobs: jobs.stats(), poll: poll.stats(), uploads: uploads.stats(), ws: ws.stats() });
    } else {
      throw new NotFoundError(`No route for ${req.method} ${url.pathname}`);
    }
  };

  const workerPid = options.workerHeader ? String(process.pid) : undefined;
  const server = http.createServer((req, res) => {
    if (workerPid !== undefined) res.setHeader('patchbay-worker', workerPid);
    sidecars?.observe(req, res);
    // Job status reads are the hot path of short polling: straight to the handler (which parses
    // the path itself and never rejects): no URL object, no other route tried first, no promise
    // of the router's own.
    const raw = req.url ?? '/';
    if (raw.startsWith('/jobs') && (raw.length === 5 || raw[5] === '/' || raw[5] === '?')) {
      void poll.handle(req, res);
      return;
    }
    route(req, res).catch((error) => sendError(res, error));
  });
  ws.attach(server, { path: '/ws' });
  // Closing the server (as the tests do) closes the rest too; every close() below is idempotent.
  server.on('close', () => void close().catch((error) => console.error('patchbay demo: closing failed:', error)));

  /**
   * Graceful shutdown, in the order that lets every held request get its answer: stop accepting
   * (and let each keep-alive connection close once its response is written), close the handlers
   * (held long polls get 204 with their cursor, SSE streams end, `Prefer: wait` reads get the
   * job's current status, WebSockets get close frame 1001), then wait for the server to close,
   * then close what the handlers used (sidecars, jobs, broker, backend). Idempotent.
   */
  let closing;
  const close = () =>
    (closing ??= (async () => {
      const serverClosed = new Promise((resolve) => server.close(() => resolve()));
      server.keepAliveTimeout = 1; // a connection idle after its answer closes at once
      server.closeIdleConnections();
      await Promise.all([longPoll.close(), sse.close(), poll.close(), ws.close(), uploads.close(), publish.close()]);
      await serverClosed;
      await sidecars?.close();
      // Live jobs end canceled in the store before the connection they need closes.
      await Promise.all([jobs.close(), broker.close()]);
      await backend?.close();
    })());
  return { server, broker, publish, longPoll, sse, jobs, poll, uploads, sidecars, ws, close };
}

/** How long a signalled demo may take to close before it exits anyway (WebSocket clients get 5 s to answer their close frame). */
const SHUTDOWN_DEADLINE_MS = 10_000;

/**
 * Runs the demo as `node demo/server.js` (or scripts/demo.mjs) does: options from the environment,
 * listening on 127.0.0.1, one line saying where, and a graceful shutdown on SIGINT or SIGTERM
 * (`close()`, then exit 0; a second signal exits at once).
 */
export function runDemo() {
  const port = Number(process.env.PORT ?? 3000);
  const maxHoldMs = Number(process.env.LP_TIMEOUT_MS ?? 30_000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`PORT must be a port number, got ${process.env.PORT}`);
  if (!Number.isInteger(maxHoldMs) || maxHoldMs < 0) throw new InvalidArgumentError(`LP_TIMEOUT_MS must be a whole number of ms, got ${process.env.LP_TIMEOUT_MS}`);
  // Job limits, for the benchmark: JOBS_MAX_LIVE, JOBS_MAX_STORED, JOBS_TTL_MS, JOBS_MAX_WAIT_S;
  // JOBS_LEASE_MS, the lease of a process's jobs on Redis.
  const jobEnv = (name, min, max) => {
    const raw = process.env[name];
    if (raw === undefined || raw === '') return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${raw}`);
    return n;
  };
  const jobs = {
    maxLiveJobs: jobEnv('JOBS_MAX_LIVE', 1, 1_000_000),
    maxStoredResults: jobEnv('JOBS_MAX_STORED', 1, 1_000_000),
    ttlMs: jobEnv('JOBS_TTL_MS', 1, 2 ** 31 - 1),
    maxWaitSeconds: jobEnv('JOBS_MAX_WAIT_S', 0, 86_400),
    leaseMs: jobEnv('JOBS_LEASE_MS', 30, 2 ** 31 - 1),
  };
  // SIDECARS=0 runs without the log shipper and metrics sidecars (demo/sidecars.js); METRICS_PORT
  // (default 9464) is where the metrics sidecar serves the Prometheus text, on 127.0.0.1.
  const metricsPort = Number(process.env.METRICS_PORT ?? 9464);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new InvalidArgumentError(`METRICS_PORT must be a port number, got ${process.env.METRICS_PORT}`);
  // SIDECARS=connect reaches sidecars that already run beside the app on their default sockets
  // (the containers of examples/kubernetes/sidecar-pod.yaml) instead of spawning them.
  const sidecarMode = process.env.SIDECARS === 'connect' ? 'connect' : 'spawn';
  // WORKERS=N (N > 1, with PATCHBAY_REDIS_URL): this process becomes the primary of N workers
  // (demo/cluster.js), each of which runs this function again as a worker.
  const workers = workersFromEnv();
  if (workers !== undefined && workers > 1 && cluster.isPrimary) {
    return runPrimary({ workers, port, host: '127.0.0.1', sidecars: process.env.SIDECARS === '0' ? undefined : { metricsPort }, deadlineMs: SHUTDOWN_DEADLINE_MS });
  }
  // A worker reaches the sidecars its primary started, on the sockets it was given.
  const sidecarSockets = cluster.isWorker ? { logSocket: process.env.DEMO_LOG_SOCKET, metricsSocket: process.env.DEMO_METRICS_SOCKET, logFile: process.env.DEMO_LOG_FILE } : {};
  const demo = createDemo({
    jobs,
    maxHoldMs,
    // DEMO_WORKER_HEADER=0 leaves the header off (the benchmarks: a header set on every answer
    // takes long polling's shared-bytes path away).
    workerHeader: cluster.isWorker && process.env.DEMO_WORKER_HEADER !== '0',
    sidecars: process.env.SIDECARS === '0' ? undefined : { mode: sidecarMode, metricsPort, ...sidecarSockets },
  });
  demo.server.listen(port, '127.0.0.1', () => {
    if (cluster.isWorker) return; // the primary says where, once
    const address = demo.server.address();
    const sidecarNote = demo.sidecars ? `, sidecars (${sidecarMode}) on GET /sidecar` : '';
    console.log(`patchbay demo on http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/${sidecarNote} (Ctrl-C stops it)`);
  });
  let stopping = false;
  const stop = (signal) => {
    // A worker is stopped by its primary (a message) and, on Ctrl-C, by the terminal too: the
    // second is not "again". The primary enforces the deadline.
    if (stopping && cluster.isWorker) return;
    if (stopping) {
      console.error(`patchbay demo: ${signal} again, exiting without waiting`);
      process.exit(1);
    }
    stopping = true;
    // Only if something hangs: close() answers every held request and ends every stream first.
    setTimeout(() => {
      console.error(`patchbay demo: not closed after ${SHUTDOWN_DEADLINE_MS} ms, exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    demo.close().then(
      () => process.exit(0),
      (error) => {
        console.error('patchbay demo: closing failed:', error);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (cluster.isWorker) process.on('message', (message) => message === SHUTDOWN_MESSAGE && stop('shutdown'));
  // A send to a primary that is gone (it was killed while this worker closed) fails with EPIPE
  // as an 'error' on process: the worker goes on closing (and Node ends it on the disconnect).
  if (cluster.isWorker) process.on('error', (error) => console.error('patchbay demo: the channel to the primary failed:', error.message));
  return demo;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) runDemo();
