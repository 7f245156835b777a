// SFU page vs full mesh, with real Chromium, in the same run (docs/BENCHMARKS.md, "SFU page
// vs full mesh"). N participants (default 4), each in a Chromium of its own with the fake
// camera at RES, join one room: on our SFU page (public/sfu.html) and on the minimal
// full-mesh page (bench/mesh/), alternating which goes first in each of RUNS runs. Measured per
// run and page:
//   - setup: first join click → every page decodes all N-1 remote videos;
//   - over WINDOW_S seconds after WARMUP_S: per remote video the decoded fps, freezes and
//     frozen time, frames dropped, NACKs and PLIs sent, packets lost, jitter-buffer delay and
//     the part of it lip sync adds (target − minimum delay); the same for each remote
//     audio, and its arrival jitter;
//     per sender the encoded fps (per stream) and qualityLimitationReason;
//   - CPU of all Chromium processes and of the server over the window (/proc, in cores).
// Prints each run, then medians side by side with SFU/mesh ratios; JSON to bench/results/.
//
// Needs `npm ci --prefix tests` and the release server. Run it in a loopback-only namespace:
//   cargo build --release -p signal && unshare --net --pid --fork --kill-child --mount-proc \
//     sh -c 'ip link set lo up && SIGNAL_BIN=$PWD/target/release/signal node bench/sfu/browsers.mjs'
// Knobs: PEERS=4 RUNS=3 RES=320x240 FPS=30 WARMUP_S=5 WINDOW_S=15 ONLY=sfu|mesh SERVER_NICE=-10
//        SFU_QUERY='&x=1' (extra query for the SFU page, e.g. to try a page variant)
//        TIMELINE=1 (print each page's event log from the first join, ms)
//        SFU_CSS='…' (a style sheet added to the SFU page, to try what its rendering costs)
//        SFU_SCALABILITY=L1T1 (the SFU page's camera encodings get this scalabilityMode; Chromium
//          encodes VP8 simulcast with three temporal layers unless told)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot, signalBin, startServer } from '../../tests/lib/server.mjs';
import { launchChromium, until } from '../../tests/lib/browser.mjs';

const PEERS = Number(process.env.PEERS ?? 4);
const RUNS = Number(process.env.RUNS ?? 3);
const RES = process.env.RES ?? '320x240';
const FPS = Number(process.env.FPS ?? 30);
const WARMUP_S = Number(process.env.WARMUP_S ?? 5);
const WINDOW_S = Number(process.env.WINDOW_S ?? 15);
const ONLY = process.env.ONLY;
const SFU_QUERY = process.env.SFU_QUERY ?? '';
const TIMELINE = !!process.env.TIMELINE;
const SFU_CSS = process.env.SFU_CSS;
const SFU_SCALABILITY = process.env.SFU_SCALABILITY;
const NAMES = ['Ada', 'Bob', 'Cy', 'Dee', 'Eve', 'Fay', 'Gus', 'Hal'];

// The server serves public/ plus the mesh page: a directory of symlinks.
const site = mkdtempSync(path.join(tmpdir(), 'mesh-site-'));
for (const entry of readdirSync(path.join(repoRoot, 'public'))) symlinkSync(path.join(repoRoot, 'public', entry), path.join(site, entry));
for (const entry of ['mesh.html', 'mesh.js']) symlinkSync(path.join(repoRoot, 'bench/mesh', entry), path.join(site, entry));

const TICKS_PER_S = 100;

/**
 * utime+stime ticks, in one pass over /proc: the server's, and Chromium's by process kind
 * (renderer, gpu-process, utility:audio, browser…).
 */
