// Browser end-to-end test of SFU rooms (issue 4, "Tests" → "Browser end-to-end").
//
// Starts the real `signal` server (tests/lib/server.mjs: plain HTTP on 127.0.0.1, media on
// loopback) and drives headless Chromium (fake camera and microphone, 320x240 at 15 fps to keep
// the load of 16+ VP8 encoders/decoders modest on a 2-core machine) on public/sfu.html:
//
//   1. four participants join one room; each ends up with 3 remote <video> tiles, and its
//      RTCPeerConnection.getStats() shows 3 inbound video streams whose framesDecoded grows and
//      3 inbound audio streams whose packetsReceived grows;
//   2. a fifth joins late: after renegotiation everyone has 4 remote videos, all decoding;
//   3. the fifth leaves: its tile disappears for the others;
//   4. one browser process is killed (SIGKILL): the others drop its tile within 10 s.
//   Figures (join → all remote videos decoding, removal delays) are printed; screenshots and the
//   server log go to tests/browser/artifacts/ (git-ignored).
//
// Run it inside a network namespace that only has loopback, against the release server (as
// scripts/test does):
//   cargo build --release -p signal && SIGNAL_BIN=$PWD/target/release/signal \
//   unshare --net --pid --fork --kill-child --mount-proc \
//     sh -c 'ip link set lo up && exec node --test tests/browser/sfu.test.mjs'

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join as joinPath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../lib/server.mjs';
import { launchChromium, until as untilLib } from '../lib/browser.mjs';
import { io } from 'socket.io-client';

const HERE = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = joinPath(HERE, '..', 'browser', 'artifacts');
const WAIT_MS = 30_000;
const ROOM = `sfu-${process.pid}`;
const MEDIA = 'res=320x240&fps=15';

let server;
const browsers = [];
const pages = [];
const figures = {};

// The shared until(), with the server's last lines and the pages' signaling events on failure.
async function until(what, fn, ms = WAIT_MS, interval = 100) {
  try {
    return await untilLib(what, fn, ms, interval);
  } catch (error) {
    const events = [];
    for (const page of pages) {
      const e = await timed(page.evaluate(() => window.__rtc.events.filter((x) => x.event !== 'track'))).catch(() => 'closed');
      events.push(`${page.label}: ${JSON.stringify(e).slice(-600)}`);
    }
    error.message += `\npages:\n${events.join('\n')}\nserver:\n${server.logs().split('\n').slice(-25).join('\n')}`;
    throw error;
  }
}

// Main Chromium processes (not their renderer/GPU/utility children) visible in /proc.
function chromiumPids() {
  const pids = new Set();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (/chrom/.test(cmd[0]) && cmd.includes('--use-fake-device-for-media-stream') && !cmd.some((a) => a.startsWith('--type='))) pids.add(Number(entry));
    } catch { /* gone */ }
  }
  return pids;
}

async function newBrowser() {
  const browser = await launchChromium();
  browsers.push(browser);
  return browser;
}

// A browser whose process the test can SIGKILL (found as the main process that appeared).
async function killableBrowser() {
  const before = chromiumPids();
  const browser = await newBrowser();
  const started = [...chromiumPids()].filter((pid) => !before.has(pid));
  assert.equal(started.length, 1, `one new Chromium process (${started})`);
  browser.kill = () => process.kill(started[0], 'SIGKILL');
  return browser;
}

async function openPage(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.label = name;
  page.on('pageerror', (e) => console.log(`${name}: page error: ${e.message}`));
  await page.goto(`${server.url}/sfu.html?${MEDIA}`, { waitUntil: 'load' });
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: WAIT_MS });
  return page;
}

async function join(page) {
  await page.getByTestId('room').fill(ROOM);
  await page.getByTestId('name').fill(page.label);
  const t0 = Date.now();
  await page.getByTestId('join').click();
  await page.waitForFunction(() => window.__rtc.id, null, { timeout: WAIT_MS });
  return t0;
}

// A page call that gives up instead of hanging on a starved renderer.
function timed(promise, ms = 5_000) {
  return Promise.race([promise, sleep(ms).then(() => { throw new Error(`page call took over ${ms} ms`); })]);
}

