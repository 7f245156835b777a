// rtc·call — 1-to-1 WebRTC call client.
//
// Implements the signaling protocol of docs/protocol.md (the course's 1-to-1 demo, seed 002):
//   client → server: join(room[, passcode]), leave(room), message(room, data)
//   server → client: joined(room, id, info), other_joined(room, id), full(room, id),
//                    leaved(room, id), bye(room, id), message(room, data), signal_error({code, message, event})
// and mirrors the server's per-client state machine in a pure reducer (lib/call-state.js):
//   leaved → joined → joined_conn ⇄ joined_unbind   (any joined state → leaved on leave/full)
//
// Roles: the member already in the room creates the offer when it receives `other_joined`;
// the newcomer answers. Only `other_joined` is handled (the server also emits the `otherjoin`
// alias for the course's published client; listening to both would negotiate twice).
//
// Real networks (issue 8):
//   - ICE servers (STUN, TURN with time-limited credentials) come from /api/ice-servers, so
//     the call falls back to the relay by itself when no direct path exists.
//   - When the path breaks (a NAT forgot its mapping, the home got a new public address) the
//     page restarts ICE (lib/recovery.js decides when) through the signaling relay. Both sides
//     may do so; glare is resolved as in "perfect negotiation": the newcomer yields.
//   - When the signaling server goes away mid-call the call continues peer to peer; the page
//     reconnects, joins the room again and, once the other side is back, renegotiates the
//     same RTCPeerConnection (an offer with the same SDP session id is a renegotiation, a new
//     session id a new call: lib/sdp.js).
//
// Test hooks: window.__rtc (lib/hooks.js). URL parameters: `?room=NAME` pre-fills the room;
// `?relay` sets iceTransportPolicy 'relay' so that media must go through the TURN relay.

import { STATE, initialCall, reduce, showsCall } from './lib/call-state.js';
import { createHooks, logEvent } from './lib/hooks.js';
import { isStale, loadIceServers } from './lib/ice.js';
import { isTokenError, pageToken } from './lib/token.js';
import { openCameraAndMic, stopStream } from './lib/media.js';
import { initialRecovery, recover, transportBytes } from './lib/recovery.js';
import { ROOM_HINT, isValidRoom, joinRefusal } from './lib/room.js';
import { sameSession } from './lib/sdp.js';
import { latest } from './lib/charts.js';
import { CHARTS, chartData } from './lib/stats.js';
import { createStatsPanel } from './lib/stats-panel.js';
import { createCallRecorder } from './lib/record-call.js';
import { socketIo } from './lib/signaling.js';

const STATE_LABEL = {
  [STATE.LEAVED]: 'Not in a room',
  [STATE.JOINED]: 'Waiting for peer',
  [STATE.CONN]: 'In call',
  [STATE.UNBIND]: 'Peer left',
};

const JOIN_TIMEOUT_MS = 10_000;
const LEAVE_TIMEOUT_MS = 3_000;
const RECOVERY_TICK_MS = 500;
// Back from a signaling outage, the room can look full for a few seconds: our old
// connection holds the seat until the server's ping timeout (2 + 2 s) notices it is gone.
const REJOIN_RETRY_MS = 1500;
const REJOIN_ATTEMPTS = 8;
// After `bye`, a call whose media still flows is kept this long in case the peer only lost
// its signaling connection and comes back (a new public address kills its WebSocket, not
// its media). A peer that hung up stops answering ICE, and the connection goes within ~5 s.
const PEER_RETURN_MS = 15_000;
// The join token of the link, if the server wants one (docs/security.md, lib/token.js).
const token = pageToken();
const FORCE_RELAY = new URLSearchParams(location.search).has('relay');

const $ = (id) => document.getElementById(id);
const ui = {
  body: document.body,
  form: $('join-form'),
  room: $('room'),
  passcode: $('passcode'),
  join: $('join'),
  notice: $('notice'),
  lobby: $('lobby'),
  stage: $('stage'),
  state: $('state'),
  statusLabel: $('status-label'),
  roomChip: $('room-chip'),
  roomName: $('room-name'),
  timer: $('call-timer'),
  remoteVideo: $('remote-video'),
  remoteTile: $('remote-tile'),
  localVideo: $('local-video'),
  pipOff: $('pip-off'),
  pipMicOff: $('pip-mic-off'),
  waiting: $('waiting'),
  waitingTitle: $('waiting-title'),
  waitingSub: $('waiting-sub'),
  waitingRoom: $('waiting-room'),
  copyLink: $('copy-link'),
  remoteName: $('remote-name'),
  statsChip: $('stats-chip'),
  mic: $('btn-mic'),
  cam: $('btn-cam'),
  share: $('btn-share'),
  sdpBtn: $('btn-sdp'),
  statsBtn: $('btn-stats'),
  record: $('btn-record'),
  leave: $('leave'),
  sdpPanel: $('sdp-panel'),
  sdpClose: $('sdp-close'),
  localSdp: $('local-sdp'),
  localSdpType: $('local-sdp-type'),
  remoteSdp: $('remote-sdp'),
  remoteSdpType: $('remote-sdp-type'),
  toasts: $('toasts'),
};

