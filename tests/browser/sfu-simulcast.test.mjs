// Simulcast in SFU rooms, in real Chromium (issue 10): publishers send up to three layers, only
// those somebody needs, and each tile receives the one its size needs, switching on keyframes
// without freezing.
//
// Three pages join one room with a 960×540 fake camera at 15 fps, so each publisher sends
// `q` 240×135, `h` 480×270 and `f` 960×540 (public/lib/bitrate.js; Chromium sends three
// layers only from 960×540 up). Each page's tiles ask for
// a layer by their rendered size (public/lib/layers.js); the server switches each subscription
// on a keyframe of the new layer (sfu/src/media/munger.rs). The test reads what the browsers
// themselves report (RTCPeerConnection.getStats()): the publisher's outbound streams per rid,
// and on a subscriber the resolution its decoder gets from one publisher, its frames decoded
// and its freezes, while the tile is resized, pinned large, hidden and shown again; and that
// the publisher stops sending the layers nobody watches and starts again when one is wanted.
// A layer is told by the height its publisher encodes it at, read at the same moment: on a
// loaded machine Chromium scales its camera down for CPU, all three layers with it.
//
// Run it like tests/browser/sfu.test.mjs (scripts/test does): inside a namespace with only
// loopback, against the release server.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../lib/server.mjs';
import { joinSfuRoom, launchChromium, sfuReceived, sfuSent, until } from '../lib/browser.mjs';

const ROOM = `simulcast-${process.pid}`;
const MEDIA = 'res=960x540&fps=15';
const WAIT_MS = 30_000;

// The server logs each subscription's layer changes at debug: shown when a test fails.
process.env.SIGNAL_LOG ??= 'info,sfu::core::selection=debug';
const layerLog = () => server.logs().replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => /: layer |publisher layers/.test(l)).slice(-12).join('\n');

let server;
const browsers = [];
const figures = {};

const openPage = (browser, name, viewport) => joinSfuRoom(browser, `${server.url}/sfu.html?${MEDIA}`, { room: ROOM, name, viewport, timeout: WAIT_MS });

/** The publisher's outbound video streams: rid → {bytes, frames, height, limited, …}. */
const outbound = sfuSent;

const received = (page, publisher) => sfuReceived(page, publisher.id);

/** The rid each quality the page asks for names (public/lib/layers.js). */
const RID = { low: 'q', medium: 'h', high: 'f' };

/**
 * The heights `publisher` encodes `rid` at now, and a moment later. A loaded machine makes
 * Chromium scale its camera down (qualityLimitationReason "cpu"), every layer with it:
 * at 480×270 input, `h` is 135 px high. So a layer is known by the publisher's own figure.
 */
async function sentHeights(publisher, rid) {
  const a = await outbound(publisher);
  await sleep(200);
  const b = await outbound(publisher);
  return { heights: new Set([a[rid]?.height, b[rid]?.height]), limited: b[rid]?.limited };
}

/**
 * Whether the layers in `sent` stand at 1/4 (q), 1/2 (h) and 1 (f) of the camera's height, at
 * most 540 px: h and f (those given a height) are measured against q, which always flows.
 */
function layersToScale(sent) {
  const q = sent.q?.height;
  const near = (rid, times) => !sent[rid]?.height || Math.abs(sent[rid].height - times * q) <= times / 2;
  return q > 0 && q * 4 <= 540 && near('h', 2) && near('f', 4);
}

/** The server takes a layer with no packet for this long for stopped (sfu/src/media/layers.rs ACTIVE_WINDOW). */
const LAYER_STOPPED_MS = 1000;

/**
 * Watches `page` decode `publisher` for `ms`: about every 250 ms, the height it decodes and
 * what the publisher encodes on `rid`. Returns the samples, the longest time `rid` was seen
 * encoding no frame and the longest time between two samples (what that figure may miss).
 */
async function watch(page, publisher, rid, ms) {
  const samples = [];
  const end = Date.now() + ms;
  let lastFrames = -1;
  let lastGrowth = Date.now();
  let previous = Date.now();
  let longestStallMs = 0;
  let longestGapMs = 0;
  while (Date.now() < end) {
    const sent = (await outbound(publisher))[rid];
    const now = Date.now();
    longestGapMs = Math.max(longestGapMs, now - previous);
    previous = now;
    if (sent && sent.frames > lastFrames) {
      lastFrames = sent.frames;
      lastGrowth = now;
    }
    longestStallMs = Math.max(longestStallMs, now - lastGrowth);
    samples.push({ ms: ms - (end - now), decoded: (await received(page, publisher))?.height, sent: sent?.height, sentFrames: sent?.frames, limited: sent?.limited });
    await sleep(250);
  }
  return { samples, longestStallMs, longestGapMs };
}

