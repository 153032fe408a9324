// The baseline's peer: a child_process.fork child using Node's built-in IPC channel
// (process.send, JSON serialization). Counts messages; answers requests ({ id }) with a reply.
let count = 0;
process.on('message', (message) => {
  if (message.id === undefined) {
    count++;
    return;
  }
  process.send({ id: message.id, data: message.type === 'count' ? count : message.data });
});
process.on('disconnect', () => process.exit(0));
