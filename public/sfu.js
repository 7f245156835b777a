// rtc·call group rooms: one RTCPeerConnection to the SFU, server-driven renegotiation.
//
// Protocol (docs/protocol.md, "SFU rooms"): socket.io namespace /sfu.
//   → join {room, name, sdp}        ack {id, sdp, participants, capacity} | {error}
//   ← update {type:'offer', sdp}    ack {type:'answer', sdp} | {error}
//   ← participants [{id, name, streams, audio, video, screen, quality}]
//   ← speakers [{id, level}]         who speaks, loudest first (the server ranks RTP audio levels)
//   ← publish_layers {mid, active}   which of our simulcast layers anybody needs (rid → bool)
//   ← video_state {participant, source, state} 'paused': our connection cannot carry that video now
//   → restart {}                     ack {ok} | {error}: the server restarts ICE with an update
//   → layer {participant, quality, source}  ack {ok} | {error}: the video layer a tile needs
//   → share {on}                     ack {ok} | {error}: start/stop sharing our screen (see below)
//   → moderate {action, participant} ack {ok} | {error}: remove, mute, unmute someone; end the room
//   ← removed {by, reason}           a moderator took us out ('removed') or ended the room ('room_ended')
//   → leave                          ack {ok}
//
// Simulcast: the camera goes out as up to three layers (lib/bitrate.js), and each remote tile
// asks for the layer its rendered size needs, or none while it cannot be seen (lib/layers.js).
// Clicking a tile pins it large; a shared screen gets a tile of its own, shown large.
//
// Real networks (issue 8): ICE servers come from /api/ice-servers (a participant whose
// firewall blocks UDP reaches the SFU through the TURN relay over TCP or TLS); a broken path
// is repaired by a server-driven ICE restart (lib/recovery.js decides when to ask); and when
// the server goes away (a restart) or drops our media session, the page joins the room again
// by itself as soon as it can. Where the page is (lobby → joining → joined, rejoining, failed)
// is one pure reducer, lib/room-state.js, mirroring the server's /sfu states.
//
// Test hooks: [data-testid] room, name, join, leave, share, status, local-video, local-screen,
// remote-video (one per remote participant, data-participant = its id), remote-screen (one
// per shared screen, data-screen-of = the sharer's id); window.__rtc (lib/hooks.js), with
// `phase` from lib/room-state.js.

import { createHooks, logEvent } from './lib/hooks.js';
import { isStale, loadIceServers } from './lib/ice.js';
import { dropMeter, levelMeter, receiverMeter, senderMeter, stopStream } from './lib/media.js';
import { simulcastEncodings } from './lib/bitrate.js';
import { tileQuality } from './lib/layers.js';
import { createLayerAsks } from './lib/layer-asks.js';
import { initialRecovery, recover, transportBytes } from './lib/recovery.js';
import { ROOM_HINT, isValidRoom, joinRefusal } from './lib/room.js';
import { receivingMids } from './lib/sdp.js';
import { createStatsPanel } from './lib/stats-panel.js';
import { createCallRecorder } from './lib/record-call.js';
import { recordingError, recordingNotice, recordingView } from './lib/room-recording.js';
import { liveError, liveNotice, liveView, preferH264 } from './lib/live.js';
import { removalNotice } from './lib/moderation.js';
import { createModerationControls } from './lib/moderation-controls.js';
import { pinnedTile, roomTiles, tileOfStream } from './lib/tiles.js';
import { PHASE, inRoom, initialRoom, reduce } from './lib/room-state.js';
import { emitWithAck, socketIo } from './lib/signaling.js';
import { isTokenError, pageToken } from './lib/token.js';

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
let tokenRefusal = null;   // the server refused our link's token (connect_error)
const token = pageToken(); // the join token of the link, if the server wants one (lib/token.js)
const tiles = new Map();   // tile key → {key, participant, source, el, video, stream, meter, name, visible, quality}
// Charts of our connection to the SFU, one series per stream (lib/stats-panel.js).
const statsPanel = createStatsPanel({ getPc: () => pc, nameOfMid, hooks, button: $('toggle-stats') });
document.body.append(statsPanel.element);
// Records the room as this page shows it: every video in a grid, every voice mixed.
const callRecorder = createCallRecorder({
  hooks,
  videos: () => [...document.querySelectorAll('#grid video')],
  layout: 'grid',
  room: () => room.room,
  token,
  onError: (text) => showCallError(text),
});
// A recording an earlier load left unfinished (a reload mid-recording) is sent on and saved.
callRecorder.resumeInterrupted().catch((err) => console.warn('resuming recordings:', err));

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
  $('live-room').checked = urlParams.has('live');
  // Not from the URL: a passcode in a link would end up in histories and logs.
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

