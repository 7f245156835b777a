// The statistics panel of both call pages (public/lib/stats-panel.js, docs/metrics.md), in real
// Chromium: during a call the panel opens on the chart button and draws live, growing series
// of the call's own streams (bit rate, loss, round trip, jitter, frame rate, resolution), names
// the path in use, and its charts are really drawn (series colours on the canvas). The
// operator page (public/operator.html) charts an SFU room's participants from /api/rooms.
// Screenshots of the pages go to tests/browser/artifacts/.
//
// Run it like the other browser tests (scripts/test does), inside a loopback-only namespace.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { joinSfuRoom, launchChromium, until } from '../lib/browser.mjs';
import { OPERATOR_TOKEN, startServer } from '../lib/server.mjs';

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const WAIT_MS = 20_000;

let server;
let browser;
const pageErrors = [];

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

async function openPage(path, name) {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage();
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  await page.goto(`${server.url}${path}`, { waitUntil: 'load' });
  return page;
}

const charts = (page) => page.evaluate(() => window.__rtc.stats.charts());
const byId = (list) => Object.fromEntries(list.map((c) => [c.id, c]));

/** Each chart's series, from a page's hook (`window.__rtc.stats` or `window.__operator`). */
const operatorCharts = (page) => page.evaluate(() => window.__operator.charts());

/**
 * Pixels of each chart's canvas in a series' colour (lib/stats-panel.js draws series in
 * saturated colours, axes and grid in grey): a drawn line, not only axes or an empty canvas.
 */
function seriesPixels(page) {
  return page.evaluate(() => [...document.querySelectorAll('[data-testid="stats-chart"]')].map((section) => {
    const canvas = section.querySelector('canvas');
    if (!canvas) return { id: section.dataset.chart, pixels: 0 };
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let pixels = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
      if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 80) pixels++;
    }
    return { id: section.dataset.chart, pixels };
  }));
}

/** Opens the panel after a few seconds of call, and checks it draws live, growing data. */
async function checkPanel(page, { received, t }) {
  // Readings taken before the panel opens are charted too: a few, with what this page
  // receives among them, whatever the machine's load makes of the one-a-second timer.
  const readings = await until('three readings before the panel opens, with what is received', async () => {
    const { points, labels } = byId(await charts(page)).bitrate;
    return points >= 3 && received.every((label) => labels.includes(label)) ? points : null;
  }, WAIT_MS, 250);
  assert.equal(await page.getByTestId('stats-panel').isVisible(), false, 'not drawn yet');
  await page.getByTestId('toggle-stats').click();
  await page.getByTestId('stats-panel').waitFor({ state: 'visible', timeout: WAIT_MS });
  assert.equal(await page.getByTestId('toggle-stats').getAttribute('aria-pressed'), 'true');
  const first = byId(await until('the bit rate chart has data', async () => {
    const list = await charts(page);
    return byId(list).bitrate.labels.length ? list : null;
  }, WAIT_MS));
  t.diagnostic(`bit rate series: ${first.bitrate.labels.join(', ')}; ${first.bitrate.points} readings when opened`);
  assert.ok(first.bitrate.points >= readings, `history from before the panel opened: ${readings} readings then, ${first.bitrate.points} when opened`);
  for (const label of received) assert.ok(first.bitrate.labels.includes(label), `${label} in ${first.bitrate.labels}`);
  assert.ok(first.bitrate.labels.some((l) => l.startsWith('↑ video')), 'our own video');
  for (const id of ['fps', 'height', 'jitter', 'rtt']) assert.ok(first[id].labels.length > 0, `${id} chart has series`);
  // The path is read from the latest reading: one taken while the SFU renegotiates (a joiner)
  // may have no selected pair yet.
  const path = await until('the path described', async () => {
    const text = await page.getByTestId('stats-path').textContent();
    return /^host → host, UDP$/.test(text) ? text : null;
  }, 10_000, 250).catch(async () => page.getByTestId('stats-path').textContent());
  assert.match(path, /^host → host, UDP$/);

  await sleep(3000);
  const later = byId(await charts(page));
  assert.ok(later.bitrate.points >= first.bitrate.points + 2, `growing: ${first.bitrate.points} → ${later.bitrate.points}`);
  const drawn = await seriesPixels(page);
  t.diagnostic(`series pixels per chart: ${drawn.map((d) => `${d.id} ${d.pixels}`).join(', ')}`);
  for (const id of ['bitrate', 'fps', 'height', 'rtt']) {
    assert.ok(drawn.find((d) => d.id === id).pixels > 20, `${id}: a series is drawn`);
  }
}

