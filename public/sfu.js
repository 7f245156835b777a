// rtc·call group rooms: one RTCPeerConnection to the SFU, server-driven renegotiation.
//
// Protocol (docs/protocol.md, "SFU rooms"): socket.io namespace /sfu.
//   → join {room, name, sdp}        ack {id, sdp, participants, capacity} | {error}
//   ← update {type:'offer', sdp}    ack {type:'answer', sdp} | {error}
//   ← participants [{id, name, streams, audio, video}]
//   ← speakers [{id, level}]         who speaks, loudest first (the server ranks RTP audio levels)
//   ← publish_layers {mid, active}   which of our simulcast layers anybody needs (rid → bool)
//   ← video_state {participant, state} 'paused': our connection cannot carry their video now
//   → restart {}                     ack {ok} | {error}: the server restarts ICE with an update
//   → layer {participant, quality}   ack {ok} | {error}: the video layer a tile needs
//   → leave                          ack {ok}
//
// Simulcast: the camera goes out as up to three layers (lib/bitrate.js), and each remote tile
// asks for the layer its rendered size needs, or none while it cannot be seen (lib/layers.js).
// Clicking a tile pins it large.
//
// Real networks (issue 8): ICE servers come from /api/ice-servers (a participant whose
// firewall blocks UDP reaches the SFU through the TURN relay over TCP or TLS); a broken path
// is repaired by a server-driven ICE restart (lib/recovery.js decides when to ask); and when
// the server goes away (a restart) or drops our media session, the page joins the room again
// by itself as soon as it can. Where the page is (lobby → joining → joined, rejoining, failed)
// is one pure reducer, lib/room-state.js, mirroring the server's /sfu states.
//
// Test hooks: [data-testid] room, name, join, leave, status, local-video, remote-video (one
// per remote participant, data-participant = its id); window.__rtc (lib/hooks.js), with
// `phase` from lib/room-state.js.

import { createHooks, logEvent } from './lib/hooks.js';
import { isStale, loadIceServers } from './lib/ice.js';
import { dropMeter, levelMeter, receiverMeter, senderMeter, stopStream } from './lib/media.js';
import { simulcastEncodings } from './lib/bitrate.js';
import { applyLayerAsk, tileQuality } from './lib/layers.js';
import { initialRecovery, recover, transportBytes } from './lib/recovery.js';
import { ROOM_HINT, isValidRoom } from './lib/room.js';
import { PHASE, inRoom, initialRoom, reduce } from './lib/room-state.js';
import { emitWithAck, socketIo } from './lib/signaling.js';

const $ = (id) => document.getElementById(id);
const hooks = createHooks('sfu');
hooks.joinedAt = 0;
const log = (event, detail) => logEvent(hooks, event, detail);

const ADJECTIVES = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'kind', 'lively', 'merry', 'nice', 'proud', 'quick', 'silly', 'witty'];
const ANIMALS = ['otter', 'panda', 'koala', 'lynx', 'heron', 'falcon', 'badger', 'dolphin', 'fox', 'owl', 'tiger', 'whale', 'yak', 'zebra', 'moose'];
const pick = (list) => list[Math.floor(Math.random() * list.length)];
const randomRoom = () => `${pick(ADJECTIVES)}-${pick(ANIMALS)}-${Math.floor(Math.random() * 900 + 100)}`;
const randomName = () => { const a = pick(ANIMALS); return a[0].toUpperCase() + a.slice(1) + ' ' + Math.floor(Math.random() * 90 + 10); };

const RECOVERY_TICK_MS = 500;
/** Audio level (linear, 1 = full scale) above which a tile shows its participant speaking (≈ −34 dBov). */
const SPEAKING_LEVEL = 0.02;

let socket = null;
let pc = null;
let localStream = null;
let previewStream = null;
let room = initialRoom;    // lib/room-state.js: where we are, and where the user wants to be
let iceConfig = null;
let recovery = initialRecovery;
let recoveryTimer = 0;
let joining = null;        // the promise of the join in progress
const tiles = new Map();   // participant id → {el, video, stream, meter, name, visible, quality}

