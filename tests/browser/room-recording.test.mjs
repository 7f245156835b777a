// Recording SFU rooms on the server (docs/recording.md, "Rooms recorded by the server"), in
// real Chromium. Ann's fake camera flashes white and her fake microphone beeps once a second;
// Bob and Cy have Chromium's default fake devices. Ann starts the room's recording with the
// page's button: every page shows the REC chip. After 20 s she stops it. The server's files
// (one WebM per participant, from the RTP it forwards, no transcoding) must be valid to
// Debian's ffprobe/ffmpeg and as long as what was recorded, and in Ann's file each beep must
// sit on its flash as her browser captured them, at the start and at the end
// (MAX_AV_OFFSET_MS). Chromium's fake devices start their files up to ~130 ms apart, so the
// reference is Chromium's own capture time of each flash (requestVideoFrameCallback's
// captureTime on her camera) and of each beep (the timestamp of the audio data that holds its
// first sample, through a MediaStreamTrackProcessor on her microphone), both on her page's
// clock, matched to the file's flashes and beeps by the wall-clock time of the file's start.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { joinSfuRoom, launchChromium, until } from '../lib/browser.mjs';
import { checkMediaFile, flashAndBeep, flashBeepOffsets, median } from '../lib/media-file.mjs';
import { OPERATOR_TOKEN, operatorHeaders, startServer } from '../lib/server.mjs';

const WAIT_MS = 30_000;
const PAGE = '/sfu.html?res=320x240&fps=15';
/** How far audio may sit from video in a participant's file, against the capture (issue 11). */
const MAX_AV_OFFSET_MS = 40;
/** How much that offset may change from the start of a 20 s file to its end. */
const MAX_AV_DRIFT_MS = 20;

let server;
let media;
let annBrowser;
let bobBrowser;
let cyBrowser;
const pageErrors = [];

before(async () => {
  media = mkdtempSync(join(tmpdir(), 'room-recording-media-'));
  // Longer than the test: a looping fake camera adds a frame at each loop and drifts.
  const files = flashAndBeep(media, { seconds: 40 });
  server = await startServer();
  annBrowser = await launchChromium([`--use-file-for-fake-video-capture=${files.video}`, `--use-file-for-fake-audio-capture=${files.audio}`]);
  bobBrowser = await launchChromium();
  cyBrowser = await launchChromium();
});

after(async () => {
  await annBrowser?.close().catch(() => {});
  await bobBrowser?.close().catch(() => {});
  await cyBrowser?.close().catch(() => {});
  await server?.stop();
  rmSync(media, { recursive: true, force: true });
});

const chipShown = (page) => page.getByTestId('room-recording').isVisible();

/** Ann and Bob (and Cy with `withCy`) join `room` on `target` (a started server) and see each other. */
async function meet(target, room, { withCy = false, page = PAGE } = {}) {
  const url = `${target.url}${page}`;
  const ann = await joinSfuRoom(annBrowser, url, { room, name: 'Ann' });
  const bob = await joinSfuRoom(bobBrowser, url, { room, name: 'Bob' });
  const cy = withCy ? await joinSfuRoom(cyBrowser, url, { room, name: 'Cy' }) : null;
  const pages = [ann, bob, cy].filter(Boolean);
  for (const page of pages) page.on('pageerror', (e) => pageErrors.push(`${page.label}: ${e.message}`));
  await sleep(2000);
  return {
    ann,
    bob,
    cy,
    pages,
    leave: async () => {
      for (const page of pages) await page.context().close();
    },
  };
}

/** Ann starts the room's recording with the page's button; resolves (the time) once Bob's page says so. */
async function startRecording({ ann, bob }) {
  await ann.getByTestId('record-room').click();
  await until('the recording on', async () => (await bob.evaluate(() => window.__rtc.roomRecording))?.on, WAIT_MS);
  return Date.now();
}

