// Headless Chromium for call tests: Debian's browser with fake camera and microphone.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * Chromium's flags for call tests. `loopback` lets ICE use loopback candidates: the tests in
 * tests/browser run in a namespace that has nothing else; the network lab never sets it.
 */
export function chromiumArgs({ loopback = true } = {}) {
  return [
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--disable-background-networking',
    ...(loopback ? ['--allow-loopback-in-peer-connection'] : []),
    '--no-first-run',
  ];
}

/** Headless Chromium for call tests; `extraArgs` add to chromiumArgs() (e.g. a fake microphone file). */
export function launchChromium(extraArgs = []) {
  return chromium.launch({ executablePath: CHROMIUM, args: [...chromiumArgs(), ...extraArgs], timeout: 20_000 });
}

/**
 * Opens `url` (an sfu.html page) in a new context of `browser` and joins `room` as `name`
 * (with `passcode` if given); resolves with the page once the server answered, `page.id` its
 * participant id.
 */
export async function joinSfuRoom(browser, url, { room, name, passcode, viewport = { width: 960, height: 540 }, timeout = 30_000 }) {
  const page = await (await browser.newContext({ viewport })).newPage();
  page.label = name;
  page.on('pageerror', (e) => console.log(`${name}: page error: ${e.message}`));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout });
  await page.getByTestId('room').fill(room);
  await page.getByTestId('name').fill(name);
  if (passcode !== undefined) await page.getByTestId('passcode').fill(passcode);
  await page.getByTestId('join').click();
  await page.waitForFunction(() => window.__rtc.id, null, { timeout });
  page.id = await page.evaluate(() => window.__rtc.id);
  return page;
}

/**
 * What an SFU room page receives of one publisher's video (`source`: its camera or its shared
 * screen): its decoder's view (getStats() of that tile's receiver) and the tile's state
 * (`quality`: the layer it asks for; `video`: 'paused' when the server paused it for lack of
 * bandwidth; `pinned`: shown large).
 */
export function sfuReceived(page, publisherId, source = 'camera') {
  return page.evaluate(async ([id, source]) => {
    const video = document.querySelector(source === 'screen' ? `video[data-screen-of="${id}"]` : `video[data-participant="${id}"]`);
    const track = video?.srcObject?.getVideoTracks()[0];
    const receiver = track && window.__rtc.pc.getReceivers().find((r) => r.track === track);
    if (!receiver) return null;
    let inbound = null;
    (await receiver.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') inbound = r; });
    return {
      quality: video.closest('.tile').dataset.layer ?? null,
      video: video.closest('.tile').dataset.video ?? 'active',
      height: inbound?.frameHeight ?? 0,
      frames: inbound?.framesDecoded ?? 0,
      bytes: inbound?.bytesReceived ?? 0,
      freezes: inbound?.freezeCount ?? 0,
      frozenS: inbound?.totalFreezesDuration ?? 0,
      width: inbound?.frameWidth ?? 0,
      keyframes: inbound?.keyFramesDecoded ?? 0,
      pinned: video.closest('.tile').classList.contains('pinned'),
    };
  }, [publisherId, source]);
}

/**
 * What the SFU page in `page` sends of its camera, per simulcast layer (getStats() of its
 * outbound video): rid → {bytes, frames, height, limited (qualityLimitationReason), active
 * (the encoding's flag), kbps (the encoder's target)}.
 */
export function sfuSent(page) {
  return page.evaluate(async () => {
    const out = {};
    const encodings = window.__rtc.pc.getSenders().find((s) => s.track?.kind === 'video')?.getParameters().encodings ?? [];
    (await window.__rtc.pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        out[r.rid ?? '-'] = {
          bytes: r.bytesSent,
          frames: r.framesEncoded ?? 0,
          height: r.frameHeight ?? 0,
          limited: r.qualityLimitationReason,
          active: encodings.find((e) => e.rid === r.rid)?.active,
          kbps: Math.round((r.targetBitrate ?? 0) / 1000),
        };
      }
    });
    return out;
  });
}

/**
 * Inbound media and the selected ICE candidate pair of `window.__rtc.pc` in `page`.
 * @returns {Promise<null | {connectionState: string, framesDecoded: number, audioPackets: number,
 *   local?: {type: string, protocol: string, address: string}, remote?: {type: string, address: string}}>}
 */
export function callStats(page) {
  return page.evaluate(async () => {
    const pc = window.__rtc.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const out = { connectionState: pc.connectionState, framesDecoded: 0, audioPackets: 0 };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded = s.framesDecoded ?? 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioPackets = s.packetsReceived ?? 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        const local = byId.get(pair?.localCandidateId);
        const remote = byId.get(pair?.remoteCandidateId);
        if (local) out.local = { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol, address: `${local.address}:${local.port}` };
        if (remote) out.remote = { type: remote.candidateType, address: `${remote.address}:${remote.port}` };
      }
    });
    return out;
  });
}

/** Polls `fn` until it returns a truthy value; fails with `what` after `ms`. */
export async function until(what, fn, ms = 20_000, interval = 100) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}
