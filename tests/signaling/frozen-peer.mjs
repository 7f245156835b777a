// Joins a room and prints "joined"; the test then freezes this process with SIGSTOP.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const io = require('socket.io-client');
const [url, room] = process.argv.slice(2);
const socket = io(url, { transports: ['websocket'], reconnection: false });
socket.on('joined', () => console.log('joined'));
socket.emit('join', room);
