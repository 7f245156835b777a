// Recording a call in the browser (the course's way, seed 004; docs/recording.md): what the
// participant sees — the call's videos composed on a canvas, every voice mixed with WebAudio
// — recorded by MediaRecorder and uploaded a chunk a second while recording (lib/recorder.js
// keeps the queue). Stopping waits until the server has every chunk, then asks it to finish
// the file (a WebM is made seekable there) and shows a link to play it back.
//
// Test hooks: [data-testid] recording-chip, recording-link; window.__rtc.recording =
// {id, type, state: 'starting'|'recording'|'finishing'|'finished'|'failed', recorded, stored,
// bytes, seconds, error}.

import { duration } from './format.js';
import { allStored, chunkRecorded, createUpload, nextToSend, pickType, refused, retryDelay, sendFailed, serverHas } from './recorder.js';

const WIDTH = 1280;
const HEIGHT = 720;
const FPS = 30;
const CHUNK_MS = 1000;

/**
 * @param {object} options
 * @param {object} options.hooks the page's window.__rtc
 * @param {() => HTMLVideoElement[]} options.videos the call's videos, the main one first
 * @param {'pip' | 'grid'} [options.layout] 1-to-1: the first video full, the second small;
 *   rooms: a grid
 * @param {() => string | null} [options.room]
 * @param {string | null} [options.token] the page's join token, when the server wants one
 * @param {(text: string) => void} [options.onError]
 */