// ------------------------------------------------------------------ tiles (lib/tiles.js)
// A tile per other participant (key: its id) and per shared screen (key: the screen's
// stream id). Clicking a tile pins it large; a shared screen is pinned until the user picks.
let userPin = null;        // lib/tiles.js pinnedTile(): a tile key, '' for none, null: automatic

function layout() {
  $('grid').dataset.count = String(1 + tiles.size + (localScreen ? 1 : 0));
  $('count').textContent = String(1 + [...tiles.values()].filter((t) => t.source === 'camera').length);
  const pinned = pinnedTile([...tiles.values()], userPin);
  for (const [key, tile] of tiles) tile.el.classList.toggle('pinned', key === pinned);
  $('grid').classList.toggle('has-pinned', pinned !== null);
}

function togglePin(key) {
  userPin = pinnedTile([...tiles.values()], userPin) === key ? '' : key;
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
    const tile = tiles.get(entry.target.dataset.key);
    if (tile) tile.visible = entry.isIntersecting;
  }
  scheduleQualities();
});
document.addEventListener('visibilitychange', () => scheduleQualities());

function scheduleQualities() {
  clearTimeout(qualityTimer);
  qualityTimer = setTimeout(reportQualities, QUALITY_DEBOUNCE_MS);
}

/** Reports now, dropping a pending debounced report (a new tile must not wait 200 ms). */
function reportQualitiesNow() {
  clearTimeout(qualityTimer);
  reportQualities();
}

function reportQualities() {
  // Until the call view shows, tiles have no size: enterCall() reports them.
  if (!socket?.connected || !hooks.id || $('call').hidden) return;
  for (const [key, tile] of tiles) {
    const height = tile.video.getBoundingClientRect().height * devicePixelRatio;
    const quality = tileQuality({ height, visible: tile.visible && !document.hidden });
    if (quality === tile.quality) continue;
    tile.quality = quality;
    tile.el.dataset.layer = quality;
    log('layer', { id: key, quality });
    socket.emit('layer', { participant: tile.participant, quality, source: tile.source });
  }
}

function initials(name) { return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join(''); }

/** The tile `where` ({key, participant, source}) names, created if new; `info` is its participant. */
function ensureTile(where, info) {
  let tile = tiles.get(where.key);
  const screen = where.source === 'screen';
  if (!tile) {
    const el = document.createElement('figure');
    el.className = screen ? 'tile screen' : 'tile';
    el.dataset.key = where.key;
    el.dataset.participant = where.participant;
    el.dataset.source = where.source;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = screen; // a screen has no sound of its own; the camera tile plays the voice
    video.dataset.testid = screen ? 'remote-screen' : 'remote-video';
    // Tests and the speaker mark find a participant's camera by this; a screen by data-screen-of.
    if (screen) video.dataset.screenOf = where.participant;
    else video.dataset.participant = where.participant;
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    const paused = document.createElement('div');
    paused.className = 'paused-note';
    paused.textContent = 'Video paused: your connection is too slow';
    const caption = document.createElement('figcaption');
    caption.innerHTML = screen
      ? '<svg class="screen-icon"><use href="#i-screen"/></svg><span class="tile-name"></span>'
      : '<span class="speaking-dot"></span><span class="tile-name"></span><span class="muted-mic"><svg><use href="#i-mic-off"/></svg></span><span class="connection"><i></i><i></i><i></i></span>';
    el.append(video, avatar, paused, caption);
    if (!screen) el.append(moderation.tileActions(where.participant));
    $('grid').append(el);
    tile = { ...where, el, video, stream: new MediaStream(), meter: null, name: '', visible: true, quality: null };
    video.srcObject = tile.stream;
    el.addEventListener('click', () => togglePin(where.key));
    tileResized.observe(video);
    tileSeen.observe(el);
    // Time to first picture, per remote tile (read by tests and handy in devtools).
    video.requestVideoFrameCallback?.(() => log('first-frame', where.key));
    tiles.set(where.key, tile);
    markSpeaker();
    layout();
  }
  tile.name = info.name;
  tile.el.querySelector('.tile-name').textContent = screen ? `${info.name} · screen` : info.name;
  tile.el.querySelector('.avatar').textContent = initials(info.name);
  if (!screen) {
    tile.el.classList.toggle('mic-off', info.audio === false || info.muted === true);
    moderation.showTile(tile.el, info);
    showConnection(tile.el, info.quality);
  }
  return tile;
}

