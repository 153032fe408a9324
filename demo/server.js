// The patchbay demo server: an app built from the library's public classes, nothing more.
// `npm run demo` builds the package and starts it on 127.0.0.1 (PORT, default 3000).
// Routes follow DESIGN.md ("The demo server's routes"); later primitives add theirs here.
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import {
  decodeBody,
  InvalidArgumentError,
  LongPollHandler,
  MethodNotAllowedError,
  NotFoundError,
  PubSubBroker,
  readBody,
  sendError,
  sendJson,
  SseHandler,
  streamJsonLines,
} from 'patchbay';

const page = `<!doctype html>
<meta charset="utf-8">
<title>patchbay demo</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}
code{background:#eee;padding:0 .2em}input{font:inherit}pre{background:#f6f6f6;padding:.5rem;min-height:6rem}
</style>
<h1>patchbay demo</h1>
<section>
<h2>Long polling</h2>
<p>This page long-polls <code>GET /lp/demo</code>; publish with <code>POST /pub/demo</code> and watch it arrive.</p>
<form id="pub"><input id="text" value="hello" aria-label="message"> <button>Publish to "demo"</button></form>
<pre id="lp"></pre>
</section>
<section>
<h2>Server-Sent Events</h2>
<p>This page also follows <code>GET /sse/demo</code> with an <code>EventSource</code>; it resumes with <code>Last-Event-ID</code> after a cut.</p>
<pre id="sse"></pre>
</section>
<script>
const log = (id, line) => { const el = document.getElementById(id); el.textContent = line + '\\n' + el.textContent; };
document.getElementById('pub').onsubmit = async (e) => {
  e.preventDefault();
  const res = await fetch('/pub/demo', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: document.getElementById('text').value });
  log('lp', 'published ' + (await res.json()).id);
};
const source = new EventSource('/sse/demo');
window.patchbaySse = { received: [], source };
source.onmessage = (e) => { window.patchbaySse.received.push({ id: e.lastEventId, data: e.data }); log('sse', 'event ' + e.lastEventId + ': ' + e.data); };
source.addEventListener('gap', (e) => log('sse', '(gap after ' + e.data + ')'));
source.onerror = () => log('sse', '(reconnecting)');
(async function poll(cursor) {
  for (;;) {
    try {
      const res = await fetch('/lp/demo' + (cursor ? '?cursor=' + encodeURIComponent(cursor) : ''));
      cursor = res.headers.get('patchbay-cursor') || cursor;
      if (res.status === 200) {
        const body = await res.json();
        for (const m of body.messages) log('lp', 'received ' + m.id + ': ' + JSON.stringify(m.data));
        if (body.gap) log('lp', '(some messages were missed: gap)');
      } else if (res.status !== 204) {
        log('lp', 'error ' + res.status); await new Promise((r) => setTimeout(r, 1000));
      }
    } catch { await new Promise((r) => setTimeout(r, 1000)); }
  }
})();
</script>`;

/** An integer query parameter in [min, max], or `fallback` when absent; anything else is a 400. */
function intQuery(url, name, min, max, fallback) {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new InvalidArgumentError(`Query parameter ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw.slice(0, 40))}`);
  }
  return Number(raw);
}

/**
 * Builds the demo server (not yet listening).
 * @param {{ maxHoldMs?: number, maxBodyBytes?: number, sseRetryMs?: number }} [options]
 */
export function createDemo(options = {}) {
  const broker = new PubSubBroker();
  const longPoll = new LongPollHandler({ broker, maxHoldMs: options.maxHoldMs ?? 30_000 });
  const sse = new SseHandler({ broker, retryMs: options.sseRetryMs ?? 1000, retryJitter: 0.25, lastEventIdQuery: 'lastEventId' });
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;

  const route = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const match = /^\/(pub|lp|sse)\/([^/]+)$/.exec(url.pathname);
    let topic = '';
    if (match) {
      try {
        topic = decodeURIComponent(match[2]);
      } catch {
        throw new InvalidArgumentError('The topic in the path is not valid percent-encoding');
      }
    }
    if (url.pathname === '/') {
      if (req.method !== 'GET') throw new MethodNotAllowedError(req.method, ['GET']);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    } else if (match?.[1] === 'pub') {
      if (req.method !== 'POST') throw new MethodNotAllowedError(req.method, ['POST']);
      const body = await readBody(req, maxBodyBytes);
      const data = decodeBody(req.headers['content-type'], body);
      const message = await broker.publish(topic, data);
      sendJson(res, 201, { id: message.id });
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
    } else if (url.pathname === '/stats' && req.method === 'GET') {
      sendJson(res, 200, { broker: broker.stats(), longPoll: longPoll.stats(), sse: sse.stats() });
    } else {
      throw new NotFoundError(`No route for ${req.method} ${url.pathname}`);
    }
  };

  const server = http.createServer((req, res) => {
    route(req, res).catch((error) => sendError(res, error));
  });
  server.on('close', () => {
    void sse.close();
    void longPoll.close();
    void broker.close();
  });
  return { server, broker, longPoll, sse };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const port = Number(process.env.PORT ?? 3000);
  const maxHoldMs = Number(process.env.LP_TIMEOUT_MS ?? 30_000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`PORT must be a port number, got ${process.env.PORT}`);
  if (!Number.isInteger(maxHoldMs) || maxHoldMs < 0) throw new InvalidArgumentError(`LP_TIMEOUT_MS must be a whole number of ms, got ${process.env.LP_TIMEOUT_MS}`);
  const { server } = createDemo({ maxHoldMs });
  server.listen(port, '127.0.0.1', () => {
    const address = server.address();
    console.log(`patchbay demo on http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 2000).unref(); // streams end on close; don't wait on stragglers
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
