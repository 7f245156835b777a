// Recording in the browser (docs/recording.md), in real Chromium: a participant records the
// call with the Record button; the page uploads a chunk a second while recording. Midway the
// uploads are cut off for a few seconds (the requests fail, as when the network drops); the
// page keeps the chunks and resumes where the server is. The server's file must then be
// valid to Debian's ffprobe/ffmpeg: a video and an audio stream, the recorded duration within
// 2 s of the page's clock (and, for WebM, the server's duration matching the file's own
// packets), decodable end to end without an error, seekable; and the playback page plays and
// seeks it.
// 1-to-1 records MP4 (Chromium's first choice), the room page WebM (`?record=webm`), which
// the server makes seekable (Chromium writes it without Duration and Cues).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { joinSfuRoom, launchChromium, until } from '../lib/browser.mjs';
import { assertMatchesPackets, checkMediaFile } from '../lib/media-file.mjs';
import { startServer } from '../lib/server.mjs';

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const WAIT_MS = 30_000;
const CHUNKS = '**/api/recordings/*/chunks/*';

let server;
let browser;
const pageErrors = [];

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

const recording = (page) => page.evaluate(() => ({ ...window.__rtc.recording }));

/** Presses the page's Record button; resolves (the time) once the page records. */
async function startRecording(page) {
  await page.getByTestId('record').click();
  await until('recording', async () => (await recording(page)).state === 'recording', WAIT_MS);
  return Date.now();
}

/**
 * Records for `seconds` with the page's Record button, cutting the uploads off for 3 s in
 * the middle; returns the page's view of the recording once it is finished.
 */
async function record(page, seconds, t) {
  const started = await startRecording(page);
  await sleep(3000);
  await page.route(CHUNKS, (route) => route.abort('internetdisconnected'));
  await sleep(3000);
  // At least two chunks must wait while offline. A MediaRecorder short of CPU (a loaded CI
  // machine: 3 chunks in 6 s) delivers them late: the outage lasts until they came, at most
  // 10 s more.
  const cut = await until('two chunks waiting while offline', async () => {
    const now = await recording(page);
    return now.recorded - now.stored >= 2 ? now : null;
  }, 10_000).catch(async (error) => assert.fail(`chunks waited while offline: ${JSON.stringify(await recording(page))} (${error.message})`));
  t.diagnostic(`uploads cut off: ${cut.recorded} chunks recorded, ${cut.stored} stored`);
  await page.unroute(CHUNKS);
  await sleep(Math.max(0, seconds * 1000 - (Date.now() - started)));
  await page.getByTestId('record').click();
  const done = await until('the recording finished', async () => {
    const r = await recording(page);
    if (r.state === 'failed') throw new Error(`failed: ${JSON.stringify(r)}`);
    return r.state === 'finished' ? r : null;
  }, WAIT_MS);
  t.diagnostic(`recorded ${done.seconds.toFixed(1)} s in ${done.recorded} chunks, ${done.bytes} bytes, ${done.type}`);
  assert.equal(done.stored, done.recorded, 'every chunk on the server');
  return done;
}

/**
 * How far the recorded media may be from the page's clock (in practice it is shorter, never
 * longer: a duplicate chunk would show in the exact byte count). The page times the
 * recording from `start()` to the `stop` event; the media lasts from MediaRecorder's first
 * frame to its last. On a starved machine MediaRecorder falls behind (a CI run: 7 chunks in
 * 12.4 s of a 1 s timeslice, 11.2 s of media). Nothing is lost: the bytes are checked
 * exactly, and the server's duration against the file's own packets.
 */
const MEDIA_VS_CLOCK_S = 2;

/** ffprobe's and ffmpeg's checks of the server's file, against what the page recorded. */
function checkFile(file, done) {
  return checkMediaFile(file, { seconds: done.seconds, tolerance: MEDIA_VS_CLOCK_S });
}