function cpuSnapshot(serverBin) {
  const snapshot = { server: 0, kinds: {} };
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      // Chromium rewrites its children's command lines (one space-separated string).
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const server = cmd.startsWith(serverBin);
      if (!server && !isChromium(cmd)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      if (server) {
        snapshot.server += ticks;
        continue;
      }
      const type = cmd.match(/--type=([^\s\0]+)/)?.[1] ?? 'browser';
      const sub = cmd.match(/--utility-sub-type=([^\s\0.]+)/)?.[1];
      const kind = sub ? `${type}:${sub}` : type;
      snapshot.kinds[kind] = (snapshot.kinds[kind] ?? 0) + ticks;
    } catch { /* gone */ }
  }
  return snapshot;
}
const isChromium = (cmd) => /chrom/i.test(cmd.split('\0')[0]);

/** Totals of the page's RTCPeerConnections (one on the SFU page, N-1 on the mesh page). */
function pageStats(page) {
  return page.evaluate(async () => {
    const pcs = window.__mesh ? [...window.__mesh.pcs.values()] : window.__rtc?.pc ? [window.__rtc.pc] : [];
    const inbound = [];
    const outbound = [];
    const available = []; // the sender's bandwidth estimate, per connection (bps)
    const remote = []; // receiver reports on our video
    const sources = []; // the camera's frames per second as the encoder gets them
    const audio = []; // remote audio: how much NetEq holds
    const uplinkAudioJitter = []; // ms, per connection
    for (const pc of pcs) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          audio.push({
            id: `${pcs.indexOf(pc)}/${s.ssrc}`, jitterBufferDelay: s.jitterBufferDelay ?? 0, jitterBufferEmittedCount: s.jitterBufferEmittedCount ?? 0,
            jitterBufferTargetDelay: s.jitterBufferTargetDelay ?? 0, jitterBufferMinimumDelay: s.jitterBufferMinimumDelay ?? 0, jitter: s.jitter ?? 0,
          });
        }
        if (s.kind !== 'video') return;
        if (s.type === 'inbound-rtp') {
          inbound.push({
            id: `${pcs.indexOf(pc)}/${s.ssrc}`, framesDecoded: s.framesDecoded ?? 0, freezeCount: s.freezeCount ?? 0,
            totalFreezesDuration: s.totalFreezesDuration ?? 0, framesDropped: s.framesDropped ?? 0, nackCount: s.nackCount ?? 0,
            pliCount: s.pliCount ?? 0, packetsLost: s.packetsLost ?? 0, jitterBufferDelay: s.jitterBufferDelay ?? 0,
            jitterBufferEmittedCount: s.jitterBufferEmittedCount ?? 0,
            jitterBufferTargetDelay: s.jitterBufferTargetDelay ?? 0, jitterBufferMinimumDelay: s.jitterBufferMinimumDelay ?? 0,
          });
        }
        if (s.type === 'outbound-rtp') {
          outbound.push({
            id: `${pcs.indexOf(pc)}/${s.ssrc}`, framesEncoded: s.framesEncoded ?? 0, bytesSent: s.bytesSent ?? 0,
            targetBitrate: s.targetBitrate ?? null, qualityLimitationReason: s.qualityLimitationReason ?? 'none',
            keyFrames: s.keyFramesEncoded ?? 0, plisReceived: (s.pliCount ?? 0) + (s.firCount ?? 0), nacksReceived: s.nackCount ?? 0,
            scalabilityMode: s.scalabilityMode ?? '-',
          });
        }
      });
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate !== undefined) available.push(s.availableOutgoingBitrate);
        // What the receiving end (the SFU, or the mesh peer) reports about our video.
        if (s.type === 'media-source' && s.kind === 'video') sources.push(s.framesPerSecond ?? 0);
        if (s.type === 'remote-inbound-rtp' && s.kind === 'video') remote.push({ lost: s.packetsLost ?? 0, fractionLost: s.fractionLost ?? 0, rttMs: (s.roundTripTime ?? 0) * 1000 });
        // Our audio's arrival jitter as the receiving end (the SFU, or the mesh peer) reports it.
        if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') uplinkAudioJitter.push((s.jitter ?? 0) * 1000);
      });
    }
    return { inbound, outbound, available, remote, sources, audio, uplinkAudioJitter };
  });
}