// Inbound media of the page's peer connection, keyed by SSRC.
function inbound(page) {
  return timed(page.evaluate(async () => {
    const out = { video: {}, audio: {} };
    const pc = window.__rtc.pc;
    if (!pc) return out;
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video') out.video[r.ssrc] = r.framesDecoded ?? 0;
      else out.audio[r.ssrc] = r.packetsReceived ?? 0;
    });
    return out;
  }));
}

const remoteTiles = (page) => timed(page.evaluate(() => [...document.querySelectorAll('[data-testid="remote-video"]')].map((v) => v.dataset.participant)));

// Streams whose counter grew over `ms`.
async function growing(page, ms) {
  const a = await inbound(page);
  await sleep(ms);
  const b = await inbound(page);
  const grew = (kind) => Object.keys(b[kind]).filter((ssrc) => b[kind][ssrc] > (a[kind][ssrc] ?? 0)).length;
  return { video: grew('video'), audio: grew('audio') };
}

// Every page has `others` remote tiles, and `others` videos decoding and audio streams receiving.
async function expectFullMesh(list, others) {
  for (const page of list) {
    await until(`${page.label}: ${others} remote tiles`, async () => (await remoteTiles(page)).length === others);
    await until(`${page.label}: ${others} videos and ${others} audio streams flowing`, async () => {
      const g = await growing(page, 1000);
      if (g.video === others && g.audio === others) return g;
      throw new Error(`growing ${JSON.stringify(g)}`);
    });
  }
}

// `count` remote videos have decoded at least one frame.
async function videosDecoding(page, count) {
  const s = await inbound(page);
  return Object.values(s.video).filter((f) => f > 0).length >= count;
}

// For each page, ms from `t0` to the first `participants` event without `id` (the page's own
// clock, which is this machine's: the figure excludes the test's polling of slow renderers).
async function participantsEventDelay(list, id, t0) {
  const delays = [];
  for (const page of list) {
    const events = await timed(page.evaluate(() => window.__rtc.events.filter((e) => e.event === 'participants')));
    const removed = events.find((e) => e.t >= t0 && !e.detail.includes(id));
    delays.push(removed ? removed.t - t0 : null);
  }
  return delays;
}

async function roomReport() {
  const rooms = await server.operator('/api/rooms');
  return rooms.rooms.find((r) => r.room === ROOM);
}

// A socket.io client outside the browsers, idle on /sfu: the largest gap between the server's
// Engine.IO pings it sees tells server stalls apart from browser stalls.
let probe;
const pingGaps = [];
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer();
  probe = io(`${server.url}/sfu`, { transports: ['websocket'], reconnection: false });
  let last = Date.now();
  probe.io.on('ping', () => { const now = Date.now(); pingGaps.push(now - last); last = now; });
  probe.on('disconnect', (reason) => console.log(`probe disconnected: ${reason}`));
});

after(async () => {
  probe?.close();
  figures.probeMaxPingGapMs = Math.max(...pingGaps);
  for (const b of browsers) await b.close().catch(() => {});
  await server?.stop();
  if (server) writeFileSync(joinPath(ARTIFACTS, 'sfu-server.log'), server.logs());
  console.log('figures', JSON.stringify(figures));
});