/** The playback page loads the recording with its length and seeks in it. */
async function playBack(page, duration) {
  const [player] = await Promise.all([page.context().waitForEvent('page'), page.getByTestId('recording-link').click()]);
  player.on('pageerror', (e) => pageErrors.push(`player: ${e.message}`));
  const video = player.getByTestId('player');
  await video.waitFor({ state: 'visible', timeout: WAIT_MS });
  const length = await player.waitForFunction(() => {
    const v = document.querySelector('[data-testid="player"]');
    return v.readyState >= 1 && Number.isFinite(v.duration) && v.duration > 0 ? v.duration : null;
  }, null, { timeout: WAIT_MS }).then((h) => h.jsonValue());
  assert.ok(Math.abs(length - duration) <= 1, `the player's length ${length} s`);
  const at = await player.evaluate((target) => new Promise((resolve, reject) => {
    const v = document.querySelector('[data-testid="player"]');
    v.addEventListener('seeked', () => resolve(v.currentTime), { once: true });
    v.addEventListener('error', () => reject(new Error(`media error ${v.error?.code}`)), { once: true });
    v.currentTime = target;
  }), length / 2);
  assert.ok(Math.abs(at - length / 2) < 1.5, `seeked to ${at} s of ${length} s`);
  await player.close();
}

/** How many recorded chunks the page keeps in IndexedDB (sent or not). */
const keptChunks = (page) => page.evaluate(() => new Promise((resolve) => {
  const open = indexedDB.open('rtc-call-recordings');
  open.onsuccess = () => {
    const req = open.result.transaction('chunks').objectStore('chunks').count();
    req.onsuccess = () => resolve(req.result);
  };
}));

