// @ts-check
// The bare `node:http` reference for the short-polling benchmark: the demo server's job routes
// written by hand, the way a competent developer would without a library.
//
//   POST   /jobs          { "steps": n, "stepMs": ms } -> 202 status, Location, Retry-After, ETag
//   GET    /jobs/:id      -> 200 status with ETag (304 on If-None-Match); a finished job 303 to
//                            /jobs/:id/result; `Prefer: wait=N` holds the read until the job
//                            changes or N s pass
//   GET    /jobs/:id/result, DELETE /jobs/:id, GET /stats -> { live, held }
//
// A Map of jobs, a setTimeout per job step (as the demo's job has), a Set of held requests per
// job with a setTimeout per held request, JSON.stringify per answer (once per wake for the held
// ones), a setTimeout per finished job for its TTL. Run as `node bare-server.mjs` (PORT,
// JOBS_MAX_WAIT_S); it prints `listening on <port>` once it listens on 127.0.0.1.
import { randomBytes } from 'node:crypto';
import http from 'node:http';

const port = Number(process.env.PORT ?? 0);
const maxWaitS = Number(process.env.JOBS_MAX_WAIT_S ?? 30);
const ttlMs = Number(process.env.JOBS_TTL_MS ?? 600_000);

/**
 * @typedef {{ res: http.ServerResponse, timer: NodeJS.Timeout | undefined, inm: string | undefined }} Held
 * @typedef {{ id: string, state: string, progress: unknown, result?: unknown, version: number, steps: number, stepMs: number, done: number, startedAt: number, timer: NodeJS.Timeout | undefined, held: Set<Held> }} Job
 */

/** @type {Map<string, Job>} */
const jobs = new Map();
let live = 0;
let heldCount = 0;

/** @param {Job} job */
const snapshot = (job) => {
  /** @type {Record<string, unknown>} */
  const s = { id: job.id, state: job.state, progress: job.progress };
  if (job.result !== undefined) s.result = job.result;
  return s;
};
/** @param {Job} job */
const isLive = (job) => job.state === 'pending' || job.state === 'running';
/** @param {Job} job */
const retryAfter = (job) => {
  if (job.done === 0) return 1;
  const f = job.done / job.steps;
  return Math.min(30, Math.max(1, Math.ceil(((Date.now() - job.startedAt) * (1 - f)) / f / 1000)));
};

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {Job} job
 * @param {string} [body]
 */
function answer(res, status, job, body) {
  if (res.destroyed || res.writableEnded) return;
  /** @type {Record<string, string | number>} */
  const headers = { 'cache-control': 'no-cache', etag: `"${job.version}"` };
  if (isLive(job)) headers['retry-after'] = retryAfter(job);
  if (status === 304) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  if (status === 303) headers.location = `/jobs/${job.id}/result`;
  if (status === 202) headers.location = `/jobs/${job.id}`;
  const payload = body ?? JSON.stringify(snapshot(job));
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = Buffer.byteLength(payload);
  res.writeHead(status, headers);
  res.end(payload);
}

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {string} code
 * @param {string} message
 */
function error(res, status, code, message) {
  const payload = Buffer.from(JSON.stringify({ error: { code, message } }));
  res.writeHead(status, { 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-length': payload.length });
  res.end(payload);
}

/** The job changed: new version, and every held read of it is answered (one body for all). @param {Job} job */
function changed(job) {
  job.version++;
  if (job.held.size === 0) return;
  const held = job.held;
  job.held = new Set();
  heldCount -= held.size;
  const finished = !isLive(job);
  const body = JSON.stringify(snapshot(job));
  for (const h of held) {
    clearTimeout(h.timer);
    answer(h.res, finished ? 303 : 200, job, body);
  }
}

/** @param {Job} job @param {string} state */
function finish(job, state) {
  if (!isLive(job)) return;
  clearTimeout(job.timer);
  job.state = state;
  live--;
  if (state === 'succeeded') job.result = { steps: job.steps, stepMs: job.stepMs };
  changed(job);
  setTimeout(() => {
    jobs.delete(job.id);
    changed(job);
  }, ttlMs).unref();
}

/** @param {Job} job */
function step(job) {
  job.timer = setTimeout(() => {
    job.done++;
    job.progress = { done: job.done, total: job.steps, message: `step ${job.done} of ${job.steps}` };
    changed(job);
    if (job.done === job.steps) finish(job, 'succeeded');
    else step(job);
  }, job.stepMs);
}

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res */
function start(req, res) {
  /** @type {Buffer[]} */
  const chunks = [];
  let size = 0;
  req.on('data', (/** @type {Buffer} */ c) => {
    size += c.length;
    if (size > 1024) req.destroy();
    else chunks.push(c);
  });
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      error(res, 400, 'PB_ERR_PROTOCOL', 'bad JSON');
      return;
    }
    const { steps, stepMs } = body ?? {};
    if (!Number.isInteger(steps) || steps < 1 || steps > 1000 || !Number.isInteger(stepMs) || stepMs < 0 || stepMs > 60_000 || steps * stepMs > 3_600_000) {
      error(res, 400, 'PB_ERR_INVALID_ARGUMENT', 'bad steps or stepMs');
      return;
    }
    const id = randomBytes(12).toString('base64url');
    /** @type {Job} */
    const job = { id, state: 'running', progress: null, version: 1, steps, stepMs, done: 0, startedAt: Date.now(), timer: undefined, held: new Set() };
    jobs.set(id, job);
    live++;
    step(job);
    answer(res, 202, job);
  });
}

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res @param {Job} job */
function status(req, res, job) {
  const inm = req.headers['if-none-match'];
  const m = /(?:^|,)\s*wait\s*=\s*(\d+)/i.exec(req.headers.prefer ?? '');
  const wait = m ? Math.min(Number(m[1]), maxWaitS) : 0;
  const current = `"${job.version}"`;
  if (wait > 0 && (inm === undefined ? isLive(job) : inm === current)) {
    /** @type {Held} */
    const h = { res, timer: undefined, inm };
    h.timer = setTimeout(() => {
      if (!job.held.delete(h)) return;
      heldCount--;
      answer(res, h.inm === `"${job.version}"` ? 304 : isLive(job) ? 200 : 303, job);
    }, wait * 1000);
    job.held.add(h);
    heldCount++;
    res.on('close', () => {
      if (job.held.delete(h)) {
        heldCount--;
        clearTimeout(h.timer);
      }
    });
    return;
  }
  if (inm === current) answer(res, 304, job);
  else answer(res, isLive(job) ? 200 : 303, job);
}

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path === '/jobs' && req.method === 'POST') return start(req, res);
  if (path === '/stats' && req.method === 'GET') {
    const payload = Buffer.from(JSON.stringify({ live, held: heldCount }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': payload.length });
    res.end(payload);
    return;
  }
  const m = /^\/jobs\/([A-Za-z0-9_-]{16})(\/result)?$/.exec(path);
  const job = m ? jobs.get(m[1]) : undefined;
  if (job === undefined) return error(res, 404, 'PB_ERR_NOT_FOUND', 'no such job');
  if (m?.[2] !== undefined) return isLive(job) ? error(res, 409, 'PB_ERR_INVALID_STATE', 'not finished') : answer(res, 200, job);
  if (req.method === 'GET') return status(req, res, job);
  if (req.method === 'DELETE') {
    finish(job, 'canceled');
    return answer(res, 200, job);
  }
  error(res, 405, 'PB_ERR_METHOD_NOT_ALLOWED', 'method not allowed');
});
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on ${typeof address === 'object' && address !== null ? address.port : port}`);
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