function dispatch(ev) {
  room = reduce(room, ev);
  hooks.phase = room.phase;
  return room;
}
function status(text) { $('status').textContent = text; }
function showError(text) { const e = $('error'); e.textContent = text; e.hidden = !text; }

// ------------------------------------------------------------------ lobby
async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  for (const [select, kind, none] of [[$('mic'), 'audioinput', 'No microphone'], [$('cam'), 'videoinput', 'No camera']]) {
    const current = select.value;
    select.innerHTML = '';
    devices.filter((d) => d.kind === kind).forEach((d, i) => select.add(new Option(d.label || `${kind === 'audioinput' ? 'Microphone' : 'Camera'} ${i + 1}`, d.deviceId)));
    select.add(new Option(none, ''));
    if (current && [...select.options].some((o) => o.value === current)) select.value = current;
  }
}

// URL parameters `res=WxH` and `fps=N` preset the camera (tests keep fake-video load modest);
// `relay` sends all media through the TURN relay (iceTransportPolicy 'relay'), to check it.
const urlParams = new URLSearchParams(location.search);
const FORCE_RELAY = urlParams.has('relay');
const frameRate = Math.min(60, Math.max(1, Number(urlParams.get('fps')) || 30));

function constraints() {
  const [width, height] = $('resolution').value.split('x').map(Number);
  const mic = $('mic').value;
  const cam = $('cam').value;
  return {
    audio: mic ? { deviceId: { exact: mic }, echoCancellation: true, noiseSuppression: true } : false,
    video: cam ? { deviceId: { exact: cam }, width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: frameRate, max: frameRate } } : false,
  };
}

let previewMeter = null;
let previewReady = Promise.resolve();
function startPreview() {
  previewReady = openPreview();
  return previewReady;
}
async function openPreview() {
  stopStream(previewStream);
  dropMeter(previewMeter);
  previewStream = null;
  const c = constraints();
  if (c.audio || c.video) {
    try {
      previewStream = await navigator.mediaDevices.getUserMedia(c);
    } catch (err) {
      showError(`Cannot open camera/microphone: ${err.message}`);
    }
  }
  $('preview').srcObject = previewStream;
  $('preview-empty').hidden = !!previewStream?.getVideoTracks().length;
  if (previewStream) previewMeter = levelMeter(previewStream, (level) => { $('meter').style.width = `${Math.min(100, level * 400)}%`; });
}

async function initLobby() {
  $('room').value = urlParams.get('room') || '';
  $('name').value = urlParams.get('name') || localStorage.getItem('sfu-name') || '';
  const res = urlParams.get('res');
  if (res && /^\d{2,4}x\d{2,4}$/.test(res)) {
    if (![...$('resolution').options].some((o) => o.value === res)) $('resolution').add(new Option(res.replace('x', '×'), res));
    $('resolution').value = res;
  }
  $('random-room').onclick = () => { $('room').value = randomRoom(); };
  $('random-name').onclick = () => { $('name').value = randomName(); };
  try {
    // Device labels are only listed once permission was granted.
    const probe = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    stopStream(probe);
  } catch { /* list what we can */ }
  $('lobby-form').onsubmit = (e) => { e.preventDefault(); join(); };
  await listDevices();
  for (const id of ['mic', 'cam', 'resolution']) $(id).onchange = startPreview;
  await startPreview();
  document.body.dataset.ready = 'true';
}

// ------------------------------------------------------------------ tiles
function layout() {
  $('grid').dataset.count = String(1 + tiles.size);
  $('count').textContent = String(1 + tiles.size);
  $('grid').classList.toggle('has-pinned', [...tiles.values()].some((t) => t.el.classList.contains('pinned')));
}

function togglePin(id) {
  for (const [other, tile] of tiles) tile.el.classList.toggle('pinned', other === id && !tile.el.classList.contains('pinned'));
  layout();
}

// ------------------------------------------------------------------ layers (lib/layers.js)
// Tiles are measured when they change size or visibility; the server hears about a tile only
// when the layer it needs changes.
const QUALITY_DEBOUNCE_MS = 200;
let qualityTimer = 0;
const tileResized = new ResizeObserver(() => scheduleQualities());
const tileSeen = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const tile = tiles.get(entry.target.dataset.participant);
    if (tile) tile.visible = entry.isIntersecting;
  }
  scheduleQualities();
});
document.addEventListener('visibilitychange', () => scheduleQualities());

