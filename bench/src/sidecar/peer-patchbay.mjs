// The patchbay contender's sidecar: serveSidecar from the built package (dist/), on the Unix
// socket its SidecarSupervisor passes. Counts sends; answers `count` with the count, `cpu` with
// its process.cpuUsage(), and any other request with its data.
// PATCHBAY_BENCH_DIST points at another build of dist/ (for experiments).
const dist = process.env.PATCHBAY_BENCH_DIST ?? new URL('../../../dist/', import.meta.url).pathname;
const { serveSidecar } = await import(new URL('index.js', `file://${dist.endsWith('/') ? dist : `${dist}/`}`).href);

let count = 0;
await serveSidecar((message) => {
  if (message.kind === 'send') {
    count++;
    return undefined;
  }
  if (message.type === 'cpu') return process.cpuUsage();
  return message.type === 'count' ? count : message.data;
});
