// Recording a call in the browser (the course's way, seed 004; docs/recording.md): what the
// participant sees — the call's videos composed on a canvas, every voice mixed with WebAudio
// — recorded by MediaRecorder and uploaded a chunk a second while recording (lib/recorder.js
// keeps the queue). Stopping waits until the server has every chunk, then asks it to finish
// the file (a WebM is made seekable there) and shows a link to play it back. Every chunk is
// also kept in IndexedDB until the server has it (lib/upload-store.js): a recording cut short
// by a reload or a crash of the tab is sent on and finished by the next load of either page
// (resumeInterrupted). A Web Lock per recording keeps another tab from finishing one that is
// still being recorded.
//
// Test hooks: [data-testid] recording-chip, recording-link; window.__rtc.recording =
// {id, type, state: 'starting'|'recording'|'finishing'|'finished'|'failed', recorded, stored,
// bytes, seconds, error}; window.__rtc.resumed = [{id, state: 'finished'|'forgotten'|'failed',
// sent, duration_ms, error}] once resumeInterrupted is done.

import { duration } from './format.js';
import { allStored, chunkRecorded, createUpload, nextToSend, pickType, refused, resumePlan, retryDelay, sendFailed, serverHas } from './recorder.js';
import { openUploadStore } from './upload-store.js';

const WIDTH = 1280;
const HEIGHT = 720;
const FPS = 30;
const CHUNK_MS = 1000;
/** Tries of one request while resuming before it waits for the next load of the page. */
const RESUME_TRIES = 8;

const lockName = (id) => `rtc-call-recording-${id}`;

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
  let opened = null;
  const store = () => (opened ??= openUploadStore());

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
    const kept = await store();
    await kept.saveUpload({ id: body.id, uploadKey: body.upload_key, type, room: room(), created: Date.now() }).catch(() => {});
    const release = await holdLock(body.id);
    session = compose(type, state, { 'x-upload-key': body.upload_key }, kept, release);
    showChip();
  }

  /** The canvas, the audio mix, the recorder and the upload of one recording. */
  function compose(type, state, headers, kept, release) {
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
      if (next.stored > upload.stored) kept.dropBelow(state.id, next.stored).catch(() => {});
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
      kept.putChunk(state.id, upload.recorded, event.data).catch(() => {});
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
      kept,
      release,
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
    try {
      const upload = await current.finish();
      if (upload.stored === 0) {
        state.state = 'failed';
        showChip(state);
        await current.kept.forget(state.id).catch(() => {});
        return null;
      }
      // Stopped early by a refusal or not: what the server has becomes the recording. Unreachable
      // now: the fetch throws, the chunks stay kept and the next load finishes it.
      const res = await fetch(`/api/recordings/${state.id}/finish`, { method: 'POST', headers: current.headers });
      const meta = await res.json().catch(() => ({}));
      state.state = res.ok ? 'finished' : 'failed';
      if (!res.ok) onError(`Recording could not be finished: ${meta.error?.message ?? res.status}`);
      showChip(state);
      // A server error may pass: kept, the next load finishes it.
      if (res.status < 500) await current.kept.forget(state.id).catch(() => {});
      return res.ok ? meta : null;
    } finally {
      current.release();
    }
  }

  /**
   * Sends on and finishes the recordings an earlier load of this page (or another tab that
   * is gone) left unfinished; says so in the chip with a link to the last one saved.
   */
  async function resumeInterrupted() {
    const kept = await store();
    const results = [];
    for (const upload of await kept.uploads().catch(() => [])) {
      const resume = () => resumeOne(kept, upload).catch((error) => ({ id: upload.id, state: 'failed', error: error.message }));
      // Held by the tab still recording it: not ours to finish.
      const result = navigator.locks
        ? await navigator.locks.request(lockName(upload.id), { ifAvailable: true }, (lock) => (lock ? resume() : null))
        : await resume();
      if (result) results.push(result);
    }
    hooks.resumed = results;
    const saved = results.filter((r) => r.state === 'finished').at(-1);
    if (saved && !session) {
      const state = { id: saved.id, state: 'finished', error: null, resumed: true };
      showChip(state);
    }
    return results;
  }

  function showChip(state = session?.state) {
    if (!state) return;
    chip.hidden = false;
    chip.dataset.state = state.state;
    if (state.state === 'recording') chip.textContent = `● REC ${duration(state.seconds)}`;
    else if (state.state === 'finishing') chip.textContent = `Saving recording… ${state.stored}/${state.recorded}`;
    else if (state.state === 'failed') chip.textContent = `Recording failed${state.error ? `: ${state.error}` : ''}`;
    else if (state.state === 'finished') {
      chip.textContent = state.error
        ? `Recording stopped early (${state.error}); saved what was uploaded · `
        : state.resumed ? 'A recording cut short by a reload was saved · ' : 'Recording saved · ';
      const link = Object.assign(document.createElement('a'), { href: `/recording.html?id=${state.id}`, target: '_blank', textContent: 'Play it back' });
      link.dataset.testid = 'recording-link';
      chip.append(link);
    }
  }

  return { start, stop, resumeInterrupted, isRecording: () => !!session };
}

