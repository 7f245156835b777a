// Browser end-to-end test of the 1-to-1 call (issue 2, "Tests" → "Browser end-to-end").
//
// Starts the real `signal` server (binary from $SIGNAL_BIN, default target/debug/signal) on a
// free loopback port with a throw-away certificate directory, then drives headless Chromium
// (Debian's /usr/bin/chromium or $CHROMIUM, fake camera and microphone) with playwright-core:
//
//   1. pages A and B join the same room → both reach `joined_conn`; on each side
//      RTCPeerConnection.getStats() shows inbound video `framesDecoded` and inbound audio
//      `packetsReceived` growing over 2 s, and the remote <video> renders frames;
//   2. a third page D gets `full`: state `leaved`, a visible message, A and B unaffected;
//   3. B leaves → B `leaved`, A `joined_unbind` (bye names B), A's RTCPeerConnection closed
//      once B's side is gone;
//   4. a new page C joins → A and C make a second call with media flowing both ways.
//   Screenshots go to tests/browser/artifacts/ (git-ignored).
//
// Run it inside a network namespace that only has loopback (as the test script does):
//   unshare --net --pid --fork --kill-child --mount-proc \
//     sh -c 'ip link set lo up && exec node --test tests/browser/'
//
// Page test hooks (documented in public/lib/hooks.js): window.__rtc.pc (current RTCPeerConnection),
// .pcGeneration, .events (received signaling events carry `args`), [data-testid] elements.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import https from 'node:https';
import { launchChromium } from '../lib/browser.mjs';
import { startServer } from '../lib/server.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = join(HERE, 'artifacts');
const WAIT_MS = 20_000; // bound for every single wait
const SAMPLE_MS = 2_000; // media must keep flowing over this window
const ROOM = `e2e-${process.pid}`;

let server;
let browser;
const contexts = [];
const pageErrors = [];
const figures = {};

// --------------------------------------------------------------------------------- helpers

function httpsGet(url) {
  return new Promise((res, rej) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 2000 }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (c) => (body += c));
      r.on('end', () => res({ status: r.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
  });
}

async function until(what, fn, timeout = WAIT_MS, interval = 100) {
  const t0 = Date.now();
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() - t0 > timeout) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await sleep(interval);
  }
}

const serverLog = () => server.logs().split('\n').slice(-60).join('\n');

async function openPage(name) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 720 },
    deviceScaleFactor: 1,
  });
  contexts.push(context);
  const page = await context.newPage();
  page.label = name;
  page.logs = [];
  page.on('console', (m) => page.logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(`${server.url}/`, { waitUntil: 'load', timeout: WAIT_MS });
  assert.equal(await state(page), 'leaved', `${name}: initial state`);
  return page;
}

async function joinRoom(page, room) {
  await page.getByTestId('room').fill(room);
  await page.getByTestId('join').click({ timeout: WAIT_MS });
}

const state = (page) => page.getByTestId('state').textContent();

async function waitState(page, expected) {
  try {
    await page.waitForFunction(
      (s) => document.querySelector('[data-testid="state"]')?.textContent === s,
      expected,
      { timeout: WAIT_MS, polling: 50 },
    );
  } catch (err) {
    throw new Error(`${page.label}: state did not become ${expected}\n${await diagnose(page)}\nserver:\n${serverLog()}`);
  }
}

const events = (page) => page.evaluate(() => window.__rtc.events.filter((e) => e.args).map(({ event, args }) => [event, ...args.map((a) => (typeof a === 'object' && a && 'sdp' in a ? `<${a.type}>` : a))]));

// Media statistics of the page's current RTCPeerConnection.
function mediaStats(page) {
  return page.evaluate(async () => {
    const pc = window.__rtc.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const out = { connectionState: pc.connectionState, framesDecoded: 0, framesReceived: 0, audioPackets: 0, audioBytes: 0 };
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.framesDecoded = s.framesDecoded ?? 0;
        out.framesReceived = s.framesReceived ?? 0;
        out.frameWidth = s.frameWidth;
        out.frameHeight = s.frameHeight;
        out.videoCodec = byId.get(s.codecId)?.mimeType;
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audioPackets = s.packetsReceived ?? 0;
        out.audioBytes = s.bytesReceived ?? 0;
        out.audioCodec = byId.get(s.codecId)?.mimeType;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        const l = byId.get(pair?.localCandidateId);
        const r = byId.get(pair?.remoteCandidateId);
        if (l && r) out.path = `${l.address}:${l.port} ⇄ ${r.address}:${r.port} (${l.protocol}, ${l.candidateType}/${r.candidateType})`;
      }
    });
    const v = document.querySelector('[data-testid="remote-video"]');
    out.remoteVideo = { width: v.videoWidth, height: v.videoHeight, paused: v.paused, readyState: v.readyState };
    return out;
  });
}

