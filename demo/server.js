// The patchbay demo server: an app built from the library's public classes, nothing more.
// `npm run demo` builds the package and starts it on 127.0.0.1 (PORT, default 3000).
// Later primitives add their routes here (DESIGN.md, "The demo server's routes").
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError, Purgatory } from 'patchbay';

const MAX_WAIT_MS = 60_000;

const page = `<!doctype html>
<meta charset="utf-8">
<title>patchbay demo</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}code{background:#eee;padding:0 .2em}</style>
<h1>patchbay demo</h1>
<p>The <code>Purgatory</code>: requests wait on a key until something wakes the key or their timeout passes.</p>
<p><button id="wait">Wait on "demo" (10 s)</button> <button id="wake">Wake "demo"</button></p>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById('log').textContent += line + '\\n'; };
document.getElementById('wait').onclick = async () => {
  const started = performance.now();
  log('waiting...');
  const res = await fetch('/wait/demo?timeoutMs=10000');
  const body = await res.json();
  log(res.status + ' ' + JSON.stringify(body) + ' after ' + Math.round(performance.now() - started) + ' ms');
};
document.getElementById('wake').onclick = async () => {
  const res = await fetch('/wake/demo', { method: 'POST' });
  log('woke ' + (await res.json()).woken + ' waiter(s)');
};
</script>`;

/**
 * Builds the demo server (not yet listening).
 * @returns {{ server: http.Server, purgatory: Purgatory }}
 */
export function createDemo() {
  const purgatory = new Purgatory({ name: 'demo' });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const json = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const match = /^\/(wait|wake)\/([^/]+)$/.exec(url.pathname);
    let key = '';
    if (match) {
      try {
        key = decodeURIComponent(match[2]);
      } catch {
        json(400, { error: { code: 'PB_ERR_INVALID_ARGUMENT', message: 'The key in the path is not valid percent-encoding' } });
        return;
      }
    }

    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    } else if (req.method === 'GET' && url.pathname === '/stats') {
      json(200, purgatory.stats());
    } else if (req.method === 'GET' && match?.[1] === 'wait') {
      const raw = url.searchParams.get('timeoutMs') ?? '30000';
      const timeoutMs = Number(raw);
      if (!/^\d+$/.test(raw) || timeoutMs > MAX_WAIT_MS) {
        json(400, { error: { code: 'PB_ERR_INVALID_ARGUMENT', message: `timeoutMs must be an integer from 0 to ${MAX_WAIT_MS}, got ${JSON.stringify(raw)}` } });
        return;
      }
      const gone = new AbortController();
      res.on('close', () => gone.abort());
      purgatory.wait(key, { timeoutMs, signal: gone.signal }).then(
        (outcome) => json(200, { outcome }),
        (err) => {
          if (gone.signal.aborted) return; // the client left: nothing to answer
          json(503, { error: { code: err?.code ?? 'PB_ERR_INTERNAL', message: String(err?.message ?? err) } });
        },
      );
    } else if (req.method === 'POST' && match?.[1] === 'wake') {
      json(200, { woken: purgatory.checkAndComplete(key) });
    } else {
      json(404, { error: { code: 'PB_ERR_NOT_FOUND', message: `No route for ${req.method} ${url.pathname}` } });
    }
  });
  server.on('close', () => void purgatory.close());
  return { server, purgatory };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const port = Number(process.env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`PORT must be a port number, got ${process.env.PORT}`);
  const { server } = createDemo();
  server.listen(port, '127.0.0.1', () => {
    const address = server.address();
    console.log(`patchbay demo on http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}/`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
