// rtc·call group rooms: one RTCPeerConnection to the SFU, server-driven renegotiation.
//
// Protocol (docs/protocol.md, "SFU rooms"): socket.io namespace /sfu.
//   → join {room, name, sdp}        ack {id, sdp, participants, capacity} | {error}
//   ← update {type:'offer', sdp}    ack {type:'answer', sdp} | {error}
//   ← participants [{id, name, streams, audio, video}]
//   → leave                          ack {ok}
//
// Test hooks: [data-testid] room, name, join, leave, local-video, remote-video (one per remote
// participant, data-participant = its id); window.__sfu = {pc, id, participants, events}.

const $ = (id) => document.getElementById(id);
const hooks = (window.__sfu = { pc: null, id: null, participants: [], events: [], joinedAt: 0 });

const ADJECTIVES = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'kind', 'lively', 'merry', 'nice', 'proud', 'quick', 'silly', 'witty'];
const ANIMALS = ['otter', 'panda', 'koala', 'lynx', 'heron', 'falcon', 'badger', 'dolphin', 'fox', 'owl', 'tiger', 'whale', 'yak', 'zebra', 'moose'];
const pick = (list) => list[Math.floor(Math.random() * list.length)];
const randomRoom = () => `${pick(ADJECTIVES)}-${pick(ANIMALS)}-${Math.floor(Math.random() * 900 + 100)}`;
const randomName = () => { const a = pick(ANIMALS); return a[0].toUpperCase() + a.slice(1) + ' ' + Math.floor(Math.random() * 90 + 10); };

let socket = null;
let pc = null;
let localStream = null;
let previewStream = null;
let audioCtx = null;
const tiles = new Map(); // participant id → {el, video, stream, analyser, name}
const meters = new Set(); // {analyser, data, onLevel}

function status(text) { $('status').textContent = text; }
function showError(text) { const e = $('error'); e.textContent = text; e.hidden = !text; }
function log(event, detail) { hooks.events.push({ t: Date.now(), event, detail }); }

// ------------------------------------------------------------------ audio levels
function ctx() {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  return audioCtx;
}
function levelMeter(stream, onLevel) {
  if (!stream.getAudioTracks().length) return null;
  const source = ctx().createMediaStreamSource(stream);
  const analyser = ctx().createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const meter = { analyser, source, data: new Uint8Array(analyser.fftSize), onLevel };
  meters.add(meter);
  return meter;
}
function dropMeter(meter) { if (meter) { meters.delete(meter); try { meter.source.disconnect(); } catch {} } }
setInterval(() => {
  for (const m of meters) {
    m.analyser.getByteTimeDomainData(m.data);
    let sum = 0;
    for (const v of m.data) { const x = (v - 128) / 128; sum += x * x; }
    m.onLevel(Math.sqrt(sum / m.data.length));
  }
}, 100);

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

// URL parameters `res=WxH` and `fps=N` preset the camera (tests keep fake-video load modest).
const urlParams = new URLSearchParams(location.search);
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

function stopStream(stream) { stream?.getTracks().forEach((t) => t.stop()); }

async function initLobby() {
  const params = urlParams;
  $('room').value = params.get('room') || '';
  $('name').value = params.get('name') || localStorage.getItem('sfu-name') || '';
  const res = params.get('res');
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

// ------------------------------------------------------------------ call
function layout() {
  $('grid').dataset.count = String(1 + tiles.size);
  $('count').textContent = String(1 + tiles.size);
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
    const caption = document.createElement('figcaption');
    caption.innerHTML = '<span class="speaking-dot"></span><span class="tile-name"></span><span class="muted-mic"><svg><use href="#i-mic-off"/></svg></span>';
    el.append(video, avatar, caption);
    $('grid').append(el);
    tile = { el, video, stream: new MediaStream(), meter: null, name: '' };
    video.srcObject = tile.stream;
    // Time to first picture, per remote participant (read by tests and handy in devtools).
    video.requestVideoFrameCallback?.(() => log('first-frame', info.id));
    tiles.set(info.id, tile);
    layout();
  }
  tile.name = info.name;
  tile.el.querySelector('.tile-name').textContent = info.name;
  tile.el.querySelector('.avatar').textContent = initials(info.name);
  tile.el.classList.toggle('mic-off', info.audio === false);
  return tile;
}