// ---------------------------------------------------------------------------------------------
// Application state

const hooks = createHooks('call');
let call = initialCall;     // the signaling state mirror (lib/call-state.js)
let joinTimer = 0;          // while a join awaits joined/full/signal_error
let passcode = '';          // the room's, as given at join (a rejoin gives it again)
let leaving = null;         // timer while a leave awaits `leaved`
let socket = null;
let localStream = null;     // camera + microphone
let screenTrack = null;     // getDisplayMedia track while sharing
let pc = null;
let videoSender = null;     // RTCRtpSender carrying our video (camera or screen)
let pendingCandidates = []; // remote candidates received before the remote description
let makingOffer = false;    // perfect negotiation: an offer of ours is being made
let resuming = false;       // our last offer renegotiates a call that survived a signaling outage
let recovery = initialRecovery;
let recoveryTimer = 0;
let rejoinAttempts = 0;
let heldTimer = 0;          // while a connection outlives the peer's `bye`
let iceConfig = null;       // { iceServers, expiresAt }
let callStartedAt = 0;
let timerHandle = 0;
// Charts of this connection (lib/stats-panel.js); its readings also feed the stats chip.
const statsPanel = createStatsPanel({ getPc: () => pc, hooks, button: ui.statsBtn, onSample: showStatsChip });
document.body.append(statsPanel.element);
// Records what this page shows: the remote video with ours in the corner, both voices.
const callRecorder = createCallRecorder({
  hooks,
  videos: () => [ui.remoteVideo, ui.localVideo],
  layout: 'pip',
  room: () => call.room,
  token,
  onError: (text) => toast(text, 'error'),
});
// A recording an earlier load left unfinished (a reload mid-recording) is sent on and saved.
callRecorder.resumeInterrupted().catch((err) => console.warn('resuming recordings:', err));
let queue = Promise.resolve();

hooks.state = call.state;

// Signaling events are handled strictly one after another (offer handling is async and an ICE
// candidate must never be applied before its offer).
function enqueue(fn) {
  queue = queue.then(fn).catch((err) => {
    console.error(err);
    toast(`Error: ${err?.message ?? err}`, 'error');
  });
  return queue;
}

