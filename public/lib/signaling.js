// socket.io helpers shared by the pages.

/** Emits `event` with an ack; rejects if no ack arrives within `ms`. */
export function emitWithAck(socket, event, data, ms = 15_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${event}: no answer from the server`)), ms);
    socket.emit(event, data, (reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

/** The socket.io client loaded by the page's classic script (/vendor/socket.io.min.js). */
export function socketIo() {
  if (typeof window.io !== 'function') throw new Error('socket.io client failed to load');
  return window.io;
}