/** The room's recording session on `target` once `done(manifest)` holds: its manifest, `path` its directory. */
function finishedSession(target, room, done) {
  const dir = join(target.recordingsDir, 'rooms', room);
  return until('the recording session done', async () => {
    const [session] = existsSync(dir) ? readdirSync(dir) : [];
    if (!session) return null;
    const manifest = JSON.parse(readFileSync(join(dir, session, 'manifest.json'), 'utf8'));
    return done(manifest) ? { ...manifest, path: join(dir, session) } : null;
  }, WAIT_MS);
}

const allFinished = (count) => (manifest) => manifest.files.length >= count && manifest.files.every((f) => f.finished);

/**
 * Watches `page`'s own camera and microphone: when Chromium captured each flash (the first
 * white frame) and each beep (its first sample), in ms on the page's performance clock.
 */
function watchCapture(page) {
  return page.evaluate(() => {
    const stream = document.getElementById('local-video').srcObject;
    const capture = (window.__capture = { flashes: [], beeps: [] });
    const video = Object.assign(document.createElement('video'), { muted: true, srcObject: new MediaStream([stream.getVideoTracks()[0].clone()]) });
    video.play();
    const canvas = Object.assign(document.createElement('canvas'), { width: 8, height: 8 });
    const g = canvas.getContext('2d', { willReadFrequently: true });
    let white = false;
    const frame = (now, meta) => {
      g.drawImage(video, 0, 0, 8, 8);
      const px = g.getImageData(0, 0, 8, 8).data;
      let sum = 0;
      for (let i = 0; i < px.length; i += 4) sum += px[i];
      const bright = sum / 64 > 128;
      if (bright && !white) capture.flashes.push(meta.captureTime);
      white = bright;
      video.requestVideoFrameCallback(frame);
    };
    video.requestVideoFrameCallback(frame);
    const reader = new MediaStreamTrackProcessor({ track: stream.getAudioTracks()[0].clone() }).readable.getReader();
    let loud = false;
    (async () => {
      for (;;) {
        const { value: data, done } = await reader.read();
        if (done) return;
        const samples = new Float32Array(data.numberOfFrames);
        data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
        const first = samples.findIndex((x) => Math.abs(x) > 0.03);
        // AudioData timestamps: µs of capture on the performance clock.
        if (first >= 0 && !loud) capture.beeps.push((data.timestamp + (first / data.sampleRate) * 1e6) / 1000);
        loud = first >= 0;
        data.close();
      }
    })();
  });
}

/** What `watchCapture` saw, in Unix ms. */
async function captured(page) {
  const { flashes, beeps, origin } = await page.evaluate(() => ({ ...window.__capture, origin: performance.timeOrigin }));
  return { flashes: flashes.map((t) => origin + t), beeps: beeps.map((t) => origin + t) };
}