const decodingAll = async (page) => (await pageStats(page)).inbound.filter((v) => v.framesDecoded > 0).length >= PEERS - 1;

async function openPage(browser, url) {
  const page = await (await browser.newContext()).newPage();
  if (SFU_SCALABILITY && url.includes('/sfu.html')) {
    await page.addInitScript((mode) => {
      const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
      RTCPeerConnection.prototype.addTransceiver = function (track, init) {
        const sendEncodings = init?.sendEncodings?.map((e) => ({ ...e, scalabilityMode: mode }));
        return addTransceiver.call(this, track, sendEncodings ? { ...init, sendEncodings } : init);
      };
    }, SFU_SCALABILITY);
  }
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30_000 });
  if (SFU_CSS && url.includes('/sfu.html')) await page.addStyleTag({ content: SFU_CSS });
  return page;
}

async function measure(kind, server, run) {
  const room = `${kind}-${run}-${process.pid}`;
  const browsers = [];
  const pages = [];
  try {
    for (let i = 0; i < PEERS; i++) browsers.push(await launchChromium());
    for (let i = 0; i < PEERS; i++) {
      const url = kind === 'mesh'
        ? `${server.url}/mesh.html?room=${room}&res=${RES}&fps=${FPS}`
        : `${server.url}/sfu.html?res=${RES}&fps=${FPS}${SFU_QUERY}`;
      pages.push(await openPage(browsers[i], url));
    }
    // Names typed before the clock starts; then each page joins with one call into it, as
    // the mesh page does: Playwright's click waits for the button to be visible, stable and
    // enabled, round trips that take 0.5–1 s per page on renderers starved of CPU (measured
    // with TIMELINE=1: the fourth SFU page clicked 3.5 s after the first, the mesh's fourth
    // joined after 1.2 s), which is the harness, not what a user waits for.
    if (kind === 'sfu') {
      for (const [i, page] of pages.entries()) {
        await page.getByTestId('room').fill(room);
        await page.getByTestId('name').fill(NAMES[i]);
      }
    }
    const t0 = Date.now();
    for (const page of pages) {
      if (kind === 'mesh') {
        await page.evaluate(() => window.__mesh.join());
        await page.waitForFunction(() => window.__mesh.id, null, { timeout: 15_000 });
      } else {
        await page.evaluate(() => document.querySelector('[data-testid="join"]').click());
        await page.waitForFunction(() => window.__rtc.id, null, { timeout: 15_000 });
      }
    }
    for (const page of pages) await until(`${kind}: all remote videos decoding`, () => decodingAll(page), 60_000, 100);
    const setupMs = Date.now() - t0;
    if (TIMELINE) {
      // Each page's own log in ms from the first join click: where the setup time goes.
      for (const [i, page] of pages.entries()) {
        const events = await page.evaluate(() => (window.__rtc ?? window.__mesh).events);
        console.log(`${kind} ${NAMES[i]}`, events.filter((e) => e.t >= t0).map((e) => `${e.t - t0}:${e.event}${typeof e.detail === 'string' && e.detail.length < 12 ? `=${e.detail}` : ''}`).join(' '));
      }
    }
    await sleep(WARMUP_S * 1000);

    const serverReport = async () => {
      const r = await server.operator('/api/rooms');
      const people = r.rooms.flatMap((room) => room.participants);
      return { keyframeRequestsSent: r.keyframe_requests_sent, keyframesRequested: people.reduce((a, p) => a + p.keyframes_requested, 0), nacksReceived: people.reduce((a, p) => a + p.nacks_received, 0) };
    };
    const server0 = await serverReport();
    const before = await Promise.all(pages.map(pageStats));
    const cpu0 = cpuSnapshot(server.bin);
    const started = Date.now();
    await sleep(WINDOW_S * 1000);
    const cpu1 = cpuSnapshot(server.bin);
    const after = await Promise.all(pages.map(pageStats));
    const server1 = await serverReport();
    const serverDelta = Object.fromEntries(Object.keys(server1).map((k) => [k, server1[k] - server0[k]]));
    // A page that lost its signaling connection and joined again has new streams: its figures
    // (and its peers' figures of it) drop out of the window. Say so, with the reason.
    const interruptions = [];
    for (const [i, page] of pages.entries()) {
      const events = (await page.evaluate(() => window.__rtc?.events ?? [])).filter((e) => e.t >= t0 && ['disconnect', 'rejoin'].includes(e.event));
      for (const e of events) interruptions.push({ page: i, atMs: e.t - t0, event: e.event, detail: String(e.detail ?? '') });
    }
    if (interruptions.length) {
      console.log(`run ${run + 1} ${kind}: ${interruptions.map((x) => `${NAMES[x.page]} ${x.event}=${x.detail} at +${(x.atMs / 1000).toFixed(1)} s`).join(', ')}`);
    }
    const seconds = (Date.now() - started) / 1000;

    const receivers = [];
    const senders = [];
    const estimates = []; // availableOutgoingBitrate per connection at the end, kbps
    const reports = []; // remote-inbound-rtp of our video at the end
    const captureFps = []; // media-source framesPerSecond at the end
    const uplinkJitters = []; // ms: our audio's arrival jitter where it is first received
    const audioBuffers = []; // per remote audio: ms held in its jitter buffer, of which lip sync's; arrival jitter
    for (const [i, end] of after.entries()) {
      for (const v of end.inbound) {
        const b = before[i].inbound.find((x) => x.id === v.id);
        if (!b) continue;
        const emitted = v.jitterBufferEmittedCount - b.jitterBufferEmittedCount;
        receivers.push({
          page: i,
          fps: (v.framesDecoded - b.framesDecoded) / seconds,
          freezes: v.freezeCount - b.freezeCount,
          frozenS: v.totalFreezesDuration - b.totalFreezesDuration,
          dropped: v.framesDropped - b.framesDropped,
          nacks: v.nackCount - b.nackCount,
          plis: v.pliCount - b.pliCount,
          lost: v.packetsLost - b.packetsLost,
          jitterBufferMs: emitted > 0 ? ((v.jitterBufferDelay - b.jitterBufferDelay) / emitted) * 1000 : null,
          // What the receiver adds to the delay its jitter alone needs: chiefly lip sync
          // holding video back to its audio (the minimum leaves sync and playout targets out).
          syncHoldMs: emitted > 0
            ? (((v.jitterBufferTargetDelay - b.jitterBufferTargetDelay) - (v.jitterBufferMinimumDelay - b.jitterBufferMinimumDelay)) / emitted) * 1000
            : null,
        });
      }
      for (const o of end.outbound) {
        const b = before[i].outbound.find((x) => x.id === o.id);
        if (b) {
          senders.push({
            page: i, fps: (o.framesEncoded - b.framesEncoded) / seconds, kbps: ((o.bytesSent - b.bytesSent) * 8) / seconds / 1000,
            targetKbps: o.targetBitrate === null ? null : o.targetBitrate / 1000, limitation: o.qualityLimitationReason,
            keyFrames: o.keyFrames - b.keyFrames, plisReceived: o.plisReceived - b.plisReceived, nacksReceived: o.nacksReceived - b.nacksReceived,
            scalabilityMode: o.scalabilityMode,
          });
        }
      }
      for (const a of end.audio) {
        const b = before[i].audio.find((x) => x.id === a.id);
        const emitted = b ? a.jitterBufferEmittedCount - b.jitterBufferEmittedCount : 0;
        if (emitted > 0) {
          audioBuffers.push({
            ms: ((a.jitterBufferDelay - b.jitterBufferDelay) / emitted) * 1000,
            syncHoldMs: (((a.jitterBufferTargetDelay - b.jitterBufferTargetDelay) - (a.jitterBufferMinimumDelay - b.jitterBufferMinimumDelay)) / emitted) * 1000,
            jitterMs: a.jitter * 1000,
          });
        }
      }
      uplinkJitters.push(...end.uplinkAudioJitter);
      for (const bps of end.available) estimates.push(bps / 1000);
      reports.push(...end.remote);
      captureFps.push(...end.sources);
    }
    return {
      kind, run, setupMs, seconds, receivers, senders, estimates, reports, serverDelta, captureFps, audioBuffers, uplinkJitters, interruptions,
      browserCpuCores: sum(Object.entries(cpu1.kinds).map(([k, v]) => v - (cpu0.kinds[k] ?? 0))) / TICKS_PER_S / seconds,
      browserCpuByKind: Object.fromEntries(Object.entries(cpu1.kinds).map(([k, v]) => [k, +((v - (cpu0.kinds[k] ?? 0)) / TICKS_PER_S / seconds).toFixed(2)])),
      serverCpuCores: (cpu1.server - cpu0.server) / TICKS_PER_S / seconds,
    };
  } finally {
    for (const browser of browsers) await browser.close().catch(() => {});
  }
}