// ------------------------------------------------------------------ moderation
const moderation = createModerationControls({
  hooks,
  send: (data) => emitWithAck(socket, 'moderate', data, 5000).catch((err) => ({ error: { message: err.message } })),
  mic: $('toggle-mic'),
  endRoom: $('end-room'),
  audioTracks: () => localStream?.getAudioTracks() ?? [],
  notice: (text) => status(text),
  error: (text) => showCallError(text),
  log,
});

async function onRemoved(event) {
  log('removed', event);
  await leave();
  showError(removalNotice(event));
  status(removalNotice(event));
}

function removeTile(key) {
  const tile = tiles.get(key);
  if (!tile) return;
  dropMeter(tile.meter);
  tileResized.unobserve(tile.video);
  tileSeen.unobserve(tile.el);
  tile.el.remove();
  tiles.delete(key);
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
  const wanted = roomTiles(list, hooks.id);
  for (const where of wanted) ensureTile(where, where.info);
  for (const key of [...tiles.keys()]) if (!wanted.some((t) => t.key === key)) removeTile(key);
  moderation.update(list);
  layout();
  // A new tile's layer goes to the server now, not after the debounce: the server offers its
  // track right after this list, and a subscription that opens before the wish would want
  // (and have the publisher start) the top layer.
  if ([...tiles.values()].some((tile) => tile.quality === null)) reportQualitiesNow();
}

// The server's layer asks, kept and applied around negotiations (lib/layer-asks.js).
const layerAsks = createLayerAsks({ getPc: () => pc, log });

/** The server paused (or resumed) a participant's video for us: our downlink cannot carry it. */
function onVideoState(state) {
  const source = state?.source ?? 'camera';
  const tile = [...tiles.values()].find((t) => t.participant === state?.participant && t.source === source);
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
  for (const tile of tiles.values()) tile.el.classList.toggle('active-speaker', tile.source === 'camera' && tile.participant === hooks.speaker);
  $('local-tile').classList.toggle('active-speaker', !!hooks.speaker && hooks.speaker === hooks.id);
}

/** Whose stream an m-line receives: the name on the tile that shows its track. */
function nameOfMid(mid) {
  const track = pc?.getTransceivers().find((t) => t.mid === mid)?.receiver.track;
  const tile = track && [...tiles.values()].find((t) => t.stream.getTracks().includes(track));
  if (!tile) return `m-line ${mid}`;
  const name = hooks.participants.find((p) => p.id === tile.participant)?.name ?? '…';
  return tile.source === 'screen' ? `${name}'s screen` : name;
}