describe('SFU rooms in Chromium', { timeout: 240_000 }, () => {
  let victimBrowser;

  it('four participants see and hear each other', async () => {
    const shared = await newBrowser();
    victimBrowser = await killableBrowser();
    const joining = [];
    for (const name of ['Ada', 'Brian', 'Chen']) joining.push(await openPage(shared, name));
    joining.push(await openPage(victimBrowser, 'Dora'));
    const joinTimes = [];
    for (const page of joining) {
      pages.push(page);
      const t0 = await join(page);
      const expected = pages.length - 1;
      // This joiner sees everyone already in the room decoding.
      await until(`${page.label}: ${expected} videos decoding`, () => videosDecoding(page, expected));
      joinTimes.push(Date.now() - t0);
    }
    figures.joinToAllVideosMs = joinTimes;
    // The same from the pages' own clocks: join handler → first picture of the last video.
    figures.joinToAllFirstFramesInPageMs = [];
    for (const [i, page] of pages.entries()) {
      figures.joinToAllFirstFramesInPageMs.push(await timed(page.evaluate((count) => {
        if (count === 0) return null;
        const events = window.__rtc.events;
        const start = events.find((e) => e.event === 'join').t;
        const frames = events.filter((e) => e.event === 'first-frame' && e.t >= start).slice(0, count);
        return frames.length === count ? Math.max(0, ...frames.map((e) => e.t)) - start : null;
      }, i)));
    }
    if (process.env.SFU_TIMELINE) {
      // Each page's signaling/media events in ms from its join, to see where join time goes.
      for (const page of pages) {
        const events = await timed(page.evaluate(() => window.__rtc.events));
        const start = events.find((e) => e.event === 'join').t;
        console.log(page.label, events.filter((e) => e.t >= start).map((e) => `${e.t - start}:${e.event}${e.event === 'connection' || e.event === 'update' ? `=${e.detail}` : ''}`).join(' '));
      }
    }
    // 4-party join → all videos playing: from the first click to 12 decoding remote videos.
    await expectFullMesh(pages, 3);
    await pages[0].screenshot({ path: joinPath(ARTIFACTS, 'sfu-4-party.png'), timeout: 10_000 }).catch(() => {});
    // Speaking indicators come from the audio-level header extension (RFC 6464) the SFU
    // forwards: the fake microphone's beeps light each of Ada's remote tiles up at some point.
    // The page logs each remote tile the first time it shows speaking.
    await until('Ada sees every other participant speaking at least once', () => timed(pages[0].evaluate(() => {
      const others = new Set(window.__rtc.participants.map((p) => p.id).filter((id) => id !== window.__rtc.id));
      const heard = new Set(window.__rtc.events.filter((e) => e.event === 'speaking').map((e) => e.detail));
      return others.size === 3 && [...others].every((id) => heard.has(id));
    })), 15_000);
    const room = await roomReport();
    assert.equal(room.participants.length, 4);
    for (const p of room.participants) {
      assert.equal(p.subscriptions, 6, `${p.name} subscribes to 3 × (audio + video)`);
      assert.ok(p.packets_out > 0 && p.packets_in > 0, `${p.name} forwards both ways`);
    }
  });

  it('a late fifth participant is seen by everyone after renegotiation', async () => {
    const fifth = await openPage(browsers[0], 'Eve');
    pages.push(fifth);
    const t0 = await join(fifth);
    await until('Eve: 4 videos decoding', () => videosDecoding(fifth, 4));
    figures.lateJoinerAllVideosMs = Date.now() - t0;
    const eve = await fifth.evaluate(() => window.__rtc.id);
    for (const page of pages.slice(0, 4)) await until(`${page.label}: Eve's tile`, async () => (await remoteTiles(page)).includes(eve));
    figures.othersSeeLateJoinerMs = Date.now() - t0;
    await expectFullMesh(pages, 4);
    await fifth.screenshot({ path: joinPath(ARTIFACTS, 'sfu-5-party.png'), timeout: 10_000 }).catch(() => {});
  });

  it('a participant who leaves disappears for the others', async () => {
    const fifth = pages.pop();
    const eve = await fifth.evaluate(() => window.__rtc.id);
    const t0 = Date.now();
    await fifth.getByTestId('leave').click();
    for (const page of pages) await until(`${page.label}: Eve's tile removed`, async () => !(await remoteTiles(page)).includes(eve));
    figures.leaveRemovedMs = Date.now() - t0;
    // From the page's own leave handler (a click on a starved renderer can take seconds).
    const clicked = await timed(fifth.evaluate(() => window.__rtc.events.findLast((e) => e.event === 'leave').t));
    figures.leaveClickMs = clicked - t0;
    figures.leaveParticipantsEventMs = await participantsEventDelay(pages, eve, clicked);
    assert.equal(await fifth.locator('[data-testid="remote-video"]').count(), 0);
    await expectFullMesh(pages, 3);
  });

  it('a killed browser is removed for the others within 10 s', async () => {
    const victim = pages.pop();
    const dora = await victim.evaluate(() => window.__rtc.id);
    const t0 = Date.now();
    victimBrowser.kill();
    browsers.splice(browsers.indexOf(victimBrowser), 1);
    for (const page of pages) await until(`${page.label}: Dora's tile removed`, async () => !(await remoteTiles(page)).includes(dora), 10_000 - (Date.now() - t0));
    figures.killedRemovedMs = Date.now() - t0;
    figures.killedParticipantsEventMs = await participantsEventDelay(pages, dora, t0);
    assert.ok(figures.killedRemovedMs <= 10_000);
    await expectFullMesh(pages, 2);
    assert.equal((await roomReport()).participants.length, 3);
  });
});