function dispatch(ev) {
  const next = reduce(call, ev);
  if (next !== call) {
    if (next.state !== call.state) console.info(`[state] ${call.state} → ${next.state}`);
    call = next;
    hooks.state = call.state;
    render();
  }
  return call;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function render() {
  const inRoom = showsCall(call);
  ui.body.dataset.state = call.state;
  ui.state.textContent = call.state;
  ui.statusLabel.textContent = call.pending ? 'Joining…' : call.rejoining ? 'Reconnecting…' : STATE_LABEL[call.state];
  ui.lobby.hidden = inRoom;
  ui.stage.hidden = !inRoom;
  ui.roomChip.hidden = !inRoom;
  ui.roomName.textContent = call.room ?? '';
  ui.waitingRoom.textContent = call.room ?? '';

  const busy = Boolean(call.pending);
  ui.body.classList.toggle('busy', busy);
  ui.join.disabled = inRoom || busy || ui.room.value.trim() === '';
  ui.room.disabled = inRoom || busy;
  ui.passcode.disabled = inRoom || busy;
  ui.leave.disabled = !inRoom || Boolean(leaving);

  const audio = localStream?.getAudioTracks()[0];
  const video = localStream?.getVideoTracks()[0];
  ui.mic.disabled = !inRoom || !audio;
  ui.cam.disabled = !inRoom || !video;
  ui.share.disabled = !inRoom || !navigator.mediaDevices?.getDisplayMedia || !video;
  ui.record.disabled = !inRoom || !window.MediaRecorder;
  ui.record.setAttribute('aria-pressed', String(callRecorder.isRecording()));
  ui.record.title = callRecorder.isRecording() ? 'Stop recording' : 'Record the call';
  setToggle(ui.mic, audio ? !audio.enabled : false, 'Unmute microphone', 'Mute microphone');
  setToggle(ui.cam, video ? !video.enabled : false, 'Turn camera on', 'Turn camera off');
  ui.share.setAttribute('aria-pressed', String(Boolean(screenTrack)));
  ui.share.title = screenTrack ? 'Stop sharing' : 'Share screen';
  ui.pipMicOff.hidden = !(audio && !audio.enabled);
  ui.pipOff.hidden = Boolean(screenTrack) || !(video ? !video.enabled : true);
  ui.localVideo.classList.toggle('mirror', !screenTrack);

  // Remote tile: the picture stays up while signaling reconnects (the media does not need it).
  const inCall = call.state === STATE.CONN || (call.rejoining && pc !== null);
  const hasRemote = ui.remoteTile.classList.contains('has-video') && inCall;
  ui.waiting.hidden = hasRemote;
  ui.remoteName.hidden = !hasRemote;
  ui.statsChip.hidden = !hasRemote || !ui.statsChip.textContent;
  if (call.rejoining) {
    ui.waitingTitle.textContent = 'Reconnecting to the server…';
    ui.waitingSub.replaceChildren('You will be back in ', ui.waitingRoom, ' as soon as it answers.');
  } else if (call.state === STATE.JOINED) {
    ui.waitingTitle.textContent = 'Waiting for someone to join';
    ui.waitingSub.replaceChildren('Share the room name ', ui.waitingRoom, ' or the invite link.');
  } else if (call.state === STATE.UNBIND) {
    ui.waitingTitle.textContent = 'The other person left';
    ui.waitingSub.replaceChildren('Stay in ', ui.waitingRoom, ': a new call starts when someone joins.');
  } else if (call.state === STATE.CONN && pc?.connectionState === 'failed' && !recovery.everConnected) {
    ui.waitingTitle.textContent = 'Could not connect';
    ui.waitingSub.replaceChildren('There is no network path to the other person (a firewall or NAT in the way, and no relay to fall back on).');
  } else if (call.state === STATE.CONN) {
    ui.waitingTitle.textContent = 'Connecting…';
    ui.waitingSub.replaceChildren('Setting up a secure connection in ', ui.waitingRoom, '.');
  }
  ui.waiting.classList.toggle('connecting', call.state === STATE.CONN || call.rejoining);
  ui.copyLink.hidden = call.state === STATE.CONN || call.rejoining;
}

function setToggle(btn, off, offTitle, onTitle) {
  btn.setAttribute('aria-pressed', String(off));
  btn.title = off ? offTitle : onTitle;
}

// ---------------------------------------------------------------------------------------------
// Socket.io signaling

function ensureSocket() {
  if (socket) return socket;
  socket = socketIo()({ reconnectionDelayMax: 4000, auth: token ? { token } : {} });
  hooks.socket = socket;
  const on = (event, handler) =>
    socket.on(event, (...args) => {
      hooks.events.push({ t: Date.now(), event, args });
      console.debug('[signal] ←', event, ...args);
      handler(...args);
    });
  on('joined', (r, id, info) => enqueue(() => onJoined(r, id, info)));
  on('other_joined', (r, id) => enqueue(() => onOtherJoined(r, id)));
  on('full', (r, id) => enqueue(() => onFull(r, id)));
  on('leaved', (r, id) => enqueue(() => onLeaved(r, id)));
  on('bye', (r, id) => enqueue(() => onBye(r, id)));
  on('message', (r, data) => enqueue(() => onMessage(r, data)));
  on('signal_error', (err) => enqueue(() => onSignalError(err)));
  socket.on('disconnect', (reason) => enqueue(() => onDisconnect(reason)));
  socket.on('connect', () => enqueue(() => onConnect()));
  socket.on('connect_error', (err) => {
    // The server refused the link's token: socket.io does not retry, and should not.
    if (isTokenError(err.message)) toast(`This link does not let you in (${err.message}). Ask for a new one.`, 'error');
    else if (call.pending) toast(`Cannot reach the signaling server (${err.message}). Retrying…`, 'error');
  });
  return socket;
}

function sendMessage(data) {
  if (!socket?.connected || call.state !== STATE.CONN || !call.room) return false;
  socket.emit('message', call.room, data);
  return true;
}

async function join(name) {
  if (call.state !== STATE.LEAVED || call.pending || call.rejoining) return;
  if (!isValidRoom(name)) {
    showNotice(ROOM_HINT);
    ui.room.focus();
    return;
  }
  showNotice('');
  passcode = ui.passcode.value;
  dispatch({ type: 'join', room: name });
  try {
    ensureSocket();
    await Promise.all([acquireMedia(), refreshIceConfig()]);
    if (call.pending !== name) return; // cancelled meanwhile (disconnect)
    joinTimer = setTimeout(() => {
      if (!call.pending) return;
      dispatch({ type: 'signal_error', event: 'join' });
      stopMedia();
      showNotice('The signaling server did not answer. Check your connection and try again.');
    }, JOIN_TIMEOUT_MS);
    emitJoin(name);
  } catch (err) {
    console.error(err);
    dispatch({ type: 'signal_error', event: 'join' });
    stopMedia();
    showNotice(err.message || String(err));
  }
}

function leave() {
  if (!showsCall(call) || leaving) return;
  callRecorder.stop().catch((err) => toast(String(err), 'error'));
  closePeerConnection();
  stopMedia();
  if (!socket?.connected || call.rejoining) {
    finishLeave();
    return;
  }
  socket.emit('leave', call.room);
  // Normally `leaved` arrives within milliseconds. If it does not, reconnect: the server then
  // drops us from the room on disconnect, so client and server agree again.
  leaving = setTimeout(() => {
    leaving = null;
    finishLeave();
    socket.disconnect().connect();
  }, LEAVE_TIMEOUT_MS);
  render();
}

// Back to `leaved`: no call, no media, no room.
function finishLeave() {
  if (leaving) clearTimeout(leaving);
  leaving = null;
  closePeerConnection();
  stopMedia();
  dispatch({ type: 'reset' });
  setRoomInUrl(null);
  render();
}

// Keeps the URL shareable (`?room=`) without dropping other parameters such as `?relay`.
function setRoomInUrl(name) {
  const params = new URLSearchParams(location.search);
  if (name) params.set('room', name);
  else params.delete('room');
  const query = params.toString();
  history.replaceState(null, '', query ? `${location.pathname}?${query}` : location.pathname);
}

// --- server events ---------------------------------------------------------------------------

async function onConnect() {
  // socket.io reconnected after an outage: take our seat again. The call, if any, kept going.
  if (call.rejoining) {
    rejoinAttempts = 0;
    rejoin();
  }
}

function rejoin() {
  if (!call.rejoining || !socket?.connected) return;
  rejoinAttempts += 1;
  logEvent(hooks, 'rejoin', call.room);
  emitJoin(call.room);
}

/** `join(room)`, as the course's client sends it, with the passcode after it if there is one. */
function emitJoin(room) {
  if (passcode) socket.emit('join', room, passcode);
  else socket.emit('join', room);
}

async function onJoined(r, _id, info) {
  const before = call;
  if (dispatch({ type: 'joined', room: r, peers: info?.peers }) === before) return;
  clearTimeout(joinTimer);
  setRoomInUrl(r);
  if (before.rejoining) {
    // Back after a signaling outage: keep the call if it is still alive.
    if (!isLive(pc)) createPeerConnection();
    toast('Reconnected to the server.');
    return;
  }
  // As in the course: the RTCPeerConnection is created (and the tracks bound) on `joined`.
  createPeerConnection();
  attachLocalPreview();
}

async function onOtherJoined(r, _id) {
  const before = call;
  if (dispatch({ type: 'other_joined', room: r }) === before) return;
  clearTimeout(heldTimer);
  await refreshIceConfigIfStale();
  if (isLive(pc) && pc.remoteDescription) {
    // The other side is back after a signaling outage (no `bye` closed our call): renegotiate
    // the same connection, restarting ICE in case the path changed meanwhile.
    await offer({ iceRestart: true, resume: true });
    return;
  }
  // A new peer: start a fresh call. We are the member already present, so we make the offer.
  if (!pc || pc.signalingState !== 'stable' || pc.remoteDescription) createPeerConnection();
  await offer({});
}

async function onFull(r) {
  if (call.rejoining && r === call.room) {
    if (rejoinAttempts < REJOIN_ATTEMPTS) {
      setTimeout(() => enqueue(async () => rejoin()), REJOIN_RETRY_MS);
      return;
    }
    // The seat stayed taken: someone else is in the room now.
    finishLeave();
    showNotice(`Someone else took your place in “${r}” while the server was unreachable.`);
    return;
  }
  const before = call;
  if (dispatch({ type: 'full', room: r }) === before) return;
  clearTimeout(joinTimer);
  closePeerConnection();
  stopMedia();
  showNotice(`Room “${r}” is full — it already has two people. Try another room name.`);
  render();
}

async function onLeaved(r) {
  if (r !== call.room) return;
  finishLeave();
}

async function onBye(r) {
  const before = call;
  if (dispatch({ type: 'bye', room: r }) === before) return;
  toast('The other person left the call.');
  if (pc?.connectionState !== 'connected') {
    closePeerConnection();
    return;
  }
  // The peer's signaling is gone; its media may not be. Keep the connection until it fails
  // or the peer is back (onOtherJoined resumes it).
  logEvent(hooks, 'held', 'after bye');
  const held = pc;
  const release = () => {
    if (held === pc && call.state !== STATE.CONN) closePeerConnection();
  };
  clearTimeout(heldTimer);
  heldTimer = setTimeout(release, PEER_RETURN_MS);
  held.addEventListener('connectionstatechange', () => {
    if (['disconnected', 'failed', 'closed'].includes(held.connectionState)) release();
  });
}

async function onSignalError(err) {
  const code = err?.code ?? 'error';
  const msg = err?.message ?? '';
  toast(`${code}${msg && msg !== code ? `: ${msg}` : ''}`, 'error');
  if (err?.event === 'join' && call.pending) {
    const room = call.pending;
    clearTimeout(joinTimer);
    dispatch({ type: 'signal_error', event: 'join' });
    stopMedia();
    showNotice(joinRefusal(err, room));
    if (/passcode/.test(code)) ui.passcode.focus();
  }
}

async function onDisconnect(reason) {
  if (reason === 'io client disconnect') return; // our own reconnect after a lost `leaved`
  const before = call;
  dispatch({ type: 'disconnected' });
  clearTimeout(joinTimer);
  if (call.rejoining) {
    logEvent(hooks, 'signaling-lost', reason);
    toast(isLive(pc) ? 'Lost the signaling server; the call goes on while we reconnect.' : 'Lost the signaling server; reconnecting…', 'warn');
    // socket.io reconnects by itself unless the server closed the connection on purpose.
    if (reason === 'io server disconnect') socket.connect();
  } else if (before.pending) {
    stopMedia();
    showNotice('Connection to the server was lost. Join again when it is back.');
  }
}

async function onMessage(r, data) {
  if (r !== call.room) return;
  if (typeof data === 'string') {
    // Plain text (the course's chat chapters); this page has no chat.
    logEvent(hooks, 'text', data.slice(0, 200));
    return;
  }
  if (!data || typeof data !== 'object') return;
  switch (data.type) {
    case 'offer':
      await onOffer(data.sdp);
      break;
    case 'answer':
      await onAnswer(data.sdp);
      break;
    case 'candidate': {
      const init = {
        candidate: data.candidate ?? '',
        sdpMLineIndex: data.label ?? data.sdpMLineIndex ?? null,
        sdpMid: data.id ?? data.sdpMid ?? null,
      };
      if (typeof data.usernameFragment === 'string') init.usernameFragment = data.usernameFragment;
      if (init.sdpMLineIndex === null && init.sdpMid === null) init.sdpMLineIndex = 0;
      if (!pc || !pc.remoteDescription) {
        pendingCandidates.push(init);
      } else {
        await addCandidate(pc, init);
      }
      break;
    }
    default:
      console.warn('unknown message type', data.type);
  }
}

async function onOffer(sdp) {
  const renegotiation = pc && pc.remoteDescription && sameSession(pc.remoteDescription.sdp, sdp);
  if (renegotiation) {
    // Perfect negotiation: on glare the newcomer ("polite") yields, the other side ignores.
    const collision = makingOffer || pc.signalingState !== 'stable';
    if (collision && !call.polite) {
      logEvent(hooks, 'glare', 'ignored their offer');
      return;
    }
    if (collision) await pc.setLocalDescription({ type: 'rollback' });
    logEvent(hooks, 'renegotiate', 'answering');
    recovery = recover(recovery, { type: 'remote-restart', now: Date.now() }).state;
  } else if (!pc || pc.signalingState !== 'stable' || pc.remoteDescription) {
    const early = pendingCandidates; // candidates that arrived ahead of this offer
    createPeerConnection();
    pendingCandidates = early;
  }
  const mine = pc;
  await mine.setRemoteDescription({ type: 'offer', sdp });
  showSdp('remote', mine.remoteDescription);
  await flushCandidates(mine);
  const answer = await mine.createAnswer();
  if (mine !== pc) return;
  await mine.setLocalDescription(answer);
  showSdp('local', mine.localDescription);
  sendMessage({ type: 'answer', sdp: mine.localDescription.sdp });
}

async function onAnswer(sdp) {
  if (!pc || pc.signalingState !== 'have-local-offer') {
    console.warn('ignoring answer in signalingState', pc?.signalingState);
    return;
  }
  if (resuming && !sameSession(pc.remoteDescription?.sdp, sdp)) {
    // We offered to resume a call, but the answer comes from another connection than the one
    // we had (someone new, or the peer started afresh). Chromium would accept it and never
    // connect (a new DTLS fingerprint on an old transport): start a fresh call instead.
    logEvent(hooks, 'resume-failed', 'answer from another session');
    resuming = false;
    createPeerConnection();
    await offer({});
    return;
  }
  await pc.setRemoteDescription({ type: 'answer', sdp });
  resuming = false;
  showSdp('remote', pc.remoteDescription);
  await flushCandidates(pc);
}

// ---------------------------------------------------------------------------------------------
// WebRTC

async function refreshIceConfig() {
  iceConfig = await loadIceServers({
    fallback: iceConfig,
    token,
    onError: (err) => {
      console.warn('ICE server config unavailable', err);
      toast('Could not load ICE servers; trying a direct connection.', 'warn');
    },
  });
}

async function refreshIceConfigIfStale() {
  if (!isStale(iceConfig, Date.now())) return;
  await refreshIceConfig();
  if (pc && pc.connectionState !== 'closed') {
    pc.setConfiguration({ ...pc.getConfiguration(), iceServers: iceConfig.iceServers });
  }
}

async function acquireMedia() {
  if (localStream) return;
  const { stream, missing } = await openCameraAndMic();
  localStream = stream;
  if (missing === 'video') toast('No camera available — joining with audio only.', 'warn');
  if (missing === 'audio') toast('No microphone available — joining with video only.', 'warn');
}

function stopMedia() {
  if (screenTrack) {
    screenTrack.onended = null;
    screenTrack.stop();
    screenTrack = null;
  }
  stopStream(localStream);
  localStream = null;
  ui.localVideo.srcObject = null;
}

function attachLocalPreview() {
  const stream = screenTrack
    ? new MediaStream([screenTrack])
    : localStream && localStream.getVideoTracks().length
      ? new MediaStream(localStream.getVideoTracks())
      : null;
  if (ui.localVideo.srcObject !== stream) ui.localVideo.srcObject = stream;
  ui.localVideo.play?.().catch(() => {});
  render();
}

const isLive = (conn) => Boolean(conn) && conn.connectionState !== 'closed' && conn.connectionState !== 'failed';

function createPeerConnection() {
  closePeerConnection();
  const mine = new RTCPeerConnection({
    iceServers: iceConfig?.iceServers ?? [],
    // `?relay` forces every packet through the TURN relay: a way to check the relay works.
    iceTransportPolicy: FORCE_RELAY ? 'relay' : 'all',
  });
  pc = mine;
  hooks.pc = mine;
  hooks.pcGeneration += 1;
  pendingCandidates = [];
  makingOffer = false;
  resuming = false;
  recovery = initialRecovery;

  mine.onicecandidate = (e) => {
    if (mine !== pc || !e.candidate || !e.candidate.candidate) return;
    // The course's candidate shape.
    sendMessage({
      type: 'candidate',
      label: e.candidate.sdpMLineIndex,
      id: e.candidate.sdpMid,
      candidate: e.candidate.candidate,
    });
  };
  mine.ontrack = (e) => {
    if (mine !== pc) return;
    const stream = e.streams[0] ?? new MediaStream([e.track]);
    if (ui.remoteVideo.srcObject !== stream) ui.remoteVideo.srcObject = stream;
    ui.remoteVideo.play().catch(() => {});
  };
  mine.oniceconnectionstatechange = () => {
    if (mine !== pc) return;
    logEvent(hooks, 'ice', mine.iceConnectionState);
    step({ type: 'ice', state: mine.iceConnectionState, now: Date.now() });
  };
  mine.onconnectionstatechange = () => {
    if (mine !== pc) return;
    const s = mine.connectionState;
    console.info('[pc] connectionState', s);
    ui.remoteTile.dataset.conn = s;
    if (s === 'connected' && !callStartedAt) startCallTimer();
    if (s === 'failed' && !recovery.everConnected) toast('No route between you and the other person: the call could not connect.', 'error');
    render();
  };
  clearInterval(recoveryTimer);
  recoveryTimer = setInterval(async () => {
    const bytes = await transportBytes(mine).catch(() => null);
    if (mine === pc && bytes) step({ type: 'traffic', ...bytes, now: Date.now() });
  }, RECOVERY_TICK_MS);

  // Bind our tracks (course: bindTracks()).
  videoSender = null;
  const audio = localStream?.getAudioTracks()[0];
  const camera = localStream?.getVideoTracks()[0];
  if (audio) mine.addTrack(audio, localStream);
  const video = screenTrack ?? camera;
  if (video) videoSender = mine.addTrack(video, localStream);
  return mine;
}

/** Makes and sends an offer on the current connection (course: call()). */
async function offer({ iceRestart = false, resume = false }) {
  const mine = pc;
  if (!mine) return false;
  // An offer of ours still waiting for its answer was lost with a signaling connection (a
  // new public address kills the WebSocket mid-call): take it back and make a new one.
  if (mine.signalingState === 'have-local-offer') await mine.setLocalDescription({ type: 'rollback' });
  if (mine !== pc || mine.signalingState !== 'stable') return false;
  // Receive audio and video even if we have nothing to send.
  const kinds = mine.getTransceivers().map((t) => t.receiver.track.kind);
  if (!kinds.includes('audio')) mine.addTransceiver('audio', { direction: 'recvonly' });
  if (!kinds.includes('video')) mine.addTransceiver('video', { direction: 'recvonly' });
  makingOffer = true;
  try {
    const description = await mine.createOffer({ iceRestart });
    if (mine !== pc || mine.signalingState !== 'stable') return false;
    await mine.setLocalDescription(description);
  } finally {
    makingOffer = false;
  }
  resuming = resume;
  showSdp('local', mine.localDescription);
  if (!iceRestart) showSdp('remote', null);
  return sendMessage({ type: 'offer', sdp: mine.localDescription.sdp });
}

// ICE recovery: lib/recovery.js decides, this acts.
function step(input) {
  const { state, action } = recover(recovery, input);
  recovery = state;
  if (action === 'restart') {
    // Counted now, so that readings before the offer goes out do not ask again.
    recovery = recover(recovery, { type: 'restarted', now: input.now }).state;
    enqueue(restartIce);
  }
  if (action === 'give-up') {
    logEvent(hooks, 'ice-give-up');
    toast('The connection to the other person was lost.', 'error');
  }
}

async function restartIce() {
  // Without signaling the restart cannot be negotiated; the rejoin will restart ICE anyway.
  if (!pc || !socket?.connected || call.state !== STATE.CONN) return;
  await refreshIceConfigIfStale();
  logEvent(hooks, 'ice-restart', pc.iceConnectionState);
  await offer({ iceRestart: true });
}

async function flushCandidates(target) {
  const queued = pendingCandidates;
  pendingCandidates = [];
  for (const init of queued) await addCandidate(target, init);
}

async function addCandidate(target, init) {
  try {
    await target.addIceCandidate(init);
  } catch (err) {
    // A candidate of an offer we ignored on glare, or of an older ICE generation.
    console.warn('addIceCandidate failed', init, err);
  }
}

function closePeerConnection() {
  clearInterval(recoveryTimer);
  recoveryTimer = 0;
  clearTimeout(heldTimer);
  if (pc) {
    pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = pc.oniceconnectionstatechange = null;
    pc.close();
  }
  pc = null;
  hooks.pc = null;
  videoSender = null;
  pendingCandidates = [];
  ui.remoteVideo.srcObject = null;
  ui.remoteTile.classList.remove('has-video');
  delete ui.remoteTile.dataset.conn;
  stopCallTimer();
  ui.statsChip.textContent = '';
  showSdp('local', null);
  showSdp('remote', null);
}

// ---------------------------------------------------------------------------------------------
// Controls

function toggleMic() {
  const t = localStream?.getAudioTracks()[0];
  if (!t) return;
  t.enabled = !t.enabled;
  render();
}

function toggleCamera() {
  const t = localStream?.getVideoTracks()[0];
  if (!t) return;
  t.enabled = !t.enabled;
  render();
}

async function toggleShare() {
  if (screenTrack) {
    await stopShare();
    return;
  }
  let display;
  try {
    display = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
  } catch (err) {
    if (err?.name !== 'NotAllowedError') toast(`Screen sharing failed (${err?.name ?? err}).`, 'error');
    return;
  }
  if (!showsCall(call)) {
    display.getTracks().forEach((t) => t.stop());
    return;
  }
  screenTrack = display.getVideoTracks()[0];
  screenTrack.contentHint = 'detail';
  screenTrack.onended = () => stopShare();
  if (videoSender) await videoSender.replaceTrack(screenTrack);
  attachLocalPreview();
}

async function stopShare() {
  if (!screenTrack) return;
  screenTrack.onended = null;
  screenTrack.stop();
  screenTrack = null;
  const camera = localStream?.getVideoTracks()[0] ?? null;
  if (videoSender) await videoSender.replaceTrack(camera);
  attachLocalPreview();
}

function toggleSdpPanel(open = ui.sdpPanel.hidden) {
  ui.sdpPanel.hidden = !open;
  ui.sdpBtn.setAttribute('aria-expanded', String(open));
  ui.stage.classList.toggle('with-panel', open);
}

function showSdp(which, desc) {
  const pre = which === 'local' ? ui.localSdp : ui.remoteSdp;
  const type = which === 'local' ? ui.localSdpType : ui.remoteSdpType;
  pre.textContent = desc?.sdp ?? '';
  type.textContent = desc?.type ?? '—';
  type.dataset.type = desc?.type ?? '';
}

// ---------------------------------------------------------------------------------------------
// Call timer and live stats

function startCallTimer() {
  callStartedAt = Date.now();
  ui.timer.hidden = false;
  const tick = () => {
    const s = Math.floor((Date.now() - callStartedAt) / 1000);
    const hh = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
    const ss = String(s % 60).padStart(2, '0');
    ui.timer.textContent = hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
  };
  tick();
  timerHandle = setInterval(tick, 1000);
  statsPanel.start();
}

function stopCallTimer() {
  clearInterval(timerHandle);
  statsPanel.stop();
  callStartedAt = 0;
  ui.timer.hidden = true;
  ui.timer.textContent = '00:00';
}

/** The remote video's size, frame rate and bit rate, and the round trip, from the latest reading. */
function showStatsChip(history) {
  const now = (id) => {
    const { labels, data } = chartData(history, CHARTS.find((c) => c.id === id));
    const i = labels.findIndex((label) => label.startsWith('↓') && label.endsWith('video'));
    return i < 0 ? null : latest(data[i + 1]);
  };
  const [height, fps, kbps] = [now('height'), now('fps'), now('bitrate')];
  const rtt = history.pair?.rttMs;
  const parts = [];
  if (height) parts.push(`${height}p`);
  if (fps) parts.push(`${Math.round(fps)} fps`);
  if (kbps) parts.push(kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mb/s` : `${Math.round(kbps)} kb/s`);
  if (rtt !== null && rtt !== undefined) parts.push(`${Math.round(rtt)} ms`);
  ui.statsChip.textContent = parts.join(' · ');
  render();
}

// ---------------------------------------------------------------------------------------------
// Notices and toasts

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

function toast(text, kind = 'info') {
  const el = document.createElement('div');
  el.className = `toast toast-${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  el.dataset.testid = 'toast';
  el.textContent = text;
  ui.toasts.append(el);
  while (ui.toasts.children.length > 4) ui.toasts.firstChild.remove();
  setTimeout(() => {
    el.classList.add('leaving');
    setTimeout(() => el.remove(), 300);
  }, kind === 'error' ? 6000 : 3500);
}

// ---------------------------------------------------------------------------------------------
// Wiring

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  join(ui.room.value.trim());
});
ui.room.addEventListener('input', () => {
  if (!ui.notice.hidden) showNotice('');
  render();
});
ui.leave.addEventListener('click', leave);
ui.mic.addEventListener('click', toggleMic);
ui.cam.addEventListener('click', toggleCamera);
ui.share.addEventListener('click', () => toggleShare().catch((err) => toast(String(err), 'error')));
ui.record.addEventListener('click', async () => {
  try {
    if (callRecorder.isRecording()) {
      const stopping = callRecorder.stop();
      render();
      await stopping;
    } else {
      await callRecorder.start();
    }
  } catch (err) {
    toast(`Cannot record: ${err.message ?? err}`, 'error');
  }
  render();
});
ui.sdpBtn.addEventListener('click', () => toggleSdpPanel());
ui.sdpClose.addEventListener('click', () => toggleSdpPanel(false));
ui.copyLink.addEventListener('click', async () => {
  const url = `${location.origin}${location.pathname}?room=${encodeURIComponent(room ?? '')}`;
  try {
    await navigator.clipboard.writeText(url);
    toast('Invite link copied.');
  } catch {
    toast(url);
  }
});
for (const btn of document.querySelectorAll('[data-copy]')) {
  btn.addEventListener('click', async (e) => {
    e.preventDefault();
    const text = $(btn.dataset.copy).textContent;
    if (!text) return;
    try {
      await navigator.clipboard.writeText(text);
      toast('SDP copied.');
    } catch {
      /* clipboard unavailable */
    }
  });
}
const markRemoteVideo = () => {
  if (ui.remoteVideo.srcObject && ui.remoteVideo.videoWidth > 0) {
    ui.remoteTile.classList.add('has-video');
    render();
  }
};
ui.remoteVideo.addEventListener('loadeddata', markRemoteVideo);
ui.remoteVideo.addEventListener('resize', markRemoteVideo);
ui.remoteVideo.addEventListener('playing', markRemoteVideo);
ui.remoteVideo.addEventListener('emptied', () => {
  ui.remoteTile.classList.remove('has-video');
  render();
});
window.addEventListener('pagehide', () => socket?.disconnect());

const initialRoom = new URLSearchParams(location.search).get('room');
if (isValidRoom(initialRoom)) ui.room.value = initialRoom;
render();
