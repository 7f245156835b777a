// Live viewing of SFU rooms over Low-Latency HLS (docs/live.md), in real Chromium.
//
// Ann and Bob open a live room (`sfu.html?live`: their video is H.264) and Ann puts it on air
// with the page's button; both pages show the LIVE chip and the viewers' link. A viewer opens
// that link in another Chromium: the page plays every speaker with hls.js (from npm, served
// by the server) in low-latency mode. It must play within 3 s of opening, keep getting frames
// for 20 s with at most one stall, and report how far behind the capture it plays (now minus
// the program date-time of the frame on screen, which comes from the senders' RTCP reports).
//
// Then the CDN case: Debian's nginx as a caching proxy (docs/deploy/nginx-live-cache.conf)
// in front of the server, and simulated viewers that follow the LL-HLS protocol (blocking
// playlist reloads, preload-hinted parts) through it, 1 then 50: the requests reaching the
// origin per second must stay flat (≤ 2× the 1-viewer figure).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { joinSfuRoom, launchChromium, until } from '../lib/browser.mjs';
import { operatorHeaders, repoRoot, startServer } from '../lib/server.mjs';

const PAGE = '/sfu.html?res=320x240&fps=15&live';
/** The bar: the viewer plays within this of opening the page. */
const STARTUP_LIMIT_MS = 3000;
const WATCH_MS = 20_000;
/** Simulated viewers behind the proxy, and how long each count runs. */
const CROWD = 50;
const COUNT_MS = 10_000;

let server;
let speakers;
let viewerBrowser;
let ann;
let bob;
let watchUrl;
const figures = {};

before(async () => {
  server = await startServer();
  speakers = await launchChromium();
  viewerBrowser = await launchChromium();
});

after(async () => {
  console.log(`live figures: ${JSON.stringify(figures)}`);
  await speakers?.close().catch(() => {});
  await viewerBrowser?.close().catch(() => {});
  await server?.stop();
});

/** The codec a page sends its camera with (getStats of its video sender). */
function sendingCodec(page) {
  return page.evaluate(async () => {
    const sender = window.__rtc.pc.getSenders().find((s) => s.track?.kind === 'video');
    const stats = await sender.getStats();
    let codecId = null;
    stats.forEach((r) => { if (r.type === 'outbound-rtp' && r.bytesSent > 0) codecId = r.codecId; });
    return codecId ? stats.get(codecId)?.mimeType : null;
  });
}