/**
 * Waits until `page` decodes `publisher`'s video on the layer `quality` names, at the height
 * the publisher encodes that layer, and keeps decoding it for 2 s; returns how long the switch
 * took, the freezes (count, seconds) its decoder saw meanwhile and the height.
 *
 * A layer that stops at its publisher for a second is one the server rightly falls back from
 * (to the layer below, sfu/src/media/layers.rs `pick`); so if the page leaves the layer while
 * it stalled, it must come back to it once it flows again, and the fall back is counted.
 */
async function expectLayer(page, publisher, quality, label) {
  const rid = RID[quality];
  const before = await received(page, publisher);
  const onLayer = async () => {
    const r = await received(page, publisher);
    const sent = await sentHeights(publisher, rid);
    if (r?.quality === quality && sent.heights.has(r.height)) return r;
    throw new Error(JSON.stringify({ received: r, sent: [...sent.heights], limited: sent.limited }));
  };
  const t0 = Date.now();
  const now = await until(`${label}: ${page.label} asks for ${quality} and decodes ${publisher.label}'s ${rid}`, onLayer, WAIT_MS, 200);
  const switchMs = Date.now() - t0;
  const watched = await watch(page, publisher, rid, 2000);
  const last = watched.samples.at(-1);
  // The decoder shows a frame a moment after the encoder reports its size.
  const sentLately = watched.samples.slice(-2).map((s) => s.sent);
  let fellBack = 0;
  if (!sentLately.includes(last.decoded)) {
    // Seen stalled for at least the server's window, less what the sampling may have missed.
    assert.ok(
      watched.longestStallMs >= LAYER_STOPPED_MS - watched.longestGapMs,
      `${label}: stays on ${rid}: decodes ${last.decoded}p while ${publisher.label} sends ${rid} at ${last.sent}p and never stopped it ` +
        `(longest stall seen ${watched.longestStallMs} ms, samples up to ${watched.longestGapMs} ms apart): ` +
        `${JSON.stringify(watched.samples)}\nthe server's layer choices:\n${layerLog()}`,
    );
    console.log(`# ${label}: ${publisher.label}'s ${rid} stopped for ${watched.longestStallMs} ms; ${page.label} fell back to ${last.decoded}p: ${JSON.stringify(watched.samples)}`);
    fellBack = 1;
    await until(`${label}: back on ${rid} once it flows again`, onLayer, WAIT_MS, 200);
  }
  const after = await received(page, publisher);
  assert.ok(after.frames - now.frames >= 10, `${label}: ${after.frames - now.frames} frames decoded in 2 s after the switch`);
  const frozenS = after.frozenS - before.frozenS;
  return { switchMs, height: after.height, limited: last.limited, fellBack, freezes: after.freezes - before.freezes, frozenS: Number(frozenS.toFixed(2)) };
}

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  await server?.stop();
  console.log('figures', JSON.stringify(figures));
});

