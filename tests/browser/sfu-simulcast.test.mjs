// Simulcast in SFU rooms, in real Chromium (issue 10): publishers send three layers and each
// tile receives the one its size needs, switching on keyframes without freezing.
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
//
// Run it like tests/browser/sfu.test.mjs (scripts/test does): inside a namespace with only
// loopback, against the release server.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../lib/server.mjs';
import { joinSfuRoom, launchChromium, sfuReceived, until } from '../lib/browser.mjs';

const ROOM = `simulcast-${process.pid}`;
const MEDIA = 'res=960x540&fps=15';
const WAIT_MS = 30_000;

let server;
const browsers = [];
const figures = {};

const openPage = (browser, name, viewport) => joinSfuRoom(browser, `${server.url}/sfu.html?${MEDIA}`, { room: ROOM, name, viewport, timeout: WAIT_MS });

/** The publisher's outbound video streams: rid → {bytes, frames, height}. */
function outbound(page) {
  return page.evaluate(async () => {
    const out = {};
    (await window.__rtc.pc.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') out[r.rid ?? '-'] = { bytes: r.bytesSent, frames: r.framesEncoded ?? 0, height: r.frameHeight ?? 0 };
    });
    return out;
  });
}

const received = (page, publisher) => sfuReceived(page, publisher.id);

/**
 * Waits until `page` decodes `publisher`'s video at `height` and keeps decoding it; returns how
 * long that took and the freezes (count, seconds) its decoder saw meanwhile.
 */
async function expectLayer(page, publisher, { quality, height }, label) {
  const before = await received(page, publisher);
  const t0 = Date.now();
  const now = await until(`${label}: ${page.label} asks for ${quality} and decodes ${height}p of ${publisher.label}`, async () => {
    const r = await received(page, publisher);
    if (r?.quality === quality && r.height === height) return r;
    throw new Error(JSON.stringify(r));
  }, WAIT_MS, 200);
  const switchMs = Date.now() - t0;
  await sleep(2000);
  const after = await received(page, publisher);
  assert.equal(after.height, height, `${label}: stays at ${height}p`);
  assert.ok(after.frames - now.frames >= 10, `${label}: ${after.frames - now.frames} frames decoded in 2 s after the switch`);
  const frozenS = after.frozenS - before.frozenS;
  return { switchMs, freezes: after.freezes - before.freezes, frozenS: Number(frozenS.toFixed(2)) };
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

  it('publishers send three layers; each tile gets the layer its size needs', async () => {
    const one = await launchChromium();
    const two = await launchChromium();
    browsers.push(one, two);
    // Bob's window: a 2×2 grid of tiles ~270 px high → medium.
    ann = await openPage(one, 'Ann', { width: 960, height: 540 });
    bob = await openPage(two, 'Bob', { width: 1280, height: 720 });
    cid = await openPage(one, 'Cid', { width: 960, height: 540 });

    const sent = await until('Ann sends q, h and f', async () => {
      const a = await outbound(ann);
      await sleep(1000);
      const b = await outbound(ann);
      const flowing = ['q', 'h', 'f'].filter((rid) => b[rid]?.bytes > (a[rid]?.bytes ?? 0));
      if (flowing.length === 3) return b;
      throw new Error(JSON.stringify(b));
    });
    assert.deepEqual(['q', 'h', 'f'].map((rid) => sent[rid].height), [135, 270, 540]);
    const tile = await bob.evaluate((id) => document.querySelector(`video[data-participant="${id}"]`).getBoundingClientRect().height, ann.id);
    assert.ok(tile > 180 && tile <= 360, `Bob's tile of Ann is ${tile} px high`);
    figures.medium = await expectLayer(bob, ann, { quality: 'medium', height: 270 }, 'three tiles');
  });

  it('a pinned tile switches up to the full layer, a small window down to the low one', async () => {
    // Cid's window is smaller than Bob's: its tiles ask for their own layer.
    const cidBefore = await received(cid, ann);
    await bob.setViewportSize({ width: 1600, height: 1000 });
    await bob.locator(`.tile[data-participant="${ann.id}"]`).click();
    figures.pinned = await expectLayer(bob, ann, { quality: 'high', height: 540 }, 'pinned');
    // Cid's tile, now a thumbnail in Bob's window, needs less.
    const cidTile = await received(bob, cid);
    assert.notEqual(cidTile.quality, 'high', `a thumbnail asks for ${cidTile.quality}`);

    await bob.locator(`.tile[data-participant="${ann.id}"]`).click();
    await bob.setViewportSize({ width: 800, height: 450 });
    figures.small = await expectLayer(bob, ann, { quality: 'low', height: 135 }, 'small window');
    // Ann's other subscriber is not affected by Bob's choices.
    const atCid = await received(cid, ann);
    assert.deepEqual([atCid.quality, atCid.height], [cidBefore.quality, cidBefore.height], 'Cid gets what its own tile asks for');
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
    figures.resumedAtPublisher = await expectLayer(bob, ann, { quality: 'medium', height: 270 }, 'back to medium');
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
    figures.resumed = await expectLayer(bob, ann, { quality: 'medium', height: 270 }, 'shown again');
  });
});
