// The demo page's script: plain ES module, no build step. The long-poll, job and NDJSON panes
// use patchbay's own fetch clients (patchbay/client, served from the built dist/), the upload
// uses tus-js-client's browser build, SSE and WebSocket the browser's own EventSource/WebSocket.
import { LongPollClient, PollClient, readJsonLines } from '/vendor/patchbay/client.js';

const $ = (id) => document.getElementById(id);
const log = (id, line) => {
  const el = $(id);
  el.textContent = `${line}\n${el.textContent}`.slice(0, 20_000);
};
const addItem = (listId, text) => {
  const li = document.createElement('li');
  li.textContent = text;
  $(listId).append(li);
  li.scrollIntoView({ block: 'nearest' });
};
const show = (data) => (typeof data === 'string' ? data : JSON.stringify(data));

// --- chat: publish, then long polling and SSE ------------------------------------------------
$('pub').onsubmit = async (e) => {
  e.preventDefault();
  const text = $('text').value;
  const res = await fetch('/pub/demo', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: text });
  const body = await res.json();
  log('lp', res.ok ? `published ${body.id}` : `publish refused (${res.status}): ${show(body)}`);
};

window.patchbayLp = { received: [], gaps: 0 };
const lpClient = new LongPollClient({
  url: new URL('/lp/demo', location.href),
  holdMs: 20_000,
  backoff: { initialDelayMs: 200, maxDelayMs: 2000 },
  onGap: () => {
    window.patchbayLp.gaps++;
    log('lp', '(some messages were missed: gap)');
  },
  onRetry: ({ error, delayMs }) => log('lp', `(retrying in ${Math.round(delayMs)} ms: ${error?.message ?? error})`),
});
window.patchbayLp.client = lpClient;
(async () => {
  for await (const m of lpClient) {
    window.patchbayLp.received.push({ id: m.id, data: m.data });
    addItem('lp-list', show(m.data));
    log('lp', `received ${m.id}`);
  }
})().catch((error) => log('lp', `stopped: ${error.message}`));

const source = new EventSource('/sse/demo');
window.patchbaySse = { received: [], source };
source.onmessage = (e) => {
  window.patchbaySse.received.push({ id: e.lastEventId, data: e.data });
  addItem('sse-list', e.data);
  log('sse', `event ${e.lastEventId}: ${e.data}`);
};
source.addEventListener('gap', (e) => log('sse', `(gap after ${e.data})`));
source.onerror = () => log('sse', '(reconnecting)');

// --- WebSocket push ---------------------------------------------------------------------------
window.patchbayWs = { received: [] };
(function connectWs(cursor) {
  const socket = new WebSocket(`${location.protocol === 'https:' ? 'wss://' : 'ws://'}${location.host}/ws`, 'patchbay.v1');
  window.patchbayWs.socket = socket;
  socket.onopen = () => socket.send(JSON.stringify({ type: 'subscribe', sid: 'demo', pattern: 'demo', ...(cursor ? { cursor } : {}) }));
  socket.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === 'subscribed' && !cursor) cursor = f.cursor;
    else if (f.type === 'message') {
      cursor = f.id;
      window.patchbayWs.received.push({ id: f.id, data: f.data });
      addItem('ws-list', show(f.data));
      log('ws', `message ${f.id}`);
    } else if (f.type === 'gap') log('ws', `(gap: ${f.reason})`);
    else if (f.type === 'error') log('ws', `error ${f.code}: ${f.message}`);
  };
  socket.onclose = () => {
    log('ws', '(reconnecting)');
    setTimeout(() => connectWs(cursor), 1000);
  };
})();

// --- a long job, short-polled -------------------------------------------------------------------
const jobs = new PollClient({ baseUrl: location.href, waitSeconds: 20 });
let jobAbort;
const showProgress = (bar, label, status) => {
  const p = status.progress;
  if (p && typeof p === 'object' && p.total) bar.value = p.done / p.total;
  else if (typeof p === 'number') bar.value = p;
  label.textContent = `${status.state}${p && typeof p === 'object' ? ` ${p.done}/${p.total ?? '?'}${p.message ? ` (${p.message})` : ''}` : ''}`;
};
$('job-form').onsubmit = async (e) => {
  e.preventDefault();
  jobAbort?.abort();
  jobAbort = new AbortController();
  const bar = $('job-progress');
  bar.value = 0;
  $('job-cancel').disabled = false;
  window.patchbayJob = { state: 'starting' };
  try {
    const body = { steps: Number($('steps').value), stepMs: Number($('stepMs').value) };
    const ref = await jobs.start('/jobs', body, { signal: jobAbort.signal });
    window.patchbayJob = { id: ref.id, url: ref.location.pathname, state: ref.status?.state ?? 'pending' };
    log('jobs', `started ${ref.id}`);
    const result = await jobs.wait(ref, {
      signal: jobAbort.signal,
      onProgress: (s) => {
        window.patchbayJob.state = s.state;
        showProgress(bar, $('job-state'), s);
        log('jobs', `${s.state} ${show(s.progress)}`);
      },
    });
    window.patchbayJob.result = result;
    window.patchbayJob.state = 'succeeded';
    bar.value = 1;
    $('job-state').textContent = `succeeded: ${show(result)}`;
  } catch (error) {
    window.patchbayJob.state = error?.name === 'AbortError' || error?.code === 'PB_ERR_CANCELED' ? 'canceled' : 'failed';
    $('job-state').textContent = `${window.patchbayJob.state}: ${error?.message ?? error}`;
    log('jobs', `${window.patchbayJob.state}: ${error?.message ?? error}`);
  } finally {
    $('job-cancel').disabled = true;
  }
};
$('job-cancel').onclick = () => jobAbort?.abort(new DOMException('Canceled from the page', 'AbortError'));

