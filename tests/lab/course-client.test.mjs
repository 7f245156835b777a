// The course's kind of 1-to-1 client (issue 8, scenario 7), served as it is from
// --public-dir: socket.io 2.x, `otherjoin`, a page without <meta charset> and a UTF-8 script
// whose Chinese comments and U+3000 indentation only parse if the server says charset=utf-8.
// Two homes behind cone NATs call each other with it.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { until } from '../lib/browser.mjs';
import { repoRoot } from '../lib/server.mjs';
import { Lab } from './lab.mjs';
import { openPage } from './calls.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
let lab;
let site;

before(async () => {
  // The page and its script, plus the socket.io 2.x browser client from npm (as the course's
  // page took it from a CDN).
  site = mkdtempSync(path.join(tmpdir(), 'course-client-'));
  cpSync(path.join(HERE, 'course-client'), site, { recursive: true });
  cpSync(path.join(repoRoot, 'tests/node_modules/socket.io-client-v2/dist/socket.io.js'), path.join(site, 'js/socket.io.js'));
  lab = await Lab.create({ homes: ['a', 'b'] });
});

after(async () => {
  await lab?.down();
  rmSync(site, { recursive: true, force: true });
  assert.deepEqual(await lab?.leftovers(), { namespaces: [], links: [], processes: 0, dir: false }, 'the lab cleans up after itself');
});

/** The remote <video>'s progress: frames presented so far. */
const remoteFrames = (page) => page.evaluate(() => document.querySelector('video#remotevideo').getVideoPlaybackQuality().totalVideoFrames);

it('a socket.io 2.x page without <meta charset> makes a call', { timeout: 180_000 }, async (t) => {
  const server = await lab.startServer({ publicDir: site });
  const url = `${server.url}/room.html?room=course`;
  const pages = [];
  for (const home of ['a', 'b']) {
    const page = await openPage(await lab.browser(home), url, home.toUpperCase());
    pages.push(page);
    const encoding = await page.evaluate(() => document.characterSet);
    assert.equal(encoding, 'UTF-8', `${page.label}: the page is decoded as UTF-8`);
    assert.equal(await page.locator('#connserver').textContent(), '连接信令服务器', `${page.label}: Chinese text renders`);
    await page.locator('#connserver').click();
    await until(`${page.label} joined`, async () => (await page.locator('#status').textContent()) !== '未连接');
  }
  for (const page of pages) {
    await until(`${page.label}: remote video playing`, async () => (await remoteFrames(page)) > 0, 30_000, 250);
    assert.equal(await page.locator('#status').textContent(), '通话中');
  }
  const before = await Promise.all(pages.map(remoteFrames));
  await new Promise((r) => setTimeout(r, 2000));
  const later = await Promise.all(pages.map(remoteFrames));
  for (const [i, page] of pages.entries()) {
    assert.ok(later[i] - before[i] >= 10, `${page.label}: frames keep coming (${before[i]} → ${later[i]})`);
    assert.deepEqual(page.errors.filter((e) => !/favicon/.test(e)), [], `${page.label}: no script errors`);
  }
  t.diagnostic(`remote frames after 2 s: ${later.map((n, i) => n - before[i]).join(' / ')}`);
});
