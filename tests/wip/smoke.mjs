import { chromium } from 'playwright-core';
import { startServer } from '../lib/server.mjs';
const N = Number(process.env.N || 2);
const server = await startServer();
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--allow-loopback-in-peer-connection', '--no-first-run'] });
const pages = [];
try {
  for (let i = 0; i < N; i++) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on('console', (m) => console.log(`[p${i}] ${m.text()}`));
    page.on('pageerror', (e) => console.log(`[p${i}] ERR ${e.message}`));
    await page.goto(`${server.url}/sfu.html`);
    await page.getByTestId('room').fill('r1');
    await page.getByTestId('name').fill(`user${i}`);
    await page.waitForFunction(() => document.body.dataset.ready === 'true');
    const t0 = Date.now();
    await page.getByTestId('join').click();
    pages.push(page);
    await page.waitForFunction(() => window.__sfu.id, null, { timeout: 10000 });
    console.log(`p${i} joined in ${Date.now() - t0} ms`);
  }
  await new Promise((r) => setTimeout(r, 5000));
  if (process.env.SDP) console.log(await pages[0].evaluate(() => "LOCAL\n" + window.__sfu.pc.localDescription.sdp + "\nREMOTE\n" + window.__sfu.pc.remoteDescription.sdp + JSON.stringify(window.__sfu.events)));
  for (const [i, page] of pages.entries()) {
    const s = await page.evaluate(async () => {
      const out = { video: [], audio: [], state: window.__sfu.pc.connectionState, tiles: document.querySelectorAll('[data-testid=remote-video]').length };
      (await window.__sfu.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp') (r.kind === 'video' ? out.video : out.audio).push(r.kind === 'video' ? r.framesDecoded : r.packetsReceived);
      });
      return out;
    });
    console.log(`p${i}`, JSON.stringify(s));
  }
  console.log(await (await fetch(`${server.url}/api/rooms`)).text());
} finally {
  await browser.close();
  await server.stop();
  console.log(server.logs().split('\n').filter((l) => /WARN|ERROR|sfu/.test(l)).slice(-40).join('\n'));
}
