// A minimal full-mesh room: the yardstick the SFU page is compared with
// (bench/sfu/browsers.mjs, docs/BENCHMARKS.md "SFU page vs full mesh"). Every participant
// has one RTCPeerConnection per other participant and encodes its camera once per peer.
//
// Signaling is the 1-to-1 namespace of our own server, run with `--room-capacity N`: `message`
// reaches every other member of the room, so each message names its sender and addressee and
// the others ignore it. The newcomer makes the offers (to everyone in `joined`'s peer list),
// so two peers never offer to each other at once. Only what a benchmark needs: no UI, no
// recovery.
//
//   mesh.html?room=R&res=320x240&fps=30   then window.__mesh.join()
import { socketIo } from './lib/signaling.js';

const params = new URLSearchParams(location.search);
const [width, height] = (params.get('res') || '320x240').split('x').map(Number);
const fps = Number(params.get('fps')) || 30;
const room = params.get('room') || 'mesh';

const mesh = { id: null, pcs: new Map(), events: [], join };
window.__mesh = mesh;
const log = (event, detail) => mesh.events.push({ t: Date.now(), event, detail });

let local = null;
const socket = socketIo()('/', { transports: ['websocket'] });
const send = (to, data) => socket.emit('message', room, { ...data, from: mesh.id, to });

async function join() {
  local = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: fps, max: fps } },
  });
  document.getElementById('local').srcObject = local;
  socket.emit('join', room);
}

function peer(id) {
  let pc = mesh.pcs.get(id);
  if (pc) return pc;
  pc = new RTCPeerConnection();
  mesh.pcs.set(id, pc);
  for (const track of local.getTracks()) pc.addTrack(track, local);
  pc.onicecandidate = ({ candidate }) => {
    if (candidate) send(id, { type: 'candidate', candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex });
  };
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.dataset.peer = id;
  document.getElementById('grid').append(video);
  pc.ontrack = ({ streams }) => { video.srcObject = streams[0]; };
  return pc;
}

function drop(id) {
  mesh.pcs.get(id)?.close();
  mesh.pcs.delete(id);
  document.querySelector(`video[data-peer="${CSS.escape(id)}"]`)?.remove();
}

socket.on('joined', async (_room, id, info) => {
  mesh.id = id;
  log('joined', id);
  for (const other of info?.peers ?? []) {
    const pc = peer(other);
    await pc.setLocalDescription(await pc.createOffer());
    send(other, { type: 'offer', sdp: pc.localDescription.sdp });
  }
});

// One peer's messages are handled one after another (a candidate must not overtake its offer).
const queues = new Map();
socket.on('message', (_room, data) => {
  if (data?.to !== mesh.id) return;
  const next = (queues.get(data.from) ?? Promise.resolve()).then(() => onMessage(data)).catch((err) => log('error', err.message));
  queues.set(data.from, next);
});

async function onMessage(data) {
  const pc = peer(data.from);
  if (data.type === 'offer') {
    await pc.setRemoteDescription({ type: 'offer', sdp: data.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    send(data.from, { type: 'answer', sdp: pc.localDescription.sdp });
  } else if (data.type === 'answer') {
    await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
  } else if (data.type === 'candidate') {
    await pc.addIceCandidate({ candidate: data.candidate, sdpMid: data.sdpMid, sdpMLineIndex: data.sdpMLineIndex });
  }
}

socket.on('bye', (_room, id) => drop(id));
socket.on('signal_error', (error) => log('signal_error', error));
document.body.dataset.ready = 'true';
