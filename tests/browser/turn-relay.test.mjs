// A 1-to-1 call forced through the embedded TURN relay: both pages use
// iceTransportPolicy 'relay' (`?relay`), credentials come from /api/ice-servers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

import { startServer } from '../lib/server.mjs';
import { callStats, launchChromium, until } from '../lib/browser.mjs';

const turnConfig = fileURLToPath(new URL('./turn-loopback.conf', import.meta.url));
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

test('two browsers call each other through the relay only', { timeout: 90_000 }, async (t) => {
  const ice = await fetch(`${server.url.replace('https', 'http')}/healthz`).catch(() => null);
  assert.equal(ice, null, 'sanity: the server speaks HTTPS only');

  const room = `relay-${process.pid}`;
  const pages = [];
  for (const name of ['A', 'B']) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto(`${server.url}/?relay&room=${room}`);
    const servers = await page.evaluate(async () => (await fetch('/api/ice-servers')).json());
    const turn = servers.iceServers.find((s) => s.urls.some((u) => u.startsWith('turn:')));
    assert.ok(turn?.username && turn?.credential, `${name}: time-limited TURN credentials ${JSON.stringify(servers)}`);
    assert.ok(servers.ttl > 0);
    await page.getByTestId('join').click();
    pages.push(page);
  }
  const started = Date.now();
  for (const [i, page] of pages.entries()) {
    const stats = await until(`page ${i}: frames decoded over a relay pair`, async () => {
      const s = await callStats(page);
      return s?.framesDecoded > 0 && s.audioPackets > 0 ? s : null;
    });
    assert.equal(stats.local.type, 'relay', JSON.stringify(stats));
    assert.equal(stats.remote.type, 'relay', JSON.stringify(stats));
  }
  t.diagnostic(`media flowing through the relay ${Date.now() - started} ms after both joined`);
  const before = await Promise.all(pages.map(callStats));
  await new Promise((r) => setTimeout(r, 2000));
  const later = await Promise.all(pages.map(callStats));
  for (const i of [0, 1]) {
    assert.ok(later[i].framesDecoded - before[i].framesDecoded >= 10, `page ${i}: frames keep decoding`);
    assert.ok(later[i].audioPackets - before[i].audioPackets >= 20, `page ${i}: audio keeps arriving`);
  }
  t.diagnostic(`selected pair: ${JSON.stringify(later[0].local)} ⇄ ${JSON.stringify(later[0].remote)}`);
  const metrics = server.logs();
  assert.doesNotMatch(metrics, /browser-test-secret/, 'the secret is never logged');
});