const median = (xs) => {
  const s = xs.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/** One line of figures for one measurement. */
function summarize(m) {
  const r = m.receivers;
  return {
    setupMs: m.setupMs,
    recvFpsMedian: median(r.map((x) => x.fps)),
    recvFpsMin: Math.min(...r.map((x) => x.fps)),
    freezesPerVideo: sum(r.map((x) => x.freezes)) / r.length,
    frozenSPerVideo: sum(r.map((x) => x.frozenS)) / r.length,
    droppedPerVideo: sum(r.map((x) => x.dropped)) / r.length,
    nacks: sum(r.map((x) => x.nacks)),
    plis: sum(r.map((x) => x.plis)),
    lost: sum(r.map((x) => x.lost)),
    jitterBufferMs: median(r.map((x) => x.jitterBufferMs)),
    syncHoldMs: median(r.map((x) => x.syncHoldMs)),
    audioJitterBufferMs: median(m.audioBuffers.map((a) => a.ms)),
    audioSyncHoldMs: median(m.audioBuffers.map((a) => a.syncHoldMs)),
    audioJitterMs: median(m.audioBuffers.map((a) => a.jitterMs)),
    uplinkAudioJitterMs: median(m.uplinkJitters),
    sendFpsMedian: median(m.senders.map((x) => x.fps)),
    captureFpsMedian: median(m.captureFps),
    sendKbpsMedian: median(m.senders.map((x) => x.kbps)),
    keyFramesPerSender: sum(m.senders.map((x) => x.keyFrames)) / m.senders.length,
    plisReceivedPerSender: sum(m.senders.map((x) => x.plisReceived)) / m.senders.length,
    targetKbpsMedian: median(m.senders.map((x) => x.targetKbps)),
    estimateKbpsMedian: median(m.estimates),
    reportedLost: sum(m.reports.map((x) => x.lost)),
    reportedRttMs: median(m.reports.map((x) => x.rttMs)),
    sendStreams: m.senders.length,
    limited: [...new Set(m.senders.map((x) => x.limitation))].join(','),
    modes: [...new Set(m.senders.map((x) => x.scalabilityMode))].join(','),
    browserCpuCores: m.browserCpuCores,
    browserCpuByKind: m.browserCpuByKind,
    server: m.serverDelta,
    serverCpuCores: m.serverCpuCores,
  };
}

const fmt = (v, digits = 1) => (v === null || v === undefined ? '–' : typeof v === 'number' ? v.toFixed(digits) : String(v));

const server = await startServer({ publicDir: site, args: ['--room-capacity', String(PEERS)] });
server.bin = signalBin;
// SERVER_NICE=-10: does the server's scheduling on the busy machine matter? (an experiment knob)
if (process.env.SERVER_NICE) execFileSync('renice', ['-n', process.env.SERVER_NICE, '-p', String(server.proc.pid)]);
const results = [];
try {
  const kinds = ONLY ? [ONLY] : ['sfu', 'mesh'];
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 ? [...kinds].reverse() : kinds;
    for (const kind of order) {
      const m = await measure(kind, server, run);
      results.push(m);
      const s = summarize(m);
      console.log(`run ${run + 1} ${kind.padEnd(4)} setup ${s.setupMs} ms · recv fps median ${fmt(s.recvFpsMedian)} min ${fmt(s.recvFpsMin)} · freezes/video ${fmt(s.freezesPerVideo)} (${fmt(s.frozenSPerVideo)} s) · dropped/video ${fmt(s.droppedPerVideo)} · NACK ${s.nacks} PLI ${s.plis} lost ${s.lost} · jitter buffer ${fmt(s.jitterBufferMs, 0)} ms (sync hold ${fmt(s.syncHoldMs, 0)}), audio ${fmt(s.audioJitterBufferMs, 0)} ms (sync hold ${fmt(s.audioSyncHoldMs, 0)}, arrival jitter ${fmt(s.audioJitterMs, 0)}, first hop ${fmt(s.uplinkAudioJitterMs, 0)}) · capture fps ${fmt(s.captureFpsMedian)} · send fps ${fmt(s.sendFpsMedian)} × ${s.sendStreams} streams (${s.limited}; ${s.modes}) at ${fmt(s.sendKbpsMedian, 0)} kbps, keyframes ${fmt(s.keyFramesPerSender)} PLI/FIR in ${fmt(s.plisReceivedPerSender)} per stream, target ${fmt(s.targetKbpsMedian, 0)}, estimate ${fmt(s.estimateKbpsMedian, 0)}, reported lost ${s.reportedLost} rtt ${fmt(s.reportedRttMs, 0)} ms · CPU browsers ${fmt(s.browserCpuCores, 2)} server ${fmt(s.serverCpuCores, 2)} cores ${JSON.stringify(s.browserCpuByKind)} server ${JSON.stringify(s.server)}`);
    }
  }
} finally {
  if (process.env.SERVER_LOG_FILE) writeFileSync(process.env.SERVER_LOG_FILE, server.logs());
  await server.stop();
  rmSync(site, { recursive: true, force: true });
}