describe('simulcast in SFU rooms', { timeout: 180_000 }, () => {
  let ann; let bob; let cid;

  it('publishers send only the layers somebody needs; each tile gets the layer its size needs', async () => {
    const one = await launchChromium();
    const two = await launchChromium();
    browsers.push(one, two);
    ann = await openPage(one, 'Ann', { width: 960, height: 540 });
    // Alone, Ann is watched by nobody: the server stops her h and f at once, not after the
    // 5 s it waits before stopping a layer somebody watched (sfu/src/media/layers.rs).
    const alone = await until('Ann alone is told to send only q', async () => {
      const events = await ann.evaluate(() => window.__rtc.events.filter((e) => e.event === 'joined' || e.event === 'publish-layers'));
      const joined = events.find((e) => e.event === 'joined');
      const ask = events.find((e) => e.event === 'publish-layers');
      if (joined && ask) return { ask: ask.detail, afterMs: ask.t - joined.t };
      throw new Error(JSON.stringify(events));
    });
    assert.deepEqual(alone.ask, { f: false, h: false, q: true });
    assert.ok(alone.afterMs < 5000, `told ${alone.afterMs} ms after joining`);

    // Bob's window: a 2×2 grid of tiles ~270 px high → medium. Cid's is smaller.
    bob = await openPage(two, 'Bob', { width: 1280, height: 720 });
    cid = await openPage(one, 'Cid', { width: 960, height: 540 });
    // (Once Bob's page shows Cid's tile too: until then Ann's is larger.)
    await until('Bob\'s tile of Ann is medium-sized', async () => {
      const tile = await bob.evaluate((id) => document.querySelector(`video[data-participant="${id}"]`).getBoundingClientRect().height, ann.id);
      if (tile > 180 && tile <= 360) return tile;
      throw new Error(`${tile} px high`);
    }, 5000);
    // Cid joined a room whose tiles of him are medium or small: nobody has ever needed his
    // top layer, so he never encodes it. (Each page tells the server its new tile's layer
    // before it answers the `update` with the tile's track; a subscription opened without a
    // wish would want the best layer and keep Cid's f on for 5 s.)
    // What each page asked and was told, and the server's layer choices: printed when Cid
    // sends other layers than q and h.
    const timeline = (page) => page.evaluate(() => window.__rtc.events.filter((e) => /publish-layers|layer|update|joined/.test(e.event)).map((e) => `${e.t}:${e.event}=${JSON.stringify(e.detail)}`).join(' '));
    const printTimelines = async () => console.log(`# Ann ${await timeline(ann)}\n# Bob ${await timeline(bob)}\n# Cid ${await timeline(cid)}\n# ${layerLog()}`);
    const sent = await until('Cid sends q and h, not f', async () => {
      const a = await outbound(cid);
      await sleep(1000);
      const b = await outbound(cid);
      const flowing = ['q', 'h', 'f'].filter((rid) => b[rid]?.bytes > (a[rid]?.bytes ?? 0));
      if (JSON.stringify(flowing) === '["q","h"]') return b;
      throw new Error(`flowing: ${flowing}; ${JSON.stringify(b)}`);
    }).catch(async (error) => {
      await printTimelines();
      throw error;
    });
    assert.ok(layersToScale(sent), `q and h at 1/4 and 1/2 of at most 540 px: ${JSON.stringify(sent)}`);
    if ((sent.f?.frames ?? 0) > 15) await printTimelines();
    // (A frame or two may go out before the server's first ask reaches Cid's page.)
    assert.ok((sent.f?.frames ?? 0) <= 15, `Cid encoded ${sent.f?.frames} frames of a top layer nobody needed`);
    figures.medium = await expectLayer(bob, ann, 'medium', 'three tiles');
  });

  it('a pinned tile switches up to the full layer, a small window down to the low one', async () => {
    // Cid's window is smaller than Bob's: its tiles ask for their own layer.
    const cidBefore = await received(cid, ann);
    await bob.setViewportSize({ width: 1600, height: 1000 });
    await bob.locator(`.tile[data-participant="${ann.id}"]`).click();
    figures.pinned = await expectLayer(bob, ann, 'high', 'pinned');
    // Asked for, Ann's top layer runs, at full size.
    const sent = await outbound(ann);
    assert.ok(sent.f?.height > 0 && layersToScale({ q: sent.q, f: sent.f }), `q and f at 1/4 and 1 of at most 540 px: ${JSON.stringify(sent)}`);
    // Cid's tile, now a thumbnail in Bob's window, needs less.
    const cidTile = await received(bob, cid);
    assert.notEqual(cidTile.quality, 'high', `a thumbnail asks for ${cidTile.quality}`);

    await bob.locator(`.tile[data-participant="${ann.id}"]`).click();
    await bob.setViewportSize({ width: 800, height: 450 });
    figures.small = await expectLayer(bob, ann, 'low', 'small window');
    // Ann's other subscriber is not affected by Bob's choices.
    const atCid = await received(cid, ann);
    assert.equal(atCid.quality, cidBefore.quality, 'Cid asks for what it asked for');
    const atCidSent = await sentHeights(ann, RID[atCid.quality]);
    assert.ok(atCidSent.heights.has(atCid.height), `Cid gets what its own tile asks for: ${atCid.height}p, ${RID[atCid.quality]} at ${[...atCidSent.heights]}p`);
    assert.ok(atCid.frames > cidBefore.frames, 'and keeps decoding');
    for (const [label, f] of Object.entries(figures)) {
      assert.ok(f.frozenS <= 1, `${label}: ${f.frozenS} s frozen while switching`);
    }
  });

  it('layers nobody watches stop at the publisher', async () => {
    // Bob and Cid both want Ann's lowest layer now: after the server's delay (5 s) Ann's
    // browser stops encoding and sending h and f.
    const t0 = Date.now();
    await until('Ann sends only q', async () => {
      const a = await outbound(ann);
      await sleep(1500);
      const b = await outbound(ann);
      const flowing = ['q', 'h', 'f'].filter((rid) => b[rid]?.bytes > (a[rid]?.bytes ?? 0));
      if (JSON.stringify(flowing) === '["q"]') return true;
      throw new Error(`flowing: ${flowing}`);
    }, WAIT_MS, 0);
    figures.pausedAfterMs = Date.now() - t0;
    const events = await ann.evaluate(() => window.__rtc.events.filter((e) => e.event === 'publish-layers').map((e) => e.detail));
    assert.deepEqual(events.at(-1), { f: false, h: false, q: true }, JSON.stringify(events));
  });

  it('a hidden tile receives nothing and resumes when shown', async () => {
    // Ann's h layer is off (previous test): asking for it switches it back on at Ann.
    await bob.setViewportSize({ width: 1280, height: 720 });
    figures.resumedAtPublisher = await expectLayer(bob, ann, 'medium', 'back to medium');
    await bob.evaluate((id) => { document.querySelector(`.tile[data-participant="${id}"]`).style.display = 'none'; }, ann.id);
    await until('Bob\'s hidden tile asks for nothing', async () => (await received(bob, ann)).quality === 'off');
    await sleep(1000); // packets already on their way
    const a = await received(bob, ann);
    await sleep(2000);
    const b = await received(bob, ann);
    assert.ok(b.bytes - a.bytes < 2000, `a hidden tile still got ${b.bytes - a.bytes} bytes in 2 s`);
    const cidMeanwhile = await received(bob, cid);
    await sleep(1000);
    assert.ok((await received(bob, cid)).frames > cidMeanwhile.frames, 'the other tile goes on');

    await bob.evaluate((id) => { document.querySelector(`.tile[data-participant="${id}"]`).style.display = ''; }, ann.id);
    // (Its freeze figures count the time it was hidden.)
    figures.resumed = await expectLayer(bob, ann, 'medium', 'shown again');
  });

  it('a renegotiation leaves the layers nobody needs stopped', async () => {
    // Chromium switches every simulcast encoding back on when it applies a remote offer,
    // though nobody's needs changed: the page puts its last ask back at once, and the server
    // tells it again. An ICE restart is an `update` that changes nothing else.
    const flowing = async () => {
      const a = await outbound(ann);
      await sleep(1500);
      const b = await outbound(ann);
      return ['q', 'h', 'f'].filter((rid) => b[rid]?.bytes > (a[rid]?.bytes ?? 0));
    };
    await until('Ann sends q and h (Bob medium, Cid low)', async () => {
      const now = await flowing();
      if (JSON.stringify(now) !== '["q","h"]') throw new Error(`flowing: ${now}`);
      return now;
    });
    const answers = () => ann.evaluate(() => window.__rtc.events.filter((e) => e.event === 'update' && e.detail === 'answered').map((e) => e.t));
    const before = (await answers()).length;
    const reply = await ann.evaluate(() => new Promise((resolve) => window.__rtc.socket.emit('restart', {}, resolve)));
    assert.deepEqual(reply, { ok: true });
    const answeredAt = await until('Ann answers the restart', async () => (await answers())[before]);
    // (Between applying the offer and putting the ask back, the encoder may send a frame of
    // f: a blip, not what is checked.)
    await sleep(500);
    const after = await flowing();
    const events = await ann.evaluate((since) => window.__rtc.events.filter((e) => e.t >= since && /publish-layers|sending-layers|update/.test(e.event)), answeredAt - 2000);
    assert.deepEqual(after, ['q', 'h'], `after the renegotiation Ann sends ${after}: ${JSON.stringify(events)}`);
    // The page switched f off again itself, at once…
    const reapplied = events.find((e) => e.event === 'sending-layers' && e.t > answeredAt);
    assert.deepEqual(reapplied?.detail, { q: true, h: true, f: false }, `put back after the answer: ${JSON.stringify(events)}`);
    assert.ok(reapplied.t - answeredAt < 1000, `${reapplied.t - answeredAt} ms after the answer`);
    // …and the server, knowing what a renegotiation does to a browser, tells it again (for
    // any client).
    const retold = events.find((e) => e.event === 'publish-layers' && e.t > answeredAt);
    assert.deepEqual(retold?.detail, { f: false, h: true, q: true }, `told again after the answer: ${JSON.stringify(events)}`);
  });
});