function removeTile(id) {
  const tile = tiles.get(id);
  if (!tile) return;
  dropMeter(tile.meter);
  tile.el.remove();
  tiles.delete(id);
  layout();
}

function onParticipants(list) {
  hooks.participants = list;
  log('participants', list.map((p) => p.id));
  const others = list.filter((p) => p.id !== hooks.id);
  for (const p of others) ensureTile(p);
  for (const id of [...tiles.keys()]) if (!others.some((p) => p.id === id)) removeTile(id);
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
    tile.meter = levelMeter(new MediaStream([track]), (level) => tile.el.classList.toggle('speaking', level > 0.02));
  }
  tile.video.play().catch(() => {});
  log('track', { id, kind: track.kind });
}

function ackOrTimeout(event, data, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${event}: no answer from the server`)), ms);
    socket.emit(event, data, (reply) => { clearTimeout(timer); resolve(reply); });
  });
}

async function join() {
  showError('');
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  if (!/^[A-Za-z0-9_.~-]{1,64}$/.test(room)) return showError('Room ID: 1-64 letters, digits or _ . ~ -');
  if (!name) return showError('Please enter your name (or press Random).');
  localStorage.setItem('sfu-name', name);
  log('join', room);
  $('join').disabled = true;
  status('Connecting…');
  try {
    await previewReady;
    localStream = previewStream;
    previewStream = null;
    dropMeter(previewMeter);
    pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    hooks.pc = pc;
    pc.ontrack = onTrack;
    pc.onconnectionstatechange = () => {
      log('connection', pc.connectionState);
      if (pc.connectionState === 'connected') status(`Connected · ${room}`);
      if (pc.connectionState === 'failed') status('Media connection failed');
    };
    if (localStream) {
      for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
    }
    // A viewer (no devices) still needs m-lines to receive on; the SFU fills them.
    if (!localStream?.getAudioTracks().length) pc.addTransceiver('audio', { direction: 'recvonly' });
    if (!localStream?.getVideoTracks().length) pc.addTransceiver('video', { direction: 'recvonly' });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);

    socket = io('/sfu', { transports: ['websocket'], reconnection: false });
    socket.on('update', onUpdate);
    socket.on('participants', onParticipants);
    socket.on('sfu_error', (e) => { log('sfu_error', e); if (e.code === 'media_failed') { status('Media connection lost'); } });
    socket.on('disconnect', (reason) => { log('disconnect', reason); if (hooks.id) { status('Disconnected from the server'); } });
    hooks.joinedAt = performance.now();
    const reply = await ackOrTimeout('join', { room, name, sdp: pc.localDescription.sdp });
    if (reply?.error) throw new Error(reply.error.code === 'full' ? `Room "${room}" is full.` : reply.error.message);
    hooks.id = reply.id;
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
    enterCall(room, name);
    onParticipants(reply.participants);
    log('joined', reply.id);
  } catch (err) {
    cleanup();
    showError(err.message || String(err));
    status('Ready');
  } finally {
    $('join').disabled = false;
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
  if (localStream) localMeter = levelMeter(localStream, (level) => $('local-tile').classList.toggle('speaking', level > 0.02 && localStream.getAudioTracks().some((t) => t.enabled)));
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

function cleanup() {
  socket?.off();
  socket?.disconnect();
  socket = null;
  pc?.close();
  pc = null;
  hooks.pc = null;
  hooks.id = null;
  dropMeter(localMeter);
  for (const id of [...tiles.keys()]) removeTile(id);
  stopStream(localStream);
  localStream = null;
}

async function leave() {
  log('leave');
  if (socket) await ackOrTimeout('leave', {}, 2000).catch(() => {});
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