/** Holds the recording's Web Lock until the returned function is called. */
async function holdLock(id) {
  if (!navigator.locks) return () => {};
  let release = () => {};
  await new Promise((held) => {
    navigator.locks.request(lockName(id), () => {
      held();
      return new Promise((done) => { release = done; });
    });
  });
  return release;
}

/** A recording left unfinished: its kept chunks from where the server is, then finished. */
async function resumeOne(kept, upload) {
  const headers = { 'x-upload-key': upload.uploadKey };
  const status = await retrying(() => fetch(`/api/recordings/${upload.id}`));
  // Anything but an answer or "unknown" (the server unwell): kept for the next load.
  if (!status.ok && status.status !== 404) throw new Error(`the server answered HTTP ${status.status}`);
  const server = status.ok ? await status.json() : null;
  const chunks = await kept.chunks(upload.id);
  const plan = resumePlan(server, chunks.map((c) => c.seq));
  if (plan.action === 'forget') {
    await kept.forget(upload.id);
    return { id: upload.id, state: 'forgotten', sent: 0 };
  }
  const blobs = new Map(chunks.map((c) => [c.seq, c.blob]));
  let sent = 0;
  for (const seq of plan.send) {
    const res = await retrying(() => fetch(`/api/recordings/${upload.id}/chunks/${seq}`, { method: 'PUT', headers, body: blobs.get(seq) }));
    const body = await res.json().catch(() => ({}));
    // 409 out_of_order says where the server is too; any other refusal is final: finish
    // with what it has.
    const next = res.ok ? body.next : res.status === 409 ? body.error?.next : undefined;
    if (!Number.isInteger(next)) break;
    if (res.ok) sent += 1;
    await kept.dropBelow(upload.id, next).catch(() => {});
    if (next <= seq) break; // the server lacks an earlier chunk: nothing more can follow
  }
  const res = await retrying(() => fetch(`/api/recordings/${upload.id}/finish`, { method: 'POST', headers }));
  if (res.status >= 500) throw new Error(`the server answered HTTP ${res.status}`); // kept for the next load
  const meta = await res.json().catch(() => ({}));
  await kept.forget(upload.id);
  return res.ok
    ? { id: upload.id, state: 'finished', sent, duration_ms: meta.duration_ms ?? null }
    : { id: upload.id, state: 'failed', sent, error: meta.error?.message ?? `HTTP ${res.status}` };
}

/** `request()` again while the network or the server fails (5xx), a few times; then throws. */
async function retrying(request) {
  for (let failures = 0; ; failures += 1) {
    await new Promise((r) => setTimeout(r, retryDelay(failures)));
    try {
      const res = await request();
      if (res.status < 500 || failures + 1 >= RESUME_TRIES) return res;
    } catch (error) {
      if (failures + 1 >= RESUME_TRIES) throw error;
    }
  }
}

/** Draws `video` into the box, letterboxed, keeping its aspect ratio. */
function fit(g, video, x, y, w, h) {
  const scale = Math.min(w / video.videoWidth, h / video.videoHeight);
  const dw = video.videoWidth * scale;
  const dh = video.videoHeight * scale;
  g.drawImage(video, x + (w - dw) / 2, y + (h - dh) / 2, dw, dh);
}
