// rtc·call — 1-to-1 WebRTC call client.
//
// Implements the signaling protocol of docs/protocol.md (the course's 1-to-1 demo, seed 002):
//   client → server: join(room), leave(room), message(room, data)
//   server → client: joined(room, id, info), other_joined(room, id), full(room, id),
//                    leaved(room, id), bye(room, id), message(room, data), signal_error({code, message, event})
// and mirrors the server's per-client state machine:
//   leaved → joined → joined_conn ⇄ joined_unbind   (any joined state → leaved on leave/full)
//
// Roles: the member already in the room creates the offer when it receives `other_joined`;
// the newcomer answers. Only `other_joined` is handled (the server also emits the `otherjoin`
// alias for the course's published client; listening to both would negotiate twice).
//
// Test hooks (used by tests/browser/, stable):
//   window.__pc            the current RTCPeerConnection, or null when there is none
//   window.__pcGeneration  increases by one for every RTCPeerConnection created
//   window.__state         the current signaling state (same string as [data-testid=state])
//   window.__events        log of received signaling events: [{event, args, t}]
//   window.__socket        the socket.io client socket (created on the first join)
//
// URL parameters: `?room=NAME` pre-fills the room; `?relay` sets iceTransportPolicy 'relay'
// so that media must go through the TURN relay handed out by /api/ice-servers.

'use strict';

const STATE = Object.freeze({
  LEAVED: 'leaved',
  JOINED: 'joined',
  CONN: 'joined_conn',
  UNBIND: 'joined_unbind',
});

const STATE_LABEL = {
  [STATE.LEAVED]: 'Not in a room',
  [STATE.JOINED]: 'Waiting for peer',
  [STATE.CONN]: 'In call',
  [STATE.UNBIND]: 'Peer left',
};

// Same rule as the server (docs/protocol.md, `invalid_room`).
const ROOM_RE = /^[A-Za-z0-9_.~-]{1,64}$/;
const JOIN_TIMEOUT_MS = 10_000;
const FORCE_RELAY = new URLSearchParams(location.search).has('relay');
const LEAVE_TIMEOUT_MS = 3_000;