function onTrack(event) {
  const stream = event.streams[0];
  if (!stream) return;
  // The SFU's stream ids: the publisher's participant id (camera, microphone), or its screen's.
  const where = tileOfStream(stream.id, hooks.participants);
  const info = hooks.participants.find((p) => p.id === where.participant) || { id: where.participant, name: '…' };
  const tile = ensureTile(where, info);
  const track = event.track;
  for (const old of tile.stream.getTracks().filter((t) => t.kind === track.kind)) tile.stream.removeTrack(old);
  tile.stream.addTrack(track);
  if (track.kind === 'video') {
    tile.el.classList.add('has-video');
    track.onended = () => tile.el.classList.remove('has-video');
  } else if (tile.source === 'camera') {
    dropMeter(tile.meter);
    tile.meter = receiverMeter(event.receiver, (level) => {
      const speaking = tile.el.classList.toggle('speaking', level > SPEAKING_LEVEL);
      // Logged once per tile: a beep lights a tile for a fraction of a second, too briefly for
      // a test polling a busy page to be sure to see it.
      if (speaking && !tile.heard) {
        tile.heard = true;
        log('speaking', where.participant);
      }
    });
  }
  tile.video.play().catch(() => {});
  log('track', { id: where.key, kind: track.kind });
}

// ------------------------------------------------------------------ signaling
function connectSocket() {
  if (socket) return socket;
  socket = socketIo()('/sfu', { transports: ['websocket'], reconnectionDelayMax: 4000, auth: token ? { token } : {} });
  hooks.socket = socket;
  socket.on('update', onUpdate);
  socket.on('participants', onParticipants);
  socket.on('speakers', onSpeakers);
  socket.on('publish_layers', (ask) => layerAsks.ask(ask));
  socket.on('video_state', onVideoState);
  socket.on('recording', showRoomRecording);
  socket.on('live', showLive);
  socket.on('sfu_error', onSfuError);
  socket.on('removed', onRemoved);
  socket.on('connect_error', (err) => {
    log('connect_error', err.message);
    // The server refused the link's token: retrying cannot help.
    if (isTokenError(err.message)) {
      tokenRefusal = `This link does not let you in (${err.message}). Ask for a new one.`;
      showError(tokenRefusal);
    }
  });
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
    await layerAsks.around(async () => {
      await pc.setRemoteDescription(offer);
      await sendScreenOn(offer.sdp);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      ack({ type: 'answer', sdp: pc.localDescription.sdp });
      log('update', 'answered');
    });
  } catch (err) {
    log('update', `failed: ${err.message}`);
    ack({ error: { code: 'negotiation_failed', message: String(err.message || err) } });
  }
}

// ------------------------------------------------------------------ screen sharing
// The page asks (`share`); the server's next `update` offers an m-line it receives on, and
// the page answers with its screen on it (`sendonly`). Stopping tells the server, which
// ends the screen for everyone and stops the m-line in a later `update`.
let screenTrack = null;    // getDisplayMedia track while sharing
let screenSender = null;   // the RTCRtpSender it goes out on, once the server offered one
let localScreen = null;    // our own screen's tile

async function toggleShare() {
  if (screenTrack) return stopShare();
  let display;
  try {
    display = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
  } catch (err) {
    if (err?.name !== 'NotAllowedError') showCallError(`Screen sharing failed (${err?.name ?? err}).`);
    return;
  }
  if (!pc || !socket?.connected) { stopStream(display); return; }
  screenTrack = display.getVideoTracks()[0];
  screenTrack.contentHint = 'detail';
  screenTrack.onended = () => stopShare(); // the browser's own "Stop sharing"
  showLocalScreen(display);
  log('share', 'on');
  const reply = await emitWithAck(socket, 'share', { on: true }, 5000).catch((err) => ({ error: { message: err.message } }));
  if (reply?.error) {
    log('share', `refused: ${reply.error.message}`);
    showCallError(`Screen sharing failed: ${reply.error.message}`);
    stopShare({ tell: false });
  }
}

/** In the server's offer, the m-line it receives on (new, with nothing on it yet) gets our screen. */
async function sendScreenOn(sdp) {
  if (!screenTrack || screenSender) return;
  const mids = receivingMids(sdp);
  const slot = pc.getTransceivers().find((t) => mids.includes(t.mid) && !t.currentDirection && !t.sender.track);
  if (!slot) return;
  slot.direction = 'sendonly';
  await slot.sender.replaceTrack(screenTrack);
  screenSender = slot.sender;
  log('share', `sending on ${slot.mid}`);
}

