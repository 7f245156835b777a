// Join tokens in real Chromium (docs/security.md): a server with an auth secret lets pages in
// only with a token in their link. A 1-to-1 call and an SFU room work with tokens minted by
// `signal token`; the token leaves the address bar; a page whose link carries an expired
// token says so. Room passcodes, in both kinds of room: a wrong one is explained, the right
// one lets in. Run it like tests/browser/sfu.test.mjs (scripts/test does).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { signalBin, startServer } from '../lib/server.mjs';
import { callStats, joinSfuRoom, launchChromium, sfuReceived, until } from '../lib/browser.mjs';

const SECRET = 'a-secret-for-the-browser-token-test-0123';
const WAIT_MS = 20_000;

let server;
let browser;

const token = (room, identity) =>
  execFileSync(signalBin, ['token', '--secret', SECRET, '--room', room, '--identity', identity], { encoding: 'utf8' }).trim();

before(async () => {
  server = await startServer({ args: ['--auth-secret', SECRET] });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

async function page1to1(link) {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage();
  await page.goto(link, { waitUntil: 'load' });
  return page;
}

describe('join tokens in the pages', { timeout: 120_000 }, () => {
  it('a 1-to-1 call with tokens in the links', async () => {
    const pages = [];
    for (const name of ['ada', 'bob']) {
      const page = await page1to1(`${server.url}/?token=${token('call-1', name)}`);
      assert.doesNotMatch(page.url(), /token=/, 'the token leaves the address bar');
      await page.getByTestId('room').fill('call-1');
      await page.getByTestId('join').click({ timeout: WAIT_MS });
      pages.push(page);
    }
    for (const page of pages) {
      await until('media flows both ways', async () => {
        const s = await callStats(page);
        return s?.framesDecoded > 10 && s.audioPackets > 20 ? s : null;
      }, WAIT_MS);
    }
  });

  it('a 1-to-1 room passcode: a wrong one gets a clear message, the right one connects the call', async () => {
    const link = (who) => `${server.url}/?token=${token('call-p', who)}`;
    const ada = await page1to1(link('ada'));
    await ada.getByTestId('room').fill('call-p');
    await ada.getByTestId('passcode').fill('sesame');
    await ada.getByTestId('join').click({ timeout: WAIT_MS });
    await ada.waitForFunction(() => document.querySelector('[data-testid="state"]')?.textContent === 'joined', null, { timeout: WAIT_MS });
    const bob = await page1to1(link('bob'));
    await bob.getByTestId('room').fill('call-p');
    await bob.getByTestId('passcode').fill('open sesame');
    await bob.getByTestId('join').click({ timeout: WAIT_MS });
    await until('the page says the passcode is wrong', async () => (await bob.getByTestId('notice').textContent()) === 'Wrong passcode for room "call-p".', WAIT_MS);
    assert.equal(await bob.getByTestId('state').textContent(), 'leaved', 'not in the room');
    assert.equal(await ada.getByTestId('state').textContent(), 'joined', 'Ada still waits alone');
    await bob.getByTestId('passcode').fill('sesame');
    await bob.getByTestId('join').click({ timeout: WAIT_MS });
    for (const page of [ada, bob]) {
      await until('media flows both ways', async () => {
        const s = await callStats(page);
        return s?.framesDecoded > 10 && s.audioPackets > 20 ? s : null;
      }, WAIT_MS);
    }
    await ada.context().close();
    await bob.context().close();
  });

  it('an SFU room with tokens in the links', async () => {
    const ann = await joinSfuRoom(browser, `${server.url}/sfu.html?res=320x240&fps=15&token=${token('room-1', 'ann')}`, { room: 'room-1', name: 'Ann', timeout: WAIT_MS });
    const bob = await joinSfuRoom(browser, `${server.url}/sfu.html?res=320x240&fps=15&token=${token('room-1', 'bob')}`, { room: 'room-1', name: 'Bob', timeout: WAIT_MS });
    assert.doesNotMatch(bob.url(), /token=/);
    assert.match(bob.url(), /res=320x240/, 'the other parameters stay');
    await until("Bob sees Ann's video", async () => ((await sfuReceived(bob, ann.id))?.frames ?? 0) > 10, WAIT_MS);
  });

  it('a room passcode: set by the opener; a wrong one gets a clear message, the right one lets in', async () => {
    const link = (who) => `${server.url}/sfu.html?res=320x240&fps=15&token=${token('room-p', who)}`;
    const ann = await joinSfuRoom(browser, link('ann'), { room: 'room-p', name: 'Ann', passcode: 'sesame', timeout: WAIT_MS });
    const bob = await (await browser.newContext({ viewport: { width: 960, height: 540 } })).newPage();
    await bob.goto(link('bob'), { waitUntil: 'load' });
    await bob.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: WAIT_MS });
    await bob.getByTestId('room').fill('room-p');
    await bob.getByTestId('name').fill('Bob');
    await bob.getByTestId('passcode').fill('open sesame');
    await bob.getByTestId('join').click();
    await until('the page says the passcode is wrong', async () => (await bob.getByTestId('error').textContent()) === 'Wrong passcode for room "room-p".', WAIT_MS);
    assert.equal(await bob.evaluate(() => window.__rtc.id ?? null), null, 'not in the room');
    await bob.getByTestId('passcode').fill('sesame');
    await bob.getByTestId('join').click();
    await bob.waitForFunction(() => window.__rtc.id, null, { timeout: WAIT_MS });
    const bobId = await bob.evaluate(() => window.__rtc.id);
    await until('Ann sees Bob', async () => (await sfuReceived(ann, bobId))?.frames > 0, WAIT_MS);
    await ann.context().close();
    await bob.context().close();
  });

  it('an expired token: the page says the link does not let them in', async () => {
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'cy', room: 'room-1', exp: Math.floor(Date.now() / 1000) - 120 })}`;
    const expired = `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.url}/sfu.html?res=320x240&fps=15&token=${expired}`, { waitUntil: 'load' });
    await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: WAIT_MS });
    await page.getByTestId('room').fill('room-1');
    await page.getByTestId('name').fill('Cy');
    await page.getByTestId('join').click();
    await until('the page explains', async () => /does not let you in \(token_expired/.test(await page.getByTestId('error').textContent()), WAIT_MS);
  });
});