const $ = (id) => document.getElementById(id);
const ui = {
  body: document.body,
  form: $('join-form'),
  room: $('room'),
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

let state = STATE.LEAVED;
let room = null;            // room we are in (or joining)
let pendingJoin = null;     // { room, timer } while a join awaits joined/full/signal_error
let leaving = null;         // timer while a leave awaits `leaved`
let socket = null;
let localStream = null;     // camera + microphone
let screenTrack = null;     // getDisplayMedia track while sharing
let pc = null;
let pcGeneration = 0;
let videoSender = null;     // RTCRtpSender carrying our video (camera or screen)
let pendingCandidates = []; // remote candidates received before the remote description
let iceConfig = null;       // { iceServers, expiresAt }
let callStartedAt = 0;
let timerHandle = 0;
let statsHandle = 0;
let lastStats = null;
let queue = Promise.resolve();

window.__pc = null;
window.__pcGeneration = 0;
window.__state = state;
window.__events = [];

// Signaling events are handled strictly one after another (offer handling is async and an ICE
// candidate must never be applied before its offer).
function enqueue(fn) {
  queue = queue.then(fn).catch((err) => {
    console.error(err);
    toast(`Error: ${err?.message ?? err}`, 'error');
  });
  return queue;
}

// ---------------------------------------------------------------------------------------------
// State machine (client mirror)

function setState(next) {
  if (state === next) return;
  console.info(`[state] ${state} → ${next}`);
  state = next;
  window.__state = next;
  render();
}

function render() {
  const inRoom = state !== STATE.LEAVED;
  ui.body.dataset.state = state;
  ui.state.textContent = state;
  ui.statusLabel.textContent = pendingJoin ? 'Joining…' : STATE_LABEL[state];
  ui.lobby.hidden = inRoom;
  ui.stage.hidden = !inRoom;
  ui.roomChip.hidden = !inRoom;
  ui.roomName.textContent = room ?? '';
  ui.waitingRoom.textContent = room ?? '';

  const busy = Boolean(pendingJoin);
  ui.body.classList.toggle('busy', busy);
  ui.join.disabled = inRoom || busy || ui.room.value.trim() === '';
  ui.room.disabled = inRoom || busy;
  ui.leave.disabled = !inRoom || Boolean(leaving);

  const audio = localStream?.getAudioTracks()[0];
  const video = localStream?.getVideoTracks()[0];
  ui.mic.disabled = !inRoom || !audio;
  ui.cam.disabled = !inRoom || !video;
  ui.share.disabled = !inRoom || !navigator.mediaDevices?.getDisplayMedia || !video;
  setToggle(ui.mic, audio ? !audio.enabled : false, 'Unmute microphone', 'Mute microphone');
  setToggle(ui.cam, video ? !video.enabled : false, 'Turn camera on', 'Turn camera off');
  ui.share.setAttribute('aria-pressed', String(Boolean(screenTrack)));
  ui.share.title = screenTrack ? 'Stop sharing' : 'Share screen';
  ui.pipMicOff.hidden = !(audio && !audio.enabled);
  ui.pipOff.hidden = Boolean(screenTrack) || !(video ? !video.enabled : true);
  ui.localVideo.classList.toggle('mirror', !screenTrack);

  // Remote tile.
  const hasRemote = ui.remoteTile.classList.contains('has-video') && state === STATE.CONN;
  ui.waiting.hidden = hasRemote;
  ui.remoteName.hidden = !hasRemote;
  ui.statsChip.hidden = !hasRemote || !ui.statsChip.textContent;
  if (state === STATE.JOINED) {
    ui.waitingTitle.textContent = 'Waiting for someone to join';
    ui.waitingSub.replaceChildren('Share the room name ', ui.waitingRoom, ' or the invite link.');
  } else if (state === STATE.UNBIND) {
    ui.waitingTitle.textContent = 'The other person left';
    ui.waitingSub.replaceChildren('Stay in ', ui.waitingRoom, ': a new call starts when someone joins.');
  } else if (state === STATE.CONN) {
    ui.waitingTitle.textContent = 'Connecting…';
    ui.waitingSub.replaceChildren('Setting up a secure connection in ', ui.waitingRoom, '.');
  }
  ui.waiting.classList.toggle('connecting', state === STATE.CONN);
  ui.copyLink.hidden = state === STATE.CONN;
}

function setToggle(btn, off, offTitle, onTitle) {
  btn.setAttribute('aria-pressed', String(off));
  btn.title = off ? offTitle : onTitle;
}

// ---------------------------------------------------------------------------------------------
// Socket.io signaling

function ensureSocket() {
  if (socket) return socket;
  if (typeof window.io !== 'function') throw new Error('socket.io client failed to load');
  socket = window.io({ reconnectionDelayMax: 4000 });
  window.__socket = socket;
  const on = (event, handler) =>
    socket.on(event, (...args) => {
      window.__events.push({ event, args, t: Math.round(performance.now()) });
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
  socket.on('connect_error', (err) => {
    if (pendingJoin) toast(`Cannot reach the signaling server (${err.message}). Retrying…`, 'error');
  });
  return socket;
}

function sendMessage(data) {
  if (!socket || state !== STATE.CONN || !room) return;
  socket.emit('message', room, data);
}

async function join(name) {
  if (state !== STATE.LEAVED || pendingJoin) return;
  if (!ROOM_RE.test(name)) {
    showNotice('Room names use letters, digits and - _ . ~ (1–64 characters).');
    ui.room.focus();
    return;
  }
  showNotice('');
  pendingJoin = { room: name, timer: 0 };
  render();
  try {
    ensureSocket();
    await Promise.all([acquireMedia(), loadIceConfig()]);
    if (!pendingJoin) return; // cancelled meanwhile (disconnect)
    pendingJoin.timer = setTimeout(() => {
      if (!pendingJoin) return;
      pendingJoin = null;
      stopMedia();
      render();
      showNotice('The signaling server did not answer. Check your connection and try again.');
    }, JOIN_TIMEOUT_MS);
    socket.emit('join', name);
  } catch (err) {
    console.error(err);
    clearPendingJoin();
    stopMedia();
    render();
    showNotice(err.message || String(err));
  }
}

function clearPendingJoin() {
  if (pendingJoin) clearTimeout(pendingJoin.timer);
  pendingJoin = null;
}

function leave() {
  if (state === STATE.LEAVED || leaving) return;
  closePeerConnection();
  stopMedia();
  if (!socket?.connected) {
    finishLeave();
    return;
  }
  socket.emit('leave', room);
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
function resetCall() {
  if (leaving) clearTimeout(leaving);
  leaving = null;
  closePeerConnection();
  stopMedia();
  room = null;
  setState(STATE.LEAVED);
  render();
}

function finishLeave() {
  resetCall();
  setRoomInUrl(null);
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

async function onJoined(r, _id, info) {
  if (!pendingJoin || pendingJoin.room !== r) return;
  clearPendingJoin();
  room = r;
  setRoomInUrl(r);
  const peers = Array.isArray(info?.peers) ? info.peers : [];
  // As in the course: the RTCPeerConnection is created (and the tracks bound) on `joined`.
  createPeerConnection();
  setState(peers.length > 0 ? STATE.CONN : STATE.JOINED);
  attachLocalPreview();
}

async function onOtherJoined(r, _id) {
  if (r !== room || state === STATE.LEAVED) return;
  // A new peer: start a fresh call. We are the member already present, so we make the offer.
  if (!pc || pc.signalingState !== 'stable' || pc.remoteDescription) createPeerConnection();
  setState(STATE.CONN);
  await refreshIceConfigIfStale();
  await call();
}

async function onFull(r) {
  if (!pendingJoin || pendingJoin.room !== r) return;
  clearPendingJoin();
  closePeerConnection();
  stopMedia();
  room = null;
  setState(STATE.LEAVED);
  render();
  showNotice(`Room “${r}” is full — it already has two people. Try another room name.`);
}

async function onLeaved(r) {
  if (r !== room) return;
  finishLeave();
}

async function onBye(r) {
  if (r !== room || state === STATE.LEAVED) return;
  closePeerConnection();
  setState(STATE.UNBIND);
  toast('The other person left the call.');
}

async function onSignalError(err) {
  const code = err?.code ?? 'error';
  const msg = err?.message ?? '';
  toast(`${code}${msg && msg !== code ? `: ${msg}` : ''}`, 'error');
  if (err?.event === 'join' && pendingJoin) {
    clearPendingJoin();
    stopMedia();
    render();
    showNotice(msg || code);
  }
}

async function onDisconnect(reason) {
  if (reason === 'io client disconnect') return; // our own reconnect after a lost `leaved`
  const wasActive = state !== STATE.LEAVED || pendingJoin;
  clearPendingJoin();
  resetCall();
  if (wasActive) showNotice('Connection to the server was lost. Join again when it is back.');
}

async function onMessage(r, data) {
  if (r !== room || !data || typeof data !== 'object') return;
  switch (data.type) {
    case 'offer': {
      if (state === STATE.JOINED || state === STATE.UNBIND) setState(STATE.CONN);
      if (!pc || pc.signalingState !== 'stable' || pc.remoteDescription) {
        const early = pendingCandidates; // candidates that arrived ahead of this offer
        createPeerConnection();
        pendingCandidates = early;
      }
      const mine = pc;
      await mine.setRemoteDescription({ type: 'offer', sdp: data.sdp });
      showSdp('remote', mine.remoteDescription);
      await flushCandidates(mine);
      const answer = await mine.createAnswer();
      if (mine !== pc) return;
      await mine.setLocalDescription(answer);
      showSdp('local', mine.localDescription);
      sendMessage({ type: 'answer', sdp: mine.localDescription.sdp });
      break;
    }
    case 'answer': {
      if (!pc || pc.signalingState !== 'have-local-offer') {
        console.warn('ignoring answer in signalingState', pc?.signalingState);
        return;
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: data.sdp });
      showSdp('remote', pc.remoteDescription);
      await flushCandidates(pc);
      break;
    }
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

// ---------------------------------------------------------------------------------------------
// WebRTC

async function loadIceConfig() {
  try {
    const res = await fetch('/api/ice-servers', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    const ttl = Number(body.ttl) > 0 ? Number(body.ttl) : 3600;
    iceConfig = {
      iceServers: Array.isArray(body.iceServers) ? body.iceServers : [],
      // Refresh a little before the TURN credentials expire.
      expiresAt: Date.now() + ttl * 900,
    };
  } catch (err) {
    console.warn('ICE server config unavailable', err);
    if (!iceConfig) iceConfig = { iceServers: [], expiresAt: 0 };
    toast('Could not load ICE servers; trying a direct connection.', 'warn');
  }
}

async function refreshIceConfigIfStale() {
  if (!iceConfig || Date.now() > iceConfig.expiresAt) {
    await loadIceConfig();
    if (pc && !pc.remoteDescription && pc.signalingState === 'stable') {
      pc.setConfiguration({ ...pc.getConfiguration(), iceServers: iceConfig.iceServers });
    }
  }
}

async function acquireMedia() {
  if (localStream) return;
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot access camera and microphone here (HTTPS is required).');
  }
  const attempts = [
    { audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } },
    { audio: true, video: false },
    { audio: false, video: true },
  ];
  let lastErr;
  for (const constraints of attempts) {
    try {
      localStream = await navigator.mediaDevices.getUserMedia(constraints);
      if (!constraints.video) toast('No camera available — joining with audio only.', 'warn');
      if (!constraints.audio) toast('No microphone available — joining with video only.', 'warn');
      return;
    } catch (err) {
      lastErr = err;
      if (err?.name === 'NotAllowedError' || err?.name === 'SecurityError') break;
    }
  }
  throw new Error(
    lastErr?.name === 'NotAllowedError'
      ? 'Camera and microphone access was denied. Allow it in the browser and try again.'
      : `Cannot open camera or microphone (${lastErr?.name ?? 'unknown error'}).`,
  );
}

function stopMedia() {
  if (screenTrack) {
    screenTrack.onended = null;
    screenTrack.stop();
    screenTrack = null;
  }
  localStream?.getTracks().forEach((t) => t.stop());
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

function createPeerConnection() {
  closePeerConnection();
  const mine = new RTCPeerConnection({
    iceServers: iceConfig?.iceServers ?? [],
    // `?relay` forces every packet through the TURN relay: a way to check the relay works.
    iceTransportPolicy: FORCE_RELAY ? 'relay' : 'all',
  });
  pc = mine;
  pcGeneration += 1;
  window.__pc = mine;
  window.__pcGeneration = pcGeneration;
  pendingCandidates = [];

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
  mine.onconnectionstatechange = () => {
    if (mine !== pc) return;
    const s = mine.connectionState;
    console.info('[pc] connectionState', s);
    ui.remoteTile.dataset.conn = s;
    if (s === 'connected' && !callStartedAt) startCallTimer();
    if (s === 'failed') toast('The media connection failed (no route between the peers).', 'error');
  };

  // Bind our tracks (course: bindTracks()).
  videoSender = null;
  const audio = localStream?.getAudioTracks()[0];
  const camera = localStream?.getVideoTracks()[0];
  if (audio) mine.addTrack(audio, localStream);
  const video = screenTrack ?? camera;
  if (video) videoSender = mine.addTrack(video, localStream);
  return mine;
}

async function call() {
  const mine = pc;
  // Receive audio and video even if we have nothing to send.
  const kinds = mine.getTransceivers().map((t) => t.receiver.track.kind);
  if (!kinds.includes('audio')) mine.addTransceiver('audio', { direction: 'recvonly' });
  if (!kinds.includes('video')) mine.addTransceiver('video', { direction: 'recvonly' });
  const offer = await mine.createOffer();
  if (mine !== pc) return;
  await mine.setLocalDescription(offer);
  showSdp('local', mine.localDescription);
  showSdp('remote', null);
  sendMessage({ type: 'offer', sdp: mine.localDescription.sdp });
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
    console.warn('addIceCandidate failed', init, err);
  }
}

function closePeerConnection() {
  if (pc) {
    pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
    pc.close();
  }
  pc = null;
  videoSender = null;
  pendingCandidates = [];
  window.__pc = null;
  ui.remoteVideo.srcObject = null;
  ui.remoteTile.classList.remove('has-video');
  delete ui.remoteTile.dataset.conn;
  stopCallTimer();
  ui.statsChip.textContent = '';
  lastStats = null;
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
  if (state === STATE.LEAVED) {
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
  statsHandle = setInterval(updateStats, 1000);
}

function stopCallTimer() {
  clearInterval(timerHandle);
  clearInterval(statsHandle);
  callStartedAt = 0;
  ui.timer.hidden = true;
  ui.timer.textContent = '00:00';
}

async function updateStats() {
  const mine = pc;
  if (!mine) return;
  const report = await mine.getStats();
  let video, pair;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
  });
  if (mine !== pc || !video) return;
  const now = video.timestamp;
  let kbps = 0;
  if (lastStats) kbps = ((video.bytesReceived - lastStats.bytes) * 8) / Math.max(1, now - lastStats.t);
  lastStats = { bytes: video.bytesReceived, t: now };
  const parts = [];
  if (video.frameWidth) parts.push(`${video.frameWidth}×${video.frameHeight}`);
  if (video.framesPerSecond) parts.push(`${Math.round(video.framesPerSecond)} fps`);
  if (kbps) parts.push(kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mb/s` : `${Math.round(kbps)} kb/s`);
  if (pair?.currentRoundTripTime !== undefined) parts.push(`${Math.round(pair.currentRoundTripTime * 1000)} ms`);
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
if (initialRoom && ROOM_RE.test(initialRoom)) ui.room.value = initialRoom;
render();
