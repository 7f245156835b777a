// Moderation in SFU rooms, in real Chromium (docs/protocol.md, `moderate`): on a server
// without tokens the room's first participant moderates. Ann mutes Bob (the server drops his
// audio while his browser still sends), lets him speak again, removes him, and ends the room
// after he joins again. Run it like tests/browser/sfu.test.mjs (scripts/test does).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { joinSfuRoom, launchChromium, until } from '../lib/browser.mjs';

const ROOM = `moderation-${process.pid}`;
const WAIT_MS = 20_000;
const LINK = (url) => `${url}/sfu.html?res=320x240&fps=15`;

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

/** Audio packets `page` has received from participant `id`, and sent of its own. */
function audioPackets(page, id) {
  return page.evaluate(async (id) => {
    const pc = window.__rtc.pc;
    const track = document.querySelector(`video[data-participant="${id}"]`)?.srcObject?.getAudioTracks()[0];
    const receiver = track && pc.getReceivers().find((r) => r.track === track);
    let received = 0;
    if (receiver) for (const s of (await receiver.getStats()).values()) if (s.type === 'inbound-rtp') received = s.packetsReceived;
    let sent = 0;
    for (const s of (await pc.getStats()).values()) if (s.type === 'outbound-rtp' && s.kind === 'audio') sent += s.packetsSent;
    return { received, sent };
  }, id);
}

/** How many audio packets each way in `ms`: what Ann receives from Bob, what Bob sends. */
async function audioFlow(ann, bob, ms) {
  const [a0, b0] = [await audioPackets(ann, bob.id), await audioPackets(bob, ann.id)];
  await new Promise((r) => setTimeout(r, ms));
  const [a1, b1] = [await audioPackets(ann, bob.id), await audioPackets(bob, ann.id)];
  return { annReceives: a1.received - a0.received, bobSends: b1.sent - b0.sent };
}

describe('moderation in the room page', { timeout: 180_000 }, () => {
  it('the first participant mutes, removes, and ends the room; the others are told', async (t) => {
    const ann = await joinSfuRoom(browser, LINK(server.url), { room: ROOM, name: 'Ann', timeout: WAIT_MS });
    const bob = await joinSfuRoom(browser, LINK(server.url), { room: ROOM, name: 'Bob', timeout: WAIT_MS });
    const bobTile = ann.locator(`.tile[data-participant="${bob.id}"][data-source="camera"]`);
    await bobTile.waitFor({ timeout: WAIT_MS });
    // Only Ann, there first, gets the moderator's buttons.
    assert.equal(await ann.evaluate(() => document.body.classList.contains('moderating')), true);
    assert.equal(await ann.getByTestId('end-room').isVisible(), true);
    assert.equal(await bob.evaluate(() => document.body.classList.contains('moderating')), false);
    assert.equal(await bob.getByTestId('end-room').isVisible(), false);
    await until('Ann hears Bob', async () => (await audioFlow(ann, bob, 500)).annReceives > 5, WAIT_MS);

    await bobTile.getByTestId('mod-mute').click();
    await bob.waitForFunction(() => window.__rtc.mutedByModerator === true, null, { timeout: WAIT_MS });
    assert.equal(await bob.getByTestId('toggle-mic').isDisabled(), true, "Bob's microphone button is off limits");
    await until("Bob's tile shows him muted", async () => (await bobTile.getAttribute('class')).includes('moderator-muted'), WAIT_MS);
    await new Promise((r) => setTimeout(r, 500)); // packets already on their way
    const muted = await audioFlow(ann, bob, 2000);
    t.diagnostic(`muted for 2 s: Bob's browser sent ${muted.bobSends} audio packets, Ann received ${muted.annReceives}`);
    assert.ok(muted.bobSends > 20, 'his browser still sends (silence): the server is what stops it');
    assert.equal(muted.annReceives, 0);

    await bobTile.getByTestId('mod-mute').click(); // now "Unmute"
    await bob.waitForFunction(() => window.__rtc.mutedByModerator === false, null, { timeout: WAIT_MS });
    assert.equal(await bob.getByTestId('toggle-mic').isDisabled(), false);
    await bob.getByTestId('toggle-mic').click(); // he turns his microphone back on
    await until('Ann hears Bob again', async () => (await audioFlow(ann, bob, 500)).annReceives > 5, WAIT_MS);

    ann.once('dialog', (d) => d.accept());
    await bobTile.getByTestId('mod-remove').click();
    await until("Bob's page says who removed him", async () => (await bob.getByTestId('error').textContent()) === 'Ann removed you from the room.', WAIT_MS);
    assert.equal(await bob.evaluate(() => document.body.dataset.view), 'lobby');
    await bobTile.waitFor({ state: 'detached', timeout: WAIT_MS });

    // He joins again; Ann ends the room for both.
    await bob.getByTestId('join').click();
    await bob.waitForFunction(() => window.__rtc.id, null, { timeout: WAIT_MS });
    ann.once('dialog', (d) => d.accept());
    await ann.getByTestId('end-room').click();
    for (const page of [ann, bob]) {
      await until(`${page.label}'s page says the room ended`, async () => (await page.getByTestId('error').textContent()) === 'Ann ended the room for everyone.', WAIT_MS);
    }
    const report = await server.operator('/api/rooms');
    assert.equal(report.rooms.find((r) => r.room === ROOM), undefined, 'the room is gone');
  });
});