describe('SFU rooms recorded by the server', { timeout: 300_000 }, () => {
  it('three participants, one seekable WebM each, audio on video as captured from start to end, everyone told', async (t) => {
    const room = await meet(server, 'rec', { withCy: true });
    const { ann, bob, pages } = room;
    assert.equal(await chipShown(bob), false, 'no chip before the recording');
    await watchCapture(ann);
    const started = await startRecording(room);
    await until('every page shows the REC chip', async () => (await Promise.all(pages.map(chipShown))).every(Boolean), WAIT_MS);
    const state = await bob.evaluate(() => window.__rtc.roomRecording);
    assert.equal(state.by, 'Ann', JSON.stringify(state));
    assert.equal(await ann.getByTestId('record-room').getAttribute('aria-pressed'), 'true');
    await sleep(20_000);
    await ann.getByTestId('record-room').click();
    const seconds = (Date.now() - started) / 1000;
    const capture = await captured(ann);
    await until('the chips go', async () => (await Promise.all(pages.map(chipShown))).every((shown) => !shown), WAIT_MS);
    const stopped = await bob.evaluate(() => window.__rtc.roomRecording);
    assert.equal(stopped.reason, 'stopped');

    const manifest = await finishedSession(server, 'rec', allFinished(3));
    assert.equal(manifest.files.length, 3);
    assert.deepEqual(manifest.files.map((f) => f.name).sort(), ['Ann', 'Bob', 'Cy']);
    assert.equal(manifest.started_by, 'Ann');
    assert.equal(manifest.stop_reason, 'stopped');
    t.diagnostic(`manifest: ${JSON.stringify(manifest.files.map(({ name, video, audio, duration_ms, width, height, video_frames, audio_frames, video_holes, audio_transit_ms, video_transit_ms }) => ({ name, video, audio, duration_ms, width, height, video_frames, audio_frames, video_holes, audio_transit_ms, video_transit_ms })))}`);
    for (const file of manifest.files) {
      assert.deepEqual([file.video, file.audio], ['vp8', 'opus'], JSON.stringify(file));
      // The file starts at the first keyframe after the start (asked for at once).
      const figures = checkMediaFile(join(manifest.path, file.file), { seconds, tolerance: 1 });
      t.diagnostic(`${file.name}: ${figures.format}, ${figures.codecs}, ${figures.width}x${figures.height}, ${figures.duration} s of ${seconds.toFixed(1)} s`);
      assert.equal(`${figures.width}x${figures.height}`, '320x240');
    }
    const annFile = manifest.files.find((f) => f.name === 'Ann');
    const file = flashBeepOffsets(join(manifest.path, annFile.file));
    // The file's times on the wall clock: its time 0 is `starts_at` (the sender's reports).
    const fileFlashes = file.flashes.map((s) => annFile.starts_at + s * 1000);
    const fileBeeps = file.beeps.map((s) => annFile.starts_at + s * 1000);
    const nearest = (list, t) => list.reduce((best, x) => (Math.abs(x - t) < Math.abs(best - t) ? x : best), Infinity);
    const beeps = fileBeeps
      .map((beep) => {
        const flash = nearest(fileFlashes, beep);
        const capturedBeep = nearest(capture.beeps, beep);
        const capturedFlash = nearest(capture.flashes, capturedBeep);
        return { audio: beep - capturedBeep, video: flash - capturedFlash, av: Math.round((beep - flash) - (capturedBeep - capturedFlash)) };
      })
      .filter((b) => Math.abs(b.audio) < 300 && Math.abs(b.av) < 500);
    t.diagnostic(`each beep, audio against video in the file minus as captured: ${JSON.stringify(beeps.map((b) => b.av))} ms; the file's times against the capture: audio ${Math.round(median(beeps.map((b) => b.audio)))} ms, video ${Math.round(median(beeps.map((b) => b.video)))} ms`);
    assert.ok(beeps.length >= 16, `beeps on flashes found over 20 s: ${JSON.stringify({ file, capture, beeps })}`);
    const atStart = median(beeps.slice(0, 4).map((b) => b.av));
    const atEnd = median(beeps.slice(-4).map((b) => b.av));
    t.diagnostic(`audio against video, from the capture: ${atStart} ms at the start, ${atEnd} ms at the end`);
    for (const [when, ms] of [['start', atStart], ['end', atEnd]]) assert.ok(Math.abs(ms) <= MAX_AV_OFFSET_MS, `audio ${ms} ms off video at the ${when}, against the capture`);
    assert.ok(Math.abs(atEnd - atStart) <= MAX_AV_DRIFT_MS, `audio drifts ${atEnd - atStart} ms against video over the file`);
    await room.leave();
  });

  it('a full disk stops the recording with a reason, never the call', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('mounting a tiny tmpfs needs root (the test namespace)');
    // The recordings directory on a 256 KiB tmpfs: full within seconds of two 320×240 videos.
    const dir = mkdtempSync(join(tmpdir(), 'room-recording-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]);
    const small = await startServer({ recordingsDir: dir });
    try {
      const room = await meet(small, 'full');
      const { ann, bob } = room;
      await ann.getByTestId('record-room').click();
      const stopped = await until('the recording stops for lack of space', async () => {
        const state = await bob.evaluate(() => window.__rtc.roomRecording);
        return state && !state.on && state.reason ? state : null;
      }, 60_000);
      assert.equal(stopped.reason, 'storage_failed', JSON.stringify(stopped));
      assert.equal(await chipShown(ann), false);
      const decoded = () => bob.evaluate(async () => {
        let frames = 0;
        (await window.__rtc.pc.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded ?? 0;
        });
        return frames;
      });
      const before = await decoded();
      await sleep(2000);
      const after = await decoded();
      t.diagnostic(`stopped: ${JSON.stringify(stopped)}; Bob decoded ${after - before} frames of Ann's video in the 2 s after`);
      assert.ok(after - before >= 15, `the call goes on: ${after - before} frames in 2 s`);
      await room.leave();
    } finally {
      await small.stop();
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the operator lists the room recordings and plays one from its signed link', async (t) => {
    // The session the first scenario recorded.
    const unsigned = await fetch(`${server.url}/api/room-recordings`);
    assert.equal(unsigned.status, 401, 'operators only');
    const { sessions } = await server.operator('/api/room-recordings');
    const session = sessions.find((s) => s.room === 'rec');
    assert.ok(session, JSON.stringify(sessions));
    const ann = session.files.find((f) => f.name === 'Ann');
    assert.match(ann.url, /^\/api\/room-recordings\/rec\/\d{8}T\d{6}Z-[0-9a-f]{6}\/Ann-p[0-9a-f]+\.webm\?expires=\d+&sig=[0-9a-f]{64}$/);
    assert.equal(ann.bytes, statSync(join(server.recordingsDir, 'rooms', session.dir, ann.file)).size);
    const ranged = await fetch(`${server.url}${ann.url}`, { headers: { range: 'bytes=100-199' } });
    assert.equal(ranged.status, 206, 'Range requests, for seeking');
    assert.equal((await ranged.arrayBuffer()).byteLength, 100);
    assert.equal(ranged.headers.get('content-type'), 'video/webm');
    const refused = {
      'no link': ann.url.split('?')[0],
      'another file': ann.url.replace(/Ann-p[0-9a-f]+/, session.files.find((f) => f.name === 'Bob').file.replace('.webm', '')),
      'a forged signature': ann.url.replace(/sig=[0-9a-f]{4}/, 'sig=0000'),
      'a later expiry': ann.url.replace(/expires=(\d+)/, (_, e) => `expires=${Number(e) + 3600}`),
      'a path out of the directory': `/api/room-recordings/rec/..%2F..%2F..%2Fetc/passwd?expires=9999999999&sig=00`,
      'the manifest': ann.url.replace(/Ann-p[0-9a-f]+\.webm/, 'manifest.json'),
    };
    for (const [what, path] of Object.entries(refused)) {
      const res = await fetch(`${server.url}${path}`, { headers: operatorHeaders });
      assert.ok([403, 404].includes(res.status), `${what}: ${res.status}`);
    }

    const page = await (await bobBrowser.newContext()).newPage();
    page.on('pageerror', (e) => pageErrors.push(`operator: ${e.message}`));
    await page.goto(`${server.url}/operator.html`);
    await page.getByTestId('token').fill(OPERATOR_TOKEN);
    await page.getByTestId('sign-in').click();
    const rows = page.getByTestId('room-recordings').locator('tbody tr');
    await until('the session listed', async () => (await rows.allTextContents()).some((r) => r.includes('rec') && r.includes('Ann')), WAIT_MS);
    const row = rows.filter({ hasText: 'Cy' }).first();
    assert.equal(await row.getByTestId('play-recording').count(), 3, 'a file per participant');
    await row.getByTestId('play-recording').filter({ hasText: 'Ann' }).click();
    const player = page.getByTestId('room-recording-player');
    const playing = await until('the player plays Ann\'s file', async () => {
      const state = await player.evaluate((v) => ({ time: v.currentTime, width: v.videoWidth, duration: v.duration, error: v.error?.message ?? null }));
      return state.time > 1 ? state : null;
    }, WAIT_MS);
    t.diagnostic(`operator page plays Ann's file: ${JSON.stringify(playing)}`);
    assert.equal(playing.width, 320);
    assert.ok(Math.abs(playing.duration - ann.duration_ms / 1000) < 0.5, `a duration to seek in: ${playing.duration}`);
    await player.evaluate((v) => { v.currentTime = v.duration / 2; });
    await until('it plays on from the middle', async () => player.evaluate((v) => !v.seeking && v.currentTime > v.duration / 2 + 0.5), WAIT_MS);
    await page.context().close();
  });

  it('a room recording stops at its size cap, its files finished and playable', async (t) => {
    const config = join(media, 'capped.toml');
    writeFileSync(config, '[recordings]\nroom_max_mb = 1\n');
    const capped = await startServer({ args: ['--config', config] });
    try {
      // Three participants at 30 fps fill the 1 MiB sooner. Not larger pictures: from 480×270
      // on, pages send simulcast, and a browser short of CPU stops sending its top layer,
      // which the recorder takes (docs/recording.md).
      const room = await meet(capped, 'capped', { withCy: true, page: '/sfu.html?res=320x240&fps=30' });
      const started = await startRecording(room);
      const stopped = await until('the recording stops at its size cap', async () => {
        const state = await room.bob.evaluate(() => window.__rtc.roomRecording);
        return state && !state.on && state.reason ? state : null;
      }, 120_000);
      t.diagnostic(`stopped after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      assert.equal(stopped.reason, 'size_limit', JSON.stringify(stopped));
      const manifest = await finishedSession(capped, 'capped', (m) => m.stop_reason && allFinished(3)(m));
      assert.equal(manifest.stop_reason, 'size_limit');
      const sizes = manifest.files.map((f) => statSync(join(manifest.path, f.file)).size);
      const total = sizes.reduce((a, b) => a + b, 0);
      t.diagnostic(`stopped at ${total} bytes in ${manifest.files.map((f, i) => `${f.file} (${sizes[i]} B, ${f.duration_ms} ms)`).join(', ')}`);
      // The cap is checked after each write: a pass (50 ms) of media over it at most, plus cues.
      assert.ok(total >= 1 << 20 && total <= 1.25 * (1 << 20), `${total} bytes for a 1 MiB cap`);
      for (const file of manifest.files) checkMediaFile(join(manifest.path, file.file), { seconds: file.duration_ms / 1000, tolerance: 0.5 });
      await room.leave();
    } finally {
      await capped.stop();
    }
  });

  it('H.264 publishers are recorded as fragmented MP4, without transcoding', async (t) => {
    const config = join(media, 'h264.toml');
    writeFileSync(config, '[sfu]\ncodecs = ["opus", "h264"]\n');
    const h264 = await startServer({ args: ['--config', config] });
    try {
      const room = await meet(h264, 'avc');
      const started = await startRecording(room);
      await sleep(8000);
      await room.ann.getByTestId('record-room').click();
      const seconds = (Date.now() - started) / 1000;
      const manifest = await finishedSession(h264, 'avc', allFinished(2));
      for (const file of manifest.files) {
        assert.deepEqual([file.video, file.audio], ['h264', 'opus'], JSON.stringify(file));
        assert.match(file.file, /\.mp4$/);
        const figures = checkMediaFile(join(manifest.path, file.file), { seconds, tolerance: 1.5 });
        t.diagnostic(`${file.name}: ${figures.format}, ${figures.codecs}, ${figures.width}x${figures.height}, ${figures.duration} s of ${seconds.toFixed(1)} s`);
        assert.equal(figures.codecs, 'h264+opus');
        assert.equal(`${figures.width}x${figures.height}`, '320x240');
      }
      const annFile = manifest.files.find((f) => f.name === 'Ann');
      t.diagnostic(`beep − flash in Ann's MP4: ${JSON.stringify(flashBeepOffsets(join(manifest.path, annFile.file)).offsets)} ms`);
      await room.leave();
    } finally {
      await h264.stop();
    }
  });

  it('a long recording goes on in a new file per participant, each cut at a keyframe', async (t) => {
    const config = join(media, 'rotate.toml');
    writeFileSync(config, '[recordings]\nroom_file_seconds = 4\n');
    const rotating = await startServer({ args: ['--config', config] });
    try {
      const room = await meet(rotating, 'long');
      const started = await startRecording(room);
      await sleep(11_000);
      await room.ann.getByTestId('record-room').click();
      const seconds = (Date.now() - started) / 1000;
      const manifest = await finishedSession(rotating, 'long', (m) => m.stop_reason && allFinished(4)(m));
      for (const who of ['Ann', 'Bob']) {
        const parts = manifest.files.filter((f) => f.name === who).sort((a, b) => a.part - b.part);
        t.diagnostic(`${who}: ${parts.map((p) => `${p.file} ${p.duration_ms} ms`).join(', ')}`);
        assert.ok(parts.length >= 2, `${who}: ${parts.length} files`);
        assert.deepEqual(parts.map((p) => p.part), parts.map((_, i) => i + 1));
        for (const part of parts) {
          const path = join(manifest.path, part.file);
          checkMediaFile(path, { seconds: part.duration_ms / 1000, tolerance: 0.5 });
          const first = execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v', '-show_entries', 'packet=flags', '-of', 'csv=p=0', '-read_intervals', '%+#1', path], { encoding: 'utf8' }).trim();
          assert.match(first, /^K/, `${part.file} starts on a keyframe`);
        }
        const total = parts.reduce((sum, p) => sum + p.duration_ms, 0) / 1000;
        assert.ok(Math.abs(total - seconds) <= 1.5, `${who}: ${total} s in files of ${seconds} s recorded`);
        const starts = parts.map((p) => p.starts_at);
        assert.ok(starts.every((at, i) => i === 0 || at > starts[i - 1]), 'one after the other');
      }
      await room.leave();
    } finally {
      await rotating.stop();
    }
  });

  it('the server killed mid-recording: each file plays up to the last 2 s', async (t) => {
    const doomed = await startServer();
    try {
      const room = await meet(doomed, 'killed');
      const started = await startRecording(room);
      await sleep(8000);
      doomed.proc.kill('SIGKILL');
      const seconds = (Date.now() - started) / 1000;
      const dir = join(doomed.recordingsDir, 'rooms', 'killed');
      const [session] = readdirSync(dir).map((name) => join(dir, name));
      const files = readdirSync(session).filter((f) => f.endsWith('.webm'));
      assert.equal(files.length, 2, `${files}`);
      for (const file of files) {
        const path = join(session, file);
        // A live file: no Duration; its length is its last packet's time.
        const probe = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', path], { encoding: 'utf8' });
        assert.equal(probe.status, 0, `${file} (${statSync(path).size} bytes): ${probe.stderr.slice(0, 400)}`);
        const last = probe.stdout.trim().split('\n').map(Number).filter(Number.isFinite).reduce((a, b) => Math.max(a, b), 0);
        const decode = spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-f', 'null', '-'], { encoding: 'utf8' });
        t.diagnostic(`${file}: ${last.toFixed(2)} s kept of ${seconds.toFixed(2)} s recorded when killed`);
        assert.equal(decode.stderr.trim(), '', `decodes up to where it stops: ${decode.stderr.slice(0, 400)}`);
        assert.ok(last >= seconds - 2, `${file}: ${last} s of ${seconds} s`);
      }
      await room.leave();
    } finally {
      await doomed.stop();
    }
  });

  it('the pages had no errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
