// What the lab's tests do with pages: join calls and rooms, read the browsers' own statistics
// (RTCPeerConnection.getStats()) and measure stalls from them.
import { until } from '../lib/browser.mjs';

/** A fresh context and page in `browser`, with console errors and page errors collected. */
export async function openPage(browser, url, label, viewport = { width: 960, height: 540 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.label = label;
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => {
    // Failed loads are reported with their URL below.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) page.errors.push(m.text());
  });
  page.on('response', (r) => {
    if (r.status() >= 400) page.errors.push(`HTTP ${r.status()} ${r.url()}`);
  });
  await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
  return page;
}

/** Clicks Join on the 1-to-1 page for `room`; returns the click time. */
export async function joinCall(page, room) {
  await page.getByTestId('room').fill(room);
  const t = Date.now();
  try {
    await page.getByTestId('join').click({ timeout: 15_000 });
  } catch (err) {
    const why = await page.evaluate(() => ({ state: window.__rtc?.state, notice: document.querySelector('#notice')?.textContent, status: document.querySelector('#status-label')?.textContent })).catch(() => null);
    throw new Error(`${page.label}: cannot join ${room}: ${err.message.split('\n')[0]}; page: ${JSON.stringify(why)}; errors: ${JSON.stringify(page.errors)}`);
  }
  return t;
}

/** Page events (window.__rtc.events) named `names`, with times relative to `t0`. */
export function eventsSince(page, t0, names) {
  return page.evaluate(([from, wanted]) => window.__rtc.events.filter((e) => e.t >= from && wanted.includes(e.event)).map((e) => `${e.t - from}:${e.event}${e.detail !== undefined ? `=${e.detail}` : ''}`), [t0, names]);
}

/** Joins an SFU room from sfu.html; returns the click time. */
export async function joinRoom(page, room, name) {
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: 30_000 });
  await page.getByTestId('room').fill(room);
  await page.getByTestId('name').fill(name);
  const t = Date.now();
  await page.getByTestId('join').click();
  return t;
}

/**
 * The page's media as its browser sees it: every inbound video and audio stream, the
 * selected candidate pair, and the connection states.
 */
export function mediaStats(page) {
  return page.evaluate(async () => {
    const pc = window.__rtc?.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const out = { generation: window.__rtc.pcGeneration, connectionState: pc.connectionState, iceState: pc.iceConnectionState, video: [], audio: [], pair: null };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.video.push({
          mid: s.mid, framesDecoded: s.framesDecoded ?? 0, framesPerSecond: s.framesPerSecond ?? 0,
          frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0,
          freezeCount: s.freezeCount ?? 0, totalFreezesDuration: s.totalFreezesDuration ?? 0,
          nackCount: s.nackCount ?? 0, pliCount: s.pliCount ?? 0, packetsLost: s.packetsLost ?? 0,
          packetsReceived: s.packetsReceived ?? 0, bytesReceived: s.bytesReceived ?? 0, jitter: s.jitter ?? 0,
        });
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audio.push({ mid: s.mid, packetsReceived: s.packetsReceived ?? 0, packetsLost: s.packetsLost ?? 0, concealedSamples: s.concealedSamples ?? 0, totalSamplesReceived: s.totalSamplesReceived ?? 0 });
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        const local = byId.get(pair?.localCandidateId);
        const remote = byId.get(pair?.remoteCandidateId);
        if (local && remote) {
          out.pair = {
            local: { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol ?? null, address: `${local.address}:${local.port}` },
            remote: { type: remote.candidateType, protocol: remote.protocol, address: `${remote.address}:${remote.port}` },
            rttMs: pair.currentRoundTripTime !== undefined ? Math.round(pair.currentRoundTripTime * 1000) : null,
          };
        }
      }
    });
    return out;
  });
}

const sum = (list, key) => list.reduce((n, s) => n + (s[key] ?? 0), 0);

/**
 * Waits until `page` decodes video and receives audio from `streams` remote participants,
 * both growing over a second; returns the stats.
 */
export async function waitForMedia(page, { streams = 1, timeout = 30_000 } = {}) {
  let first = null;
  return until(`${page.label}: media from ${streams} stream(s) flowing`, async () => {
    const s = await mediaStats(page);
    const decoding = s?.video.filter((v) => v.framesDecoded > 0).length ?? 0;
    const hearing = s?.audio.filter((a) => a.packetsReceived > 0).length ?? 0;
    if (decoding < streams || hearing < streams || !s.pair) return null;
    if (!first) {
      first = s;
      return null;
    }
    const growing = sum(s.video, 'framesDecoded') > sum(first.video, 'framesDecoded') && sum(s.audio, 'packetsReceived') > sum(first.audio, 'packetsReceived');
    return growing ? s : null;
  }, timeout, 250);
}

/**
 * Starts sampling, inside the page, the frames decoded per inbound video stream every
 * `everyMs`; `stop()` returns the samples. Stalls are measured from these, the browser's own
 * counters, not from the test's clock.
 */
