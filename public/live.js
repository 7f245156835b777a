// The live viewer page (docs/live.md): `live.html?k=<session key>` shows every speaker of an
// SFU room on air, one hls.js player each in low-latency mode (Safari's own player where
// Media Source Extensions are missing). No account: the key in the address is the access.
//
// The session's streams.json says who is streamed; it is polled, players come and go.

import Hls from '/vendor/hls.mjs';
import { percentiles, playbackSupport, streamChanges } from './lib/live.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
/** Until a first stream shows, the session is asked more often: its streams are starting. */
const FIRST_POLL_MS = 300;
const params = new URLSearchParams(location.search);
const key = params.get('k') ?? '';
// `&debug`: hls.js logs what it does to the console.
const debug = params.has('debug');
const base = `/live/${encodeURIComponent(key)}/`;

// For tests and the curious: players by participant, and what they measured.
const hooks = { openedAt: performance.now(), players: new Map(), latencies: [], errors: [] };
window.__live = hooks;

let muted = true;
const support = playbackSupport({
  canMse: Hls.isSupported(),
  canNative: document.createElement('video').canPlayType('application/vnd.apple.mpegurl') !== '',
  canH264Opus: globalThis.MediaSource?.isTypeSupported?.('video/mp4; codecs="avc1.42e01f,opus"') ?? false,
});

function showError(text) {
  $('error').textContent = text;
  $('error').hidden = false;
}

function addPlayer(stream) {
  const figure = document.createElement('figure');
  const video = Object.assign(document.createElement('video'), { autoplay: true, muted, playsInline: true });
  video.dataset.participant = stream.participant;
  const caption = document.createElement('figcaption');
  caption.textContent = stream.name;
  figure.append(video, caption);
  $('stage').append(figure);
  const url = base + stream.playlist;
  const player = { figure, video, hls: null, firstFrameAt: null, stalls: 0, waiting: false, steps: [] };
  video.addEventListener('playing', () => {
    if (player.firstFrameAt === null) player.steps.push(`${Math.round(performance.now() - hooks.openedAt)} playing at ${video.currentTime.toFixed(2)}`);
    player.firstFrameAt ??= performance.now();
    player.waiting = false;
  });
  // A stall: the player ran out of media after it started.
  video.addEventListener('waiting', () => {
    if (player.firstFrameAt !== null && !player.waiting) player.stalls += 1;
    player.waiting = true;
  });
  if (support.how === 'hls.js') {
    // Low-latency mode: blocking playlist reloads and parts, aiming at the playlist's
    // PART-HOLD-BACK behind the live edge (setting liveSyncDuration* would override that),
    // catching up by playing up to 1.5x faster after a stall.
    const hls = new Hls({ lowLatencyMode: true, backBufferLength: 10, maxLiveSyncPlaybackRate: 1.5, debug });
    // The first steps of each player, timed from the page's opening (start-up, when slow).
    for (const name of ['MANIFEST_LOADED', 'LEVEL_LOADED', 'FRAG_LOADING', 'FRAG_LOADED', 'BUFFER_APPENDED', 'FRAG_BUFFERED']) {
      hls.on(Hls.Events[name], (_, data) => {
        if (player.steps.length < 24) player.steps.push(`${Math.round(performance.now() - hooks.openedAt)} ${name} ${data?.frag ? `${data.frag.sn}${data.part ? `.${data.part.index}` : ''}` : ''}`);
      });
    }
    hls.on(Hls.Events.ERROR, (_, data) => {
      hooks.errors.push({ participant: stream.participant, type: data.type, details: data.details, fatal: data.fatal });
      if (data.fatal && data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
      else if (data.fatal && data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    player.hls = hls;
  } else {
    video.src = url;
  }
  video.play().catch(() => {});
  hooks.players.set(stream.participant, player);
}

function removePlayer(id) {
  const player = hooks.players.get(id);
  player?.hls?.destroy();
  player?.figure.remove();
  hooks.players.delete(id);
}

async function poll() {
  let session;
  try {
    const response = await fetch(`${base}streams.json`, { cache: 'no-store' });
    if (response.status === 404) {
      showError('No such live stream: it has ended, or the link is wrong.');
      return false;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    session = await response.json();
  } catch (err) {
    showError(`Cannot reach the stream: ${err.message}`);
    return true;
  }
  $('error').hidden = true;
  $('room').textContent = session.room ?? '';
  $('on-air').hidden = !session.on;
  const { add, remove } = streamChanges([...hooks.players.keys()], session.streams);
  remove.forEach(removePlayer);
  add.forEach(addPlayer);
  $('waiting').hidden = hooks.players.size > 0;
  if (!session.on && hooks.players.size === 0) {
    $('waiting').textContent = 'The live stream has ended.';
    $('waiting').hidden = false;
    return false;
  }
  return true;
}

// How far behind the capture each player shows: now minus the program date-time (the
// senders' capture clock) of the frame on screen.
function measureLatency() {
  for (const player of hooks.players.values()) {
    const date = player.hls?.playingDate;
    if (date && !player.video.paused) hooks.latencies.push(Date.now() - date.getTime());
  }
  hooks.latencies.splice(0, Math.max(0, hooks.latencies.length - 600));
  const figures = percentiles(hooks.latencies.slice(-60));
  if (figures) $('latency').textContent = `behind the speakers: ${(figures.p50 / 1000).toFixed(2)} s`;
}

$('unmute').onclick = () => {
  muted = !muted;
  for (const player of hooks.players.values()) player.video.muted = muted;
  $('unmute').textContent = muted ? 'Unmute' : 'Mute';
};

if (!/^[0-9a-f]{32}$/.test(key)) {
  showError('This address has no live stream key (k=…): ask for the viewers\u2019 link again.');
} else if (!support.ok) {
  showError(support.message);
} else {
  (async () => {
    while (await poll()) await new Promise((resolve) => setTimeout(resolve, hooks.players.size ? POLL_MS : FIRST_POLL_MS));
  })();
  setInterval(measureLatency, 500);
}