// What a page saw, for failure messages.
async function diagnose(page) {
  const [st, ev, stats] = await Promise.all([
    state(page).catch((e) => e.message),
    events(page).catch((e) => e.message),
    mediaStats(page).catch((e) => e.message),
  ]);
  return `${page.label}: state=${st}\n  events=${JSON.stringify(ev)}\n  stats=${JSON.stringify(stats)}\n  console:\n    ${page.logs.slice(-15).join('\n    ')}`;
}

// Waits for the first decoded frame and audio packet, then checks both keep growing.
async function assertMediaFlowing(page, t0) {
  let first;
  try {
    first = await until(`${page.label}: first decoded video frame and audio packet`, async () => {
      const s = await mediaStats(page);
      return s && s.framesDecoded > 0 && s.audioPackets > 0 ? s : null;
    }, WAIT_MS, 50);
  } catch (err) {
    err.message += `\n${await diagnose(page)}\nserver:\n${serverLog()}`;
    throw err;
  }
  const firstFrameMs = Date.now() - t0;
  const s1 = await mediaStats(page);
  await sleep(SAMPLE_MS);
  const s2 = await mediaStats(page);
  const frames = s2.framesDecoded - s1.framesDecoded;
  const packets = s2.audioPackets - s1.audioPackets;
  assert.equal(s2.connectionState, 'connected', `${page.label}: connectionState`);
  assert.ok(frames >= 10, `${page.label}: framesDecoded grew by only ${frames} in ${SAMPLE_MS} ms (${s1.framesDecoded} → ${s2.framesDecoded})`);
  assert.ok(packets >= 20, `${page.label}: audio packetsReceived grew by only ${packets} in ${SAMPLE_MS} ms`);
  assert.ok(s2.remoteVideo.width > 0 && s2.remoteVideo.height > 0, `${page.label}: remote <video> has no frames (${JSON.stringify(s2.remoteVideo)})`);
  return {
    firstFrameMs,
    fps: +(frames / (SAMPLE_MS / 1000)).toFixed(1),
    audioPps: +(packets / (SAMPLE_MS / 1000)).toFixed(1),
    resolution: `${s2.frameWidth}x${s2.frameHeight}`,
    codecs: `${s2.videoCodec}, ${s2.audioCodec}`,
    path: s2.path,
    framesAtFirst: first.framesDecoded,
  };
}

async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path });
  return path;
}

// Puts two screenshots side by side in one image (rendered by the browser itself).
async function sideBySide(pageA, pageB, name) {
  const [a, b] = await Promise.all([pageA.screenshot(), pageB.screenshot()]);
  const context = await browser.newContext({ viewport: { width: 1280 * 2 + 48, height: 720 + 48 } });
  contexts.push(context);
  const page = await context.newPage();
  const img = (buf) => `<img src="data:image/png;base64,${buf.toString('base64')}">`;
  await page.setContent(`<body style="margin:0;padding:24px;display:flex;gap:0;background:#05070a">
    <style>img{width:1280px;height:720px;border-radius:14px;margin-right:0}img+img{margin-left:0}</style>
    ${img(a)}${img(b)}</body>`);
  await page.evaluate(() => Promise.all([...document.images].map((i) => i.decode())));
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, name) });
  await context.close();
}

// --------------------------------------------------------------------------------- the test