export async function startSampler(page, everyMs = 200) {
  await page.evaluate((every) => {
    const lab = (window.__lab = { samples: [], timer: 0 });
    lab.timer = setInterval(async () => {
      const pc = window.__rtc?.pc;
      if (!pc) return lab.samples.push({ t: Date.now(), frames: {} });
      const frames = {};
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames[`${window.__rtc.pcGeneration}:${s.mid}`] = s.framesDecoded ?? 0;
      });
      lab.samples.push({ t: Date.now(), frames });
    }, every);
  }, everyMs);
  return {
    stop: () => page.evaluate(() => {
      clearInterval(window.__lab.timer);
      return window.__lab.samples;
    }),
  };
}

/**
 * Samples an SFU room page's remote tiles every `everyMs`: per publisher (the tile's
 * participant id), frames decoded, the decoded height and whether the server paused that
 * video for lack of bandwidth. `stop()` returns the samples.
 */
export async function startTileSampler(page, everyMs = 200) {
  await page.evaluate((every) => {
    const lab = (window.__tiles = { samples: [], timer: 0 });
    lab.timer = setInterval(async () => {
      const pc = window.__rtc?.pc;
      const tiles = {};
      for (const video of document.querySelectorAll('video[data-participant]')) {
        const track = video.srcObject?.getVideoTracks()[0];
        const receiver = track && pc?.getReceivers().find((r) => r.track === track);
        if (!receiver) continue;
        let inbound = null;
        (await receiver.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') inbound = r; });
        tiles[video.dataset.participant] = { frames: inbound?.framesDecoded ?? 0, height: inbound?.frameHeight ?? 0, paused: video.closest('.tile').dataset.video === 'paused' };
      }
      lab.samples.push({ t: Date.now(), tiles });
    }, every);
  }, everyMs);
  return {
    stop: () => page.evaluate(() => {
      clearInterval(window.__tiles.timer);
      return window.__tiles.samples;
    }),
  };
}

/**
 * The longest time (ms) from `from` on during which publisher `id`'s tile decoded no frame
 * without saying why: while the tile shows that the server paused the video, it is not frozen.
 */
export function longestTileStall(samples, id, from = 0) {
  const kept = samples.filter((s) => s.t >= from && s.tiles[id]);
  let worst = 0;
  let last = kept[0];
  for (const s of kept) {
    if (s.tiles[id].paused) {
      last = s;
    } else if (s.tiles[id].frames > last.tiles[id].frames) {
      worst = Math.max(worst, s.t - last.t);
      last = s;
    }
  }
  return Math.max(worst, (kept.at(-1)?.t ?? 0) - (last?.t ?? 0));
}

/**
 * The longest time in `samples` (from `from` on) during which no video stream decoded a new
 * frame ("all remote video frozen"): `{ms, start, end}`; `end` is when frames came back
 * (null if they did not).
 */
export function longestStallSpan(samples, from = 0) {
  const kept = samples.filter((s) => s.t >= from);
  let worst = { ms: 0, start: null, end: null };
  let lastProgress = kept[0]?.t ?? 0;
  let previous = null;
  for (const s of kept) {
    const progressed = !previous || Object.entries(s.frames).some(([k, n]) => n > (previous.frames[k] ?? 0));
    if (progressed) {
      if (previous && s.t - lastProgress > worst.ms) worst = { ms: s.t - lastProgress, start: lastProgress, end: s.t };
      lastProgress = s.t;
    }
    previous = s;
  }
  const tail = (kept.at(-1)?.t ?? 0) - lastProgress;
  if (tail > worst.ms) worst = { ms: tail, start: lastProgress, end: null };
  return worst;
}

export const longestStall = (samples, from = 0) => longestStallSpan(samples, from).ms;

/** When video came back after the longest stall since `from`, in ms after `from` (null: it did not). */
export function resumedAfter(samples, from) {
  const { end } = longestStallSpan(samples, from);
  return end === null ? null : end - from;
}

/**
 * When every remote video on the page at the end, having stopped for at least `minMs` since
 * `from`, was decoding again, in ms after `from`: 0 if none stopped, null if one has not come
 * back. A video of a new session (a rejoin) counts from `from` until its first frames. Unlike
 * `resumedAfter`, a page whose other videos kept playing still counts the one that stopped.
 */
export function everyStreamBackAfter(samples, from, minMs = 1000) {
  let latest = 0;
  for (const key of Object.keys(samples.at(-1)?.frames ?? {})) {
    const stream = samples.map((s) => ({ t: s.t, frames: { [key]: s.frames[key] ?? 0 } }));
    const { ms, end } = longestStallSpan(stream, from);
    if (ms < minMs) continue;
    if (end === null) return null;
    latest = Math.max(latest, end - from);
  }
  return latest;
}

/** Sums the quality figures of every inbound video stream between two stats readings. */
export function quality(before, after, seconds) {
  const delta = (key) => sum(after.video, key) - sum(before?.video ?? [], key);
  const streams = Math.max(1, after.video.length);
  return {
    fps: Math.round((delta('framesDecoded') / seconds / streams) * 10) / 10,
    freezes: delta('freezeCount'),
    frozenS: Math.round(delta('totalFreezesDuration') * 10) / 10,
    nacks: delta('nackCount'),
    plis: delta('pliCount'),
    lost: delta('packetsLost'),
    kbps: Math.round((delta('bytesReceived') * 8) / seconds / 1000),
    rttMs: after.pair?.rttMs ?? null,
    resolution: after.video.map((v) => `${v.frameWidth}x${v.frameHeight}`).join(' '),
  };
}