function scheduleQualities() {
  clearTimeout(qualityTimer);
  qualityTimer = setTimeout(reportQualities, QUALITY_DEBOUNCE_MS);
}

function reportQualities() {
  if (!socket?.connected || !hooks.id) return;
  for (const [id, tile] of tiles) {
    const height = tile.video.getBoundingClientRect().height * devicePixelRatio;
    const quality = tileQuality({ height, visible: tile.visible && !document.hidden });
    if (quality === tile.quality) continue;
    tile.quality = quality;
    tile.el.dataset.layer = quality;
    log('layer', { id, quality });
    socket.emit('layer', { participant: id, quality });
  }
}

function initials(name) { return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join(''); }

function ensureTile(info) {
  let tile = tiles.get(info.id);
  if (!tile) {
    const el = document.createElement('figure');
    el.className = 'tile';
    el.dataset.participant = info.id;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.dataset.testid = 'remote-video';
    video.dataset.participant = info.id;
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    const paused = document.createElement('div');
    paused.className = 'paused-note';
    paused.textContent = 'Video paused: your connection is too slow';
    const caption = document.createElement('figcaption');
    caption.innerHTML = '<span class="speaking-dot"></span><span class="tile-name"></span><span class="muted-mic"><svg><use href="#i-mic-off"/></svg></span><span class="connection"><i></i><i></i><i></i></span>';
    el.append(video, avatar, paused, caption);
    $('grid').append(el);
    tile = { el, video, stream: new MediaStream(), meter: null, name: '', visible: true, quality: null };
    video.srcObject = tile.stream;
    el.addEventListener('click', () => togglePin(info.id));
    tileResized.observe(video);
    tileSeen.observe(el);
    // Time to first picture, per remote participant (read by tests and handy in devtools).
    video.requestVideoFrameCallback?.(() => log('first-frame', info.id));
    tiles.set(info.id, tile);
    markSpeaker();
    layout();
  }
  tile.name = info.name;
  tile.el.querySelector('.tile-name').textContent = info.name;
  tile.el.querySelector('.avatar').textContent = initials(info.name);
  tile.el.classList.toggle('mic-off', info.audio === false);
  showConnection(tile.el, info.quality);
  return tile;
}

function removeTile(id) {
  const tile = tiles.get(id);
  if (!tile) return;
  dropMeter(tile.meter);
  tileResized.unobserve(tile.video);
  tileSeen.unobserve(tile.el);
  tile.el.remove();
  tiles.delete(id);
  layout();
}

/** The server's grade of a participant's connection (docs/protocol.md), on its tile. */
function showConnection(el, quality) {
  if (['good', 'fair', 'poor'].includes(quality)) el.dataset.connection = quality;
  else delete el.dataset.connection;
  const label = el.querySelector('.connection');
  if (label) label.title = quality ? `Connection: ${quality}` : '';
}

function onParticipants(list) {
  hooks.participants = list;
  showConnection($('local-tile'), list.find((p) => p.id === hooks.id)?.quality);
  log('participants', list.map((p) => p.id));
  const others = list.filter((p) => p.id !== hooks.id);
  for (const p of others) ensureTile(p);
  for (const id of [...tiles.keys()]) if (!others.some((p) => p.id === id)) removeTile(id);
}

/** The server says which of our camera's layers anybody needs; the others stop. */
async function onPublishLayers(ask) {
  const sender = pc?.getTransceivers().find((t) => t.mid === ask?.mid)?.sender;
  if (!sender) return;
  const params = sender.getParameters();
  const { encodings, changed } = applyLayerAsk(params.encodings, ask.active);
  log('publish-layers', ask.active);
  if (!changed) return;
  params.encodings = encodings;
  await sender.setParameters(params).catch((err) => log('publish-layers', err.message));
}