describe('1-to-1 call in two real browsers', { timeout: 180_000 }, () => {
  let A, B, C, D;

  before(async () => {
    const t0 = Date.now();
    server = await startServer({ tls: true });
    figures.serverReadyMs = Date.now() - t0;
    browser = await launchChromium();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  it('serves the page and the ICE server config', async () => {
    const ice = await httpsGet(`${server.url}/api/ice-servers`);
    assert.equal(ice.status, 200);
    const body = JSON.parse(ice.body);
    assert.ok(Array.isArray(body.iceServers), '/api/ice-servers: iceServers is an array');
    assert.equal(typeof body.ttl, 'number', '/api/ice-servers: ttl is a number');
    const vendor = await httpsGet(`${server.url}/vendor/socket.io.min.js`);
    assert.equal(vendor.status, 200, '/vendor/socket.io.min.js is served');
  });

  it('A and B join the same room and media flows both ways', async (t) => {
    A = await openPage('A');
    B = await openPage('B');
    await screenshot(A, 'lobby.png');
    await joinRoom(A, ROOM);
    await waitState(A, 'joined');
    assert.equal(await A.getByTestId('leave').isEnabled(), true, 'leave enabled while in a room');
    assert.equal(await A.getByTestId('join').isDisabled(), true, 'join disabled while in a room');

    const t0 = Date.now();
    await joinRoom(B, ROOM);
    await Promise.all([waitState(A, 'joined_conn'), waitState(B, 'joined_conn')]);
    figures.joinedConnMs = Date.now() - t0;

    const [a, b] = await Promise.all([assertMediaFlowing(A, t0), assertMediaFlowing(B, t0)]);
    figures.call1 = { A: a, B: b };
    t.diagnostic(`call 1: both joined_conn after ${figures.joinedConnMs} ms`);
    t.diagnostic(`call 1 A: ${JSON.stringify(a)}`);
    t.diagnostic(`call 1 B: ${JSON.stringify(b)}`);

    // Exactly one negotiation each (other_joined handled once, the otherjoin alias ignored).
    assert.equal(await A.evaluate(() => window.__rtc.pcGeneration), 1);
    assert.equal(await B.evaluate(() => window.__rtc.pcGeneration), 1);
    const evA = await events(A);
    assert.equal(evA.filter(([e]) => e === 'other_joined').length, 1, `A events: ${JSON.stringify(evA)}`);
    // The SDP panel shows the offer (A) and the answer (B).
    assert.match(await A.getByTestId('local-sdp').textContent(), /^v=0/);
    assert.match(await B.getByTestId('remote-sdp').textContent(), /^v=0/);
  });

  it('a third browser gets `full`, the call is unaffected', async () => {
    D = await openPage('D');
    await joinRoom(D, ROOM);
    const notice = D.getByTestId('notice');
    await notice.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await notice.textContent(), /full/i);
    assert.equal(await state(D), 'leaved');
    const evD = await events(D);
    assert.deepEqual(evD.map(([e]) => e), ['full'], `D events: ${JSON.stringify(evD)}`);
    assert.equal(evD[0][1], ROOM);
    assert.equal(await D.getByTestId('join').isEnabled(), true, 'D can try again');
    await screenshot(D, 'full.png');
    // A `signal_error` is shown as a toast (here: an event the server does not know).
    await D.evaluate(() => window.__rtc.socket.emit('no_such_event', 'x'));
    const toast = D.getByTestId('toast').filter({ hasText: 'unknown_event' });
    await toast.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await state(D), 'leaved', 'a rejected event changes nothing');
    assert.equal(await state(A), 'joined_conn');
    assert.equal(await state(B), 'joined_conn');
    // Media still flowing for A after D's attempt.
    const s1 = await mediaStats(A);
    await sleep(500);
    const s2 = await mediaStats(A);
    assert.ok(s2.framesDecoded > s1.framesDecoded, 'A still decodes frames');
  });

  it('B leaves: A goes joined_unbind and closes its peer connection', async (t) => {
    const bId = (await B.evaluate(() => window.__rtc.events.find((e) => e.event === 'joined').args[1]));
    const t0 = Date.now();
    await B.getByTestId('leave').click({ timeout: WAIT_MS });
    await Promise.all([waitState(B, 'leaved'), waitState(A, 'joined_unbind')]);
    t.diagnostic(`bye after leave: ${Date.now() - t0} ms`);
    const evA = await events(A);
    const bye = evA.find(([e]) => e === 'bye');
    assert.deepEqual(bye, ['bye', ROOM, bId], `A events: ${JSON.stringify(evA)}`);
    // A keeps the connection only while it still works (the peer might just have lost its
    // signaling): B closed its side, so A's goes within ICE's consent timeout (~5 s).
    await until('A closes its RTCPeerConnection', () => A.evaluate(() => window.__rtc.pc === null), 10_000);
    const evB = await events(B);
    assert.deepEqual(evB.at(-1), ['leaved', ROOM, bId]);
    assert.equal(await B.getByTestId('leave').isDisabled(), true, 'leave disabled when leaved');
    // B's camera is released.
    assert.equal(await B.evaluate(() => document.querySelector('[data-testid="local-video"]').srcObject), null);
  });

  it('a new peer C joins: A and C make a second working call', async (t) => {
    C = await openPage('C');
    const t0 = Date.now();
    await joinRoom(C, ROOM);
    await Promise.all([waitState(A, 'joined_conn'), waitState(C, 'joined_conn')]);
    figures.joinedConn2Ms = Date.now() - t0;
    const [a, c] = await Promise.all([assertMediaFlowing(A, t0), assertMediaFlowing(C, t0)]);
    figures.call2 = { A: a, C: c };
    t.diagnostic(`call 2: both joined_conn after ${figures.joinedConn2Ms} ms`);
    t.diagnostic(`call 2 A: ${JSON.stringify(a)}`);
    t.diagnostic(`call 2 C: ${JSON.stringify(c)}`);
    assert.equal(await A.evaluate(() => window.__rtc.pcGeneration), 2, 'A made a fresh RTCPeerConnection');

    // Let the live stats chip and call timer fill in, then take the product screenshots.
    await A.waitForFunction(() => document.getElementById('stats-chip')?.textContent.includes('fps'), null, { timeout: WAIT_MS });
    await screenshot(A, 'call-a.png');
    await screenshot(C, 'call-c.png');
    await sideBySide(A, C, 'call.png');
    await A.getByTestId('toggle-sdp').click();
    await sleep(400); // slide-in animation
    await screenshot(A, 'call-a-sdp.png');
    await A.getByTestId('toggle-sdp').click();
  });

  it('no uncaught page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