// --- a resumable upload (tus), then its processing job ------------------------------------------
window.patchbayUpload = { state: 'idle' };
let upload;
const startUpload = (file) => {
  const bar = $('upload-progress');
  bar.value = 0;
  window.patchbayUpload = { state: 'uploading', size: file.size, offset: 0, pauses: 0 };
  upload = new window.tus.Upload(file, {
    endpoint: '/uploads',
    chunkSize: 1024 * 1024,
    retryDelays: [0, 500, 1000, 2000],
    metadata: { filename: file.name || 'random.bin', filetype: file.type || 'application/octet-stream' },
    onProgress: (sent, total) => {
      bar.value = sent / total;
      window.patchbayUpload.offset = sent;
      $('upload-state').textContent = `uploading ${sent} / ${total} bytes`;
    },
    onError: (error) => {
      window.patchbayUpload.state = 'failed';
      $('upload-state').textContent = `failed: ${error.message}`;
    },
    onSuccess: async ({ lastResponse }) => {
      $('upload-pause').disabled = true;
      $('upload-resume').disabled = true;
      const jobUrl = lastResponse.getHeader('Patchbay-Job-Location');
      window.patchbayUpload.state = 'processing';
      $('upload-state').textContent = `uploaded; hashing (${jobUrl})`;
      log('uploads', `uploaded ${upload.url}; job ${jobUrl}`);
      try {
        const result = await jobs.wait(jobUrl, { onProgress: (s) => showProgress(bar, $('upload-state'), s) });
        window.patchbayUpload.state = 'done';
        window.patchbayUpload.result = result;
        $('upload-state').textContent = `done: sha256 ${result.sha256}`;
        log('uploads', `sha256 ${result.sha256} (${result.size} bytes)`);
      } catch (error) {
        window.patchbayUpload.state = 'failed';
        $('upload-state').textContent = `processing failed: ${error.message}`;
      }
    },
  });
  $('upload-pause').disabled = false;
  upload.start();
};
$('file').onchange = () => $('file').files[0] && startUpload($('file').files[0]);
$('upload-random').onclick = () => {
  const bytes = new Uint8Array(8 * 1024 * 1024);
  for (let i = 0; i < bytes.length; i += 65_536) crypto.getRandomValues(bytes.subarray(i, i + 65_536));
  startUpload(new File([bytes], 'random.bin', { type: 'application/octet-stream' }));
  window.patchbayUpload.bytes = bytes; // kept so a test can check the server's hash
};
$('upload-pause').onclick = () => {
  upload?.abort(); // drops the connection mid-chunk; the server keeps what it got
  window.patchbayUpload.state = 'paused';
  window.patchbayUpload.pauses++;
  $('upload-state').textContent = `paused at ${window.patchbayUpload.offset} bytes`;
  $('upload-pause').disabled = true;
  $('upload-resume').disabled = false;
};
$('upload-resume').onclick = () => {
  window.patchbayUpload.state = 'uploading';
  $('upload-pause').disabled = false;
  $('upload-resume').disabled = true;
  upload?.start(); // HEAD for the offset, then PATCH from there
};

// --- a streamed NDJSON answer -------------------------------------------------------------------
$('stream-start').onclick = async () => {
  window.patchbayStream = { count: 0, done: false };
  const res = await fetch('/stream/ndjson?n=2000');
  const lines = readJsonLines(res);
  for (;;) {
    const step = await lines.next();
    if (step.done) {
      window.patchbayStream.done = true;
      window.patchbayStream.end = step.value;
      $('stream-state').textContent = `complete: ${step.value.count} records (end record received)`;
      return;
    }
    window.patchbayStream.count++;
    if (window.patchbayStream.count % 100 === 0) $('stream-state').textContent = `${window.patchbayStream.count} records…`;
  }
};

// --- sidecars -------------------------------------------------------------------------------------
const refreshSidecars = async () => {
  const res = await fetch('/sidecar');
  if (!res.ok) {
    $('sidecar-state').textContent = `sidecars not running here (${res.status})`;
    return;
  }
  const s = await res.json();
  window.patchbaySidecar = s;
  $('sidecar-state').textContent = `log shipper: ${s.logShipper?.supervisor?.state ?? '?'}; metrics: ${s.metrics?.supervisor?.state ?? '?'}`;
  $('sidecar-log').textContent = (s.logShipper?.lastLines ?? []).join('\n') || '(no lines yet)';
  $('sidecar-metrics').textContent = (typeof s.metrics?.text === 'string' ? s.metrics.text : show(s.metrics?.text ?? '')).split('\n').filter((l) => /^demo_(requests_total|request_duration_ms_(count|sum))\b/.test(l)).join('\n') || '(no metrics yet)';
};
$('sidecar-refresh').onclick = refreshSidecars;
void refreshSidecars();