export function createCallRecorder({ hooks, videos, layout = 'grid', room = () => null, token = null, onError = () => {} }) {
  const chip = document.createElement('div');
  chip.className = 'recording-chip';
  chip.dataset.testid = 'recording-chip';
  chip.hidden = true;
  document.body.append(chip);
  let session = null;
  let starting = null;

  /** Starts recording; a second click while starting waits for the first. */
  function start() {
    starting ??= begin().finally(() => { starting = null; });
    return starting;
  }

  async function begin() {
    if (session) return;
    const type = pickType((t) => MediaRecorder.isTypeSupported(t), new URLSearchParams(location.search).get('record'));
    if (!type) throw new Error('this browser cannot record video');
    const state = { type, state: 'starting', recorded: 0, stored: 0, bytes: 0, seconds: 0, error: null, id: null };
    hooks.recording = state;
    // The join token (when the server wants one) starts it; its upload key does the rest,
    // so an upload outlives the token.
    const auth = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetch('/api/recordings', { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ mime: type, room: room() }) });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      state.state = 'failed';
      throw new Error(body.error?.message ?? `the server refused to record (HTTP ${res.status})`);
    }
    state.id = body.id;
    session = compose(type, state, { 'x-upload-key': body.upload_key });
    showChip();
  }

  /** The canvas, the audio mix, the recorder and the upload of one recording. */
  function compose(type, state, headers) {
    const canvas = Object.assign(document.createElement('canvas'), { width: WIDTH, height: HEIGHT });
    const g = canvas.getContext('2d');
    const audio = new AudioContext();
    // Created after an await of the click's handler: resume in case the autoplay policy
    // started it suspended (it would record silence).
    audio.resume().catch(() => {});
    const mix = audio.createMediaStreamDestination();
    const mixed = new Map(); // audio track id → source node
    const draw = () => {
      g.fillStyle = '#0b0e14';
      g.fillRect(0, 0, WIDTH, HEIGHT);
      const shown = videos().filter((v) => v && v.videoWidth > 0);
      for (const [video, [x, y, w, h]] of shown.map((v, i) => [v, place(i, shown.length)])) fit(g, video, x, y, w, h);
      for (const stream of videos().map((v) => v?.srcObject).filter(Boolean)) {
        for (const track of stream.getAudioTracks()) {
          if (mixed.has(track.id) || track.readyState !== 'live') continue;
          const source = audio.createMediaStreamSource(new MediaStream([track]));
          source.connect(mix);
          mixed.set(track.id, source);
        }
      }
    };
    const place = (i, n) => {
      if (layout === 'pip' && n === 2) return i === 0 ? [0, 0, WIDTH, HEIGHT] : [WIDTH - 336, HEIGHT - 204, 320, 180];
      const cols = Math.ceil(Math.sqrt(n));
      const rows = Math.ceil(n / cols);
      const w = WIDTH / cols;
      const h = HEIGHT / rows;
      return [(i % cols) * w, Math.floor(i / cols) * h, w, h];
    };
    draw();
    const drawTimer = setInterval(draw, 1000 / FPS);
    const stream = new MediaStream([...canvas.captureStream(FPS).getVideoTracks(), ...mix.stream.getAudioTracks()]);
    // A keyframe a second: Chromium's MP4 writer emits a fragment per keyframe, so without
    // this a chunk (and the upload) could wait minutes; WebM clusters start at them too.
    const recorder = new MediaRecorder(stream, { mimeType: type, videoBitsPerSecond: 2_500_000, audioBitsPerSecond: 128_000, videoKeyFrameIntervalDuration: CHUNK_MS });
    const blobs = new Map();
    let upload = createUpload();
    let pumping = null;
    const startedAt = performance.now();
    const update = (next) => {
      upload = next;
      for (const seq of blobs.keys()) if (seq < upload.stored) blobs.delete(seq);
      Object.assign(state, { recorded: upload.recorded, stored: upload.stored, bytes: upload.bytes, error: upload.error });
    };
    const pump = () => {
      pumping ??= (async () => {
        for (let chunk = nextToSend(upload); chunk; chunk = nextToSend(upload)) {
          await new Promise((r) => setTimeout(r, retryDelay(upload.failures)));
          try {
            const res = await fetch(`/api/recordings/${state.id}/chunks/${chunk.seq}`, { method: 'PUT', headers, body: blobs.get(chunk.seq) });
            const body = await res.json().catch(() => ({}));
            if (res.ok) update(serverHas(upload, body.next));
            else if (res.status === 409 && Number.isInteger(body.error?.next)) update(serverHas(upload, body.error.next));
            else if (res.status >= 500 && res.status !== 507) update(sendFailed(upload)); // 503: the disk, for now
            else {
              update(refused(upload, body.error?.message ?? `HTTP ${res.status}`));
              onError(`Recording stopped: ${upload.error}`);
              stop().catch(() => {});
            }
          } catch {
            update(sendFailed(upload)); // offline or the server restarting: try again
          }
        }
      })().finally(() => {
        pumping = null;
        if (nextToSend(upload)) pump();
      });
      return pumping;
    };
    recorder.ondataavailable = (event) => {
      if (!event.data.size) return;
      blobs.set(upload.recorded, event.data);
      update(chunkRecorded(upload, event.data.size));
      pump();
    };
    const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
    recorder.start(CHUNK_MS);
    state.state = 'recording';
    const tick = setInterval(() => {
      state.seconds = (performance.now() - startedAt) / 1000;
      showChip();
    }, 500);
    return {
      state,
      headers,
      async finish() {
        if (recorder.state !== 'inactive') recorder.stop();
        await stopped;
        state.seconds = (performance.now() - startedAt) / 1000;
        clearInterval(drawTimer);
        clearInterval(tick);
        stream.getTracks().forEach((t) => t.stop());
        audio.close().catch(() => {});
        // Every chunk must be on the server before it can finish the file.
        while (!allStored(upload) && !upload.error) {
          showChip(state); // "Saving recording… stored/recorded" as it goes
          await pump();
          await new Promise((r) => setTimeout(r, 50));
        }
        return upload;
      },
    };
  }

  async function stop() {
    const current = session;
    if (!current) return null;
    session = null;
    const state = current.state;
    state.state = 'finishing';
    showChip(state);
    const upload = await current.finish();
    if (upload.stored === 0) {
      state.state = 'failed';
      showChip(state);
      return null;
    }
    // Stopped early by a refusal or not: what the server has becomes the recording.
    const res = await fetch(`/api/recordings/${state.id}/finish`, { method: 'POST', headers: current.headers });
    const meta = await res.json().catch(() => ({}));
    state.state = res.ok ? 'finished' : 'failed';
    if (!res.ok) onError(`Recording could not be finished: ${meta.error?.message ?? res.status}`);
    showChip(state);
    return res.ok ? meta : null;
  }

  function showChip(state = session?.state) {
    if (!state) return;
    chip.hidden = false;
    chip.dataset.state = state.state;
    if (state.state === 'recording') chip.textContent = `● REC ${duration(state.seconds)}`;
    else if (state.state === 'finishing') chip.textContent = `Saving recording… ${state.stored}/${state.recorded}`;
    else if (state.state === 'failed') chip.textContent = `Recording failed${state.error ? `: ${state.error}` : ''}`;
    else if (state.state === 'finished') {
      chip.textContent = state.error ? `Recording stopped early (${state.error}); saved what was uploaded · ` : 'Recording saved · ';
      const link = Object.assign(document.createElement('a'), { href: `/recording.html?id=${state.id}`, target: '_blank', textContent: 'Play it back' });
      link.dataset.testid = 'recording-link';
      chip.append(link);
    }
  }

  return { start, stop, isRecording: () => !!session };
}

/** Draws `video` into the box, letterboxed, keeping its aspect ratio. */
function fit(g, video, x, y, w, h) {
  const scale = Math.min(w / video.videoWidth, h / video.videoHeight);
  const dw = video.videoWidth * scale;
  const dh = video.videoHeight * scale;
  g.drawImage(video, x + (w - dw) / 2, y + (h - dh) / 2, dw, dh);
}
