// The hand-written baseline's peer: a Unix-socket server speaking newline-delimited JSON, as a
// competent engineer writes it without a library. It listens on the path in argv[2], says
// `ready` on stdout, and for each line ({ seq, type, data } or { seq, id, type, data }):
// counts sends; answers requests with { id, data } (`count`, `cpu`, or an echo). After each
// chunk it writes one cumulative { ack: seq } for everything it handled, as patchbay's inbox
// does (child.ts holds every send until that ack covers it). Its lines and acks of one chunk go
// out in one write.
import net from 'node:net';

const path = process.argv[2];
let count = 0;
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let rest = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk) => {
    const text = rest + chunk;
    let start = 0;
    let lastSeq = 0;
    let out = '';
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      const m = JSON.parse(text.slice(start, nl));
      start = nl + 1;
      lastSeq = m.seq;
      if (m.id === undefined) {
        count++;
        continue;
      }
      const data = m.type === 'count' ? count : m.type === 'cpu' ? process.cpuUsage() : m.data;
      out += JSON.stringify({ id: m.id, data }) + '\n';
    }
    rest = text.slice(start);
    if (lastSeq > 0) out += `{"ack":${lastSeq}}\n`;
    if (out !== '') socket.write(out);
  });
  socket.on('end', () => socket.end());
  socket.on('close', () => server.close(() => process.exit(0)));
  socket.on('error', () => process.exit(1));
});
server.listen(path, () => process.stdout.write('ready\n'));