/** The server paused (or resumed) a participant's video for us: our downlink cannot carry it. */
function onVideoState(state) {
  const tile = tiles.get(state?.participant);
  log('video-state', state);
  if (!tile) return;
  if (state.state === 'paused') tile.el.dataset.video = 'paused';
  else delete tile.el.dataset.video;
}

/** The server's ranking: the loudest speaker's tile is marked (ours too, when it is us). */
function onSpeakers(list) {
  hooks.speaker = (Array.isArray(list) && typeof list[0]?.id === 'string') ? list[0].id : null;
  log('speakers', Array.isArray(list) ? list.map((s) => s?.id) : []);
  markSpeaker();
}

// (Also for tiles created after the ranking arrived: a newcomer is told at once.)
function markSpeaker() {
  for (const [id, tile] of tiles) tile.el.classList.toggle('active-speaker', id === hooks.speaker);
  $('local-tile').classList.toggle('active-speaker', !!hooks.speaker && hooks.speaker === hooks.id);
}

function onTrack(event) {
  const stream = event.streams[0];
  if (!stream) return;
  const id = stream.id; // the SFU uses the publisher's participant id as the stream id
  const info = hooks.participants.find((p) => p.id === id) || { id, name: '…' };
  const tile = ensureTile(info);
  const track = event.track;
  for (const old of tile.stream.getTracks().filter((t) => t.kind === track.kind)) tile.stream.removeTrack(old);
  tile.stream.addTrack(track);
  if (track.kind === 'video') {
    tile.el.classList.add('has-video');
    track.onended = () => tile.el.classList.remove('has-video');
  } else {
    dropMeter(tile.meter);
    tile.meter = receiverMeter(event.receiver, (level) => tile.el.classList.toggle('speaking', level > SPEAKING_LEVEL));
  }
  tile.video.play().catch(() => {});
  log('track', { id, kind: track.kind });
}

// ------------------------------------------------------------------ signaling
function connectSocket() {
  if (socket) return socket;
  socket = socketIo()('/sfu', { transports: ['websocket'], reconnectionDelayMax: 4000 });
  hooks.socket = socket;
  socket.on('update', onUpdate);
  socket.on('participants', onParticipants);
  socket.on('speakers', onSpeakers);
  socket.on('publish_layers', onPublishLayers);
  socket.on('video_state', onVideoState);
  socket.on('sfu_error', onSfuError);
  socket.on('disconnect', (reason) => {
    log('disconnect', reason);
    if (!inRoom(room)) return;
    dispatch({ type: 'lost' });
    // The server forgot our media session with the connection: set up a new one when it
    // is back (socket.io reconnects by itself, except after a server-side disconnect).
    endMedia();
    status('Reconnecting to the server…');
    if (reason === 'io server disconnect') socket.connect();
  });
  socket.on('connect', () => {
    log('connect');
    if (room.phase === PHASE.REJOINING && !pc && !joining) rejoin('reconnected');
  });
  return socket;
}

function onSfuError(error) {
  log('sfu_error', error);
  if (error?.code === 'media_failed' && inRoom(room)) {
    endMedia();
    rejoin('media_failed');
  }
}

// One server offer at a time (the server never sends another before this one is answered).
async function onUpdate(offer, ack) {
  log('update', 'received');
  try {
    await pc.setRemoteDescription(offer);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    ack({ type: 'answer', sdp: pc.localDescription.sdp });
    log('update', 'answered');
  } catch (err) {
    log('update', `failed: ${err.message}`);
    ack({ error: { code: 'negotiation_failed', message: String(err.message || err) } });
  }
}

// ------------------------------------------------------------------ media session
async function join() {
  showError('');
  const roomName = $('room').value.trim();
  const name = $('name').value.trim();
  if (!isValidRoom(roomName)) return showError(ROOM_HINT);
  if (!name) return showError('Please enter your name (or press Random).');
  if (room.phase !== PHASE.LOBBY) return;
  localStorage.setItem('sfu-name', name);
  log('join', roomName);
  $('join').disabled = true;
  status('Connecting…');
  try {
    await previewReady;
    localStream = previewStream;
    previewStream = null;
    dropMeter(previewMeter);
    dispatch({ type: 'join', room: roomName, name });
    connectSocket();
    joining = startMedia();
    await joining;
    enterCall(roomName, name);
  } catch (err) {
    dispatch({ type: 'refused', code: err.code, message: err.message || String(err) });
    cleanup();
    showError(err.message || String(err));
    status('Ready');
  } finally {
    joining = null;
    $('join').disabled = false;
  }
}