const keys = ['setupMs', 'recvFpsMedian', 'recvFpsMin', 'freezesPerVideo', 'frozenSPerVideo', 'droppedPerVideo', 'nacks', 'plis', 'jitterBufferMs', 'syncHoldMs', 'audioJitterBufferMs', 'audioSyncHoldMs', 'audioJitterMs', 'uplinkAudioJitterMs', 'captureFpsMedian', 'sendFpsMedian', 'sendKbpsMedian', 'keyFramesPerSender', 'plisReceivedPerSender', 'targetKbpsMedian', 'estimateKbpsMedian', 'browserCpuCores', 'serverCpuCores'];
const medians = {};
for (const kind of ['sfu', 'mesh']) {
  const rows = results.filter((m) => m.kind === kind).map(summarize);
  if (rows.length) medians[kind] = Object.fromEntries(keys.map((k) => [k, median(rows.map((r) => r[k]))]));
}
console.log(`\nmedians of ${RUNS} runs, ${PEERS} pages at ${RES}@${FPS}:`);
console.log(`${'figure'.padEnd(18)} ${'sfu'.padStart(9)} ${'mesh'.padStart(9)} ${'sfu/mesh'.padStart(9)}`);
for (const k of keys) {
  const a = medians.sfu?.[k];
  const b = medians.mesh?.[k];
  const ratio = a !== undefined && b ? a / b : null;
  console.log(`${k.padEnd(18)} ${fmt(a, 2).padStart(9)} ${fmt(b, 2).padStart(9)} ${fmt(ratio, 2).padStart(9)}`);
}
const out = path.join(repoRoot, 'bench/results', `browsers-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '')}`);
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'results.json'), JSON.stringify({ peers: PEERS, res: RES, fps: FPS, windowS: WINDOW_S, sfuQuery: SFU_QUERY, results, medians }, null, 1));
console.log(`results: ${path.relative(repoRoot, out)}/results.json`);
