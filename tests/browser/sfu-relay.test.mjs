// A room participant whose only way out is the TURN relay (`sfu.html?relay`: relay candidates
// only, as behind a firewall that blocks UDP): its media reaches the SFU through the embedded
// relay. The relay denies loopback peers, as it does by default; signal allows it exactly the
// SFU's media address and port, so this works without opening loopback to relayed traffic.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { operatorHeaders, startServer } from '../lib/server.mjs';
import { launchChromium, until } from '../lib/browser.mjs';

const turnConfig = fileURLToPath(new URL('./turn-sfu.conf', import.meta.url));
let server;
let browser;

before(async () => {
  server = await startServer({ tls: true, turnConfig });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

function mediaAndPair(page) {
  return page.evaluate(async () => {
    const report = await window.__rtc.pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const out = { frames: 0, audioPackets: 0, local: null, remote: null };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.frames += s.framesDecoded ?? 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioPackets += s.packetsReceived ?? 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        out.local = byId.get(pair?.localCandidateId)?.candidateType;
        const remote = byId.get(pair?.remoteCandidateId);
        out.remote = remote && `${remote.address}:${remote.port}`;
      }
    });
    return out;
  });
}

test('relay-only participants reach the SFU through the relay, and only the SFU', { timeout: 90_000 }, async (t) => {
  const mediaAddress = (await (await fetch(`${server.url.replace('https', 'http')}/api/rooms`).catch(() => null))?.json?.())?.media_address;
  assert.equal(mediaAddress, undefined, 'sanity: HTTPS only');
  const pages = [];
  for (const name of ['Ada', 'Brian']) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`${server.url}/sfu.html?relay&res=320x240&fps=15`);
    await page.waitForFunction(() => document.body.dataset.ready === 'true');
    await page.getByTestId('room').fill('via-relay');
    await page.getByTestId('name').fill(name);
    await page.getByTestId('join').click();
    pages.push(page);
  }
  const report = await pages[0].evaluate(async (headers) => (await fetch('/api/rooms', { headers })).json(), operatorHeaders);
  for (const page of pages) {
    const s = await until('media through the relay', async () => {
      const m = await mediaAndPair(page);
      return m.frames > 10 && m.audioPackets > 50 ? m : null;
    }, 30_000);
    assert.equal(s.local, 'relay', JSON.stringify(s));
    t.diagnostic(`relay ⇄ ${s.remote} (SFU media address ${report.media_address})`);
  }
  assert.match(server.logs(), /the TURN relay may reach the SFU's media port/);
});