describe('live viewing', { timeout: 240_000 }, () => {
  it('a room goes live from the page; a viewer plays every speaker with hls.js, within 3 s and without stalling', async (t) => {
    ann = await joinSfuRoom(speakers, `${server.url}${PAGE}`, { room: 'onair', name: 'Ann' });
    bob = await joinSfuRoom(speakers, `${server.url}${PAGE}`, { room: 'onair', name: 'Bob' });
    // A live room's video is H.264 (what HLS players decode), for everyone in it.
    for (const page of [ann, bob]) {
      assert.equal(await until(`${page.label} sends video`, () => sendingCodec(page)), 'video/H264', page.label);
    }
    const onAir = Date.now();
    await ann.getByTestId('go-live').click();
    for (const page of [ann, bob]) {
      await until(`${page.label}'s page shows LIVE`, () => page.getByTestId('live-link').isVisible(), 10_000);
    }
    watchUrl = await bob.getByTestId('live-link').getAttribute('href');
    assert.match(watchUrl, /^http:\/\/127\.0\.0\.1:\d+\/live\.html\?k=[0-9a-f]{32}$/);
    // The streams start on the speakers' next keyframes, timed by their first sender reports.
    const key = new URL(watchUrl).searchParams.get('k');
    await until('both streams have parts', async () => {
      const session = await (await fetch(`${server.url}/live/${key}/streams.json`)).json();
      return session.streams.length === 2;
    }, 15_000, 50);
    figures.streamsReadyMs = Date.now() - onAir;
    t.diagnostic(`on air → both streams listed: ${figures.streamsReadyMs} ms`);
    // What each stream started with (a stream whose video came too late is audio only).
    for (const line of server.logs().split('\n').filter((l) => /live stream started|not streamed|tap/.test(l))) t.diagnostic(line.replace(/\x1b\[[0-9;]*m/g, ''));

    const viewer = await (await viewerBrowser.newContext()).newPage();
    viewer.on('pageerror', (e) => assert.fail(`viewer page error: ${e.message}`));
    await viewer.goto(watchUrl);
    const started = await until('the viewer plays both speakers', () => viewer.evaluate(() => {
      const players = [...window.__live.players.values()];
      return players.length === 2 && players.every((p) => p.firstFrameAt !== null)
        ? players.map((p) => Math.round(p.firstFrameAt - window.__live.openedAt))
        : null;
    }), 15_000);
    figures.startupMs = started;
    t.diagnostic(`viewer's first steps: ${JSON.stringify(await viewer.evaluate(() => [...window.__live.players.values()].map((p) => p.steps)))}`);
    t.diagnostic(`viewer start-up (page opened → first frame), per speaker: ${started.join(', ')} ms`);
    assert.ok(Math.max(...started) <= STARTUP_LIMIT_MS, `start-up ${started} ms > ${STARTUP_LIMIT_MS} ms`);

    // 20 s of watching: frames keep coming on every player, at most one stall each.
    const frames = () => viewer.evaluate(() => [...window.__live.players.values()].map((p) => p.video.getVideoPlaybackQuality().totalVideoFrames));
    let last = await frames();
    const stuckSeconds = [0, 0];
    for (let s = 0; s < WATCH_MS / 1000; s++) {
      await sleep(1000);
      const now = await frames();
      now.forEach((n, i) => { if (n <= last[i]) stuckSeconds[i] += 1; });
      last = now;
    }
    const watched = await viewer.evaluate(() => ({
      stalls: [...window.__live.players.values()].map((p) => p.stalls),
      fps: [...window.__live.players.values()].map((p) => p.video.getVideoPlaybackQuality().totalVideoFrames),
      fatal: window.__live.errors.filter((e) => e.fatal),
      latencies: window.__live.latencies.slice(),
      hlsLatency: [...window.__live.players.values()].map((p) => p.hls.latency),
    }));
    const sorted = watched.latencies.slice().sort((a, b) => a - b);
    const pct = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    figures.latencyMs = { p50: pct(0.5), p95: pct(0.95), samples: sorted.length };
    figures.stalls = watched.stalls;
    t.diagnostic(`glass-to-glass (now − program date-time on screen): p50 ${pct(0.5)} ms, p95 ${pct(0.95)} ms over ${sorted.length} samples; hls.js latency ${watched.hlsLatency.map((l) => l.toFixed(2)).join(', ')} s; stalls ${watched.stalls}; frames ${watched.fps}`);
    assert.deepEqual(watched.fatal, [], 'no fatal player error');
    assert.deepEqual(stuckSeconds, [0, 0], `seconds without a new frame, per player: ${stuckSeconds}`);
    assert.ok(watched.stalls.every((n) => n <= 1), `stalls per player: ${watched.stalls}`);
    assert.ok(sorted.length >= 20, 'latency was measured');
    // The program date-time is the capture clock: the viewer cannot be ahead of it. And far
    // behind it would be no low latency at all (the goal is 1.6 s at p95; a player that waits
    // a target duration before reloading sits ~4 s behind).
    assert.ok(pct(0.5) > 0, `latency p50 ${pct(0.5)} ms`);
    assert.ok(pct(0.95) < 3000, `latency p95 ${pct(0.95)} ms`);
    await viewer.context().close();
  });

  it('the playlist is Low-Latency HLS, blocking reloads wait for the part asked for, and caches are told what they may keep', async () => {
    assert.ok(watchUrl, 'the first test put the room on air');
    const key = new URL(watchUrl).searchParams.get('k');
    const base = `${server.url}/live/${key}/`;
    const session = await (await fetch(`${base}streams.json`)).json();
    assert.equal(session.on, true);
    assert.deepEqual(await liveMetrics(), { rooms: 1, streams: 2 });
    assert.deepEqual(session.streams.map((s) => s.name).sort(), ['Ann', 'Bob']);
    assert.match(session.streams[0].codecs, /^avc1\.[0-9a-f]{6},opus$/);
    // One variant: the stream, its codecs and bit rate; it names the media playlist.
    const multivariant = await (await fetch(base + session.streams[0].playlist)).text();
    assert.match(multivariant, /^#EXTM3U\n[^]*#EXT-X-STREAM-INF:BANDWIDTH=\d+,CODECS="avc1\.[0-9a-f]{6},opus"\nindex\.m3u8\n$/);
    const playlistUrl = await mediaPlaylist(base + session.streams[0].playlist);
    const first = await fetch(playlistUrl);
    assert.equal(first.headers.get('content-type'), 'application/vnd.apple.mpegurl');
    assert.equal(first.headers.get('cache-control'), 'public, max-age=1');
    const text = await first.text();
    for (const tag of ['#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES', '#EXT-X-PART-INF:PART-TARGET=', '#EXT-X-PART:', '#EXT-X-PRELOAD-HINT:TYPE=PART', '#EXT-X-PROGRAM-DATE-TIME:', '#EXT-X-MAP:URI="init.mp4"']) {
      assert.ok(text.includes(tag), `${tag} in\n${text}`);
    }
    const init = await fetch(`${base}${session.streams[0].participant}/init.mp4`);
    assert.equal(init.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    // The hinted part: asked for before it exists, answered once it does (about a part later).
    // About one hint in ten is the part after a segment's last one: the keyframe that comes
    // next opens a new segment instead, and the hint never comes true (checked below). Then
    // the next hint is taken.
    const hintOf = (playlist) => playlist.match(/#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(p(\d+)\.(\d+)\.m4s)"/);
    let hint = hintOf(text);
    let reloaded;
    for (let attempt = 1; ; attempt++) {
      const t0 = Date.now();
      const blocking = fetch(`${playlistUrl}?_HLS_msn=${hint[2]}&_HLS_part=${hint[3]}`);
      const part = await fetch(`${base}${session.streams[0].participant}/${hint[1]}`);
      reloaded = await (await blocking).text();
      const waited = Date.now() - t0;
      assert.ok(waited < 1500, `a part's wait took ${waited} ms`);
      if (part.status === 404 && attempt < 3) {
        assert.ok(reloaded.includes(`#EXT-X-PART-INF`) && !reloaded.includes(`URI="${hint[1]}"`), `${hint[1]} never came:\n${reloaded}`);
        hint = hintOf(reloaded);
        continue;
      }
      assert.equal(part.status, 200, `hinted part ${hint[1]}, attempt ${attempt}`);
      assert.ok((await part.arrayBuffer()).byteLength > 0);
      assert.ok(reloaded.includes(`URI="${hint[1]}"`), `the reload lists ${hint[1]}`);
      break;
    }
    // Further ahead than a player following the stream would ask: refused at once.
    const far = await fetch(`${playlistUrl}?_HLS_msn=${Number(hint[2]) + 5}`);
    assert.equal(far.status, 400);
    for (const bad of ['?_HLS_part=1', '?_HLS_msn=x', '?_HLS_msn=1&_HLS_part=-1']) {
      assert.equal((await fetch(playlistUrl + bad)).status, 400, bad);
    }
    assert.equal((await fetch(`${server.url}/live/${'0'.repeat(32)}/streams.json`)).status, 404, 'an unknown key');
    assert.equal((await fetch(`${server.url}/live/not-a-key/streams.json`)).status, 404);
    assert.equal((await fetch(`${base}${session.streams[0].participant}/p999999.0.m4s`)).status, 404);
    assert.equal((await fetch(`${base}${session.streams[0].participant}/p0${hint[2]}.${hint[3]}.m4s`)).status, 404, 'one name per part');
    assert.equal((await fetch(`${playlistUrl}?_HLS_msn=${hint[2]}&cachebuster=1`)).status, 400, 'one URL per playlist answer');
    // The hint that never comes true (the part after a segment's last one): a 404 a cache
    // may keep, for every viewer asks for it once.
    const closed = reloaded.match(/#EXT-X-PART:[^\n]*URI="p(\d+)\.(\d+)\.m4s"[^\n]*\n#EXTINF/);
    assert.ok(closed, `a complete segment's last part in\n${reloaded}`);
    const never = await fetch(`${base}${session.streams[0].participant}/p${closed[1]}.${Number(closed[2]) + 1}.m4s`);
    assert.equal(never.status, 404);
    assert.equal(never.headers.get('cache-control'), 'public, max-age=60');
    const unknown = await fetch(`${base}${session.streams[0].participant}/p999999.0.m4s`);
    assert.equal(unknown.headers.get('cache-control'), 'no-cache', 'a part that may yet come is not cached');
  });

  it('behind a caching proxy, 50 viewers cost the origin about what one does', async (t) => {
    assert.ok(watchUrl, 'the first test put the room on air');
    const key = new URL(watchUrl).searchParams.get('k');
    const proxy = await startProxy(server.port);
    try {
      const base = `${proxy.url}/live/${key}/`;
      const listed = await fetch(`${base}streams.json`);
      assert.equal(listed.status, 200, proxy.errors());
      const session = await listed.json();
      const playlists = await Promise.all(session.streams.map((s) => mediaPlaylist(base + s.playlist)));
      const rate = async (viewers) => {
        const before = proxy.originRequests();
        const stop = Date.now() + COUNT_MS;
        // Everyone watches the same speaker: the figure is per stream.
        const fetched = await Promise.all(Array.from({ length: viewers }, (_, i) => simulatedViewer(playlists[0], stop, i * 20)));
        const origin = proxy.originRequests() - before;
        t.diagnostic(`${viewers} viewer(s): what reached the origin, by nginx cache status: ${JSON.stringify(proxy.breakdown(before))}`);
        return { viewers, perSecond: +(origin / (COUNT_MS / 1000)).toFixed(1), partsFetched: fetched.reduce((a, b) => a + b, 0) };
      };
      const one = await rate(1);
      const crowd = await rate(CROWD);
      figures.origin = { one, crowd };
      t.diagnostic(`origin requests/s behind nginx: 1 viewer ${one.perSecond}, ${CROWD} viewers ${crowd.perSecond} (${(crowd.perSecond / one.perSecond).toFixed(2)}×); parts fetched by the viewers: ${one.partsFetched}, ${crowd.partsFetched}`);
      assert.ok(one.partsFetched >= (COUNT_MS / 1000) * 3, `the lone viewer followed the stream: ${one.partsFetched} parts`);
      assert.ok(crowd.partsFetched >= CROWD * (COUNT_MS / 1000) * 3, `the crowd followed the stream: ${crowd.partsFetched} parts`);
      assert.ok(crowd.perSecond <= 2 * one.perSecond, `origin load ${crowd.perSecond}/s with ${CROWD} viewers, ${one.perSecond}/s with one`);
    } finally {
      await proxy.stop();
    }
  });

  it('off air: the viewer page says so and the playlists end', async () => {
    const key = new URL(watchUrl).searchParams.get('k');
    const session = await (await fetch(`${server.url}/live/${key}/streams.json`)).json();
    await ann.getByTestId('go-live').click();
    await until("Bob's page drops the LIVE chip", async () => !(await bob.getByTestId('live-link').isVisible()), 10_000);
    const ended = await until('the playlist ends', async () => {
      const text = await (await fetch(await mediaPlaylist(`${server.url}/live/${key}/${session.streams[0].playlist}`))).text();
      return text.includes('#EXT-X-ENDLIST') && text;
    }, 10_000);
    assert.ok(ended);
    const after = await (await fetch(`${server.url}/live/${key}/streams.json`)).json();
    assert.equal(after.on, false);
    assert.deepEqual(await until('the streams end', async () => {
      const now = await liveMetrics();
      return now.streams === 0 && now;
    }, 5000), { rooms: 0, streams: 0 });
  });
});

/** The operator's `/metrics` on live viewing. */
async function liveMetrics() {
  const text = await (await fetch(`${server.url}/metrics`, { headers: operatorHeaders })).text();
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1]);
  return { rooms: value('live_rooms'), streams: value('live_streams') };
}

/** The media playlist a multivariant playlist names (its one variant). */
async function mediaPlaylist(multivariantUrl) {
  const text = await (await fetch(multivariantUrl)).text();
  const uri = text.split('\n').find((line) => line && !line.startsWith('#'));
  return new URL(uri, multivariantUrl).href;
}

/**
 * A viewer as an LL-HLS player behaves, without decoding: it loads the playlist, then asks
 * for the preload-hinted part and, at the same time, the playlist that will list it
 * (`_HLS_msn`/`_HLS_part`), over and over until `stop`. Returns the parts it got.
 */
async function simulatedViewer(playlistUrl, stop, delayMs) {
  await sleep(delayMs);
  const dir = playlistUrl.slice(0, playlistUrl.lastIndexOf('/') + 1);
  let text = await (await fetch(playlistUrl)).text();
  let parts = 0;
  while (Date.now() < stop) {
    const hint = text.match(/#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p(\d+)\.(\d+)\.m4s"/);
    if (!hint) throw new Error(`no preload hint in\n${text}`);
    const [, msn, part] = hint;
    const [playlist, bytes] = await Promise.all([
      fetch(`${playlistUrl}?_HLS_msn=${msn}&_HLS_part=${part}`).then((r) => r.text()),
      fetch(`${dir}p${msn}.${part}.m4s`).then((r) => (r.ok ? r.arrayBuffer() : null)),
    ]);
    if (bytes?.byteLength) parts += 1;
    text = playlist;
  }
  return parts;
}

/**
 * nginx with docs/deploy/nginx-live-cache.conf in front of the server on `originPort`; counts
 * the requests it passes to the origin (its log's upstream address).
 */
async function startProxy(originPort) {
  const dir = mkdtempSync(join(tmpdir(), 'live-cdn-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const site = readFileSync(join(repoRoot, 'docs/deploy/nginx-live-cache.conf'), 'utf8')
    .replaceAll('/var/cache/nginx/rtc-live', join(dir, 'cache'))
    .replaceAll('127.0.0.1:8080', `127.0.0.1:${originPort}`)
    .replaceAll('listen 8081;', `listen 127.0.0.1:${port};`);
  assert.notEqual(site, readFileSync(join(repoRoot, 'docs/deploy/nginx-live-cache.conf'), 'utf8'));
  writeFileSync(join(dir, 'site.conf'), site);
  const log = join(dir, 'origin.log');
  // Workers as root: the cache and temporary files are in the test's own directory.
  writeFileSync(join(dir, 'nginx.conf'), `user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
worker_processes 1;
events { worker_connections 1024; }
http {
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    log_format origin '$upstream_addr $upstream_cache_status $request_uri';
    access_log ${log} origin;
    include ${dir}/site.conf;
}
`);
  writeFileSync(log, '');
  const proc = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stderr.on('data', (d) => { output += d; });
  const url = `http://127.0.0.1:${port}`;
  await until(`nginx listens (${output})`, () => fetch(`${url}/live/`).then(() => true), 10_000);
  return {
    url,
    // Lines whose upstream address is not "-" went to the origin.
    errors: () => readFileSync(join(dir, 'error.log'), 'utf8'),
    breakdown: (skip) => {
      const counts = {};
      for (const line of readFileSync(log, 'utf8').split('\n').filter((l) => l && !l.startsWith('- ')).slice(skip)) {
        const [, status, uri] = line.split(' ');
        const kind = `${status} ${uri.includes('.m3u8') ? (uri.includes('_HLS_msn') ? 'blocking' : 'playlist') : 'media'}`;
        counts[kind] = (counts[kind] ?? 0) + 1;
      }
      return counts;
    },
    originRequests: () => readFileSync(log, 'utf8').split('\n').filter((l) => l && !l.startsWith('- ')).length,
    async stop() {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
