'use strict';
// Baseline for the signaling benchmark: the Node socket.io v4 server our users would
// otherwise run (the course's `server.js` pattern: socket.join / socket.to(room).emit),
// hardened to the same protocol as `signal` (docs/protocol.md) so that both servers do the
// same work per event: room-name and payload validation, the per-client state machine,
// the per-connection rate limit, and the same Engine.IO ping interval/timeout.
//
// Plain HTTP only: the benchmark measures signaling, not TLS.
//
// Usage: node node-server.js [--port 3000] [--host 127.0.0.1] [--room-capacity 2]
//        (or env PORT / HOST / ROOM_CAPACITY)

const http = require('http');
const { Server } = require('socket.io');

function argValue(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  return fallback;
}

const PORT = Number(argValue('--port', process.env.PORT || 3000));
const HOST = argValue('--host', process.env.HOST || '127.0.0.1');
const CAPACITY = Number(argValue('--room-capacity', process.env.ROOM_CAPACITY || 2));

// Limits from docs/protocol.md.
const MAX_ROOM_BYTES = 64;
const ROOM_RE = /^[A-Za-z0-9_.~-]+$/;
const MAX_DATA_BYTES = 64 * 1024;
const MAX_FRAME_BYTES = 1024 * 1024;
const RATE_BURST = 256;
const RATE_PER_SEC = 64;
const MAX_DROPPED = 1000;

const httpServer = http.createServer((req, res) => {
  // Readiness probe for bench/signal/run.sh; mirrors `signal`'s /healthz.
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
    return;
  }
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, {
  pingInterval: 2000,
  pingTimeout: 2000,
  maxHttpBufferSize: MAX_FRAME_BYTES,
  // `signal` accepts socket.io 2.x clients too.
  allowEIO3: true,
  serveClient: false,
  cors: { origin: true },
});

// socket.io puts every socket in a room named after its id, and ids match the room
// charset; prefixing keeps a client from addressing another socket by "joining" its id.
const ioRoom = (room) => 'r:' + room;

function membersOf(room) {
  return io.sockets.adapter.rooms.get(ioRoom(room));
}

function validRoom(room) {
  return (
    typeof room === 'string' &&
    room.length > 0 &&
    Buffer.byteLength(room) <= MAX_ROOM_BYTES &&
    ROOM_RE.test(room)
  );
}

// Optional ICE indices: absent, null, or an integer 0..65535 (an m-line index).
const optIndex = (v) =>
  v === undefined || v === null || (Number.isInteger(v) && v >= 0 && v <= 0xffff);
const optStrOrNull = (v) => v === undefined || v === null || typeof v === 'string';

// Returns an error code, or null when `data` is a relayable offer/answer/candidate.
// Same checks, in the same order, as signal/src/signaling/command.rs: size first, then
// shape.
function checkData(data) {
  if (data !== undefined && Buffer.byteLength(JSON.stringify(data) || '') > MAX_DATA_BYTES) {
    return 'payload_too_large';
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return 'invalid_message';
  switch (data.type) {
    case 'offer':
    case 'answer':
      return typeof data.sdp === 'string' ? null : 'invalid_message';
    case 'candidate':
      if (typeof data.candidate !== 'string') return 'invalid_message';
      if (!optIndex(data.label) || !optIndex(data.sdpMLineIndex)) return 'invalid_message';
      if (!optStrOrNull(data.id) || !optStrOrNull(data.sdpMid)) return 'invalid_message';
      return null;
    default:
      return 'invalid_message';
  }
}

const MESSAGES = {
  invalid_room: 'room must be 1-64 characters of [A-Za-z0-9_.~-]',
  invalid_message: 'data must be an offer, answer or candidate object',
  payload_too_large: 'data is larger than 64 KiB',
  unknown_event: 'unknown event',
  already_joined: 'already in a room; leave first',
  not_in_room: 'not in this room',
  no_peer: 'nobody else is in the room',
  rate_limited: 'too many events; event dropped',
};

io.on('connection', (socket) => {
  let room = null; // the one room this socket is in (state `leaved` when null)
  let tokens = RATE_BURST;
  let last = Date.now();
  let dropped = 0;

  const fail = (code, event) => {
    socket.emit('signal_error', { code, message: MESSAGES[code], event });
  };

  // Token bucket over every incoming event, checked before any handler runs.
  socket.use((packet, next) => {
    const now = Date.now();
    tokens = Math.min(RATE_BURST, tokens + ((now - last) * RATE_PER_SEC) / 1000);
    last = now;
    if (tokens >= 1) {
      tokens -= 1;
      next();
      return;
    }
    dropped += 1;
    fail('rate_limited', String(packet[0]));
    if (dropped >= MAX_DROPPED) socket.disconnect(true);
  });

  socket.onAny((event) => {
    if (event !== 'join' && event !== 'leave' && event !== 'message') {
      fail('unknown_event', String(event));
    }
  });

  socket.on('join', (r) => {
    if (!validRoom(r)) return fail('invalid_room', 'join');
    if (room !== null) return fail('already_joined', 'join');
    const members = membersOf(r);
    const peers = members ? [...members] : [];
    if (peers.length >= CAPACITY) {
      socket.emit('full', r, socket.id);
      return;
    }
    socket.join(ioRoom(r));
    room = r;
    socket.emit('joined', r, socket.id, { peers, capacity: CAPACITY });
    if (peers.length > 0) {
      socket.to(ioRoom(r)).emit('other_joined', r, socket.id);
      socket.to(ioRoom(r)).emit('otherjoin', r, socket.id);
    }
  });

  socket.on('leave', (r) => {
    if (!validRoom(r)) return fail('invalid_room', 'leave');
    if (room !== r) return fail('not_in_room', 'leave');
    socket.leave(ioRoom(r));
    room = null;
    socket.emit('leaved', r, socket.id);
    socket.to(ioRoom(r)).emit('bye', r, socket.id);
  });

  socket.on('message', (...args) => {
    // An ack callback is not part of the protocol's arguments.
    if (typeof args[args.length - 1] === 'function') args.pop();
    const [r, data] = args;
    if (!validRoom(r)) return fail('invalid_room', 'message');
    const bad = args.length === 2 ? checkData(data) : 'invalid_message';
    if (bad) return fail(bad, 'message');
    if (room !== r) return fail('not_in_room', 'message');
    if (membersOf(r).size < 2) return fail('no_peer', 'message');
    socket.to(ioRoom(r)).emit('message', r, data);
  });

  // `disconnecting` still has the socket in its rooms, so `to()` reaches the peer.
  socket.on('disconnecting', () => {
    if (room !== null) socket.to(ioRoom(room)).emit('bye', room, socket.id);
  });
});

httpServer.listen(PORT, HOST, () => {
  console.log(`node signaling server on http://${HOST}:${PORT}/ (pid ${process.pid})`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