/** Offers our tracks to the SFU in `join` and applies its answer. */
async function startMedia() {
  if (isStale(iceConfig, Date.now())) {
    iceConfig = await loadIceServers({ fallback: iceConfig, onError: (err) => log('ice-servers', String(err)) });
  }
  const mine = new RTCPeerConnection({
    iceServers: iceConfig.iceServers,
    iceTransportPolicy: FORCE_RELAY ? 'relay' : 'all',
    bundlePolicy: 'max-bundle',
    rtcpMuxPolicy: 'require',
  });
  pc = mine;
  hooks.pc = mine;
  hooks.pcGeneration += 1;
  recovery = initialRecovery;
  mine.ontrack = onTrack;
  mine.onconnectionstatechange = () => {
    if (mine !== pc) return;
    log('connection', mine.connectionState);
    if (mine.connectionState === 'connected') status(`Connected · ${room.room ?? ''}`);
  };
  mine.oniceconnectionstatechange = () => {
    if (mine !== pc) return;
    log('ice', mine.iceConnectionState);
    step({ type: 'ice', state: mine.iceConnectionState, now: Date.now() });
  };
  clearInterval(recoveryTimer);
  recoveryTimer = setInterval(async () => {
    const bytes = await transportBytes(mine).catch(() => null);
    if (mine === pc && bytes) step({ type: 'traffic', ...bytes, now: Date.now() });
  }, RECOVERY_TICK_MS);
  for (const track of localStream?.getTracks() ?? []) {
    if (track.kind === 'video') {
      mine.addTransceiver(track, { direction: 'sendrecv', streams: [localStream], sendEncodings: simulcastEncodings(track.getSettings()) });
    } else {
      mine.addTrack(track, localStream);
    }
  }
  // A viewer (no devices) still needs m-lines to receive on; the SFU fills them.
  if (!localStream?.getAudioTracks().length) mine.addTransceiver('audio', { direction: 'recvonly' });
  if (!localStream?.getVideoTracks().length) mine.addTransceiver('video', { direction: 'recvonly' });
  await mine.setLocalDescription(await mine.createOffer());
  hooks.joinedAt = performance.now();
  const reply = await emitWithAck(socket, 'join', { room: room.room, name: room.name, sdp: mine.localDescription.sdp });
  if (mine !== pc) throw new Error('the session ended while joining');
  if (reply?.error) {
    const err = new Error(reply.error.code === 'full' ? `Room "${room.room}" is full.` : reply.error.message);
    err.code = reply.error.code;
    throw err;
  }
  hooks.id = reply.id;
  await mine.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
  dispatch({ type: 'joined', id: reply.id });
  onParticipants(reply.participants);
  log('joined', reply.id);
  scheduleQualities();
}

/** Drops the media session (the server's side of it is gone or going). */
function endMedia() {
  clearInterval(recoveryTimer);
  recoveryTimer = 0;
  if (pc) {
    pc.ontrack = pc.onconnectionstatechange = pc.oniceconnectionstatechange = null;
    pc.close();
  }
  pc = null;
  hooks.pc = null;
  hooks.id = null;
  for (const id of [...tiles.keys()]) removeTile(id);
  hooks.speaker = null;
  markSpeaker();
}

/** Joins the same room again with a new media session, as long as the user wants to be there. */
function rejoin(why) {
  if (!inRoom(room) || room.phase === PHASE.JOINING || joining) return;
  if (dispatch({ type: 'rejoin', now: Date.now() }).phase === PHASE.FAILED) {
    endMedia();
    showCallError(room.error);
    return;
  }
  log('rejoin', why);
  status('Rejoining…');
  endMedia();
  joining = leaveOldSession()
    .then(startMedia)
    .catch((err) => {
      log('rejoin-failed', err.message);
      endMedia();
      if (dispatch({ type: 'refused', code: err.code, message: err.message }).phase === PHASE.LOBBY) {
        showCallError(room.error);
        return;
      }
      // The socket's next `connect` tries again; if it is up, try again shortly.
      if (socket?.connected) setTimeout(() => rejoin('retry'), 2000);
    })
    .finally(() => { joining = null; });
}

