// Screen sharing in SFU rooms, in real Chromium (issue 10): Ann shares her (fake) screen
// with the page's Share button; Bob's page gets it as a tile of its own, shown large, beside
// Ann's camera, which goes on; when Ann stops, the tile goes and her camera stays; she can
// share again. The screen is a second video publication on an m-line the server offers
// (docs/protocol.md, `share`). Run it like tests/browser/sfu.test.mjs (scripts/test does).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { joinSfuRoom, launchChromium, sfuReceived, until } from '../lib/browser.mjs';

const ROOM = `screen-${process.pid}`;
const WAIT_MS = 20_000;

let server;
const browsers = [];

async function participant(label) {
  // The fake UI picks the whole (fake) screen when the page asks for one.
  const browser = await launchChromium(['--auto-select-desktop-capture-source=Entire screen']);
  browsers.push(browser);
  return joinSfuRoom(browser, `${server.url}/sfu.html?res=320x240&fps=15`, { room: ROOM, name: label, timeout: WAIT_MS });
}

/** Waits until `viewer` decodes `source` of `publisher` and it keeps coming; returns the reading. */
async function expectFlowing(viewer, publisher, source, what) {
  let first = null;
  return until(what, async () => {
    const got = await sfuReceived(viewer, publisher.id, source);
    if (!got || got.frames === 0) throw new Error(JSON.stringify(got));
    first ??= got;
    if (got.frames < first.frames + 15) throw new Error(`only ${got.frames - first.frames} new frames`);
    return got;
  }, WAIT_MS, 200);
}

const sharing = (page) => page.getByTestId('share').getAttribute('aria-pressed');

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  await server?.stop();
});

describe('screen sharing in SFU rooms', { timeout: 180_000 }, () => {
  it('a shared screen reaches the room as a tile of its own, and goes when stopped', async () => {
    const ann = await participant('Ann');
    const bob = await participant('Bob');
    await expectFlowing(bob, ann, 'camera', "Bob sees Ann's camera");

    for (const round of [1, 2]) {
      const t0 = Date.now();
      await ann.getByTestId('share').click();
      await until(`${round}: Ann's page says it shares`, async () => (await sharing(ann)) === 'true', 5_000);
      const screen = await expectFlowing(bob, ann, 'screen', `${round}: Bob decodes Ann's screen`);
      console.log(`# round ${round}: screen on Bob's page after ${Date.now() - t0} ms: ${JSON.stringify(screen)}`);
      assert.ok(screen.pinned, "the shared screen is shown large");
      assert.equal(await ann.getByTestId('local-screen').count(), 1, 'Ann sees what she shares');
      const listed = await bob.evaluate((id) => window.__rtc.participants.find((p) => p.id === id)?.screen, ann.id);
      assert.equal(listed, `${ann.id}-screen`, 'the participants list names the screen stream');
      // The big tile asks for the best there is: the screen as captured, not scaled down.
      const captured = await ann.evaluate(() =>
        document.querySelector('[data-testid=local-screen]').srcObject.getVideoTracks()[0].getSettings().width);
      assert.ok(captured >= 640, `captured ${captured} px wide`);
      const sharp = await until(`${round}: the screen arrives at its captured width (${captured})`, async () => {
        const got = await sfuReceived(bob, ann.id, 'screen');
        if (got?.width === captured) return got;
        throw new Error(JSON.stringify(got));
      }, WAIT_MS, 250);
      assert.equal(sharp.width, captured);
      await expectFlowing(bob, ann, 'camera', `${round}: Ann's camera goes on beside her screen`);

      const t1 = Date.now();
      await ann.getByTestId('share').click();
      await until(`${round}: the screen tile leaves Bob's page`, async () =>
        (await bob.locator(`video[data-screen-of="${ann.id}"]`).count()) === 0, 5_000);
      console.log(`# round ${round}: screen gone from Bob's page ${Date.now() - t1} ms after Ann stopped`);
      assert.equal(await sharing(ann), 'false');
      assert.equal(await ann.getByTestId('local-screen').count(), 0);
      await expectFlowing(bob, ann, 'camera', `${round}: Ann's camera goes on after she stopped`);
      // The server's view: Ann publishes her camera and microphone only again.
      const rooms = await server.operator('/api/rooms');
      const annReport = rooms.rooms.find((r) => r.room === ROOM)?.participants.find((p) => p.name === 'Ann');
      assert.deepEqual([...annReport.publishing].sort(), ['audio', 'video'], JSON.stringify(annReport));
    }
  });
});