function stopShare({ tell = true } = {}) {
  if (!screenTrack) return;
  screenTrack.onended = null;
  screenTrack.stop();
  screenTrack = null;
  screenSender?.replaceTrack(null).catch(() => {});
  screenSender = null;
  localScreen?.remove();
  localScreen = null;
  $('share').setAttribute('aria-pressed', 'false');
  layout();
  log('share', 'off');
  if (tell && socket?.connected && hooks.id) socket.emit('share', { on: false });
}

function showLocalScreen(stream) {
  $('share').setAttribute('aria-pressed', 'true');
  localScreen = document.createElement('figure');
  localScreen.className = 'tile local-screen has-video';
  localScreen.innerHTML = '<video autoplay playsinline muted data-testid="local-screen"></video><figcaption><svg class="screen-icon"><use href="#i-screen"/></svg><span class="tile-name">Your screen</span></figcaption>';
  localScreen.querySelector('video').srcObject = stream;
  $('local-tile').after(localScreen);
  layout();
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
    showError(tokenRefusal ?? (err.message || String(err)));
    status('Ready');
    // The camera went with the attempt: back in the preview for the next one (a passcode
    // typed again, a room with a free seat).
    startPreview();
  } finally {
    joining = null;
    $('join').disabled = false;
  }
}