describe('recording in the browser', { timeout: 240_000 }, () => {
  it('1-to-1: 11 s recorded as MP4, uploads resumed after an outage, file valid and seekable', async (t) => {
    const room = `rec-${process.pid}`;
    const pages = [];
    for (const name of ['A', 'B']) {
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage();
      page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
      await page.goto(`${server.url}/`, { waitUntil: 'load' });
      await page.getByTestId('room').fill(room);
      await page.getByTestId('join').click();
      pages.push(page);
    }
    const [a] = pages;
    for (const page of pages) {
      await page.waitForFunction(() => document.querySelector('[data-testid="remote-video"]')?.videoWidth > 0, null, { timeout: WAIT_MS });
    }
    const done = await record(a, 11, t);
    assert.match(done.type, /^video\/mp4/);
    const meta = await (await fetch(`${server.url}/api/recordings/${done.id}`)).json();
    assert.equal(meta.bytes, done.bytes, 'the server has exactly what was recorded: no gap, no duplicate');
    const file = join(server.recordingsDir, `${done.id}.mp4`);
    assert.equal(statSync(file).size, done.bytes);
    const figures = checkFile(file, done);
    t.diagnostic(`ffprobe: ${figures.format}, ${figures.codecs}, ${figures.duration} s, audio max ${figures.maxVolume} dB`);
    mkdirSync(ARTIFACTS, { recursive: true });
    await a.screenshot({ path: join(ARTIFACTS, 'recording-saved.png') });
    await playBack(a, figures.duration);
  });

  it('SFU room: WebM made seekable by the server', async (t) => {
    const room = `rec-sfu-${process.pid}`;
    const url = `${server.url}/sfu.html?res=320x240&fps=15&record=webm`;
    const ann = await joinSfuRoom(browser, url, { room, name: 'Ann', viewport: { width: 1280, height: 720 } });
    ann.on('pageerror', (e) => pageErrors.push(`Ann: ${e.message}`));
    await joinSfuRoom(browser, url, { room, name: 'Bob' });
    await ann.waitForFunction(() => document.querySelector('video[data-participant]')?.videoWidth > 0, null, { timeout: WAIT_MS });
    const done = await record(ann, 9, t);
    assert.match(done.type, /^video\/webm/);
    const meta = await (await fetch(`${server.url}/api/recordings/${done.id}`)).json();
    assert.equal(meta.bytes, done.bytes);
    const figures = checkFile(join(server.recordingsDir, `${done.id}.webm`), done);
    t.diagnostic(`ffprobe: ${figures.format}, ${figures.codecs}, ${figures.duration} s (${JSON.stringify(figures.span)}), audio max ${figures.maxVolume} dB; the server says ${meta.duration_ms} ms`);
    // Chromium's WebM has no duration: the server's comes from the frames it read.
    assertMatchesPackets(meta.duration_ms / 1000, figures.span, "the server's duration");
    await playBack(ann, figures.duration);
  });

  it('a reload mid-recording loses nothing recorded: the next load sends the rest and saves it', async (t) => {
    const room = `rec-reload-${process.pid}`;
    const url = `${server.url}/sfu.html?res=320x240&fps=15&record=webm`;
    const ann = await joinSfuRoom(browser, url, { room, name: 'Ann', viewport: { width: 1280, height: 720 } });
    ann.on('pageerror', (e) => pageErrors.push(`Ann: ${e.message}`));
    const bob = await joinSfuRoom(browser, url, { room, name: 'Bob' });
    await ann.waitForFunction(() => document.querySelector('video[data-participant]')?.videoWidth > 0, null, { timeout: WAIT_MS });
    const started = await startRecording(ann);
    await sleep(2000);
    // The uploads fail from here on: the chunks wait in the page (and in IndexedDB).
    await ann.route(CHUNKS, (route) => route.abort('internetdisconnected'));
    // Until three chunks wait, however late MediaRecorder hands them over on a loaded machine
    // (a CI run saw 2 in the first 6.3 s): a fixed sleep tested the machine, not the page.
    let cut;
    await until('three chunks waiting in the page', async () => {
      cut = await recording(ann);
      if (cut.recorded - cut.stored < 3) throw new Error(`chunks waiting: ${JSON.stringify(cut)}`);
      return true;
    }, WAIT_MS);
    // The page counts a chunk when MediaRecorder hands it over and keeps it in IndexedDB a
    // moment later: reload once the waiting ones are kept (a reload in that moment loses it).
    await until('the waiting chunks kept in IndexedDB', async () => (await keptChunks(ann)) >= cut.recorded - cut.stored, WAIT_MS);
    t.diagnostic(`before the reload: ${cut.recorded} chunks recorded, ${cut.stored} on the server`);
    const reloaded = Date.now();
    await ann.reload();
    // Still offline for a moment after the reload: the first tries fail too.
    await sleep(1500);
    await ann.unroute(CHUNKS);
    const resumed = await until('the recording sent on and saved', async () => (await ann.evaluate(() => window.__rtc.resumed))?.find((r) => r.id === cut.id), WAIT_MS);
    t.diagnostic(`after the reload: ${JSON.stringify(resumed)}`);
    assert.equal(resumed.state, 'finished');
    assert.ok(resumed.sent >= cut.recorded - cut.stored, `the chunks that waited were sent: ${resumed.sent}`);
    const meta = await (await fetch(`${server.url}/api/recordings/${cut.id}`)).json();
    assert.equal(meta.state, 'finished');
    assert.ok(meta.bytes >= cut.bytes, `the server has all ${cut.bytes} bytes recorded before the reload: ${meta.bytes}`);
    // Valid, decodable, seekable, as long as the server says. Not held against the wall clock:
    // what MediaRecorder had not handed over goes with the page, and on a loaded machine it
    // runs seconds behind (3.5 s of 6.3 s seen in CI). What matters is above: every byte recorded.
    const figures = checkMediaFile(join(server.recordingsDir, `${cut.id}.webm`), { seconds: meta.duration_ms / 1000, tolerance: 0.5 });
    t.diagnostic(`ffprobe: ${figures.format}, ${figures.codecs}, ${figures.duration} s of ${((reloaded - started) / 1000).toFixed(1)} s until the reload`);
    await ann.getByTestId('recording-link').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await ann.getByTestId('recording-chip').textContent(), /cut short by a reload was saved/);
    assert.equal(await keptChunks(ann), 0, 'nothing kept once saved');
    await ann.context().close();
    await bob.context().close();
  });

  it('no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