describe('statistics panel', { timeout: 120_000 }, () => {
  it('the chart library is served from the npm package', async () => {
    for (const path of ['/vendor/uPlot.esm.js', '/vendor/uPlot.min.css']) {
      const res = await fetch(`${server.url}${path}`);
      assert.equal(res.status, 200, path);
    }
    assert.equal((await fetch(`${server.url}/node_modules/uplot/package.json`)).status, 404);
  });

  it('1-to-1 call: charts of the call, growing, and the path', async (t) => {
    const room = `stats-${process.pid}`;
    const [a, b] = [await openPage('/', 'A'), await openPage('/', 'B')];
    for (const page of [a, b]) {
      await page.getByTestId('room').fill(room);
      await page.getByTestId('join').click();
    }
    for (const page of [a, b]) {
      await page.waitForFunction(() => document.querySelector('[data-testid="state"]')?.textContent === 'joined_conn', null, { timeout: WAIT_MS });
    }
    await checkPanel(a, { received: ['↓ remote video', '↓ remote audio'], t });
    assert.match(await a.locator('#stats-chip').textContent(), /\d+ fps/, 'the chip reads the same samples');
    mkdirSync(ARTIFACTS, { recursive: true });
    await a.screenshot({ path: join(ARTIFACTS, 'call-stats.png') });
    await a.getByTestId('leave').click();
    await a.waitForFunction(() => window.__rtc.stats.charts()[0].points === 0, null, { timeout: WAIT_MS });
  });

  it('SFU room: a series per participant, named', async (t) => {
    const room = `stats-sfu-${process.pid}`;
    const url = `${server.url}/sfu.html?res=320x240&fps=15`;
    const ann = await joinSfuRoom(browser, url, { room, name: 'Ann', viewport: { width: 1280, height: 720 } });
    ann.on('pageerror', (e) => pageErrors.push(`Ann: ${e.message}`));
    await joinSfuRoom(browser, url, { room, name: 'Bob' });
    await ann.waitForFunction(() => document.querySelector('video[data-participant]')?.videoWidth > 0, null, { timeout: WAIT_MS });
    await checkPanel(ann, { received: ['↓ Bob video', '↓ Bob audio'], t });
    mkdirSync(ARTIFACTS, { recursive: true });
    await ann.screenshot({ path: join(ARTIFACTS, 'sfu-stats.png') });
    await ann.getByTestId('toggle-stats').click();
    assert.equal(await ann.getByTestId('stats-panel').isVisible(), false, 'the button closes it again');
  });

  it('operator page: the room\'s participants, charted and listed', async (t) => {
    const room = `stats-op-${process.pid}`;
    const url = `${server.url}/sfu.html?res=320x240&fps=15`;
    await joinSfuRoom(browser, url, { room, name: 'Cy' });
    await joinSfuRoom(browser, url, { room, name: 'Di' });
    const page = await openPage('/operator.html', 'operator');
    await page.getByTestId('token').fill(`${OPERATOR_TOKEN}-wrong`);
    await page.getByTestId('sign-in').click();
    await page.getByTestId('error').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await page.getByTestId('error').textContent(), /did not accept this token/);

    await page.getByTestId('token').fill(OPERATOR_TOKEN);
    await page.getByTestId('sign-in').click();
    const rows = page.getByTestId('participants').locator('tbody tr');
    await until('both participants listed', async () => (await rows.allTextContents()).filter((r) => r.includes(room)).length === 2, WAIT_MS);
    const listed = (await rows.allTextContents()).join('\n');
    assert.match(listed, /Cy/);
    assert.match(listed, /Di/);
    const first = byId(await until('a series per participant', async () => {
      const list = await operatorCharts(page);
      return byId(list).in.labels.length >= 2 && byId(list).forwarded.points >= 2 ? list : null;
    }, WAIT_MS));
    assert.deepEqual(first.in.labels.filter((l) => l.endsWith(`(${room})`)).sort(), [`Cy (${room})`, `Di (${room})`]);
    await sleep(4500);
    const later = byId(await operatorCharts(page));
    assert.ok(later.in.points >= first.in.points + 2, `growing: ${first.in.points} → ${later.in.points}`);
    const drawn = await seriesPixels(page);
    t.diagnostic(`series pixels per chart: ${drawn.map((d) => `${d.id} ${d.pixels}`).join(', ')}`);
    for (const id of ['people', 'forwarded', 'in', 'out']) assert.ok(drawn.find((d) => d.id === id).pixels > 20, `${id}: a series is drawn`);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'operator.png'), fullPage: true });

    // The token stays for the tab (a reload keeps the view) and is never in the address.
    await page.reload();
    await page.getByTestId('participants').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.ok(!page.url().includes(OPERATOR_TOKEN));
  });

  it('no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
