// SFU rooms on the server's default bind (every interface, as `scripts/run` starts it): the
// media socket then announces the default-route interface's address, or loopback where there
// is no network (this test's namespace). Two Chromium pages must receive each other's video
// and audio. (A server that announced 0.0.0.0 here passed every other test.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../lib/server.mjs';
import { launchChromium, until } from '../lib/browser.mjs';

let server;
let browser;

before(async () => {
  server = await startServer({ listen: '0.0.0.0:0' });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function received(page) {
  return page.evaluate(async () => {
    const out = { frames: 0, audioPackets: 0 };
    (await window.__rtc.pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video') out.frames += r.framesDecoded ?? 0;
      else out.audioPackets += r.packetsReceived ?? 0;
    });
    return out;
  });
}

test('two participants see and hear each other through the SFU bound to 0.0.0.0', { timeout: 60_000 }, async () => {
  assert.match(server.logs(), /media socket bound=0\.0\.0\.0:\d+ announced=(?!0\.0\.0\.0)/);
  const pages = [];
  for (const name of ['Ada', 'Brian']) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.url}/sfu.html?res=320x240&fps=15`);
    await page.waitForFunction(() => document.body.dataset.ready === 'true');
    await page.getByTestId('room').fill('default-bind');
    await page.getByTestId('name').fill(name);
    await page.getByTestId('join').click();
    await page.waitForFunction(() => window.__rtc.id, null, { timeout: 15_000 });
    pages.push(page);
  }
  for (const page of pages) {
    await until('remote video decoding and audio arriving', async () => {
      const r = await received(page);
      return r.frames > 10 && r.audioPackets > 50;
    }, 20_000);
  }
});