/**
 * While the signaling connection is up the server still holds our old participant (we gave up
 * on its media, it may not have yet): leave it first, or the new join is `already_joined`.
 * After a reconnect the server has already forgotten it and answers `not_joined`, ignored.
 */
async function leaveOldSession() {
  if (socket?.connected) await emitWithAck(socket, 'leave', {}, 2000).catch(() => {});
}

// ICE recovery: lib/recovery.js decides, the server restarts ICE (an `update` round).
function step(input) {
  const { state, action } = recover(recovery, input);
  recovery = state;
  if (action === 'restart') requestRestart();
  if (action === 'give-up') rejoin('ice-give-up');
}

async function requestRestart() {
  if (!socket?.connected || !pc) return;
  recovery = recover(recovery, { type: 'restarted', now: Date.now() }).state;
  log('ice-restart', pc.iceConnectionState);
  const reply = await emitWithAck(socket, 'restart', {}, 5000).catch((err) => ({ error: { code: 'timeout', message: err.message } }));
  // A server without ICE restarts: a new session is the other way to a new path.
  if (reply?.error) rejoin(`restart refused: ${reply.error.code}`);
}

// ------------------------------------------------------------------ call view
let localMeter = null;
function enterCall(room, name) {
  document.body.dataset.view = 'call';
  $('lobby').hidden = true;
  $('call').hidden = false;
  $('room-chip').hidden = false;
  $('room-label').textContent = room;
  $('local-name').textContent = name;
  $('local-video').srcObject = localStream;
  $('local-tile').classList.toggle('has-video', !!localStream?.getVideoTracks().length);
  const audioSender = () => pc?.getSenders().find((sender) => sender.track?.kind === 'audio');
  if (localStream?.getAudioTracks().length) localMeter = senderMeter(audioSender, (level) => $('local-tile').classList.toggle('speaking', level > SPEAKING_LEVEL && localStream.getAudioTracks().some((t) => t.enabled)));
  const setToggle = (button, kind, on, off) => {
    const tracks = localStream?.getTracks().filter((t) => t.kind === kind) ?? [];
    button.disabled = !tracks.length;
    button.setAttribute('aria-pressed', String(tracks.some((t) => t.enabled)));
    button.onclick = () => {
      const enabled = !tracks.some((t) => t.enabled);
      tracks.forEach((t) => { t.enabled = enabled; });
      button.setAttribute('aria-pressed', String(enabled));
      button.querySelector('use').setAttribute('href', enabled ? on : off);
      if (kind === 'video') $('local-tile').classList.toggle('has-video', enabled);
    };
  };
  setToggle($('toggle-mic'), 'audio', '#i-mic', '#i-mic-off');
  setToggle($('toggle-cam'), 'video', '#i-cam', '#i-cam-off');
  $('leave').onclick = leave;
  layout();
}

function showCallError(text) {
  status(text);
  log('call-error', text);
}

function cleanup() {
  dispatch({ type: 'leave' });
  endMedia();
  socket?.off();
  socket?.disconnect();
  socket = null;
  hooks.socket = null;
  dropMeter(localMeter);
  stopStream(localStream);
  localStream = null;
}

async function leave() {
  log('leave');
  const wasInRoom = room.phase !== PHASE.LOBBY;
  dispatch({ type: 'leave' });
  if (wasInRoom && socket?.connected) await emitWithAck(socket, 'leave', {}, 2000).catch(() => {});
  cleanup();
  document.body.dataset.view = 'lobby';
  $('call').hidden = true;
  $('lobby').hidden = false;
  $('room-chip').hidden = true;
  status('Left the room');
  log('left');
  await startPreview();
}

window.addEventListener('pagehide', () => socket?.disconnect());
initLobby();