/** Offers our tracks to the SFU in `join` and applies its answer. */
async function startMedia() {
  if (isStale(iceConfig, Date.now())) {
    iceConfig = await loadIceServers({ fallback: iceConfig, token, onError: (err) => log('ice-servers', String(err)) });
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
  // A live room's video is H.264 (what HLS players decode): offered first here, and the
  // only video codec the server answers with in such a room.
  const wantLive = $('live-room').checked;
  const h264First = wantLive ? preferH264(RTCRtpReceiver.getCapabilities?.('video')?.codecs) : null;
  for (const track of localStream?.getTracks() ?? []) {
    if (track.kind === 'video') {
      const transceiver = mine.addTransceiver(track, { direction: 'sendrecv', streams: [localStream], sendEncodings: simulcastEncodings(track.getSettings()) });
      if (h264First) transceiver.setCodecPreferences(h264First);
    } else {
      mine.addTrack(track, localStream);
    }
  }
  // A viewer (no devices) still needs m-lines to receive on; the SFU fills them.
  if (!localStream?.getAudioTracks().length) mine.addTransceiver('audio', { direction: 'recvonly' });
  if (!localStream?.getVideoTracks().length) mine.addTransceiver('video', { direction: 'recvonly' });
  await mine.setLocalDescription(await mine.createOffer());
  hooks.joinedAt = performance.now();
  // A passcode: the room's if this join opens it, the key to it otherwise.
  const passcode = $('passcode').value;
  // The server's first layer ask can come before its answer is applied: it waits.
  const reply = await layerAsks.around(async () => {
    const answer = await emitWithAck(socket, 'join', { room: room.room, name: room.name, sdp: mine.localDescription.sdp, live: wantLive, ...(passcode ? { passcode } : {}) });
    if (mine !== pc) throw new Error('the session ended while joining');
    if (answer?.error) {
      const err = new Error(joinRefusal(answer.error, room.room));
      err.code = answer.error.code;
      throw err;
    }
    hooks.id = answer.id;
    await mine.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    return answer;
  });
  dispatch({ type: 'joined', id: reply.id });
  moderation.joined(reply.moderation);
  onParticipants(reply.participants);
  showRoomRecording(reply.recording ?? null);
  liveRoom = Boolean(reply.live_room);
  if (wantLive && !liveRoom) showCallError('This room was opened without live viewing: it cannot go live.');
  showLive(reply.live ?? null);
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
  layerAsks.clear();
  for (const key of [...tiles.keys()]) removeTile(key);
  userPin = null;
  stopShare({ tell: false });
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
  const session = pc;
  const reply = await emitWithAck(socket, 'restart', {}, 5000).catch((err) => ({ error: { code: 'timeout', message: err.message } }));
  // A server without ICE restarts: a new session is the other way to a new path. (Unless
  // there is a new session already: the signaling connection dropped with the path, and
  // the reconnect rejoined while this request waited for an answer that cannot come.)
  if (reply?.error && pc === session) rejoin(`restart refused: ${reply.error.code}`);
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
  $('share').hidden = !navigator.mediaDevices?.getDisplayMedia;
  $('share').onclick = toggleShare;
  $('record').hidden = !window.MediaRecorder;
  $('record').onclick = toggleRecording;
  $('record-room').onclick = toggleRoomRecording;
  $('go-live').onclick = toggleLive;
  statsPanel.start();
  layout();
  // The tiles have their size now: the server hears what each needs before it opens them.
  reportQualitiesNow();
}

async function toggleRecording() {
  const button = $('record');
  try {
    if (callRecorder.isRecording()) {
      button.setAttribute('aria-pressed', 'false');
      await callRecorder.stop();
    } else {
      await callRecorder.start();
      button.setAttribute('aria-pressed', 'true');
    }
  } catch (err) {
    showCallError(`Cannot record: ${err.message ?? err}`);
  }
}

// The server's recording of the room (lib/room-recording.js): everyone sees the chip.
let roomRecording = null;
function showRoomRecording(state) {
  const notice = recordingNotice(roomRecording, state);
  roomRecording = state;
  hooks.roomRecording = state;
  const view = recordingView(state);
  const chip = $('room-rec');
  chip.hidden = view.chipHidden;
  chip.title = view.chipTitle;
  const button = $('record-room');
  button.setAttribute('aria-pressed', String(view.pressed));
  button.title = view.buttonTitle;
  if (notice) {
    status(notice);
    log('room-recording', notice);
  }
}

async function toggleRoomRecording() {
  const on = !roomRecording?.on;
  const reply = await emitWithAck(socket, 'record', { on }, 10_000).catch((err) => ({ error: { message: err.message } }));
  if (reply?.error) return showCallError(recordingError(reply.error));
  showRoomRecording(reply.recording);
}

// Live viewing (lib/live.js): the button where the room can go live, the LIVE chip with the
// viewers' link for everyone while it is on air.
let liveRoom = false;
let liveState = null;
function showLive(state) {
  const notice = liveNotice(liveState, state);
  liveState = state;
  hooks.live = state;
  const view = liveView(state, liveRoom, location.origin);
  const button = $('go-live');
  button.hidden = view.buttonHidden;
  button.setAttribute('aria-pressed', String(view.pressed));
  button.title = view.buttonTitle;
  const chip = $('live-chip');
  chip.hidden = view.chipHidden;
  chip.title = view.chipTitle;
  if (view.link) chip.href = view.link;
  if (notice) {
    status(notice);
    log('live', notice);
  }
}

async function toggleLive() {
  const on = !liveState?.on;
  const reply = await emitWithAck(socket, 'live', { on }, 10_000).catch((err) => ({ error: { message: err.message } }));
  if (reply?.error) return showCallError(liveError(reply.error));
  showLive(reply.live);
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
  statsPanel.stop();
  statsPanel.toggle(false);
}

async function leave() {
  log('leave');
  $('record').setAttribute('aria-pressed', 'false');
  callRecorder.stop().catch((err) => log('recording', String(err)));
  const wasInRoom = room.phase !== PHASE.LOBBY;
  dispatch({ type: 'leave' });
  if (wasInRoom && socket?.connected) await emitWithAck(socket, 'leave', {}, 2000).catch(() => {});
  cleanup();
  document.body.dataset.view = 'lobby';
  $('call').hidden = true;
  $('lobby').hidden = false;
  $('room-chip').hidden = true;
  roomRecording = null;
  $('room-rec').hidden = true;
  liveRoom = false;
  liveState = null;
  $('live-chip').hidden = true;
  $('go-live').hidden = true;
  moderation.reset();
  status('Left the room');
  log('left');
  await startPreview();
}

window.addEventListener('pagehide', () => socket?.disconnect());
initLobby();
