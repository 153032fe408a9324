// The baseline's peer: a child_process.fork child using Node's built-in IPC channel
// (process.send, JSON serialization). Counts messages; answers requests ({ id }) with a reply:
// `count`, `cpu` (its process.cpuUsage()), or an echo of the data.
let count = 0;
process.on('message', (message) => {
  if (message.id === undefined) {
    count++;
    return;
  }
  const data = message.type === 'count' ? count : message.type === 'cpu' ? process.cpuUsage() : message.data;
  process.send({ id: message.id, data });
});
process.on('disconnect', () => process.exit(0));
